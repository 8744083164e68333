#!/usr/bin/env python3
"""Convert EfficientNet-Lite0 legacy PyTorch weights (.pth) to ONNX, without PyTorch.

Set-up time only (the runtime is Rust). Needs numpy and onnx.

The .pth is the pre-1.6 "legacy" format: a magic pickle, a protocol pickle, a sys-info
pickle, the state-dict pickle (tensors refer to storages by persistent id), a pickle
with the list of storage keys, then for each key an int64 element count followed by
the raw little-endian storage. We read it with a restricted unpickler that builds
nothing but plain tuples, so no code from the file runs.

The graph follows lukemelas/EfficientNet-PyTorch with the Lite changes (no squeeze-
excitation, ReLU6, fixed 32-channel stem and 1280-channel head), TensorFlow "same"
padding computed for the fixed 224x224 input, BatchNorm (eps 1e-3) folded into the
convolutions. Outputs: `logits` [1,1000] and `embedding` [1,1280] (the pooled
features before the classifier). Input `input` [1,3,224,224], RGB, normalised as
(x/255 - mean)/std with the ImageNet mean and std.

usage: efficientnet_pth_to_onnx.py IN.pth OUT.onnx
"""
import math
import pickle
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BN_EPS = 1e-3
IMAGE = 224
# (repeats, kernel, stride, expand ratio, in, out) for B0 / Lite0
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
DTYPES = {"FloatStorage": (np.float32, 4), "LongStorage": (np.int64, 8)}


class _Storage(tuple):
    pass


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: ("tensor", storage, offset, tuple(size), tuple(stride))
        if module == "torch._utils" and name == "_rebuild_tensor":
            return lambda storage, offset, size, stride: ("tensor", storage, offset, tuple(size), tuple(stride))
        if module == "collections" and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module == "torch" and name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        return _Storage(pid)


def read_legacy_pth(path):
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950A86A20F9469CFC6C:
            raise SystemExit(f"{path}: not a legacy PyTorch file (magic {magic!r})")
        pickle.load(f)  # protocol version
        sysinfo = pickle.load(f)
        if not sysinfo.get("little_endian", True):
            raise SystemExit(f"{path}: big-endian files are not supported")
        state = _Unpickler(f).load()
        keys = pickle.load(f)
        storages = {}
        wanted = {}
        for value in state.values():
            st = value[1]
            wanted[st[2]] = st[1]
        for key in keys:
            (numel,) = np.frombuffer(f.read(8), dtype="<i8")
            dtype, size = DTYPES[wanted[key]]
            raw = f.read(int(numel) * size)
            if len(raw) != int(numel) * size:
                raise SystemExit(f"{path}: truncated storage {key}")
            storages[key] = np.frombuffer(raw, dtype=dtype)
    tensors = {}
    for name, (_, st, offset, size, stride) in state.items():
        flat = storages[st[2]]
        # Views may be permuted (weights converted from TensorFlow keep their strides):
        # gather by explicit strides, checking the view stays inside its storage.
        last = offset + sum((d - 1) * s for d, s in zip(size, stride)) if size else offset
        if last >= flat.size:
            raise SystemExit(f"{path}: tensor {name} reaches past its storage")
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
        )
        tensors[name] = np.ascontiguousarray(view)
    return tensors


def same_pads(size, kernel, stride):
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class Graph:
    def __init__(self, w):
        self.w = w
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv_bn(self, x, size, conv, bn, stride, groups=1, act=True):
        weight = self.w[conv + ".weight"]
        gamma, beta = self.w[bn + ".weight"], self.w[bn + ".bias"]
        mean, var = self.w[bn + ".running_mean"], self.w[bn + ".running_var"]
        scale = gamma / np.sqrt(var + BN_EPS)
        folded_w = weight * scale[:, None, None, None]
        folded_b = beta - mean * scale
        k = weight.shape[2]
        lo, hi, out = same_pads(size, k, stride)
        y = self.name(conv.replace(".", "_"))
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, self.init(y + "_w", folded_w), self.init(y + "_b", folded_b)],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[lo, lo, hi, hi],
                group=groups,
            )
        )
        if act:
            z = self.name("relu6")
            self.nodes.append(helper.make_node("Clip", [y, "zero", "six"], [z]))
            y = z
        return y, out


def build(weights):
    g = Graph(weights)
    g.inits.append(numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"))
    g.inits.append(numpy_helper.from_array(np.array(6.0, dtype=np.float32), "six"))
    x, size = g.conv_bn("input", IMAGE, "_conv_stem", "_bn0", 2)
    idx = 0
    for repeats, k, stride, expand, cin, cout in BLOCKS:
        for r in range(repeats):
            s = stride if r == 0 else 1
            i = cin if r == 0 else cout
            p = f"_blocks.{idx}"
            h = x
            if expand != 1:
                h, _ = g.conv_bn(h, size, p + "._expand_conv", p + "._bn0", 1)
            channels = i * expand
            dw = weights[p + "._depthwise_conv.weight"]
            if dw.shape != (channels, 1, k, k):
                raise SystemExit(f"unexpected depthwise shape {dw.shape} in block {idx}")
            h, new_size = g.conv_bn(h, size, p + "._depthwise_conv", p + "._bn1", s, groups=channels)
            h, _ = g.conv_bn(h, new_size, p + "._project_conv", p + "._bn2", 1, act=False)
            if s == 1 and i == cout:
                y = g.name("add")
                g.nodes.append(helper.make_node("Add", [h, x], [y]))
                h = y
            x, size = h, new_size
            idx += 1
    x, _ = g.conv_bn(x, size, "_conv_head", "_bn1", 1)
    pooled = g.name("pool")
    g.nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    g.nodes.append(helper.make_node("Flatten", [pooled], ["embedding"], axis=1))
    fc_w = g.init("fc_w", weights["_fc.weight"])
    fc_b = g.init("fc_b", weights["_fc.bias"])
    g.nodes.append(helper.make_node("Gemm", ["embedding", fc_w, fc_b], ["logits"], transB=1))
    used = {n for node in g.nodes for n in node.input}
    leftovers = [k for k in weights if not k.endswith("num_batches_tracked")]
    graph = helper.make_graph(
        g.nodes,
        "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, IMAGE, IMAGE])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000]),
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 1280]),
        ],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="aisle-models")
    model.ir_version = 8
    for key, value in {
        "mean": "0.485,0.456,0.406",
        "std": "0.229,0.224,0.225",
        "input_size": str(IMAGE),
        "source": "efficientnet-lite0-57934424.pth",
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    assert len(used) > len(leftovers) // 2
    return model


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    weights = read_legacy_pth(sys.argv[1])
    model = build(weights)
    onnx.save(model, sys.argv[2])


if __name__ == "__main__":
    main()
