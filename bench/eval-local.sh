#!/usr/bin/env bash
# Quality next to cost on the embedded model (one core): `pagemill eval` of the example
# documents against their mention-level gold, one dimension at a time, each against the
# baseline the embedded model runs with (one item a request, the small prompt profile,
# json_schema):
#   1. pack 1 against pack 8;
#   2. the small prompt profile against the default one;
#   3. json_schema against json_object;
#   4. metadata of the five vignette PDFs (title, authors) against their gold, under each
#      prompt profile and format (five documents: enough for a verdict).
# Configurations run one after another (--sequential), so each wall time is its own, in one
# ledger: the baseline is run once and reused by the later evals (they pay nothing for it).
#
# Usage: bench/eval-local.sh [OUT]   (default: a temporary directory, removed at the end)
# Prints each eval's table; the JSON reports stay in OUT/*/eval-report.json.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
out=${1:-}
if [[ -z $out ]]; then out=$(mktemp -d); trap 'rm -rf "$out"' EXIT; fi
mkdir -p "$out"
store="$out/ledger.sqlite"
eval_on() {
  local name=$1 gold=$2 docs=$3; shift 3
  echo "== $name"
  # shellcheck disable=SC2086 # $docs is a list of paths
  /usr/bin/time -f "(%e s wall, %M KB peak RSS)" taskset -c 1 "$bin" eval "$gold" $docs \
    --sequential --store "$store" -o "$out/$name" "$@"
}
eval_one() {
  local name=$1; shift
  eval_on "$name" testdata/gold/examples-mentions.jsonl examples/docs "$@"
}
eval_one pack --pack 1,8 --prompt-profile small --response-format json_schema
eval_one profile --pack 1 --prompt-profile small,default --response-format json_schema
eval_one format --pack 1 --prompt-profile small --response-format json_schema,json_object
vignettes="testdata/pdf/zoo.pdf testdata/pdf/sandwich.pdf testdata/pdf/party.pdf testdata/pdf/lmtest-intro.pdf testdata/pdf/strucchange-intro.pdf"
eval_on vignettes-metadata testdata/gold/vignettes.jsonl "$vignettes" --tasks metadata \
  --prompt-profile small,default --response-format json_schema,json_object
