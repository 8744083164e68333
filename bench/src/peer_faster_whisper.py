"""Peer for `aisle bench speech`: faster-whisper (CTranslate2) on the same tiny.en
weights, same audio, same thread count, greedy decoding. For each configuration
(compute type, with or without faster-whisper's own Silero VAD filter) it times the
timing clips and transcribes the WER clips. Prints one JSON line.

usage: peer_faster_whisper.py MODEL_DIR THREADS RUNS CONFIGS TIMING_LIST WER_LIST
  CONFIGS: comma-separated, e.g. int8,int8+vad,float32
  *_LIST: a file with one WAV path per line
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


def lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def main():
    model_dir, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    configs = sys.argv[4].split(",")
    timing, wer = lines(sys.argv[5]), lines(sys.argv[6])
    out = {}
    for config in configs:
        # "int8+vad": its own VAD filter; "int8@5": beam 5 (its default) instead of 1.
        base, _, beams = config.partition("@")
        beam_size = int(beams) if beams else 1
        compute_type, vad = base.removesuffix("+vad"), base.endswith("+vad")
        model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)

        def text_of(audio):
            segments, _ = model.transcribe(
                audio, language="en", beam_size=beam_size, condition_on_previous_text=False, vad_filter=vad
            )
            return " ".join(s.text.strip() for s in segments)

        results = []
        for path in timing:
            audio = load(path)
            text_of(audio)  # warm-up
            times, text = [], ""
            for _ in range(runs):
                t0 = time.perf_counter()
                text = text_of(audio)
                times.append((time.perf_counter() - t0) * 1000.0)
            results.append({"file": path, "ms": statistics.median(times), "text": text, "audio_ms": len(audio) / 16.0})
        texts = [text_of(load(p)) for p in wer]
        out[config] = {"results": results, "wer_texts": texts}
    print(json.dumps({"configs": out, "peak_rss_kib": peak_rss_kib()}))


if __name__ == "__main__":
    main()
