#!/usr/bin/env bash
# The embedded local model against upstream llama.cpp's llama-server, same GGUF, same thread
# count, same machine, measured by `pagemill bench` with the two interleaved request by request
# (c = 1, so one server works at a time). Both servers on core 0, the client on core 1.
#
#   prefill: 1,000-token prompts (unique from their first token: nothing cached), 1 output token;
#            prompt tokens/s = server-reported prompt tokens / TTFT (first content)
#   decode:  64-token prompts, 256 output tokens (ignore_eos); tokens/s = 1 / TPOT
#   cache:   pagemill's own server, a 1,000-token system prompt: TTFT of the first request, then
#            of repeats with the same system prompt and a new question (prefix reused)
#
# Usage: LLAMA_SERVER=/path/to/llama-server bench/local-vs-llama-server.sh [REQUESTS=16]
# A llama-server can be built from PyPI's llama-cpp-python source package:
#   pip download --no-deps --no-binary :all: llama-cpp-python && tar xzf llama_cpp_python-*.tar.gz
#   cmake -S llama_cpp_python-*/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release \
#     -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
#   cmake --build build --target llama-server -j
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-16}
: "${LLAMA_SERVER:?set LLAMA_SERVER to an upstream llama-server binary (see the header)}"
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
work=$(mktemp -d)
model=$("$bin" model fetch)
p1=$(free_port); p2=$(free_port)
taskset -c 0 "$bin" serve --model "$model" --threads 1 --port "$p1" > "$work/pagemill.log" 2>&1 &
s1=$!
taskset -c 0 "$LLAMA_SERVER" -m "$model" --threads 1 --threads-batch 1 -c 8192 --parallel 1 --port "$p2" > "$work/llama.log" 2>&1 &
s2=$!
trap 'kill $s1 $s2 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "$p1" "$p2"
endpoints_toml "pagemill-serve:$p1" "llama-server:$p2" > "$work/pagemill.toml"
bench() { taskset -c 1 "$bin" --config "$work/pagemill.toml" bench -c 1 --format json "$@" 2>/dev/null; }
bench -e pagemill-serve -e llama-server -n "$((2 * n))" --input-tokens 1000 --output-tokens 1 > "$work/prefill.json"
bench -e pagemill-serve -e llama-server -n "$((2 * n))" --input-tokens 64 --output-tokens 256 --ignore-eos > "$work/decode.json"
python3 - "$p1" > "$work/cache.txt" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
system = " ".join(f"Rule {i}: answer briefly and cite the clause." for i in range(90))
def ttft(question):
    body = {"model": "local", "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": 1, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    t0 = time.monotonic(); first = None; usage = None
    with urllib.request.urlopen(req) as r:
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]": continue
            ev = json.loads(line[6:])
            if first is None and ev.get("choices") and ev["choices"][0]["delta"].get("content"): first = time.monotonic() - t0
            if ev.get("usage"): usage = ev["usage"]
    return first, usage
f, u = ttft("What is clause 1 about?")
print(f"first: TTFT {f*1e3:.1f} ms, prompt {u['prompt_tokens']} tokens, cached {u['prompt_tokens_details']['cached_tokens']}")
for q in ["And clause 2?", "Which clause covers payment?", "Summarize clause 3."]:
    f, u = ttft(q)
    print(f"repeat: TTFT {f*1e3:.1f} ms, prompt {u['prompt_tokens']} tokens, cached {u['prompt_tokens_details']['cached_tokens']}")
PY
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def targets(f):
    return {t["name"]: t for t in json.load(open(f"{w}/{f}"))["points"][0]["targets"]}
pre, dec = targets("prefill.json"), targets("decode.json")
rows = {}
for name in ("pagemill-serve", "llama-server"):
    p, d = pre[name], dec[name]
    prompt = p["tokens"]["input_counted"] / max(p["ok"], 1) if p["tokens"].get("input_counted") else None
    ttft = p["latency_ms"]["ttft_content"]["p50"] / 1e3
    tpot = d["latency_ms"]["tpot"]["p50"] / 1e3
    rows[name] = (prompt, ttft, tpot)
    print(f"{name:15} prefill: TTFT p50 {ttft*1e3:7.1f} ms" + (f" for {prompt:.0f} prompt tokens = {prompt/ttft:6.1f} tok/s" if prompt else "")
          + f"   decode: TPOT p50 {tpot*1e3:6.2f} ms = {1/tpot:6.1f} tok/s   (ok {p['ok']}+{d['ok']})")
a, b = rows["pagemill-serve"], rows["llama-server"]
print(f"ratio pagemill/llama-server: prefill {b[1]/a[1]:.3f}x, decode {b[2]/a[2]:.3f}x (higher is better for pagemill)")
print(open(f"{w}/cache.txt").read(), end="")
PY
