#!/usr/bin/env python3
"""Scores `pagemill run` metadata against a truth file: title token F1 and author recall.

Usage: bench/metadata-eval.py OUT_DIR [TRUTH_JSON]

- title token F1: lowercase alphanumeric tokens of the reported title against the true one
  (multiset overlap); a missing title scores 0.
- author recall: true authors found among the reported ones (same last name and first initial,
  case and accents aside); author precision is printed beside it.
Prints one line per document and the means.
"""
import json, os, sys, unicodedata, re
from collections import Counter

def fold(s):
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).lower()

def tokens(s):
    return re.findall(r"[a-z0-9]+", fold(s or ""))

def f1(pred, true):
    p, t = Counter(tokens(pred)), Counter(tokens(true))
    common = sum((p & t).values())
    if not common:
        return 0.0
    prec, rec = common / sum(p.values()), common / sum(t.values())
    return 2 * prec * rec / (prec + rec)

def same_person(a, b):
    ta, tb = tokens(a), tokens(b)
    return bool(ta and tb) and ta[-1] == tb[-1] and ta[0][0] == tb[0][0]

out = sys.argv[1]
truth = json.load(open(sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "testdata", "truth", "metadata.json")))
results = {}
for f in os.listdir(out):
    if f.endswith(".json") and f != "run-summary.json":
        d = json.load(open(os.path.join(out, f)))
        results[os.path.basename(d["path"])] = d
tf, ar, ap, n = 0.0, 0.0, 0.0, 0
for name, t in sorted(truth.items()):
    if name.startswith("_"):
        continue
    d = results.get(name)
    meta = (d or {}).get("metadata") or {}
    title, authors = meta.get("title"), meta.get("authors") or []
    score = f1(title, t["title"])
    found = sum(any(same_person(a, x) for a in authors) for x in t["authors"])
    rec = found / len(t["authors"])
    prec = sum(any(same_person(a, x) for x in t["authors"]) for a in authors) / len(authors) if authors else 0.0
    tf, ar, ap, n = tf + score, ar + rec, ap + prec, n + 1
    state = d["metadata_state"] if d else "missing"
    print(f"{name:24} title F1 {score:.2f}  authors recall {rec:.2f} precision {prec:.2f}  [{state}] title={title!r} authors={authors}")
print(f"mean over {n}: title token F1 {tf/n:.2f} · author recall {ar/n:.2f} · author precision {ap/n:.2f}")
