//! Scores of a run's results against gold: entities (strict, relaxed, type-blind; per type,
//! micro and macro; offsets exactly right), metadata per field (exact and normalized; lists as
//! sets; dates as calendar dates) and summaries (ROUGE-1/2/L against references; with no
//! reference needed, source support and length compliance).
//!
//! Conventions: precision with nothing predicted, or recall with nothing in the gold, is 0 —
//! unless both are empty, which is a perfect 1. Matches are one to one.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::gold::{GoldDocument, GoldEntity};
use super::text::{calendar_date, name_key, normalize, tokens};

/// True and false positives and false negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Predicted and in the gold.
    pub tp: u64,
    /// Predicted, not in the gold.
    pub fp: u64,
    /// In the gold, not predicted.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Counts {
    /// Share of predictions that are right.
    pub fn precision(&self) -> f64 {
        ratio(
            self.tp,
            self.tp + self.fp,
            self.tp + self.fp + self.fn_ == 0,
        )
    }
    /// Share of the gold that was found.
    pub fn recall(&self) -> f64 {
        ratio(
            self.tp,
            self.tp + self.fn_,
            self.tp + self.fp + self.fn_ == 0,
        )
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    fn add(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

fn ratio(num: u64, den: u64, both_empty: bool) -> f64 {
    if den == 0 {
        if both_empty { 1.0 } else { 0.0 }
    } else {
        num as f64 / den as f64
    }
}

/// A predicted mention, as a run's result reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicted {
    /// Its text.
    pub text: String,
    /// Its type.
    pub kind: String,
    /// Page and character offsets in the page, when grounded.
    pub span: Option<(u32, usize, usize)>,
}

/// How entities were compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Mention by mention, by page and offsets (the gold has offsets for every entity).
    Mention,
    /// As a set of (normalized text, type) per document.
    Entity,
}

/// Entity scores of one document, or summed over several.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EntityScores {
    /// How they were compared (`None` once documents of both kinds are summed).
    pub level: Option<Level>,
    /// Same span (or text) and type.
    pub strict: Counts,
    /// Overlapping span (or one text inside the other) and same type.
    pub relaxed: Counts,
    /// Same span (or text), any type.
    pub type_blind: Counts,
    /// Strict counts per type (gold type for misses, predicted type for spurious ones).
    pub by_type: BTreeMap<String, Counts>,
    /// Relaxed matches, and how many of them have exactly the gold's offsets (mention level).
    pub offsets: Option<(u64, u64)>,
}

impl EntityScores {
    /// Micro F1: strict counts summed over types.
    pub fn micro_f1(&self) -> f64 {
        self.strict.f1()
    }
    /// Macro F1: the mean of the per-type strict F1s.
    pub fn macro_f1(&self) -> f64 {
        if self.by_type.is_empty() {
            return self.strict.f1();
        }
        self.by_type.values().map(Counts::f1).sum::<f64>() / self.by_type.len() as f64
    }
    /// Share of relaxed matches whose offsets are exactly right.
    pub fn offsets_exact(&self) -> Option<f64> {
        self.offsets.map(|(m, e)| ratio(e, m, true))
    }
    /// Adds another document's scores (to a sum started from the first document's).
    pub fn add(&mut self, o: &EntityScores) {
        if self.level != o.level {
            self.level = None;
        }
        self.strict.add(o.strict);
        self.relaxed.add(o.relaxed);
        self.type_blind.add(o.type_blind);
        for (k, c) in &o.by_type {
            self.by_type.entry(k.clone()).or_default().add(*c);
        }
        self.offsets = match (self.offsets, o.offsets) {
            (Some((a, b)), Some((c, d))) => Some((a + c, b + d)),
            (x, None) | (None, x) => x,
        };
    }
}

/// What is wrong with one mention or entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// In the gold, not found at all.
    Missed,
    /// Predicted, not in the gold.
    Spurious,
    /// The gold's span (or text), another type.
    WrongType,
    /// The gold's type, an overlapping but different span (or a text inside the other).
    WrongSpan,
}

/// One entity error, placed where it is (mention level) or by its text alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntityError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// The gold's text (the prediction's, for a spurious one).
    pub text: String,
    /// The gold's type (the prediction's, for a spurious one).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// What was predicted instead, for a wrong type or span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predicted: Option<String>,
    /// Page and character offsets (the gold's; the prediction's for a spurious one), at
    /// mention level.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Start offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    /// End offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
}

/// Scores predicted mentions against gold entities (see [`Level`]).
pub fn score_entities(gold: &[GoldEntity], predicted: &[Predicted]) -> EntityScores {
    score_entities_with_errors(gold, predicted).0
}

/// [`score_entities`], with each error listed.
pub fn score_entities_with_errors(
    gold: &[GoldEntity],
    predicted: &[Predicted],
) -> (EntityScores, Vec<EntityError>) {
    if !gold.is_empty() && gold.iter().all(|g| g.span().is_some()) {
        mention_level(gold, predicted)
    } else {
        entity_level(gold, predicted)
    }
}

