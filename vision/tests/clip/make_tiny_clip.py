"""Writes a tiny CLIP-architecture model as two ONNX graphs, the way OpenCLIP and
Hugging Face export CLIP (separate image and text encoders), with seeded random
weights, plus the embeddings a plain numpy forward pass gives for fixed inputs.
The vision tests load the graphs through aisle's CLIP backend on both engines and
compare with these numbers.

Architecture (OpenAI CLIP, scaled down): image: patch convolution (no bias),
class token, positional embedding, pre-LayerNorm, residual attention blocks
(LayerNorm, multi-head self-attention, LayerNorm, MLP with QuickGELU), class
token through post-LayerNorm and a projection. Text: token embedding over the
real CLIP vocabulary size (49,408), positional embedding over 77 positions, the
same blocks with a causal mask, final LayerNorm, the features at the
end-of-text token (the largest id, as CLIP pools), projection.

usage: make_tiny_clip.py OUT_DIR        (needs numpy and onnx)
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE, PATCH, WIDTH, HEADS, LAYERS, DIM = 32, 8, 32, 2, 2, 16
VOCAB, CONTEXT = 49408, 77
rng = np.random.default_rng(20261126)


def w(*shape, scale=0.2):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


class Graph:
    def __init__(self, prefix):
        self.nodes, self.inits, self.prefix, self.n = [], [], prefix, 0

    def const(self, arr, name=None):
        self.n += 1
        name = name or f"{self.prefix}c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, kind, inputs, **attrs):
        self.n += 1
        out = f"{self.prefix}t{self.n}"
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def layer_norm(self, x, g, b):
        mean = self.op("ReduceMean", [x], axes=[-1], keepdims=1)
        d = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Mul", [d, d])], axes=[-1], keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(np.float32(1e-5))])])
        return self.op("Add", [self.op("Mul", [self.op("Div", [d, std]), self.const(g)]), self.const(b)])

    def block(self, x, p, tokens, mask):
        h = self.layer_norm(x, p["ln1_g"], p["ln1_b"])
        dh = WIDTH // HEADS

        def heads(t):  # [1, T, W] -> [1, H, T, dh]
            r = self.op("Reshape", [t, self.const(np.array([1, tokens, HEADS, dh], np.int64))])
            return self.op("Transpose", [r], perm=[0, 2, 1, 3])

        q = heads(self.op("Add", [self.op("MatMul", [h, self.const(p["wq"])]), self.const(p["bq"])]))
        k = heads(self.op("Add", [self.op("MatMul", [h, self.const(p["wk"])]), self.const(p["bk"])]))
        v = heads(self.op("Add", [self.op("MatMul", [h, self.const(p["wv"])]), self.const(p["bv"])]))
        kt = self.op("Transpose", [k], perm=[0, 1, 3, 2])
        s = self.op("Mul", [self.op("MatMul", [q, kt]), self.const(np.float32(1.0 / np.sqrt(dh)))])
        if mask is not None:
            s = self.op("Add", [s, self.const(mask)])
        a = self.op("MatMul", [self.op("Softmax", [s], axis=-1), v])
        a = self.op("Reshape", [self.op("Transpose", [a], perm=[0, 2, 1, 3]),
                                self.const(np.array([1, tokens, WIDTH], np.int64))])
        x = self.op("Add", [x, self.op("Add", [self.op("MatMul", [a, self.const(p["wo"])]), self.const(p["bo"])])])
        h = self.layer_norm(x, p["ln2_g"], p["ln2_b"])
        h = self.op("Add", [self.op("MatMul", [h, self.const(p["w1"])]), self.const(p["b1"])])
        h = self.op("Mul", [h, self.op("Sigmoid", [self.op("Mul", [h, self.const(np.float32(1.702))])])])
        h = self.op("Add", [self.op("MatMul", [h, self.const(p["w2"])]), self.const(p["b2"])])
        return self.op("Add", [x, h])


def block_params():
    return {
        "ln1_g": 1 + w(WIDTH, scale=0.1), "ln1_b": w(WIDTH, scale=0.1),
        "wq": w(WIDTH, WIDTH), "bq": w(WIDTH, scale=0.05),
        "wk": w(WIDTH, WIDTH), "bk": w(WIDTH, scale=0.05),
        "wv": w(WIDTH, WIDTH), "bv": w(WIDTH, scale=0.05),
        "wo": w(WIDTH, WIDTH), "bo": w(WIDTH, scale=0.05),
        "ln2_g": 1 + w(WIDTH, scale=0.1), "ln2_b": w(WIDTH, scale=0.1),
        "w1": w(WIDTH, 4 * WIDTH), "b1": w(4 * WIDTH, scale=0.05),
        "w2": w(4 * WIDTH, WIDTH), "b2": w(WIDTH, scale=0.05),
    }


# ---- numpy reference ----
def np_ln(x, g, b):
    m = x.mean(-1, keepdims=True)
    d = x - m
    return d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-5) * g + b


def np_block(x, p, mask):
    t = x.shape[0]
    dh = WIDTH // HEADS
    h = np_ln(x, p["ln1_g"], p["ln1_b"])
    q = (h @ p["wq"] + p["bq"]).reshape(t, HEADS, dh).transpose(1, 0, 2)
    k = (h @ p["wk"] + p["bk"]).reshape(t, HEADS, dh).transpose(1, 0, 2)
    v = (h @ p["wv"] + p["bv"]).reshape(t, HEADS, dh).transpose(1, 0, 2)
    s = q @ k.transpose(0, 2, 1) / np.sqrt(dh)
    if mask is not None:
        s = s + mask
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    a = (s @ v).transpose(1, 0, 2).reshape(t, WIDTH)
    x = x + a @ p["wo"] + p["bo"]
    h = np_ln(x, p["ln2_g"], p["ln2_b"]) @ p["w1"] + p["b1"]
    h = h * (1 / (1 + np.exp(-1.702 * h)))
    return x + h @ p["w2"] + p["b2"]


def unit(v):
    return (v / np.linalg.norm(v)).astype(np.float64).tolist()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    grid = SIZE // PATCH
    tokens = grid * grid + 1
    # Image encoder.
    conv = w(WIDTH, 3, PATCH, PATCH, scale=0.1)
    cls, pos = w(WIDTH), w(tokens, WIDTH, scale=0.1)
    pre_g, pre_b = 1 + w(WIDTH, scale=0.1), w(WIDTH, scale=0.1)
    post_g, post_b = 1 + w(WIDTH, scale=0.1), w(WIDTH, scale=0.1)
    vproj = w(WIDTH, DIM)
    vblocks = [block_params() for _ in range(LAYERS)]
    g = Graph("v")
    x = g.op("Conv", ["pixel_values", g.const(conv)], kernel_shape=[PATCH, PATCH], strides=[PATCH, PATCH])
    x = g.op("Transpose", [g.op("Reshape", [x, g.const(np.array([1, WIDTH, grid * grid], np.int64))])], perm=[0, 2, 1])
    x = g.op("Concat", [g.const(cls.reshape(1, 1, WIDTH)), x], axis=1)
    x = g.op("Add", [x, g.const(pos)])
    x = g.layer_norm(x, pre_g, pre_b)
    for p in vblocks:
        x = g.block(x, p, tokens, None)
    x = g.op("Gather", [x, g.const(np.array(0, np.int64))], axis=1)  # [1, W]
    x = g.layer_norm(x, post_g, post_b)
    g.nodes.append(helper.make_node("MatMul", [x, g.const(vproj)], ["image_embeds"]))
    model = helper.make_model(
        helper.make_graph(
            g.nodes, "tiny_clip_image",
            [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
            [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [1, DIM])],
            g.inits),
        opset_imports=[helper.make_opsetid("", 13)], producer_name="aisle-tiny-clip")
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "image_encoder.onnx"))

    # Text encoder.
    emb, tpos = w(VOCAB, WIDTH, scale=0.1), w(CONTEXT, WIDTH, scale=0.1)
    fin_g, fin_b = 1 + w(WIDTH, scale=0.1), w(WIDTH, scale=0.1)
    tproj = w(WIDTH, DIM)
    tblocks = [block_params() for _ in range(LAYERS)]
    mask = np.triu(np.full((CONTEXT, CONTEXT), -1e9, np.float32), 1)
    g = Graph("t")
    x = g.op("Gather", [g.const(emb), "input_ids"], axis=0)  # [1, 77, W]
    x = g.op("Add", [x, g.const(tpos)])
    for p in tblocks:
        x = g.block(x, p, CONTEXT, mask)
    x = g.layer_norm(x, fin_g, fin_b)
    eot = g.op("ArgMax", ["input_ids"], axis=1, keepdims=0)  # [1]
    x = g.op("Gather", [x, eot], axis=1)  # [1, 1, W]
    x = g.op("Reshape", [x, g.const(np.array([1, WIDTH], np.int64))])
    g.nodes.append(helper.make_node("MatMul", [x, g.const(tproj)], ["text_embeds"]))
    model = helper.make_model(
        helper.make_graph(
            g.nodes, "tiny_clip_text",
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, CONTEXT])],
            [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, [1, DIM])],
            g.inits),
        opset_imports=[helper.make_opsetid("", 13)], producer_name="aisle-tiny-clip")
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, "text_encoder.onnx"))

    # Reference outputs. Pixels: x[c, y, x] = sin(0.1 * (c + 1) * (y * SIZE + x)).
    c, yy, xx = np.meshgrid(np.arange(3), np.arange(SIZE), np.arange(SIZE), indexing="ij")
    pixels = np.sin(0.1 * (c + 1) * (yy * SIZE + xx)).astype(np.float32)
    patches = pixels.reshape(3, grid, PATCH, grid, PATCH).transpose(1, 3, 0, 2, 4).reshape(grid * grid, -1)
    t = patches @ conv.reshape(WIDTH, -1).T
    t = np.concatenate([cls[None], t]) + pos
    t = np_ln(t, pre_g, pre_b)
    for p in vblocks:
        t = np_block(t, p, None)
    image = np_ln(t[0], post_g, post_b) @ vproj
    texts = {}
    for ids in ([49406, 320, 1125, 539, 320, 2368, 49407], [49406, 17098, 11404, 2461, 2453, 49407],
                [49406, 49407]):
        full = np.array(ids + [0] * (CONTEXT - len(ids)), np.int64)
        t = emb[full] + tpos
        for p in tblocks:
            t = np_block(t, p, mask)
        t = np_ln(t, fin_g, fin_b)
        texts[" ".join(map(str, ids))] = unit(t[int(full.argmax())] @ tproj)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"size": SIZE, "dim": DIM, "image": unit(image), "texts": texts}, f)


if __name__ == "__main__":
    main()
