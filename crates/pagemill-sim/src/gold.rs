//! Gold mode: the simulator answers from a gold file (the JSONL `pagemill eval` reads) and
//! makes errors at rates you set, so a test knows exactly what a run should score.
//!
//! Each gold entity's fate is drawn once, from the profile's seed, its document and its place
//! in the file — not from the request — so an entity gets the same answer in any pack, on any
//! retry, in any run:
//! - **dropped** (share `drop`): left out of the answer;
//! - **retyped** (share `retype`): answered with another type (person, organization, location,
//!   law or product: types with no shape check, which the pipeline would otherwise drop);
//! - **shifted** (share `shift`): answered with a span that overlaps the gold's but is not it —
//!   with offsets, the mention and the next (else the previous) word, when that word belongs to
//!   no other gold mention and both texts occur once on the page (otherwise it is kept, so
//!   that grounding cannot place it elsewhere); without offsets, the text less its last word.
//!   Dates and amounts are kept instead: a part of one is no date or amount, and the pipeline
//!   rightly drops it;
//! - **kept**: answered as the gold has it.
//!
//! The shares are of all entities and exclusive. Each metadata field is **corrupted** with
//! probability `metadata`: a string loses its last word (one word: null), a list its last
//! element. Reference summaries are answered as written. Items the gold does not cover get the
//! simulator's usual answer.
//!
//! Which gold line an item belongs to: a line whose `document.id` starts the item's id;
//! otherwise, for a page, the line whose entities on that page sit at their offsets in the
//! page's text (or, without offsets, whose entity texts occur there most often); for metadata,
//! the line whose metadata strings occur in the text most often. `GET /sim/gold` tells what was
//! answered for each gold entity and field ([`Truth`]).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;

use pagemill_client::wire::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Gold mode's settings (`[gold]` in a profile).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldMode {
    /// The gold file (JSONL, `schemas/gold.schema.json`); relative to the profile's file.
    pub file: PathBuf,
    /// Share of entities left out.
    pub drop: f64,
    /// Share of entities given another type.
    pub retype: f64,
    /// Share of entities given an overlapping but different span.
    pub shift: f64,
    /// Probability that a metadata field is corrupted.
    pub metadata: f64,
}

impl Default for GoldMode {
    fn default() -> Self {
        Self {
            file: PathBuf::from("gold.jsonl"),
            drop: 0.0,
            retype: 0.0,
            shift: 0.0,
            metadata: 0.0,
        }
    }
}

/// What happened to a gold entity or field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Never asked for (its page was not sent).
    Unasked,
    /// Answered as the gold has it.
    Kept,
    /// Left out.
    Dropped,
    /// Answered with another type.
    Retyped,
    /// Answered with an overlapping, different span.
    Shifted,
    /// A metadata field answered wrong.
    Corrupted,
}

/// One gold entity and what the simulator answered for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityTruth {
    /// The gold line, by its path or id.
    pub document: String,
    /// The gold's text.
    pub text: String,
    /// The gold's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The gold's page and offsets.
    pub page: Option<u32>,
    /// Start offset.
    pub start: Option<usize>,
    /// End offset.
    pub end: Option<usize>,
    /// What was answered (the last time it was asked).
    pub outcome: Outcome,
    /// The text answered.
    pub answered_text: Option<String>,
    /// The type answered.
    pub answered_type: Option<String>,
}

/// One gold metadata field and what was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldTruth {
    /// The gold line.
    pub document: String,
    /// The field.
    pub field: String,
    /// Kept, corrupted or unasked.
    pub outcome: Outcome,
    /// The gold's value.
    pub gold: Value,
    /// The value answered.
    pub answered: Value,
}

/// Everything gold mode answered (`GET /sim/gold`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Every gold entity, in file order.
    pub entities: Vec<EntityTruth>,
    /// Every gold metadata field, in file order.
    pub metadata: Vec<FieldTruth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    Retype,
    Shift,
}

#[derive(Debug)]
struct Entity {
    text: String,
    kind: String,
    span: Option<(u32, usize, usize)>,
    fate: Fate,
}

#[derive(Debug)]
struct Doc {
    id: Option<String>,
    entities: Vec<Entity>,
    metadata: Map<String, Value>,
    corrupt: Vec<bool>,
    summaries: Vec<(String, String)>,
}

/// A loaded gold file and the record of what was answered.
#[derive(Debug)]
pub(crate) struct Gold {
    docs: Vec<Doc>,
    truth: Mutex<Truth>,
    /// Document short ids already placed.
    learned: Mutex<std::collections::HashMap<String, usize>>,
}

