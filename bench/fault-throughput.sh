#!/usr/bin/env bash
# Throughput of `pagemill run` against the in-process simulator as the share of requests that
# fail with a 503 grows: pages a second, requests, client retries, dead letters. The
# simulator answers like a fast local server (20 ms to first token, 200 tokens/s a stream),
# so what remains is pagemill's own cost of a failure: the retry's backoff and the request
# sent again.
#
# Usage: bench/fault-throughput.sh [RATES…]   (default: 0 0.1 0.2 0.3 0.4 0.5 0.6 0.7)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
rates=("$@"); [[ ${#rates[@]} -gt 0 ]] || rates=(0 0.1 0.2 0.3 0.4 0.5 0.6 0.7)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf '%-6s %8s %8s %9s %9s %8s %12s\n' rate wall_s pages pages/s requests retries dead_letters
for rate in "${rates[@]}"; do
  cat > "$work/p.toml" <<TOML
name = "faulty"
seed = 5
[faults]
status_503 = $rate
TOML
  start=$(date +%s.%N)
  code=0
  "$bin" run testdata/text/licenses -e sim --sim-profile "$work/p.toml" --tasks entities \
    --pack 1 -o "$work/out-$rate" -q --format json > "$work/s.json" 2>/dev/null || code=$?
  end=$(date +%s.%N)
  python3 - "$work/s.json" "$rate" "$start" "$end" "$code" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); rate, t0, t1, code = sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
wall = t1 - t0
print(f"{rate:<6} {wall:8.2f} {s['pages_done']:8} {s['pages_done'] / wall:9.1f} {s['requests']:9} {s['retries']:8} {s['dead_letters']:12}  (exit {code})")
PY
done
