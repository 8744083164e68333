"""Peer for `aisle bench speech`: faster-whisper (CTranslate2) on the same tiny.en
weights, same audio, same thread count, greedy decoding. Prints one JSON line.

usage: peer_faster_whisper.py MODEL_DIR THREADS RUNS WAV...
"""
import json
import statistics
import sys
import time
import wave

import numpy as np
from faster_whisper import WhisperModel


def load(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    if rate != 16000:
        # Same decoded samples as aisle sees: the harness writes 16 kHz files.
        raise SystemExit(f"{path}: expected 16 kHz, got {rate}")
    return pcm


def peak_rss_kib():
    # VmHWM of this process's own memory. getrusage's ru_maxrss would also count the
    # parent's resident set at fork time (Linux carries it across exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def main():
    model_dir, threads, runs, wavs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    model = WhisperModel(model_dir, device="cpu", compute_type="default", cpu_threads=threads)
    results = []
    for path in wavs:
        audio = load(path)
        list(model.transcribe(audio, language="en", beam_size=1)[0])  # warm-up
        times, text = [], ""
        for _ in range(runs):
            t0 = time.perf_counter()
            segments, _ = model.transcribe(audio, language="en", beam_size=1, condition_on_previous_text=False)
            text = " ".join(s.text.strip() for s in segments)
            times.append((time.perf_counter() - t0) * 1000.0)
        results.append({"file": path, "ms": statistics.median(times), "text": text, "audio_ms": len(audio) / 16.0})
    peak_kib = peak_rss_kib()
    print(json.dumps({"results": results, "peak_rss_kib": peak_kib}))


if __name__ == "__main__":
    main()
