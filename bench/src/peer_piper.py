"""Peer for `aisle bench tts`: the same Piper voice through piper-tts (its own
phonemiser and onnxruntime, the reference pipeline) and through bare onnxruntime fed
aisle's phoneme ids (the model alone), with the same threads.

argv: model.onnx config.json threads runs cases.json
cases.json: [{"text": "...", "ids": [[...], ...]}]  (text already normalised)
Prints JSON: per case, piper-tts and onnxruntime first-audio and total times (median
ms), audio seconds; peak RSS.
"""
import json
import sys
import time

import numpy as np
import onnxruntime
from piper import PiperVoice
from piper.config import PiperConfig


def peak_rss_kib():
    # VmHWM of this process's own memory. getrusage's ru_maxrss would also count the
    # parent's resident set at fork time (Linux carries it across exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    model, config, threads, runs, cases_path = sys.argv[1:6]
    threads, runs = int(threads), int(runs)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    t = time.perf_counter()
    session = onnxruntime.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    with open(config, encoding="utf-8") as f:
        cfg = json.load(f)
    voice = PiperVoice(config=PiperConfig.from_dict(cfg), session=session)
    load_ms = (time.perf_counter() - t) * 1000
    inf = cfg["inference"]
    scales = np.array([inf["noise_scale"], inf["length_scale"], inf["noise_w"]], dtype=np.float32)
    rate = cfg["audio"]["sample_rate"]
    with open(cases_path, encoding="utf-8") as f:
        cases = json.load(f)
    out = []
    for case in cases:
        text = case["text"]
        row = {}
        # piper-tts: phonemes, ids and synthesis, one chunk per sentence.
        firsts, totals, audio_s = [], [], 0.0
        for i in range(runs + 1):
            t0 = time.perf_counter()
            first, samples = None, 0
            for chunk in voice.synthesize(text):
                if first is None:
                    first = (time.perf_counter() - t0) * 1000
                samples += len(chunk.audio_float_array)
            total = (time.perf_counter() - t0) * 1000
            if i > 0:
                firsts.append(first)
                totals.append(total)
            audio_s = samples / rate
        row["piper_tts"] = {"first_ms": median(firsts), "total_ms": median(totals), "audio_s": audio_s}
        # onnxruntime alone on aisle's ids.
        firsts, totals = [], []
        for i in range(runs + 1):
            t0 = time.perf_counter()
            first, samples = None, 0
            for ids in case["ids"]:
                x = np.array([ids], dtype=np.int64)
                audio = session.run(None, {"input": x, "input_lengths": np.array([x.shape[1]], dtype=np.int64), "scales": scales})[0]
                if first is None:
                    first = (time.perf_counter() - t0) * 1000
                samples += audio.size
            total = (time.perf_counter() - t0) * 1000
            if i > 0:
                firsts.append(first)
                totals.append(total)
            audio_s = samples / rate
        row["onnxruntime"] = {"first_ms": median(firsts), "total_ms": median(totals), "audio_s": audio_s}
        out.append(row)
    peak = peak_rss_kib()
    print(json.dumps({"load_ms": load_ms, "results": out, "peak_rss_kib": peak,
                      "onnxruntime": onnxruntime.__version__}))


if __name__ == "__main__":
    main()
