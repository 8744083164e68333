"""Peer for `aisle bench vision`: the same EfficientNet-Lite0 ONNX file run by Python
onnxruntime, with PIL decoding and preprocessing (centred square, bilinear resize to
224, ImageNet normalisation), as a Python kiosk would do it.

usage: peer_onnxruntime_pil.py MODEL.onnx THREADS RUNS PHOTO...
prints one JSON document: per-stage medians (ms) over all photos and runs, top-1
class index per photo, peak memory.
"""
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
SESSION_RUNS = 100


def peak_mib():
    # VmHWM of this process's own memory (getrusage's ru_maxrss would also count
    # the pip/venv parent on some systems).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def main():
    model, threads, runs, photos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3
    stages = {"decode": [], "preprocess": [], "embed": [], "total": []}
    top1 = {}
    for run in range(runs + 1):  # the first pass warms up
        for p in photos:
            t0 = time.perf_counter()
            img = Image.open(p)
            img = ImageOps.exif_transpose(img).convert("RGB")
            img.load()
            t1 = time.perf_counter()
            w, h = img.size
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            small = img.resize((224, 224), Image.BILINEAR, box=box)
            x = (np.asarray(small, dtype=np.float32) / 255.0 - MEAN) / STD
            x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
            if p == photos[0]:
                first = x
            t2 = time.perf_counter()
            outs = sess.run(None, {"input": x})
            emb = [o for o in outs if o.shape[-1] == 1280][0][0]
            emb = emb / np.linalg.norm(emb)
            t3 = time.perf_counter()
            if run > 0:
                stages["decode"].append((t1 - t0) * 1e3)
                stages["preprocess"].append((t2 - t1) * 1e3)
                stages["embed"].append((t3 - t2) * 1e3)
                stages["total"].append((t3 - t0) * 1e3)
            logits = [o for o in outs if o.shape[-1] == 1000][0][0]
            top1[p] = int(np.argmax(logits))
    # The model call alone, one tensor again and again (as aisle's "embed alone" row).
    session = []
    for i in range(SESSION_RUNS + 10):
        t = time.perf_counter()
        sess.run(None, {"input": first})
        if i >= 10:
            session.append((time.perf_counter() - t) * 1e3)
    stages["session"] = session
    print(json.dumps({
        "peer": f"python onnxruntime {ort.__version__} (graph optimisations ORT_ENABLE_ALL, intra-op threads {threads}, inter-op 1) + Pillow {Image.__version__}",
        "load_ms": load_ms,
        "median_ms": {k: statistics.median(v) for k, v in stages.items()},
        "top1": top1,
        "peak_mib": peak_mib(),
    }))


if __name__ == "__main__":
    main()