/// Types a retyped entity may take, in turn.
const RETYPES: [&str; 5] = ["person", "organization", "location", "law", "product"];

fn draw(seed: u64, doc: &str, what: &str, index: usize) -> f64 {
    let mut h = DefaultHasher::new();
    (seed, doc, what, index).hash(&mut h);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

impl Gold {
    /// Reads `mode.file` and draws every fate.
    pub(crate) fn load(mode: &GoldMode, seed: u64) -> Result<Self, crate::SimError> {
        let bad = |line: Option<usize>, why: String| crate::SimError::Gold {
            file: mode.file.clone(),
            line,
            why,
        };
        let text = std::fs::read_to_string(&mode.file).map_err(|e| bad(None, e.to_string()))?;
        let mut docs = Vec::new();
        let mut truth = Truth::default();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).map_err(|e| bad(Some(n + 1), e.to_string()))?;
            let path = v["document"]["path"].as_str().map(str::to_owned);
            let id = v["document"]["id"].as_str().map(str::to_owned);
            let label = path.or_else(|| id.clone()).unwrap_or_else(|| "?".into());
            let mut entities = Vec::new();
            for (i, e) in v["entities"].as_array().into_iter().flatten().enumerate() {
                let (Some(t), Some(k)) = (e["text"].as_str(), e["type"].as_str()) else {
                    continue;
                };
                let span = match (e["page"].as_u64(), e["start"].as_u64(), e["end"].as_u64()) {
                    (Some(p), Some(s), Some(t)) => Some((p as u32, s as usize, t as usize)),
                    _ => None,
                };
                let u = draw(seed, &label, "entity", i);
                let fate = if u < mode.drop {
                    Fate::Drop
                } else if u < mode.drop + mode.retype {
                    Fate::Retype
                } else if u < mode.drop + mode.retype + mode.shift {
                    Fate::Shift
                } else {
                    Fate::Keep
                };
                truth.entities.push(EntityTruth {
                    document: label.clone(),
                    text: t.to_owned(),
                    kind: k.to_owned(),
                    page: span.map(|s| s.0),
                    start: span.map(|s| s.1),
                    end: span.map(|s| s.2),
                    outcome: Outcome::Unasked,
                    answered_text: None,
                    answered_type: None,
                });
                entities.push(Entity {
                    text: t.to_owned(),
                    kind: k.to_owned(),
                    span,
                    fate,
                });
            }
            let metadata = v["metadata"].as_object().cloned().unwrap_or_default();
            let corrupt = metadata
                .iter()
                .enumerate()
                .map(|(i, (field, gold))| {
                    truth.metadata.push(FieldTruth {
                        document: label.clone(),
                        field: field.clone(),
                        outcome: Outcome::Unasked,
                        gold: gold.clone(),
                        answered: Value::Null,
                    });
                    draw(seed, &label, "metadata", i) < mode.metadata
                })
                .collect();
            let summaries = v["summaries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    Some((
                        s["section"].as_str()?.to_owned(),
                        s["text"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            docs.push(Doc {
                id,
                entities,
                metadata,
                corrupt,
                summaries,
            });
        }
        Ok(Self {
            docs,
            truth: Mutex::new(truth),
            learned: Mutex::default(),
        })
    }

    /// What was answered so far.
    pub(crate) fn truth(&self) -> Truth {
        self.truth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The answer to a pipeline request whose items the gold covers (`None`: answer as usual).
    /// Items of a pack the gold does not cover get the usual answer (`usual`, when the request
    /// has a schema), else an empty list or the item's first words.
    pub(crate) fn answer(
        &self,
        response_format: &Value,
        messages: &[Message],
        usual: Option<Value>,
    ) -> Option<Value> {
        let items = crate::content::prompt_items_exact(messages);
        let (first_id, first_text) = items.first()?;
        let (_, target) = first_id.rsplit_once(':')?;
        if target == "doc" {
            return self.metadata(first_id, first_text, response_format);
        }
        let usual: Vec<Value> = usual
            .and_then(|v| v.get("items").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        let mut covered = false;
        let mut answers = Vec::new();
        for (n, (id, text)) in items.iter().enumerate() {
            let (short, target) = id.rsplit_once(':')?;
            let gold = if let Some(page) = target.strip_prefix('p').and_then(|p| p.parse().ok()) {
                self.entities(short, page, text)
                    .map(|list| json!({"id": id, "entities": list}))
            } else if target.starts_with('s') {
                self.summary(short, text)
                    .map(|s| json!({"id": id, "summary": s}))
            } else {
                return None;
            };
            covered |= gold.is_some();
            let entry = gold.or_else(|| usual.get(n).cloned()).unwrap_or_else(|| {
                if target.starts_with('p') {
                    json!({"id": id, "entities": []})
                } else {
                    let words: Vec<&str> = text.split_whitespace().take(12).collect();
                    json!({"id": id, "summary": words.join(" ")})
                }
            });
            answers.push(entry);
        }
        covered.then(|| json!({ "items": answers }))
    }

    /// The gold line an item belongs to: by id; else the one an earlier item of the same
    /// document was found to be; else the best `score` above 0 (remembered).
    fn doc_of(&self, short: &str, score: impl Fn(&Doc) -> usize) -> Option<usize> {
        if let Some(i) = self.docs.iter().position(|d| {
            // As `pagemill eval` matches ids: the whole id, or its first 8 or more characters.
            d.id.as_deref()
                .is_some_and(|id| id.len() >= 8 && (id.starts_with(short) || short.starts_with(id)))
        }) {
            return Some(i);
        }
        let mut learned = self.learned.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&i) = learned.get(short) {
            return Some(i);
        }
        let (best, n) = self
            .docs
            .iter()
            .enumerate()
            .map(|(i, d)| (i, score(d)))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))?;
        (n > 0).then(|| {
            learned.insert(short.to_owned(), best);
            best
        })
    }

    fn entities(&self, short: &str, page: u32, text: &str) -> Option<Vec<Value>> {
        let chars: Vec<char> = text.chars().collect();
        // Compared with white space folded: a name may wrap across lines in the page.
        let at = |s: usize, e: usize| -> Option<String> {
            (s <= e && e <= chars.len()).then(|| squash(&chars[s..e].iter().collect::<String>()))
        };
        let placed = |d: &Doc| {
            d.entities
                .iter()
                .filter(|e| match e.span {
                    Some((p, s, t)) => p == page && at(s, t) == Some(squash(&e.text)),
                    None => occurrences(text, &e.text) > 0,
                })
                .count()
        };
        let d = self.doc_of(short, placed)?;
        let doc = &self.docs[d];
        let offset_base = self.offset_of(d);
        // Where other gold mentions of this page sit, so a shift does not run into one.
        let taken: Vec<(usize, usize)> = doc
            .entities
            .iter()
            .filter_map(|e| e.span.filter(|s| s.0 == page).map(|s| (s.1, s.2)))
            .collect();
        let mut out: Vec<(usize, Value)> = Vec::new();
        let mut truth = self.truth.lock().unwrap_or_else(|p| p.into_inner());
        for (i, e) in doc.entities.iter().enumerate() {
            let place = match e.span {
                Some((p, s, t)) if p == page && at(s, t) == Some(squash(&e.text)) => s,
                Some(_) => continue,
                None => match char_index_of(text, &e.text) {
                    Some(s) => s,
                    None => continue,
                },
            };
            let record = &mut truth.entities[offset_base + i];
            let (outcome, answer_text, kind) = match e.fate {
                Fate::Drop => (Outcome::Dropped, None, e.kind.clone()),
                Fate::Retype => {
                    let k = RETYPES
                        .iter()
                        .position(|k| *k == e.kind)
                        .map_or(0, |j| j + 1);
                    let kind = RETYPES[k % RETYPES.len()].to_owned();
                    (Outcome::Retyped, Some(e.text.clone()), kind)
                }
                Fate::Shift if !RETYPES.contains(&e.kind.as_str()) => {
                    (Outcome::Kept, Some(e.text.clone()), e.kind.clone())
                }
                Fate::Shift => match shifted(text, &chars, e, &taken)
                    .filter(|t| doc.entities.iter().all(|o| !o.text.eq_ignore_ascii_case(t)))
                {
                    Some(t) => (Outcome::Shifted, Some(t), e.kind.clone()),
                    None => (Outcome::Kept, Some(e.text.clone()), e.kind.clone()),
                },
                Fate::Keep => (Outcome::Kept, Some(e.text.clone()), e.kind.clone()),
            };
            record.outcome = outcome;
            record.answered_type = answer_text.as_ref().map(|_| kind.clone());
            record.answered_text.clone_from(&answer_text);
            if let Some(t) = answer_text {
                out.push((place, json!({"text": t, "type": kind})));
            }
        }
        // In the order of the text, as grounding takes repeats in turn.
        out.sort_by_key(|(place, _)| *place);
        Some(out.into_iter().map(|(_, v)| v).collect())
    }

    fn offset_of(&self, doc: usize) -> usize {
        self.docs[..doc].iter().map(|d| d.entities.len()).sum()
    }

    fn summary(&self, short: &str, text: &str) -> Option<String> {
        let title = text
            .lines()
            .map(|l| l.trim().trim_start_matches('#').trim())
            .find(|l| !l.is_empty())?;
        let fold = |s: &str| {
            s.to_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let want = fold(title);
        let has = |d: &Doc| d.summaries.iter().filter(|(t, _)| fold(t) == want).count();
        let d = self.doc_of(short, has)?;
        self.docs[d]
            .summaries
            .iter()
            .find(|(t, _)| fold(t) == want)
            .map(|(_, s)| s.clone())
    }

    fn metadata(&self, id: &str, text: &str, response_format: &Value) -> Option<Value> {
        let short = id.rsplit_once(':').map_or(id, |(s, _)| s);
        let lower = text.to_lowercase();
        let found = |d: &Doc| {
            d.metadata
                .values()
                .flat_map(|v| match v {
                    Value::Array(a) => a.clone(),
                    v => vec![v.clone()],
                })
                .filter(|v| {
                    v.as_str()
                        .is_some_and(|s| !s.is_empty() && lower.contains(&s.to_lowercase()))
                })
                .count()
        };
        let d = self.doc_of(short, found)?;
        let doc = &self.docs[d];
        let base: usize = self.docs[..d].iter().map(|x| x.metadata.len()).sum();
        let mut truth = self.truth.lock().unwrap_or_else(|p| p.into_inner());
        // Every field the answer's schema asks for, empty unless the gold has it.
        let mut out = Map::new();
        let props = response_format
            .pointer("/json_schema/schema/properties")
            .and_then(Value::as_object);
        for (field, spec) in props.into_iter().flatten() {
            let list = spec["type"] == "array";
            out.insert(field.clone(), if list { json!([]) } else { Value::Null });
        }
        for (i, (field, gold)) in doc.metadata.iter().enumerate() {
            let corrupt = doc.corrupt[i];
            let answered = if corrupt {
                corrupted(gold)
            } else {
                gold.clone()
            };
            let record = &mut truth.metadata[base + i];
            record.outcome = if corrupt {
                Outcome::Corrupted
            } else {
                Outcome::Kept
            };
            record.answered = answered.clone();
            out.insert(field.clone(), answered);
        }
        Some(Value::Object(out))
    }
}

/// A wrong value close to the right one: a string less its last word, a list less its last
/// element.
fn corrupted(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let words: Vec<&str> = s.split_whitespace().collect();
            if words.len() <= 1 {
                Value::Null
            } else {
                Value::String(words[..words.len() - 1].join(" "))
            }
        }
        Value::Array(a) if !a.is_empty() => Value::Array(a[..a.len() - 1].to_vec()),
        _ => Value::Null,
    }
}

