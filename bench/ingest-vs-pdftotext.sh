#!/usr/bin/env bash
# Ingest benchmark: pagemill's PDF ingest next to poppler's pdftotext on the same files.
# Prints pages/s and CPU seconds for both (median of RUNS runs) and the per-page text
# similarity between the two outputs (difflib ratio on whitespace-normalized text).
# Usage: bench/ingest-vs-pdftotext.sh [PDF_DIR] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-$( [ -d ../shared/data/pdf ] && echo ../shared/data/pdf || echo testdata/pdf )}
runs=${2:-5}
. bench/common.sh
bin=${PAGEMILL_BIN:-$(release_bin)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pages=0
for f in "$dir"/*.pdf; do pages=$((pages + $(pdfinfo "$f" | awk '/^Pages:/{print $2}'))); done

measure() { # prints "wall_s cpu_s" of a command
  /usr/bin/env time -f "%e %U %S" "$@" 2>&1 >/dev/null | tail -1 | awk '{print $1, $2 + $3}'
}
declare -a pm_wall pm_cpu pt_wall pt_cpu
for i in $(seq "$runs"); do
  read -r w c < <(measure bash -c "'$bin' ingest --format json --dump '$work/pm' '$dir' > '$work/ingest.json'")
  pm_wall+=("$w"); pm_cpu+=("$c")
  read -r w c < <(measure bash -c "for f in '$dir'/*.pdf; do pdftotext -q \"\$f\" \"$work/\$(basename \"\$f\" .pdf).txt\"; done")
  pt_wall+=("$w"); pt_cpu+=("$c")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
pmw=$(median "${pm_wall[@]}"); pmc=$(median "${pm_cpu[@]}")
ptw=$(median "${pt_wall[@]}"); ptc=$(median "${pt_cpu[@]}")
echo "files: $(ls "$dir"/*.pdf | wc -l), pages: $pages, runs: $runs (medians)"
echo "pagemill ingest: wall ${pmw}s ($(python3 -c "print(f'{$pages/$pmw:.0f}')") pages/s), CPU ${pmc}s"
echo "pdftotext:       wall ${ptw}s ($(python3 -c "print(f'{$pages/$ptw:.0f}')") pages/s), CPU ${ptc}s"
python3 - "$work" <<'PY'
import difflib, glob, json, os, re, sys
work = sys.argv[1]
norm = lambda s: re.sub(r"\s+", " ", s).strip()
# The running headers, footers and page numbers pagemill removed (and listed), per page.
furniture = {}
for d in json.load(open(os.path.join(work, "ingest.json")))["documents"]:
    name = os.path.basename(d["path"])[:-4]
    for p in d["pages"]:
        furniture[(name, p["number"])] = p["furniture"]
ratios, content = [], []
def ratio(a, b):
    return 1.0 if a == b else difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()
for txt in sorted(glob.glob(os.path.join(work, "*.txt"))):
    name = os.path.basename(txt)[:-4]
    ref = open(txt, encoding="utf-8", errors="replace").read().split("\f")
    dumps = glob.glob(os.path.join(work, "pm", name + "-*"))
    if not dumps:
        continue
    for i, r in enumerate(ref[:-1] if ref and ref[-1].strip() == "" else ref):
        p = os.path.join(dumps[0], f"page-{i + 1:04d}.txt")
        mine = open(p, encoding="utf-8").read() if os.path.exists(p) else ""
        a, b = norm(r), norm(mine)
        ratios.append(ratio(a, b))
        # Content only: poppler's page without the lines pagemill listed as furniture.
        lines = [l for l in r.split("\n") if l.strip() not in set(furniture.get((name, i + 1), []))]
        content.append(ratio(norm("\n".join(lines)), b))
for label, rs in (("raw", ratios), ("content (furniture removed from both)", content)):
    rs.sort()
    n = len(rs)
    print(f"per-page similarity, {label}, over {n} pages: mean {sum(rs)/n:.4f}, median {rs[n//2]:.4f}, "
          f"p5 {rs[int(n*0.05)]:.4f}, min {rs[0]:.4f}; identical pages {sum(r == 1.0 for r in rs)}")
PY
