#!/usr/bin/env bash
# The pipeline at scale: every page of a corpus (PAGEMILL_CORPUS: the larger shared/data beside
# the clone when it is there, else the repository's testdata/), COPIES times under new names (each page
# marked with its copy, so no two copies share a unit), through a simulator limited to RPM
# requests/min and TPM tokens/min, with pagemill told the same limits.
#
# Prints wall time against the bound the limits impose (from the simulator's own log: the
# requests it admitted and the tokens it charged, prompt + max_tokens), and pagemill's CPU time
# and peak memory. The simulator runs on core 0, pagemill on core 1.
#
# Usage: bench/pipeline-scale.sh [COPIES=9] [RPM=500] [TPM=200000] [TASKS=entities,summary,metadata]
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-9}
rpm=${2:-500}
tpm=${3:-200000}
tasks=${4:-entities,summary,metadata}
data=${PAGEMILL_CORPUS:-$( [ -d ../shared/data ] && echo ../shared/data || echo testdata )}
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
work=${WORK:-$(mktemp -d)}
echo "work directory: $work"

pages=$(copies_corpus "$bin" "$data" "$work/corpus" "$copies")
echo "corpus: $pages pages in $(ls "$work/corpus" | wc -l) documents"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
limited_profile "$bin" fast-local "$work/profile.toml" "$rpm" "$tpm"
taskset -c 0 "$bin" sim -p "$work/profile.toml" --port "$port" --log "$work/sim.jsonl" > "$work/sim.out" 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null && break; sleep 0.1; done
cat > "$work/pagemill.toml" <<TOML
[[endpoint]]
name = "limited"
base_url = "http://127.0.0.1:$port/v1"
model = "sim-model"
prices = { input = 0.15, cached_input = 0.075, output = 0.6 }
limits = { requests_per_minute = $rpm, tokens_per_minute = $tpm, max_concurrency = 64 }
TOML

/usr/bin/time -v -o "$work/time.txt" taskset -c 1 "$bin" --config "$work/pagemill.toml" run "$work/corpus" \
  -o "$work/out" --tasks "$tasks" --format json -q > "$work/summary.json" || true
kill $sim 2>/dev/null || true
wait $sim 2>/dev/null || true

python3 - "$work" "$rpm" "$tpm" <<'PY'
import json, re, sys
work, rpm, tpm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = json.load(open(f"{work}/summary.json"))
log = [json.loads(l) for l in open(f"{work}/sim.jsonl")]
chat = [e for e in log if e["route"].endswith("/chat/completions")]
admitted = [e for e in chat if e.get("rate_tokens", 0) > 0]
R = len(admitted)
T = sum(e["rate_tokens"] for e in admitted)
t = open(f"{work}/time.txt").read()
user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
system = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
bound = max(R / rpm, T / tpm) * 60
# The simulator's buckets start full: the first minute's allowance comes free.
bound_full = max((R - rpm) / rpm, (T - tpm) / tpm, 0) * 60
wall = s["wall_secs"]
print(f"pages {s['pages']} (done {s['pages_done']}, skipped {s['pages_skipped']}, failed {s['pages_failed']}, pending {s['pages_pending']})")
print(f"requests admitted {R}, tokens charged {T} (prompt + max_tokens), 429s {sum(1 for e in chat if e['status'] == 429)}")
print(f"wall {wall:.1f} s; bound {bound:.1f} s (requests {R/rpm*60:.1f} s, tokens {T/tpm*60:.1f} s); "
      f"bound with the first minute free {bound_full:.1f} s")
print(f"wall / bound = {wall / bound:.3f}")
print(f"pagemill CPU {user + system:.1f} s ({(user + system) / max(s['pages_done'], 1) * 1e3:.2f} ms a page), peak RSS {rss / 1024:.1f} MiB")
print(f"prompt tokens/page {s['prompt_tokens_per_page']}, cached share {s['cached_share']}, cost/page {s['cost_per_page_usd']}")
PY