/// White space runs as one space.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric()
}

/// Word-bounded occurrences of `needle` in `hay`.
fn occurrences(hay: &str, needle: &str) -> usize {
    bounded_starts(hay, needle).len()
}

fn bounded_starts(hay: &str, needle: &str) -> Vec<usize> {
    if needle.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (s, _) in hay.match_indices(needle) {
        let e = s + needle.len();
        let before = hay[..s].chars().next_back().is_some_and(is_word);
        let after = hay[e..].chars().next().is_some_and(is_word);
        let starts = needle.chars().next().is_some_and(is_word);
        let ends = needle.chars().next_back().is_some_and(is_word);
        if !(starts && before || ends && after) {
            out.push(s);
        }
    }
    out
}

/// Character index of the first word-bounded occurrence.
fn char_index_of(hay: &str, needle: &str) -> Option<usize> {
    let b = *bounded_starts(hay, needle).first()?;
    Some(hay[..b].chars().count())
}

/// The shifted answer of `e` (see the module's doc), or `None` when no safe shift exists.
fn shifted(text: &str, chars: &[char], e: &Entity, taken: &[(usize, usize)]) -> Option<String> {
    let Some((_, s, t)) = e.span else {
        // Without offsets: the text less its last word, still found in the page.
        let words: Vec<&str> = e.text.split_whitespace().collect();
        return (words.len() > 1).then(|| words[..words.len() - 1].join(" "));
    };
    if occurrences(text, &e.text) != 1 {
        return None;
    }
    let free = |a: usize, b: usize| taken.iter().all(|&(x, y)| b <= x || y <= a);
    // The next word: skip spaces, then word characters.
    let mut j = t;
    while j < chars.len() && chars[j] == ' ' {
        j += 1;
    }
    let k = (j..chars.len())
        .find(|&k| !is_word(chars[k]))
        .unwrap_or(chars.len());
    let forward = (j > t && k > j && free(t, k)).then_some((s, k));
    // Else the previous word.
    let backward = || {
        let mut j = s;
        while j > 0 && chars[j - 1] == ' ' {
            j -= 1;
        }
        let k = (0..j)
            .rev()
            .find(|&k| !is_word(chars[k]))
            .map_or(0, |k| k + 1);
        (j < s && k < j && free(k, s)).then_some((k, t))
    };
    let (a, b) = forward.or_else(backward)?;
    let span: String = chars[a..b].iter().collect();
    (occurrences(text, &span) == 1).then_some(span)
}

