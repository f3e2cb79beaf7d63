#!/usr/bin/env bash
# What the portable build costs the local model: the default release binary (ggml at
# x86-64-v3, see .cargo/config.toml) against one built for this CPU alone
# (RUSTFLAGS="-C target-cpu=native", so ggml gets GGML_NATIVE: AVX-512 where the CPU has it).
# Same GGUF, one thread each, both servers on core 0, the client on core 1, the two interleaved
# request by request by `pagemill bench` (c = 1, so one server works at a time).
#
#   prefill: 1,000-token prompts (unique from their first token: nothing cached), 1 output token
#   decode:  64-token prompts, 256 output tokens (ignore_eos); tokens/s = 1 / TPOT
#
# Usage: bench/cpu-levels.sh [REQUESTS=16]   (builds the native binary into target/native once;
# run through ./dev, or after `eval "$(./dev env)"`, on a machine without cmake/libclang)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-16}
. bench/common.sh
portable=${PAGEMILL_BIN:-$(release_bin)}
# AMX off: on a VM that advertises AMX without enabling it, ggml's AMX kernel dies of SIGILL
# (seen on the machine these figures come from); everything else this CPU has stays on.
native=${NATIVE_BIN:-$(release_bin env RUSTFLAGS="-C target-cpu=native" \
  CMAKE_C_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
  CMAKE_CXX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
  CARGO_TARGET_DIR="${NATIVE_TARGET:-target/native}")}
work=$(mktemp -d)
model=$("$portable" model fetch)
p1=$(free_port); p2=$(free_port)
taskset -c 0 "$portable" serve --model "$model" --threads 1 --port "$p1" > "$work/portable.log" 2>&1 &
s1=$!
taskset -c 0 "$native" serve --model "$model" --threads 1 --port "$p2" > "$work/native.log" 2>&1 &
s2=$!
trap 'kill $s1 $s2 2>/dev/null || true; rm -rf "$work"' EXIT
wait_ready "$p1" "$p2"
endpoints_toml "portable:$p1" "native:$p2" > "$work/pagemill.toml"
bench() { taskset -c 1 "$portable" --config "$work/pagemill.toml" bench -c 1 --format json "$@" 2>/dev/null; }
bench -e portable -e native -n "$((2 * n))" --input-tokens 1000 --output-tokens 1 > "$work/prefill.json"
bench -e portable -e native -n "$((2 * n))" --input-tokens 64 --output-tokens 256 --ignore-eos > "$work/decode.json"
python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
def targets(f):
    return {t["name"]: t for t in json.load(open(f"{w}/{f}"))["points"][0]["targets"]}
pre, dec = targets("prefill.json"), targets("decode.json")
rows = {}
for name in ("portable", "native"):
    p, d = pre[name], dec[name]
    ttft = p["latency_ms"]["ttft_content"]["p50"] / 1e3
    tpot = d["latency_ms"]["tpot"]["p50"] / 1e3
    rows[name] = (ttft, tpot)
    print(f"{name:9} prefill: TTFT p50 {ttft*1e3:7.1f} ms (1,000 tokens = {1000/ttft:6.1f} tok/s)"
          f"   decode: TPOT p50 {tpot*1e3:6.2f} ms = {1/tpot:6.1f} tok/s   (ok {p['ok']}+{d['ok']})")
a, b = rows["portable"], rows["native"]
print(f"portable/native speed: prefill {b[0]/a[0]:.3f}, decode {b[1]/a[1]:.3f} (1.000 = no loss)")
PY
