#!/usr/bin/env bash
# Client speed at the wire: `pagemill bench` against a server that writes every SSE event on its
# own (bench/wire-server: 16 one-token content events, a usage event and [DONE], each its own
# write with TCP_NODELAY, no delay), beside reference clients in the same run. Server on core 0,
# clients on core 1; closed loop at each concurrency; CPU and peak RSS of every client measured
# the same way (/usr/bin/time).
#
#   pagemill      pagemill bench (parses every event, times every token, keeps histograms)
#   oha           if on PATH (`cargo install oha`): HTTP load generator, no SSE parsing — the
#                 ceiling of a client that only reads bytes
#   vllm-bench    if VLLM_BENCH names its binary: the reference Rust LLM benchmark client, built
#                 outside the project from its public repository (github.com/vllm-project/vllm-bench,
#                 `cargo build --release`; now also in vllm-project/vllm under rust/src/bench)
#   pagemill-sim  pagemill bench against `pagemill sim --profile wire` (the simulator writing
#                 every event on its own), to show what the simulator itself costs
#
# Usage: bench/wire-speed.sh [REQUESTS=100000] [CONCURRENCIES="64 256"]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
levels=${2:-64 256}
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
cargo build --release --quiet --manifest-path bench/wire-server/Cargo.toml \
  --target-dir target/wire-server
server=target/wire-server/release/wire-server
work=$(mktemp -d)
p1=$(free_port); p2=$(free_port)
taskset -c 0 "$server" --port "$p1" > /dev/null &
s1=$!
taskset -c 0 "$bin" sim --profile wire --port "$p2" > "$work/sim.log" 2>&1 &
s2=$!
trap 'kill $s1 $s2 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "$p1" "$p2"
endpoints_toml "wire:$p1" "sim:$p2" | sed 's/name = "sim"/name = "wire-sim"/' > "$work/pagemill.toml"
body='{"model":"local","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"hello"}]}'

# Runs a client on core 1; prints "user+sys seconds, peak RSS KiB" to $work/time.
timed() { /usr/bin/time -f "%U %S %M" -o "$work/time" taskset -c 1 "$@"; }
row() { # client c req/s
  read -r u s m < "$work/time"
  python3 -c "import sys; c,conc,rps,u,s,m,n=sys.argv[1:]; print(f'| {c} | {conc} | {float(rps):,.0f} | {(float(u)+float(s))/int(n)*1e6:.0f} µs | {int(m)/1024:.0f} MiB |')" \
    "$1" "$2" "$3" "$u" "$s" "$m" "$n"
}

echo "| client | c | req/s | client CPU/request | peak RSS |"
echo "|---|---|---|---|---|"
for c in $levels; do
  timed "$bin" --config "$work/pagemill.toml" bench -e wire -c "$c" -n "$n" \
    --input-tokens 32 --output-tokens 16 --format json > "$work/p.json" 2> "$work/p.err"
  rps=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); t=r['points'][0]['targets'][0]; print(t['request_throughput'])" "$work/p.json")
  row pagemill "$c" "$rps"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); t=r['points'][0]['targets'][0]; print(f\"  pagemill c={sys.argv[2]}: connections opened {t['connections']['new']}, event-loop stalls {r['self_check']['stalls']}\", file=sys.stderr)" "$work/p.json" "$c"
  if command -v oha > /dev/null; then
    timed oha --no-tui -c "$c" -n "$n" -m POST -H 'content-type: application/json' -d "$body" \
      "http://127.0.0.1:$p1/v1/chat/completions" > "$work/oha.txt"
    rps=$(awk '/Requests\/sec/ {print $2; exit}' "$work/oha.txt")
    row oha "$c" "$rps"
  fi
  if [ -n "${VLLM_BENCH:-}" ]; then
    # Its `random` dataset checks prompt lengths against a vLLM `/tokenize` route, which the
    # reference server lacks: a `custom` dataset of ~32-token prompts instead, counted with
    # gpt2 (a tokenizer built into vllm-bench, no download); the chat route, as pagemill sends.
    [ -f "$work/prompts.jsonl" ] || python3 -c "
import json
for i in range(1000):
    print(json.dumps({'prompt': f'request {i}: ' + ' '.join(['word'] * 28)}))" > "$work/prompts.jsonl"
    timed "$VLLM_BENCH" --backend openai-chat --endpoint /v1/chat/completions \
      --base-url "http://127.0.0.1:$p1" --model local --tokenizer gpt2 \
      --dataset-name custom --dataset-path "$work/prompts.jsonl" --custom-output-len 16 \
      --num-prompts "$n" --max-concurrency "$c" > "$work/vb.txt" 2>&1
    rps=$(awk -F: '/Request throughput/ {gsub(/ /,"",$2); print $2; exit}' "$work/vb.txt")
    row vllm-bench "$c" "${rps:-0}"
  fi
  timed "$bin" --config "$work/pagemill.toml" bench -e wire-sim -c "$c" -n "$n" \
    --input-tokens 32 --output-tokens 16 --format json > "$work/s.json" 2> /dev/null
  rps=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); t=r['points'][0]['targets'][0]; print(t['request_throughput'])" "$work/s.json")
  row pagemill-sim "$c" "$rps"
done