impl Truth {
    /// Entities by outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.entities
            .iter()
            .filter(|e| e.outcome == outcome)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(text: &str, span: (u32, usize, usize)) -> Entity {
        Entity {
            text: text.into(),
            kind: "person".into(),
            span: Some(span),
            fate: Fate::Shift,
        }
    }

    #[test]
    fn a_shift_takes_the_next_free_word_else_the_previous_one_and_never_a_gold_mention() {
        let text = "Then Ada Lovelace wrote to Babbage.";
        let chars: Vec<char> = text.chars().collect();
        let ada = entity("Ada Lovelace", (1, 5, 17));
        assert_eq!(
            shifted(text, &chars, &ada, &[(5, 17)]).as_deref(),
            Some("Ada Lovelace wrote")
        );
        // "wrote" taken by another mention: the previous word instead.
        assert_eq!(
            shifted(text, &chars, &ada, &[(5, 17), (18, 23)]).as_deref(),
            Some("Then Ada Lovelace")
        );
        let babbage = entity("Babbage", (1, 27, 34));
        assert_eq!(
            shifted(text, &chars, &babbage, &[(27, 34), (5, 17)]).as_deref(),
            Some("to Babbage")
        );
        // A text found twice is never shifted: grounding could place it at the other one.
        let twice = "Ada met Ada.";
        let c: Vec<char> = twice.chars().collect();
        assert_eq!(shifted(twice, &c, &entity("Ada", (1, 0, 3)), &[]), None);
    }

