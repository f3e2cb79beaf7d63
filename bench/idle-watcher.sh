#!/usr/bin/env bash
# What a `pagemill run --watch` costs while it waits: two watchers side by side, one told by
# inotify (the default) and one listing its inbox every 2 s (--watch-poll), both against a
# `pagemill sim` endpoint (its own process, as a provider would be). Each first runs two
# licence texts (a real pass, whose metrics scrape is saved), then waits with nothing to do for
# DURATION seconds. Every SAMPLE seconds: CPU seconds used so far (utime + stime), resident
# memory, and context switches of all its threads (each a wake-up).
#
#   bench/idle-watcher.sh [DURATION=3600] [SAMPLE=60]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
duration=${1:-3600}
sample=${2:-60}
bin=$(release_bin)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(free_port)
"$bin" sim --port "$port" > "$work/sim.log" 2>&1 &
wait_ready "$port"
endpoints_toml "remote:$port" > "$work/pagemill.toml"

start_watcher() { # NAME [ARGS…]: starts a watcher on $work/NAME-inbox; prints its pid
  local name=$1; shift
  mkdir -p "$work/$name-inbox"
  "$bin" --config "$work/pagemill.toml" run --watch "$work/$name-inbox" -o "$work/$name-out" \
    -e remote --metrics-addr 127.0.0.1:0 -q "$@" > "$work/$name.log" 2>&1 &
  echo $!
}
events=$(start_watcher events)
poll=$(start_watcher poll --watch-poll --watch-interval 2s)
sleep 2
for name in events poll; do
  cp testdata/text/licenses/{Apache-2.0,BSD-3-Clause}.txt "$work/$name-inbox/"
done
for name in events poll; do
  for _ in $(seq 600); do grep -q "^watch: " "$work/$name.log" && break; sleep 0.5; done
  grep "^watch\|watching" "$work/$name.log"
done
addr=$(grep -o 'metrics: http://[^ ]*' "$work/events.log" | head -1 | sed 's/metrics: //')
curl -s "$addr" > "$work/scrape.txt"
echo "--- a scrape of the events watcher after its pass ($addr):"
grep -v '^# \(HELP\|UNIT\)' "$work/scrape.txt"

cpu() { # PID: utime + stime, seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
rss() { # PID: resident MiB
  awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"
}
switches() { # PID: context switches of every thread
  cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ {n += $2} END {print n}'
}
echo "--- idle for ${duration}s (events = inotify, poll = every 2 s)"
printf '%8s %12s %10s %10s %12s %10s %10s\n' seconds events_cpu_s rss_MiB switches poll_cpu_s rss_MiB switches
t0=$(date +%s)
declare -A base
for p in $events $poll; do base[$p]=$(cpu "$p"); base[s$p]=$(switches "$p"); done
while :; do
  now=$(( $(date +%s) - t0 ))
  row=$(printf '%8d' "$now")
  for p in $events $poll; do
    row+=$(printf ' %12.3f %10s %10d' "$(awk "BEGIN {print $(cpu "$p") - ${base[$p]}}")" "$(rss "$p")" \
      "$(( $(switches "$p") - ${base[s$p]} ))")
  done
  echo "$row"
  (( now >= duration )) && break
  sleep "$sample"
done