/// Every gold item not matched strictly, and every prediction left over: a wrong type when
/// the gold's span (text) was predicted with another type, a wrong span when an overlapping
/// one of its type was, else missed; predictions not used for any of these are spurious.
#[allow(clippy::too_many_arguments)]
fn errors<G, P>(
    gold: &[G],
    pred: &[P],
    strict: &[Option<usize>],
    same_place: impl Fn(&G, &P) -> bool,
    near: impl Fn(&G, &P) -> bool,
    gold_error: impl Fn(&G, ErrorKind, Option<&P>) -> EntityError,
    pred_error: impl Fn(&P) -> EntityError,
) -> Vec<EntityError> {
    let mut used = vec![false; pred.len()];
    for i in strict.iter().flatten() {
        used[*i] = true;
    }
    let mut out = Vec::new();
    for (g, hit) in gold.iter().zip(strict) {
        if hit.is_some() {
            continue;
        }
        let find = |f: &dyn Fn(&G, &P) -> bool, used: &[bool]| {
            (0..pred.len()).find(|&i| !used[i] && f(g, &pred[i]))
        };
        let (kind, i) = match find(&same_place, &used) {
            Some(i) => (ErrorKind::WrongType, Some(i)),
            None => match find(&near, &used) {
                Some(i) => (ErrorKind::WrongSpan, Some(i)),
                None => (ErrorKind::Missed, None),
            },
        };
        if let Some(i) = i {
            used[i] = true;
        }
        out.push(gold_error(g, kind, i.map(|i| &pred[i])));
    }
    for (p, u) in pred.iter().zip(used) {
        if !u {
            out.push(pred_error(p));
        }
    }
    out
}

/// One-to-one matches: for each gold item in turn, the first unmatched prediction `same` accepts.
fn match_count<G, P>(
    gold: &[G],
    pred: &[P],
    same: impl Fn(&G, &P) -> bool,
) -> (u64, Vec<Option<usize>>) {
    let mut used = vec![false; pred.len()];
    let mut pairs = Vec::with_capacity(gold.len());
    for g in gold {
        let hit = (0..pred.len()).find(|&i| !used[i] && same(g, &pred[i]));
        if let Some(i) = hit {
            used[i] = true;
        }
        pairs.push(hit);
    }
    (pairs.iter().flatten().count() as u64, pairs)
}

fn counts(tp: u64, gold: usize, pred: usize) -> Counts {
    Counts {
        tp,
        fp: pred as u64 - tp,
        fn_: gold as u64 - tp,
    }
}

fn by_type<G, P>(
    gold: &[G],
    pred: &[P],
    pairs: &[Option<usize>],
    gkind: impl Fn(&G) -> &str,
    pkind: impl Fn(&P) -> &str,
) -> BTreeMap<String, Counts> {
    let mut out: BTreeMap<String, Counts> = BTreeMap::new();
    let mut matched = vec![false; pred.len()];
    for (g, hit) in gold.iter().zip(pairs) {
        let c = out.entry(gkind(g).to_owned()).or_default();
        match hit {
            Some(i) => {
                c.tp += 1;
                matched[*i] = true;
            }
            None => c.fn_ += 1,
        }
    }
    for (p, m) in pred.iter().zip(matched) {
        if !m {
            out.entry(pkind(p).to_owned()).or_default().fp += 1;
        }
    }
    out
}

fn mention_level(gold: &[GoldEntity], predicted: &[Predicted]) -> (EntityScores, Vec<EntityError>) {
    // Only grounded predictions have a place to be compared at.
    let pred: Vec<(&Predicted, (u32, usize, usize))> = predicted
        .iter()
        .filter_map(|p| p.span.map(|s| (p, s)))
        .collect();
    let spurious_unplaced = (predicted.len() - pred.len()) as u64;
    let gold: Vec<(&GoldEntity, (u32, usize, usize))> = gold
        .iter()
        .filter_map(|g| g.span().map(|s| (g, s)))
        .collect();
    let overlap =
        |a: (u32, usize, usize), b: (u32, usize, usize)| a.0 == b.0 && a.1 < b.2 && b.1 < a.2;
    let (strict_tp, pairs) = match_count(&gold, &pred, |g, p| g.1 == p.1 && g.0.kind == p.0.kind);
    let (relaxed_tp, relaxed_pairs) = match_count(&gold, &pred, |g, p| {
        overlap(g.1, p.1) && g.0.kind == p.0.kind
    });
    let (blind_tp, _) = match_count(&gold, &pred, |g, p| g.1 == p.1);
    let exact = gold
        .iter()
        .zip(&relaxed_pairs)
        .filter(|(g, hit)| hit.is_some_and(|i| pred[i].1 == g.1))
        .count() as u64;
    let mut by = by_type(
        &gold,
        &pred,
        &pairs,
        |g| g.0.kind.as_str(),
        |p| p.0.kind.as_str(),
    );
    let with_unplaced = |mut c: Counts| {
        c.fp += spurious_unplaced;
        c
    };
    for p in predicted.iter().filter(|p| p.span.is_none()) {
        by.entry(p.kind.clone()).or_default().fp += 1;
    }
    let mut errs = errors(
        &gold,
        &pred,
        &pairs,
        |g, p| g.1 == p.1,
        |g, p| overlap(g.1, p.1) && g.0.kind == p.0.kind,
        |g, kind, p| EntityError {
            kind,
            text: g.0.text.clone(),
            entity_type: g.0.kind.clone(),
            predicted: p.map(|p| match kind {
                ErrorKind::WrongType => p.0.kind.clone(),
                _ => p.0.text.clone(),
            }),
            page: Some(g.1.0),
            start: Some(g.1.1),
            end: Some(g.1.2),
        },
        |p| EntityError {
            kind: ErrorKind::Spurious,
            text: p.0.text.clone(),
            entity_type: p.0.kind.clone(),
            predicted: None,
            page: Some(p.1.0),
            start: Some(p.1.1),
            end: Some(p.1.2),
        },
    );
    errs.extend(
        predicted
            .iter()
            .filter(|p| p.span.is_none())
            .map(|p| EntityError {
                kind: ErrorKind::Spurious,
                text: p.text.clone(),
                entity_type: p.kind.clone(),
                predicted: None,
                page: None,
                start: None,
                end: None,
            }),
    );
    let scores = EntityScores {
        level: Some(Level::Mention),
        strict: with_unplaced(counts(strict_tp, gold.len(), pred.len())),
        relaxed: with_unplaced(counts(relaxed_tp, gold.len(), pred.len())),
        type_blind: with_unplaced(counts(blind_tp, gold.len(), pred.len())),
        by_type: by,
        offsets: Some((relaxed_tp, exact)),
    };
    (scores, errs)
}

