"""Peer for `aisle bench assistant`: product lookup with rapidfuzz (the usual Python
fuzzy matcher, C++ inside), WRatio scorer over the same product names and queries.
Prints one JSON line: per-query milliseconds (median of RUNS) and the chosen index.

usage: peer_rapidfuzz.py NAMES_FILE QUERIES_FILE RUNS
"""
import json
import statistics
import sys
import time

from rapidfuzz import fuzz, process, utils


def peak_rss_kib():
    # VmHWM of this process's own memory. getrusage's ru_maxrss would also count the
    # parent's resident set at fork time (Linux carries it across exec).
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def main():
    names = open(sys.argv[1], encoding="utf-8").read().split("\n")
    queries = open(sys.argv[2], encoding="utf-8").read().split("\n")
    runs = int(sys.argv[3])
    t0 = time.perf_counter()
    processed = [utils.default_process(n) for n in names]
    build_ms = (time.perf_counter() - t0) * 1000
    results = []
    for q in queries:
        times = []
        best = None
        for _ in range(runs):
            t = time.perf_counter()
            best = process.extractOne(utils.default_process(q), processed, scorer=fuzz.WRatio, processor=None)
            times.append((time.perf_counter() - t) * 1000)
        results.append({"ms": statistics.median(times), "index": best[2] if best else None})
    peak = peak_rss_kib()
    print(json.dumps({"build_ms": build_ms, "results": results, "peak_rss_kib": peak}))


main()
