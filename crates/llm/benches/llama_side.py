# The llama.cpp side of `benches/model.sh`: llama-cpp-python's own Python API on the same
# GGUF, driven over stdin/stdout by the Rust bench (crates/llm/benches/model.rs), one JSON
# line per request. The bench sends the prompt as token ids (Apex's tokenizer), so both
# sides read the same prompt tokens; decoding is greedy and stops at the same tokens.
import json
import sys
import time


def rss_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


model, threads = sys.argv[1], int(sys.argv[2])
from llama_cpp import Llama, __version__  # noqa: E402

before = rss_kb("VmRSS")
t = time.perf_counter()
llm = Llama(model_path=model, n_ctx=2048, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
print(json.dumps({"ready": True, "version": __version__, "load_ms": (time.perf_counter() - t) * 1e3, "rss_before_load_kb": before}), flush=True)

for line in sys.stdin:
    req = json.loads(line)
    ids, limit, stops = req["ids"], req["max_tokens"], set(req["stops"])
    llm.reset()  # no reuse of the previous request's prompt: every run evaluates the whole prompt
    out = []
    first = last = None
    t0 = time.perf_counter()
    # Greedy, with the repetition penalty Apex's local model applies (1.1 over the last 64 tokens).
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.1, reset=True):
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        out.append(token)
        if token in stops or len(out) >= limit:
            break
    text = llm.detokenize([t for t in out if t not in stops]).decode("utf-8", errors="replace")
    print(json.dumps({"ttft_s": first - t0, "decode_s": last - first, "tokens": len(out), "text": text}), flush=True)
