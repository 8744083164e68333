"""Peer for `aisle bench llm`: llama.cpp through llama-cpp-python (built from source
by pip), on the same GGUF, threads, prompts, grammar and greedy decoding as aisle.
Prints one JSON object.

usage: peer_llama_cpp.py MODEL THREADS RUNS PROMPTS_JSON
PROMPTS_JSON: {"story": PROMPT, "story_tokens": N,
               "fallback": [{"prompt": P, "grammar": GBNF}, ...], "fallback_tokens": N}
"""
import json
import statistics
import sys
import time

from llama_cpp import Llama, LlamaGrammar


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def generate(llm, prompt, max_tokens, grammar=None):
    """Greedy generation; returns (text, first_token_ms, total_ms, tokens)."""
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    t0 = time.perf_counter()
    first = None
    out = []
    model = llm._model
    is_end = model.token_is_eog if hasattr(model, "token_is_eog") else (lambda t: t == llm.token_eos())
    for tok in llm.generate(tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0,
                            repeat_penalty=1.0, grammar=grammar):
        if is_end(tok):
            break
        if first is None:
            first = (time.perf_counter() - t0) * 1e3
        out.append(tok)
        if len(out) >= max_tokens:
            break
    total = (time.perf_counter() - t0) * 1e3
    text = llm.detokenize(out).decode("utf-8", "replace")
    return text, first or total, total, len(out)


def main():
    model, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    spec = json.load(open(sys.argv[4], encoding="utf-8"))
    t = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=1024, n_batch=512, n_ubatch=512,
                n_threads=threads, n_threads_batch=threads, verbose=False)
    load_ms = (time.perf_counter() - t) * 1e3

    story = []
    for _ in range(runs + 1):
        llm.reset()
        text, first, total, n = generate(llm, spec["story"], spec["story_tokens"])
        story.append({"text": text, "first_ms": first, "total_ms": total, "tokens": n})
    story = story[1:]  # the first run warms up

    llm.reset()
    fallback = []
    for i, item in enumerate(spec["fallback"]):
        g = LlamaGrammar.from_string(item["grammar"], verbose=False)
        text, first, total, n = generate(llm, item["prompt"], spec["fallback_tokens"], g)
        fallback.append({"text": text.strip(), "first_ms": first, "total_ms": total, "tokens": n})

    print(json.dumps({
        "engine": "llama-cpp-python",
        "load_ms": load_ms,
        "story": story,
        "fallback": fallback,
        "peak_rss_kib": peak_rss_kib(),
    }))


if __name__ == "__main__":
    main()