fn entity_level(gold: &[GoldEntity], predicted: &[Predicted]) -> (EntityScores, Vec<EntityError>) {
    let set = |items: Vec<(String, String)>| {
        let mut v: Vec<(String, String)> =
            items.into_iter().filter(|(t, _)| !t.is_empty()).collect();
        v.sort();
        v.dedup();
        v
    };
    let g = set(gold
        .iter()
        .map(|e| (normalize(&e.text), e.kind.clone()))
        .collect());
    let p = set(predicted
        .iter()
        .map(|e| (normalize(&e.text), e.kind.clone()))
        .collect());
    let inside = |a: &str, b: &str| {
        let (a, b) = (format!(" {a} "), format!(" {b} "));
        a.contains(&b) || b.contains(&a)
    };
    let (strict_tp, pairs) = match_count(&g, &p, |g, p| g == p);
    let (relaxed_tp, _) = match_count(&g, &p, |g, p| g.1 == p.1 && inside(&g.0, &p.0));
    let gt = set(g.iter().map(|(t, _)| (t.clone(), String::new())).collect());
    let pt = set(p.iter().map(|(t, _)| (t.clone(), String::new())).collect());
    let (blind_tp, _) = match_count(&gt, &pt, |g, p| g == p);
    let error =
        |(text, kind): &(String, String), e: ErrorKind, predicted: Option<String>| EntityError {
            kind: e,
            text: text.clone(),
            entity_type: kind.clone(),
            predicted,
            page: None,
            start: None,
            end: None,
        };
    let errs = errors(
        &g,
        &p,
        &pairs,
        |g, p| g.0 == p.0,
        |g, p| g.1 == p.1 && inside(&g.0, &p.0),
        |g, kind, p| {
            error(
                g,
                kind,
                p.map(|p| match kind {
                    ErrorKind::WrongType => p.1.clone(),
                    _ => p.0.clone(),
                }),
            )
        },
        |p| error(p, ErrorKind::Spurious, None),
    );
    let scores = EntityScores {
        level: Some(Level::Entity),
        strict: counts(strict_tp, g.len(), p.len()),
        relaxed: counts(relaxed_tp, g.len(), p.len()),
        type_blind: counts(blind_tp, gt.len(), pt.len()),
        by_type: by_type(&g, &p, &pairs, |g| g.1.as_str(), |p| p.1.as_str()),
        offsets: None,
    };
    (scores, errs)
}

/// One metadata field's score: 1 or 0 for a string or a date, set F1 for a list (normalized:
/// its elements less honorifics).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldScore {
    /// The field.
    pub field: String,
    /// As written (lists: set F1 of the strings as written).
    pub exact: f64,
    /// After normalization (case, spacing, punctuation, diacritics); dates: the same calendar
    /// date whatever the format.
    pub normalized: f64,
}