    #[test]
    fn fates_follow_the_rates_and_do_not_depend_on_the_request() {
        let dir = std::env::temp_dir().join(format!("pagemill-gold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("g.jsonl");
        let entities: Vec<Value> = (0..1000)
            .map(|i| json!({"text": format!("Name{i}"), "type": "person"}))
            .collect();
        std::fs::write(
            &file,
            json!({"document": {"path": "a.txt"}, "entities": entities}).to_string(),
        )
        .unwrap();
        let mode = GoldMode {
            file,
            drop: 0.2,
            retype: 0.1,
            shift: 0.1,
            metadata: 0.0,
        };
        let a = Gold::load(&mode, 7).unwrap();
        let b = Gold::load(&mode, 7).unwrap();
        let fates = |g: &Gold| {
            g.docs[0]
                .entities
                .iter()
                .map(|e| e.fate)
                .collect::<Vec<_>>()
        };
        assert_eq!(fates(&a), fates(&b));
        let n = |f: Fate| fates(&a).iter().filter(|x| **x == f).count();
        // 1,000 draws: each share within 5 points of its rate.
        assert!((150..250).contains(&n(Fate::Drop)), "{}", n(Fate::Drop));
        assert!((50..150).contains(&n(Fate::Retype)), "{}", n(Fate::Retype));
        assert!((50..150).contains(&n(Fate::Shift)), "{}", n(Fate::Shift));
        assert_ne!(fates(&a), fates(&Gold::load(&mode, 8).unwrap()));
    }

    #[test]
    fn corrupted_values_lose_their_last_word_or_element() {
        assert_eq!(
            corrupted(&json!("Field Report 2025")),
            json!("Field Report")
        );
        assert_eq!(corrupted(&json!("Report")), Value::Null);
        assert_eq!(corrupted(&json!(["A", "B"])), json!(["A"]));
    }
}
