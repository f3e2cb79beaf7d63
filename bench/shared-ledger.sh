#!/usr/bin/env bash
# Many workers, one PostgreSQL ledger (PAGEMILL_BENCH_POSTGRES, else the tests' server: run
# `eval "$(./dev env --tests)"` first), each configuration in a schema of its own:
#
#  1. Scaling: the corpus (PAGEMILL_CORPUS, else testdata/, COPIES times under new names) planned
#     once with `run --plan`, then worked by N = 1, 2, 4, 8 `pagemill worker`s against an
#     `instant` simulator with no limits: units a second (plan excluded), and round trips to the
#     store a unit (the workers' own count: ledger, heartbeats, rate budget).
#  2. Shared limits: a smaller corpus (LIMITED_CORPUS, else testdata/text) worked by 1 worker,
#     then by 4 sharing one RPM/TPM budget (--rate-sharing bucket, then divide), then by 4 each
#     pacing by the whole limit (none: what sharing prevents), each against a
#     fresh simulator enforcing the same limits (its minute of burst spent first, as another
#     tenant would): wall time against the bound the limits impose (from the simulator's log:
#     requests admitted and tokens charged, prompt + max_tokens), and the 429s it answered.
#
# The simulator runs on core 0, the workers on core 1; PostgreSQL wherever it runs.
# Usage: [PARTS=1|2] [CASES="N:SHARING …"] bench/shared-ledger.sh [COPIES=1] [RPM=500] [TPM=200000]
set -euo pipefail
cd "$(dirname "$0")/.."
copies=${1:-1}
rpm=${2:-500}
tpm=${3:-200000}
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
base=${PAGEMILL_BENCH_POSTGRES:-${PAGEMILL_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}}
work=${WORK:-$(mktemp -d)}
echo "work directory: $work"
command -v psql > /dev/null || { echo "psql is needed (Debian: postgresql-client)"; exit 1; }

schema_url() { # NAME: a fresh schema, its URL
  psql "$base" -qc "DROP SCHEMA IF EXISTS $1 CASCADE; CREATE SCHEMA $1" > /dev/null 2>&1
  local sep='?'; case "$base" in *\?*) sep='&' ;; esac
  echo "${base}${sep}options=-c%20search_path%3D$1"
}

sims=()
trap 'for p in "${sims[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start_sim() { # PROFILE LOG: starts a simulator on core 0, sets $port
  port=$(free_port)
  taskset -c 0 "$bin" sim -p "$1" --port "$port" --log "$2" > "$2.out" 2>&1 &
  sims+=($!)
  wait_ready "$port"
}

config() { # PORT [LIMITS]
  cat <<TOML
[[endpoint]]
name = "sim"
base_url = "http://127.0.0.1:$1/v1"
model = "sim-model"
prices = { input = 0.15, cached_input = 0.075, output = 0.6 }
${2:-}
TOML
}

# Starts N workers on core 1 with extra arguments, waits for them all; prints wall seconds.
workers() { # N CONFIG URL LOGPREFIX ARGS…
  local n=$1 cfg=$2 url=$3 logs=$4; shift 4
  local t0 pids=() i
  t0=$(date +%s.%N)
  for i in $(seq "$n"); do
    taskset -c 1 "$bin" --config "$cfg" worker --store "$url" --exit-when-done --poll 200ms "$@" \
      > "$logs.$i.out" 2> "$logs.$i.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || true; done
  python3 -c "import time; print(f'{time.time() - $t0:.2f}')"
}

if [ "${PARTS:-12}" != 2 ]; then
echo "== 1. scaling: workers against an instant simulator (no limits)"
pages=$(copies_corpus "$bin" "${PAGEMILL_CORPUS:-testdata}" "$work/corpus" "$copies")
echo "corpus: $pages pages"
start_sim instant "$work/sim-instant.jsonl"
config "$port" "limits = { max_concurrency = 64 }" > "$work/instant.toml"
printf '%-8s %8s %10s %12s %14s\n' workers units wall_s units_per_s trips_per_unit
for n in 1 2 4 8; do
  url=$(schema_url "pm_bench_scale_$n")
  "$bin" --config "$work/instant.toml" run "$work/corpus" -o "$work/plan$n" --store "$url" --plan -q \
    > /dev/null 2>&1
  wall=$(workers "$n" "$work/instant.toml" "$url" "$work/scale$n" --concurrency 8)
  units=$(psql "$base" -tAc "SELECT COUNT(*) FROM pm_bench_scale_$n.units WHERE status = 'done'")
  trips=$(cat "$work"/scale"$n".*.err | sed -n 's/.* \([0-9]*\) round trips to the store.*/\1/p' \
    | awk '{s += $1} END {print s + 0}')
  python3 -c "print(f'{$n:<8} {$units:>8} {$wall:>10} {$units / $wall:>12.1f} {$trips / max($units, 1):>14.2f}')"
done

fi

[ "${PARTS:-12}" = 1 ] && exit 0
echo
echo "== 2. shared limits: $rpm requests/min, $tpm tokens/min"
copies_corpus "$bin" "${LIMITED_CORPUS:-testdata/text}" "$work/limited" 1 > /dev/null
limited_profile "$bin" instant "$work/limited-profile.toml" "$rpm" "$tpm"
printf '%-16s %8s %8s %8s %8s %6s\n' config wall_s bound_s ratio admitted 429s
for case in ${CASES:-1:bucket 4:bucket 4:divide 4:none}; do
  n=${case%%:*} sharing=${case##*:}
  log="$work/sim-$n-$sharing.jsonl"
  start_sim "$work/limited-profile.toml" "$log"
  # Spend the simulator's minute of burst first (requests and tokens), as another tenant of
  # the key would: pacing clients gain nothing from it, a client that does not pace would.
  python3 - "$port" "$rpm" "$tpm" <<'PY'
import concurrent.futures, json, sys, urllib.request
port, rpm, tpm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def one(_):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps({"model": "sim-model", "max_tokens": tpm // rpm,
                         "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"content-type": "application/json"})
    try:
        urllib.request.urlopen(req).read()
    except Exception:
        pass
with concurrent.futures.ThreadPoolExecutor(32) as ex:
    list(ex.map(one, range(rpm)))
PY
  config "$port" "limits = { requests_per_minute = $rpm, tokens_per_minute = $tpm, max_concurrency = 64 }" \
    > "$work/limited-$n-$sharing.toml"
  url=$(schema_url "pm_bench_limited_${n}_$sharing")
  "$bin" --config "$work/limited-$n-$sharing.toml" run "$work/limited" -o "$work/lplan" --store "$url" \
    --plan -q > /dev/null 2>&1
  skip=$(wc -l < "$log")
  wall=$(workers "$n" "$work/limited-$n-$sharing.toml" "$url" "$work/limited-$n-$sharing" \
    --rate-sharing "$sharing" --concurrency 16)
  python3 - "$log" "$skip" "$rpm" "$tpm" "$wall" "$n workers, $sharing" <<'PY'
import json, sys
log, skip, rpm, tpm, wall, name = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
rows = [json.loads(l) for l in open(log)][skip:]
chat = [e for e in rows if e["route"].endswith("/chat/completions")]
admitted = [e for e in chat if e.get("rate_tokens", 0) > 0]
R, T = len(admitted), sum(e["rate_tokens"] for e in admitted)
bound = max(R / rpm, T / tpm) * 60
refused = sum(1 for e in chat if e["status"] == 429)
print(f"{name:<16} {wall:>8.1f} {bound:>8.1f} {wall / bound:>8.3f} {R:>8} {refused:>6}")
PY
done