/// Scores a run's metadata against the gold's fields (fields the gold does not give are not
/// scored; a gold `null` is matched by a missing, null or empty answer).
pub fn score_metadata(gold: &Map<String, Value>, predicted: &Value) -> Vec<FieldScore> {
    let mut out = Vec::new();
    for (field, want) in gold {
        let got = predicted.get(field).unwrap_or(&Value::Null);
        let empty = |v: &Value| match v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        let (exact, normalized) = match want {
            w if empty(w) => {
                let ok = if empty(got) { 1.0 } else { 0.0 };
                (ok, ok)
            }
            Value::Array(w) => {
                let strings = |a: &Value| -> Vec<String> {
                    a.as_array().map_or_else(Vec::new, |a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                };
                let (w, g) = (strings(&Value::Array(w.clone())), strings(got));
                // Names less honorifics: "Dr. Helena Kowalczyk" is the author Helena Kowalczyk.
                let norm = |v: &[String]| v.iter().map(|s| name_key(s)).collect::<Vec<_>>();
                (set_f1(&w, &g), set_f1(&norm(&w), &norm(&g)))
            }
            Value::String(w) => {
                let g = got.as_str().unwrap_or("");
                let exact = if w.trim() == g.trim() { 1.0 } else { 0.0 };
                let same = match (calendar_date(w), calendar_date(g)) {
                    (Some(a), Some(b))
                        if field == "date"
                            || w.chars().any(|c| c.is_ascii_digit()) && a.1.is_some() =>
                    {
                        a == b
                    }
                    _ => normalize(w) == normalize(g),
                };
                (exact, if same { 1.0 } else { 0.0 })
            }
            w => {
                let ok = if w == got { 1.0 } else { 0.0 };
                (ok, ok)
            }
        };
        out.push(FieldScore {
            field: field.clone(),
            exact,
            normalized,
        });
    }
    out
}

fn set_f1(gold: &[String], pred: &[String]) -> f64 {
    fn dedup(v: &[String]) -> Vec<&String> {
        let mut v: Vec<&String> = v.iter().filter(|s| !s.is_empty()).collect();
        v.sort();
        v.dedup();
        v
    }
    let (g, p) = (dedup(gold), dedup(pred));
    let tp = g.iter().filter(|x| p.contains(x)).count();
    counts(tp as u64, g.len(), p.len()).f1()
}

/// ROUGE F-measures of a summary against a reference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rouge {
    /// Word overlap.
    pub rouge1: f64,
    /// Word-pair overlap.
    pub rouge2: f64,
    /// Longest common subsequence of words.
    pub rouge_l: f64,
}

/// ROUGE-1, -2 and -L (F1) of `candidate` against `reference`, on normalized words.
pub fn rouge(candidate: &str, reference: &str) -> Rouge {
    let (c, r) = (tokens(candidate), tokens(reference));
    let grams = |t: &[String], n: usize| -> BTreeMap<Vec<String>, u64> {
        let mut m = BTreeMap::new();
        for w in t.windows(n) {
            *m.entry(w.to_vec()).or_default() += 1;
        }
        m
    };
    let overlap = |n: usize| {
        let (a, b) = (grams(&c, n), grams(&r, n));
        let tp: u64 = a
            .iter()
            .map(|(k, x)| (*x).min(*b.get(k).unwrap_or(&0)))
            .sum();
        f_measure(tp, a.values().sum(), b.values().sum())
    };
    let lcs = {
        let mut prev = vec![0u64; r.len() + 1];
        for x in &c {
            let mut cur = vec![0u64; r.len() + 1];
            for (j, y) in r.iter().enumerate() {
                cur[j + 1] = if x == y {
                    prev[j] + 1
                } else {
                    cur[j].max(prev[j + 1])
                };
            }
            prev = cur;
        }
        prev[r.len()]
    };
    Rouge {
        rouge1: overlap(1),
        rouge2: overlap(2),
        rouge_l: f_measure(lcs, c.len() as u64, r.len() as u64),
    }
}

fn f_measure(tp: u64, predicted: u64, reference: u64) -> f64 {
    if predicted == 0 || reference == 0 || tp == 0 {
        return 0.0;
    }
    let (p, r) = (tp as f64 / predicted as f64, tp as f64 / reference as f64);
    2.0 * p * r / (p + r)
}

/// Reference-free checks of summaries: are their sentences backed by their section, and are
/// they within the word limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryChecks {
    /// Summaries checked.
    pub summaries: u64,
    /// Sentences (with content words) of the summaries whose section text is known.
    pub sentences: u64,
    /// Those whose content words the section holds (see [`supported_sentences`]).
    pub supported: u64,
    /// Summaries within the word limit (when one is known).
    pub within_limit: u64,
    /// Summaries held to a limit.
    pub limited: u64,
}

impl SummaryChecks {
    /// The checks of every summary in `sections` (a run's result JSON) of document `id`.
    fn of(id: &str, sections: &Value, sources: &Sources) -> Self {
        let mut checks = Self::default();
        for s in sections.as_array().into_iter().flatten() {
            let Some(summary) = s["summary"].as_str() else {
                continue;
            };
            checks.summaries += 1;
            let section = s["id"]
                .as_u64()
                .and_then(|n| sources.sections.get(&(id.to_owned(), n as u32)))
                .filter(|(title, _)| s["title"].as_str() == Some(title.as_str()));
            if let Some((_, text)) = section {
                let (n, ok) = supported_sentences(summary, text);
                checks.sentences += n;
                checks.supported += ok;
            }
            if let Some(max) = sources.summary_max_words {
                checks.limited += 1;
                if summary.split_whitespace().count() <= max as usize {
                    checks.within_limit += 1;
                }
            }
        }
        checks
    }

