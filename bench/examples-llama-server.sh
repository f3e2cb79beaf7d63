#!/usr/bin/env bash
# `pagemill run examples/docs` against upstream llama.cpp's llama-server serving the embedded
# model's GGUF (`-np 4 -t 1`, as a small deployment would run it), then the same in process:
# exit code, documents complete, wall time, loops cancelled, connection reuse. The server runs
# on core 0, pagemill on core 1.
#
# Usage: bench/examples-llama-server.sh [INPUTS…]   (default: examples/docs)
# KEEP=DIR keeps the outputs, ledgers and the server's log in DIR.
# llama-server is built once from PyPI's llama-cpp-python source package (see common.sh), or
# taken from $LLAMA_SERVER.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
inputs=("$@"); [[ ${#inputs[@]} -gt 0 ]] || inputs=(examples/docs)
bin=${PAGEMILL_BIN:-$(release_bin)}
server=$(llama_server_bin)
work=$(mktemp -d)
model=$("$bin" model fetch)
port=$(free_port)
taskset -c 0 "$server" -m "$model" -np 4 -t 1 --threads-batch 1 -c 16384 --port "$port" > "$work/llama.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP"; cp -r "$work"/. "$KEEP"/; fi; rm -rf "$work"' EXIT
wait_ready "$port"
# The GGUF is a 135M model served by llama.cpp: a small prompt profile, schemas per request.
# llama-server keeps idle connections 5 s: the pool lets go of them at 4; -np 4 slots.
{ endpoints_toml "llama:$port"; } | sed 's/^transport = { /&pool_idle_timeout_secs = 4, /; s/^transport = .*/&\nper_request_schema = true\nprompt_profile = "small"\nlimits = { max_concurrency = 4 }/' > "$work/pagemill.toml"
run() {
  local name=$1; shift
  local start end code=0
  start=$(date +%s.%N)
  taskset -c 1 "$bin" "$@" "${inputs[@]}" -o "$work/$name" -q > "$work/$name.txt" 2>&1 || code=$?
  [[ -f $work/$name/run-summary.json ]] || { cat "$work/$name.txt" >&2; return 1; }
  end=$(date +%s.%N)
  python3 - "$work/$name" "$name" "$code" "$start" "$end" <<'PY'
import json, sys
out, name, code, t0, t1 = sys.argv[1:]
s = json.load(open(f"{out}/run-summary.json"))
errors = " ".join(f"{k}={v}" for k, v in s["errors"].items()) or "none"
print(f"{name:10} exit {code}  documents {s['complete_documents']}/{s['documents']} complete  "
      f"wall {float(t1) - float(t0):6.1f} s  requests {s['requests']}  re-asks {s['reasks']}  "
      f"loops cancelled {s['loops_cancelled']} (spared ≤{s['loop_tokens_saved']} tokens)  "
      f"dead letters {s['dead_letters']}  prompt tokens/page {s['prompt_tokens_per_page']:.0f}  errors {errors}")
PY
}
run llama --config "$work/pagemill.toml" run -e llama
run in-process run
# Connection reuse on streams (the keep-alive lever against a real server).
taskset -c 1 "$bin" --config "$work/pagemill.toml" bench -e llama -c 1 -n 6 --input-tokens 32 --output-tokens 8 2>&1 \
  | grep -iE 'connections|errors' || true
