"""OCR peer for `aisle bench vision`: RapidOCR (Python, onnxruntime + OpenCV), the
package the PP-OCRv4 files come from, on the same detection and recognition ONNX
files, images and threads; detection limited to a 640 px longest side like aisle's
640x640 canvas; no orientation classifier (aisle has none).

usage: peer_rapidocr.py DET.onnx REC.onnx THREADS RUNS IMAGE...
prints one JSON document: per-image medians (ms) of detection, recognition and the
whole call, the text read per image, peak memory.
"""
import json
import statistics
import sys
import time

import onnxruntime
from rapidocr_onnxruntime import RapidOCR


def peak_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


def main():
    det, rec, threads, runs, images = (
        sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    t = time.perf_counter()
    engine = RapidOCR(
        det_model_path=det, rec_model_path=rec, use_cls=False,
        det_limit_side_len=640, det_limit_type="max",
        intra_op_num_threads=threads, inter_op_num_threads=1)
    load_ms = (time.perf_counter() - t) * 1e3
    stages = {"detect": [], "recognise": [], "total": []}
    text = {}
    for run in range(runs + 1):  # the first pass warms up
        for p in images:
            t0 = time.perf_counter()
            result, elapse = engine(p, use_cls=False)
            total = (time.perf_counter() - t0) * 1e3
            if run > 0:
                det_s, _cls_s, rec_s = elapse if elapse else (0.0, 0.0, 0.0)
                stages["detect"].append(det_s * 1e3)
                stages["recognise"].append(rec_s * 1e3)
                stages["total"].append(total)
            else:
                text[p] = [line[1] for line in (result or [])]
    import rapidocr_onnxruntime
    print(json.dumps({
        "peer": f"RapidOCR {getattr(rapidocr_onnxruntime, '__version__', '1.4.4')} "
                f"(onnxruntime {onnxruntime.__version__} + OpenCV)",
        "load_ms": load_ms,
        "median_ms": {k: statistics.median(v) for k, v in stages.items()},
        "text": text,
        "peak_mib": peak_mib(),
    }))


if __name__ == "__main__":
    main()