    /// Share of sentences backed by their section: a cheap hallucination signal.
    pub fn support(&self) -> Option<f64> {
        (self.sentences > 0).then(|| self.supported as f64 / self.sentences as f64)
    }
    /// Share of summaries within the word limit.
    pub fn length_compliance(&self) -> Option<f64> {
        (self.limited > 0).then(|| self.within_limit as f64 / self.limited as f64)
    }
    /// Adds another document's checks.
    pub fn add(&mut self, o: &SummaryChecks) {
        self.summaries += o.summaries;
        self.sentences += o.sentences;
        self.supported += o.supported;
        self.within_limit += o.within_limit;
        self.limited += o.limited;
    }
}

/// A sentence is backed when at least this share of its content words is in its section.
pub const SUPPORT_MIN: f64 = 0.75;

/// Sentences of `summary` with content words, and how many of them are backed by `section`:
/// at least [`SUPPORT_MIN`] of their content words (words of four letters or more that are not
/// stopwords, and every number) occur in the section, compared by their first five letters so
/// "agrees" finds "agreement"; numbers must be there whole.
pub fn supported_sentences(summary: &str, section: &str) -> (u64, u64) {
    let key = |w: &str| -> String {
        if w.chars().any(|c| c.is_ascii_digit()) {
            w.to_owned()
        } else {
            w.chars().take(5).collect()
        }
    };
    let source: std::collections::HashSet<String> =
        tokens(section).iter().map(|w| key(w)).collect();
    let mut sentences = 0;
    let mut supported = 0;
    for sentence in split_sentences(summary) {
        let content: Vec<String> = tokens(sentence)
            .into_iter()
            .filter(|w| {
                w.chars().any(|c| c.is_ascii_digit())
                    || (w.chars().count() >= 4
                        && !crate::run::checks::STOPWORDS.contains(&w.as_str()))
            })
            .collect();
        if content.is_empty() {
            continue;
        }
        sentences += 1;
        let found = content.iter().filter(|w| source.contains(&key(w))).count();
        if found as f64 >= SUPPORT_MIN * content.len() as f64 {
            supported += 1;
        }
    }
    (sentences, supported)
}

/// Sentences, trimmed: cut as sections are (`crate::sections::sentences`: after `.`, `!` or
/// `?` and white space, or after `。！？`).
fn split_sentences(text: &str) -> Vec<&str> {
    crate::sections::sentences(text)
        .into_iter()
        .map(|(a, b)| text[a..b].trim())
        .filter(|s| !s.is_empty())
        .collect()
}

/// What the scorer knows beyond a run's result files: each section's title and text (by
/// document id and section id) for source support, and the summaries' word limit for length
/// compliance.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Section titles and texts (a text is used only for a section of the same title).
    pub sections: HashMap<(String, u32), (String, String)>,
    /// Most words a summary may have.
    pub summary_max_words: Option<u32>,
}

impl Sources {
    /// Each section's title and text of `docs`, for source support, and the word limit.
    pub fn of(docs: &[crate::ingest::Document], summary_max_words: u32) -> Self {
        let mut s = Self {
            summary_max_words: Some(summary_max_words),
            ..Self::default()
        };
        for d in docs {
            for sec in &d.sections {
                let text = d.text.get(sec.range.0..sec.range.1).unwrap_or("").trim();
                s.sections
                    .insert((d.id.clone(), sec.id), (sec.title.clone(), text.to_owned()));
            }
        }
        s
    }
}

/// One document's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DocumentScores {
    /// The document, as the gold names it.
    pub document: String,
    /// Its content id, as the run reports it.
    pub id: String,
    /// Entity scores, when the gold has entities.
    pub entities: Option<EntityScores>,
    /// Metadata field scores, when the gold has metadata.
    pub metadata: Vec<FieldScore>,
    /// Per reference summary: the section (or `None` for the document) and its ROUGE, `None`
    /// when the run has no summary for it.
    pub summaries: Vec<(Option<String>, Option<Rouge>)>,
    /// Source support and length of every summary of the document.
    pub summary_checks: SummaryChecks,
    /// Every entity error (missed, spurious, wrong type, wrong span).
    pub errors: Vec<EntityError>,
}

/// The mentions of a run's result JSON for one document.
pub fn predicted_mentions(result: &Value) -> Vec<Predicted> {
    let mut out = Vec::new();
    for e in result["entities"].as_array().into_iter().flatten() {
        for m in e["mentions"].as_array().into_iter().flatten() {
            let text = m["text"]
                .as_str()
                .or(e["text"].as_str())
                .unwrap_or("")
                .to_owned();
            let kind = m["type"]
                .as_str()
                .or(e["type"].as_str())
                .unwrap_or("")
                .to_owned();
            let span = match (m["page"].as_u64(), m["start"].as_u64(), m["end"].as_u64()) {
                (Some(p), Some(s), Some(t)) if m["grounding"] != "none" => {
                    Some((p as u32, s as usize, t as usize))
                }
                _ => None,
            };
            out.push(Predicted { text, kind, span });
        }
    }
    out
}

/// Whether the run asked for a task at all: some of `items` (pages or sections, by `key`) is
/// in a state other than `skipped` — or the result does not say.
fn asked(items: &Value, key: &str) -> bool {
    match items.as_array() {
        Some(list) if !list.is_empty() => list.iter().any(|x| x[key] != "skipped"),
        _ => true,
    }
}

/// Scores one document's result JSON (as `pagemill run` writes it) against its gold line. A
/// task the run did not do (`--tasks metadata`: every page's entities and every section's
/// summary skipped) is not scored, rather than scored 0.
pub fn score_document(gold: &GoldDocument, result: &Value, sources: &Sources) -> DocumentScores {
    let gold_entities = gold
        .entities
        .as_ref()
        .filter(|_| asked(&result["pages"], "entities"));
    let (entities, errors) = match gold_entities {
        Some(g) => {
            let (s, e) = score_entities_with_errors(g, &predicted_mentions(result));
            (Some(s), e)
        }
        None => (None, Vec::new()),
    };
    let metadata = gold
        .metadata
        .as_ref()
        .filter(|_| result["metadata_state"] != "skipped")
        .map_or_else(Vec::new, |m| score_metadata(m, &result["metadata"]));
    // (title, first page, last page, summary) of each summarized section.
    let sections: Vec<(&str, u64, u64, &str)> = result["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["title"].as_str()?,
                s["pages"][0].as_u64().unwrap_or(0),
                s["pages"][1].as_u64().unwrap_or(0),
                s["summary"].as_str()?,
            ))
        })
        .collect();
    // Summaries of the sections `keep` accepts, in order (`None` when there are none).
    let joined = |keep: &dyn Fn(u64, u64) -> bool| {
        let parts: Vec<&str> = sections
            .iter()
            .filter(|(_, a, b, _)| keep(*a, *b))
            .map(|(_, _, _, s)| *s)
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    };
    let summaries = gold
        .summaries
        .iter()
        .filter(|_| asked(&result["sections"], "state"))
        .flatten()
        .map(|s| {
            let got = match (&s.section, s.pages) {
                (Some(title), _) => sections
                    .iter()
                    .find(|(t, ..)| normalize(t) == normalize(title))
                    .map(|(.., s)| (*s).to_owned()),
                // A page range: the sections that lie within it.
                (None, Some((first, last))) => {
                    joined(&|a, b| a >= u64::from(first) && b <= u64::from(last))
                }
                // The document's summary: its sections' summaries in order.
                (None, None) => joined(&|_, _| true),
            };
            let label = s
                .section
                .clone()
                .or_else(|| s.pages.map(|(a, b)| format!("pages {a}–{b}")));
            (label, got.map(|g| rouge(&g, &s.text)))
        })
        .collect();
    let checks = SummaryChecks::of(
        result["id"].as_str().unwrap_or(""),
        &result["sections"],
        sources,
    );
    DocumentScores {
        document: gold.document.label(),
        id: result["id"].as_str().unwrap_or("").to_owned(),
        entities,
        metadata,
        summaries,
        summary_checks: checks,
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gold(text: &str, kind: &str, span: Option<(u32, usize, usize)>) -> GoldEntity {
        GoldEntity {
            text: text.into(),
            kind: kind.into(),
            page: span.map(|s| s.0),
            start: span.map(|s| s.1),
            end: span.map(|s| s.2),
        }
    }
    fn pred(text: &str, kind: &str, span: Option<(u32, usize, usize)>) -> Predicted {
        Predicted {
            text: text.into(),
            kind: kind.into(),
            span,
        }
    }

    #[test]
    fn mentions_are_scored_strict_relaxed_and_type_blind_with_exact_counts() {
        let g = [
            gold("Helena Kowalczyk", "person", Some((1, 10, 26))),
            gold("Vistula Basin Authority", "organization", Some((1, 35, 58))),
            gold("Kraków", "location", Some((1, 90, 96))),
            gold("PLN 214,000", "money", Some((2, 5, 16))),
        ];
        let p = [
            pred("Helena Kowalczyk", "person", Some((1, 10, 26))), // strict
            pred("Vistula Basin", "organization", Some((1, 35, 48))), // relaxed only
            pred("Kraków", "organization", Some((1, 90, 96))),     // type-blind only
            pred("Tarnobrzeg", "location", Some((2, 40, 50))),     // spurious
            pred("Poland", "location", None),                      // ungrounded: spurious
        ];
        let s = score_entities(&g, &p);
        assert_eq!(s.level, Some(Level::Mention));
        assert_eq!(
            s.strict,
            Counts {
                tp: 1,
                fp: 4,
                fn_: 3
            }
        );
        assert_eq!(
            s.relaxed,
            Counts {
                tp: 2,
                fp: 3,
                fn_: 2
            }
        );
        assert_eq!(
            s.type_blind,
            Counts {
                tp: 2,
                fp: 3,
                fn_: 2
            }
        );
        assert!((s.strict.precision() - 0.2).abs() < 1e-12);
        assert!((s.strict.recall() - 0.25).abs() < 1e-12);
        assert!((s.micro_f1() - 2.0 * 0.2 * 0.25 / 0.45).abs() < 1e-12);
        // One of the two relaxed matches has exactly the gold's offsets.
        assert_eq!(s.offsets_exact(), Some(0.5));
        assert_eq!(
            s.by_type["person"],
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        assert_eq!(
            s.by_type["organization"],
            Counts {
                tp: 0,
                fp: 2,
                fn_: 1
            }
        );
        assert_eq!(
            s.by_type["location"],
            Counts {
                tp: 0,
                fp: 2,
                fn_: 1
            }
        );
        assert_eq!(
            s.by_type["money"],
            Counts {
                tp: 0,
                fp: 0,
                fn_: 1
            }
        );
        assert!((s.macro_f1() - 0.25).abs() < 1e-12, "person 1, the rest 0");
        // Each error named, and placed.
        let (_, errs) = score_entities_with_errors(&g, &p);
        let got: Vec<(ErrorKind, &str, Option<&str>, Option<u32>)> = errs
            .iter()
            .map(|e| (e.kind, e.text.as_str(), e.predicted.as_deref(), e.page))
            .collect();
        assert_eq!(
            got,
            [
                (
                    ErrorKind::WrongSpan,
                    "Vistula Basin Authority",
                    Some("Vistula Basin"),
                    Some(1)
                ),
                (
                    ErrorKind::WrongType,
                    "Kraków",
                    Some("organization"),
                    Some(1)
                ),
                (ErrorKind::Missed, "PLN 214,000", None, Some(2)),
                (ErrorKind::Spurious, "Tarnobrzeg", None, Some(2)),
                (ErrorKind::Spurious, "Poland", None, None),
            ]
        );
    }

    #[test]
    fn without_offsets_entities_are_compared_as_a_set_per_document() {
        let g = [
            gold("Helena Kowalczyk", "person", None),
            gold("Kraków", "location", Some((1, 0, 6)).filter(|_| false)),
        ];
        let p = [
            pred("helena  KOWALCZYK", "person", Some((1, 0, 16))),
            pred("Helena Kowalczyk", "person", Some((2, 0, 16))), // the same entity again
            pred("Krakow", "organization", None),
        ];
        let s = score_entities(&g, &p);
        assert_eq!(s.level, Some(Level::Entity));
        assert_eq!(
            s.strict,
            Counts {
                tp: 1,
                fp: 1,
                fn_: 1
            }
        );
        assert_eq!(
            s.type_blind,
            Counts {
                tp: 2,
                fp: 0,
                fn_: 0
            }
        );
        assert_eq!(s.offsets, None);
        // Both empty is perfect; something against nothing is not.
        assert_eq!(score_entities(&[], &[]).strict.f1(), 1.0);
        assert_eq!(score_entities(&[], &p).strict.f1(), 0.0);
    }

    #[test]
    fn metadata_fields_are_matched_exactly_normalized_as_sets_and_as_dates() {
        let gold = json!({"title": "Supply Agreement", "authors": ["Helena Kowalczyk", "Piotr Zieliński"],
                          "date": "2025-03-14", "language": "en", "parties": null});
        let got = json!({"title": "SUPPLY agreement.", "authors": ["Piotr Zielinski"],
                         "date": "14 March 2025", "language": "de", "parties": []});
        let s = score_metadata(gold.as_object().unwrap(), &got);
        let by: BTreeMap<&str, (f64, f64)> = s
            .iter()
            .map(|f| (f.field.as_str(), (f.exact, f.normalized)))
            .collect();
        assert_eq!(by["title"], (0.0, 1.0));
        // One of two authors, after normalization: P 1, R 0.5.
        assert_eq!(by["authors"].0, 0.0);
        assert!((by["authors"].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(by["date"], (0.0, 1.0));
        assert_eq!(by["language"], (0.0, 0.0));
        assert_eq!(by["parties"], (1.0, 1.0), "none in the gold, none answered");
    }

    #[test]
    fn rouge_counts_words_pairs_and_the_longest_common_subsequence() {
        let r = rouge("the cat sat on the mat", "the cat was on the mat");
        // Words: 5 of 6 shared each way; pairs: "the cat", "on the", "the mat" = 3 of 5.
        assert!((r.rouge1 - 5.0 / 6.0).abs() < 1e-12);
        assert!((r.rouge2 - 3.0 / 5.0).abs() < 1e-12);
        assert!((r.rouge_l - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(rouge("", "anything").rouge1, 0.0);
        assert_eq!(rouge("Same words.", "same WORDS").rouge_l, 1.0);
    }

    #[test]
    fn summary_sentences_are_backed_by_their_section_or_not() {
        let section = "The survey found nitrate levels of 41 mg/l near Sandomierz in October.";
        // Backed; and a sentence with a number the section does not have.
        let summary = "Nitrate levels near Sandomierz were high. Levels reached 95 mg/l.";
        assert_eq!(supported_sentences(summary, section), (2, 1));
        // Nothing of the section: not backed. A sentence of stopwords only is not counted.
        assert_eq!(
            supported_sentences("Penguins dance gracefully. This is that.", section),
            (1, 0)
        );
        assert_eq!(
            split_sentences("Dr. Kowalczyk wrote 3.5 pages! Fine"),
            ["Dr.", "Kowalczyk wrote 3.5 pages!", "Fine"]
        );
    }

    #[test]
    fn every_summary_is_checked_for_support_and_length_without_a_reference() {
        let gold: GoldDocument =
            serde_json::from_value(json!({"document": {"path": "a.txt"}})).unwrap();
        let result = json!({"id": "abc", "sections": [
            {"id": 0, "title": "One", "summary": "Nitrate levels were high near Sandomierz."},
            {"id": 1, "title": "Two", "summary": "Penguins dance gracefully on ice floes near the pole."},
            {"id": 2, "title": "Three", "summary": null}]});
        let mut sources = Sources {
            summary_max_words: Some(8),
            ..Sources::default()
        };
        let text = |t: &str, x: &str| (t.to_owned(), x.to_owned());
        sources.sections.insert(
            ("abc".into(), 0),
            text("One", "Nitrate levels near Sandomierz were high."),
        );
        sources
            .sections
            .insert(("abc".into(), 1), text("Two", "The board met in March."));
        // Another section's text under this id (a different ingest): not used.
        sources
            .sections
            .insert(("abc".into(), 2), text("Elsewhere", "Nothing."));
        let c = score_document(&gold, &result, &sources).summary_checks;
        assert_eq!(
            c,
            SummaryChecks {
                summaries: 2,
                sentences: 2,
                supported: 1,
                within_limit: 1,
                limited: 2
            }
        );
        assert_eq!(c.support(), Some(0.5));
        assert_eq!(c.length_compliance(), Some(0.5));
    }

    #[test]
    fn a_page_range_reference_takes_the_sections_within_it() {
        let gold: GoldDocument = serde_json::from_value(json!({
            "document": {"path": "a.pdf"},
            "summaries": [{"pages": [2, 3], "text": "Cats sleep. Dogs bark."},
                          {"pages": [9, 9], "text": "Nothing there."}]
        }))
        .unwrap();
        let result = json!({"id": "x", "sections": [
            {"id": 1, "title": "One", "pages": [1, 1], "summary": "Birds sing.", "state": "done"},
            {"id": 2, "title": "Two", "pages": [2, 2], "summary": "Cats sleep.", "state": "done"},
            {"id": 3, "title": "Three", "pages": [3, 3], "summary": "Dogs bark.", "state": "done"}]});
        let s = score_document(&gold, &result, &Sources::default());
        assert_eq!(s.summaries[0].0.as_deref(), Some("pages 2–3"));
        assert_eq!(s.summaries[0].1.unwrap().rouge_l, 1.0);
        assert_eq!(s.summaries[1].1, None, "no section within pages 9–9");
    }

    #[test]
    fn a_task_the_run_did_not_do_is_not_scored() {
        let gold: GoldDocument = serde_json::from_value(json!({
            "document": {"path": "a.pdf"},
            "entities": [{"text": "Kraków", "type": "location"}],
            "metadata": {"title": "Field report"},
            "summaries": [{"text": "A survey of the Vistula."}]
        }))
        .unwrap();
        // `--tasks metadata`: pages and sections skipped.
        let result = json!({"id": "x", "metadata": {"title": "Field report"}, "metadata_state": "done",
            "pages": [{"number": 1, "entities": "skipped"}],
            "sections": [{"id": 1, "title": "Intro", "summary": null, "state": "skipped"}]});
        let s = score_document(&gold, &result, &Sources::default());
        assert_eq!((s.entities, s.summaries.len()), (None, 0));
        assert_eq!(s.metadata[0].normalized, 1.0);
        // Asked and failed is scored (0), not left out.
        let mut failed = result.clone();
        failed["sections"][0]["state"] = json!("failed");
        let s = score_document(&gold, &failed, &Sources::default());
        assert_eq!(s.summaries, [(None, None)]);
    }

    #[test]
    fn a_result_file_is_scored_against_its_gold_line() {
        let gold: GoldDocument = serde_json::from_value(json!({
            "document": {"path": "river.txt"},
            "entities": [{"text": "Kraków", "type": "location", "page": 1, "start": 4, "end": 10}],
            "metadata": {"title": "Field report"},
            "summaries": [{"section": "Recommendations", "text": "Sample again in March."}]
        }))
        .unwrap();
        let result = json!({
            "entities": [{"text": "Kraków", "type": "location", "mentions": [
                {"text": "Kraków", "type": "location", "page": 1, "start": 4, "end": 10, "grounding": "exact"}]}],
            "metadata": {"title": "Field Report"},
            "sections": [{"title": "RECOMMENDATIONS", "summary": "Sample again in March 2026."}]
        });
        let s = score_document(&gold, &result, &Sources::default());
        assert_eq!(
            s.entities.unwrap().strict,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        assert_eq!(s.metadata[0].normalized, 1.0);
        let r = s.summaries[0].1.unwrap();
        assert!((r.rouge1 - 2.0 * 4.0 / 9.0).abs() < 1e-12, "{r:?}");
    }
}
