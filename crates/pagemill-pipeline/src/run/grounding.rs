//! Grounding: tying each mention a model returned to where it is in the page, and merging
//! mentions into per-document entities.
//!
//! A model's mention is trusted only as far as the source backs it. Each is looked up in its
//! page, in order of decreasing strictness:
//! 1. **exact**: the same characters;
//! 2. **normalized**: equal after folding case, whitespace runs, quotes and dashes (models
//!    re-flow line breaks and straighten quotes);
//! 3. **fuzzy**: the best window of page words within a small edit distance (a dropped accent,
//!    an OCR slip), at a similarity of at least [`FUZZY_MIN`];
//!
//! else it is **ungrounded** and flagged. Repeated mentions of the same text take successive
//! occurrences in the page, so "Paris … Paris" yields two mentions at two places, never one
//! place twice. Offsets are in characters (Unicode scalar values) within the page's text.
//!
//! Merging is conservative: mentions join one entity only when they have the same type and the
//! same normalized text, and only for types that name one thing (people, organizations,
//! places, laws, products). Values — dates, amounts — that repeat are distinct items ("$5" on
//! two pages is two payments), so each stays its own entity.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Least similarity (1 − normalized edit distance) a fuzzy match needs.
pub const FUZZY_MIN: f64 = 0.85;

/// How a mention was found in its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grounding {
    /// Character for character.
    Exact,
    /// Equal after folding case, whitespace, quotes and dashes.
    Normalized,
    /// Close enough by edit distance.
    Fuzzy,
    /// Not found in the page.
    None,
}

/// A mention, placed in its page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// The source's text at the place found (the model's text when ungrounded).
    pub text: String,
    /// What the model wrote, when it differs from `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_text: Option<String>,
    /// Entity type.
    #[serde(rename = "type")]
    pub kind: String,
    /// 1-based page number.
    pub page: u32,
    /// First character, within the page's text (`None` when ungrounded).
    pub start: Option<usize>,
    /// One past the last character.
    pub end: Option<usize>,
    /// How it was found.
    pub grounding: Grounding,
    /// Similarity of the match (1 for exact and normalized).
    pub score: f64,
    /// Why it is kept only under `--ungrounded keep-flagged` (`not_a_date`, `not_an_amount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// Places the mentions `(text, type)` a model returned for one page.
///
/// Longer mentions are placed first, and a mention is not placed inside the span another
/// mention already holds while a free occurrence exists: "Vistula" is then the river named on
/// its own, not the start of "Vistula Basin Authority" the same answer named (measured with the
/// simulator's gold mode on `testdata/gold/examples-mentions.jsonl`: strict entity F1 with
/// every mention answered right went from 0.98 to 1.00). Repeats of one text take its
/// occurrences in turn, in the answer's order.
pub fn ground(page_text: &str, page: u32, mentions: &[(String, String)]) -> Vec<Mention> {
    let norm = Normalized::of(page_text);
    let chars: Vec<(usize, char)> = page_text.char_indices().collect();
    let char_at = |byte: usize| chars.partition_point(|(b, _)| *b < byte);
    // Where the next search for a given text starts, so repeats take later occurrences.
    let mut next_from: HashMap<String, usize> = HashMap::new();
    // Byte spans placed so far, with their folded text.
    let mut claimed: Vec<(usize, usize, String)> = Vec::new();
    let mut order: Vec<usize> = (0..mentions.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(mentions[i].0.trim().len()));
    let mut out: Vec<Option<Mention>> = vec![None; mentions.len()];
    for i in order {
        let (text, kind) = &mentions[i];
        let text = text.trim();
        let mut m = Mention {
            text: text.to_owned(),
            answer_text: None,
            kind: kind.clone(),
            page,
            start: None,
            end: None,
            grounding: Grounding::None,
            score: 0.0,
            flag: None,
        };
        if text.is_empty() {
            out[i] = Some(m);
            continue;
        }
        let folded = fold(text);
        let from = next_from.get(&folded).copied().unwrap_or(0);
        let free = |s: usize, e: usize| {
            claimed
                .iter()
                .all(|(a, b, t)| *t == folded || e <= *a || *b <= s)
        };
        let found = find_free(page_text, text, from, &free)
            .map(|(s, e)| (s, e, Grounding::Exact, 1.0))
            .or_else(|| {
                find_exact(page_text, text, from).map(|(s, e)| (s, e, Grounding::Exact, 1.0))
            })
            .or_else(|| {
                norm.find(&folded, from)
                    .map(|(s, e)| (s, e, Grounding::Normalized, 1.0))
            })
            .or_else(|| {
                fuzzy(page_text, &folded, from).map(|(s, e, sc)| (s, e, Grounding::Fuzzy, sc))
            })
            // Every later occurrence is taken: a repeat falls back to the first one.
            .or_else(|| {
                (from > 0)
                    .then(|| find_exact(page_text, text, 0))
                    .flatten()
                    .map(|(s, e)| (s, e, Grounding::Exact, 1.0))
            });
        if let Some((s, e, how, score)) = found {
            next_from.insert(folded.clone(), e);
            claimed.push((s, e, folded));
            let source = &page_text[s..e];
            if source != text {
                m.answer_text = Some(text.to_owned());
            }
            m.text = source.to_owned();
            m.start = Some(char_at(s));
            m.end = Some(char_at(e));
            m.grounding = how;
            m.score = (score * 1000.0).round() / 1000.0;
        }
        out[i] = Some(m);
    }
    out.into_iter().flatten().collect()
}

/// The first exact occurrence at or after `from` that `free` accepts.
fn find_free(
    hay: &str,
    needle: &str,
    from: usize,
    free: &impl Fn(usize, usize) -> bool,
) -> Option<(usize, usize)> {
    let mut at = from;
    loop {
        let (s, e) = find_exact(hay, needle, at)?;
        if free(s, e) {
            return Some((s, e));
        }
        at = s + hay[s..].chars().next().map_or(1, char::len_utf8);
    }
}

/// Byte range of `needle` in `hay` at or after byte `from`, on word boundaries when the
/// needle starts or ends with a word character (so "Ann" is not found inside "Annex").
fn find_exact(hay: &str, needle: &str, from: usize) -> Option<(usize, usize)> {
    let mut at = from;
    while at <= hay.len() {
        let rel = hay.get(at..)?.find(needle)?;
        let s = at + rel;
        let e = s + needle.len();
        if bounded(hay, s, e) {
            return Some((s, e));
        }
        at = s + hay[s..].chars().next().map_or(1, char::len_utf8);
    }
    None
}

fn bounded(hay: &str, s: usize, e: usize) -> bool {
    let word = |c: char| c.is_alphanumeric();
    let starts_word = hay[s..].chars().next().is_some_and(word);
    let ends_word = hay[..e].chars().next_back().is_some_and(word);
    let before = hay[..s].chars().next_back().is_some_and(word);
    let after = hay[e..].chars().next().is_some_and(word);
    !((starts_word && before) || (ends_word && after))
}

/// Case, whitespace, quotes and dashes folded: the key of normalized matching and merging.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.extend(fold_char(c));
    }
    out
}

fn fold_char(c: char) -> impl Iterator<Item = char> {
    let c = match c {
        '\u{2018}' | '\u{2019}' | '\u{201B}' | '`' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201F}' => '"',
        '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
        '\u{00A0}' => ' ',
        c => c,
    };
    c.to_lowercase()
}

/// A page folded like [`fold`], with the byte offset in the page of every folded character.
struct Normalized {
    text: String,
    /// For each byte of `text`: (start, end) byte range of its source character in the page.
    origin: Vec<(usize, usize)>,
}

impl Normalized {
    fn of(page: &str) -> Self {
        let mut text = String::with_capacity(page.len());
        let mut origin = Vec::with_capacity(page.len());
        let mut pending_space: Option<(usize, usize)> = None;
        for (b, c) in page.char_indices() {
            let span = (b, b + c.len_utf8());
            if c.is_whitespace() {
                pending_space.get_or_insert(span);
                continue;
            }
            if let Some(sp) = pending_space.take()
                && !text.is_empty()
            {
                text.push(' ');
                origin.push(sp);
            }
            for f in fold_char(c) {
                let before = text.len();
                text.push(f);
                origin.extend(std::iter::repeat_n(span, text.len() - before));
            }
        }
        Self { text, origin }
    }

    /// The page byte range matching `folded`, starting at or after page byte `from`.
    fn find(&self, folded: &str, from: usize) -> Option<(usize, usize)> {
        if folded.is_empty() {
            return None;
        }
        let start_at = self.origin.partition_point(|o| o.0 < from);
        let mut at = start_at;
        while at < self.text.len() {
            let rel = self.text.get(at..)?.find(folded)?;
            let s = at + rel;
            let e = s + folded.len();
            if bounded(&self.text, s, e) {
                return Some((self.origin[s].0, self.origin[e - 1].1));
            }
            at = s + self.text[s..].chars().next().map_or(1, char::len_utf8);
        }
        None
    }
}

/// The best window of page words (as many as the mention has, ±1) within [`FUZZY_MIN`].
fn fuzzy(page: &str, folded: &str, from: usize) -> Option<(usize, usize, f64)> {
    let n = folded.split(' ').count();
    if folded.chars().count() < 4 || folded.len() > 300 {
        return None; // too short to tell a slip from another word; too long to be a name
    }
    let words: Vec<(usize, usize)> = word_spans(page).filter(|w| w.0 >= from).collect();
    let mut best: Option<(usize, usize, f64)> = None;
    for len in n.saturating_sub(1).max(1)..=n + 1 {
        for w in words.windows(len) {
            let (s, e) = (w[0].0, w[len - 1].1);
            let candidate = fold(&page[s..e]);
            let score = strsim::normalized_levenshtein(&candidate, folded);
            if score >= FUZZY_MIN && best.is_none_or(|b| score > b.2) {
                best = Some((s, e, score));
            }
        }
    }
    best
}

/// Byte spans of whitespace-separated words, with edge punctuation trimmed.
fn word_spans(page: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = 0;
    page.split_whitespace().filter_map(move |w| {
        let s = at + page[at..].find(w)?;
        at = s + w.len();
        let lead = w.len() - w.trim_start_matches(|c: char| !c.is_alphanumeric()).len();
        let core = w.trim_matches(|c: char| !c.is_alphanumeric());
        (!core.is_empty()).then(|| (s + lead, s + lead + core.len()))
    })
}

/// One entity of a document: the mentions that name the same thing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The most frequent surface form.
    pub text: String,
    /// Entity type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Every mention, in page and offset order.
    pub mentions: Vec<Mention>,
}

/// Types whose equal mentions name one thing (and so merge).
pub const MERGEABLE: [&str; 5] = ["person", "organization", "location", "law", "product"];

/// Merges a document's mentions into entities: same type and same folded text, for
/// [`MERGEABLE`] types only; the same place named twice (a model repeating itself) counts once.
pub fn merge(mut mentions: Vec<Mention>) -> Vec<Entity> {
    mentions.sort_by(|a, b| {
        (a.page, a.start, &a.kind, &a.text)
            .partial_cmp(&(b.page, b.start, &b.kind, &b.text))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    mentions.dedup_by(|a, b| {
        a.start.is_some()
            && a.page == b.page
            && a.start == b.start
            && a.end == b.end
            && a.kind == b.kind
    });
    let mut entities: Vec<Entity> = Vec::new();
    let mut index: HashMap<(String, String), usize> = HashMap::new();
    for m in mentions {
        let mergeable = MERGEABLE.contains(&m.kind.as_str());
        let key = (m.kind.clone(), fold(&m.text));
        match index.get(&key) {
            Some(&i) if mergeable => entities[i].mentions.push(m),
            _ => {
                if mergeable {
                    index.insert(key, entities.len());
                }
                entities.push(Entity {
                    text: m.text.clone(),
                    kind: m.kind.clone(),
                    mentions: vec![m],
                });
            }
        }
    }
    for e in &mut entities {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for m in &e.mentions {
            *counts.entry(m.text.as_str()).or_default() += 1;
        }
        if let Some((text, _)) = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        {
            e.text = text.to_owned();
        }
    }
    entities
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str, kind: &str) -> (String, String) {
        (text.into(), kind.into())
    }

    #[test]
    fn a_name_inside_a_longer_mention_is_placed_where_it_stands_alone() {
        let page =
            "Report for the Vistula Basin Authority: the Vistula between Kraków and the sea.";
        // In either order of the answer, "Vistula" is the river, not the authority's first word.
        for answer in [
            [
                m("Vistula", "location"),
                m("Vistula Basin Authority", "organization"),
            ],
            [
                m("Vistula Basin Authority", "organization"),
                m("Vistula", "location"),
            ],
        ] {
            let got = ground(page, 1, &answer);
            let river = got.iter().find(|x| x.kind == "location").unwrap();
            assert_eq!((river.start, river.end), (Some(44), Some(51)), "{answer:?}");
            let body = got.iter().find(|x| x.kind == "organization").unwrap();
            assert_eq!((body.start, body.end), (Some(15), Some(38)));
            assert_eq!(got[0].text, answer[0].0, "answer order is kept");
        }
        // With no free occurrence, a nested one is still better than none.
        let got = ground(
            "Vistula Basin Authority",
            1,
            &[
                m("Vistula Basin Authority", "organization"),
                m("Vistula", "location"),
            ],
        );
        assert_eq!(got[1].start, Some(0));
    }

    #[test]
    fn exact_matches_give_character_offsets_and_repeats_take_later_places() {
        let page = "Café Zoë in Paris. Later, Paris again; Annex by Ann.";
        let got = ground(
            page,
            3,
            &[
                m("Paris", "location"),
                m("Paris", "location"),
                m("Ann", "person"),
                m("Zoë", "organization"),
            ],
        );
        let chars: Vec<char> = page.chars().collect();
        let slice = |x: &Mention| {
            chars[x.start.unwrap()..x.end.unwrap()]
                .iter()
                .collect::<String>()
        };
        assert_eq!(got[0].grounding, Grounding::Exact);
        assert_eq!((got[0].start, got[0].end), (Some(12), Some(17)));
        assert_eq!(slice(&got[1]), "Paris");
        assert!(
            got[1].start > got[0].start,
            "the second Paris is the second place"
        );
        assert_eq!(slice(&got[2]), "Ann");
        assert_eq!(got[2].start, Some(48), "Ann, not the start of Annex");
        assert_eq!(slice(&got[3]), "Zoë", "offsets count characters, not bytes");
        assert!(got.iter().all(|x| x.page == 3));
    }

    #[test]
    fn reflowed_case_and_quote_changes_ground_as_normalized() {
        let page = "signed by the\nEuropean   Central Bank and \u{201C}Acme\u{2019}s\u{201D} board";
        let got = ground(
            page,
            1,
            &[
                m("european central bank", "organization"),
                m("\"Acme's\"", "organization"),
            ],
        );
        assert_eq!(got[0].grounding, Grounding::Normalized);
        assert_eq!(got[0].text, "European   Central Bank");
        assert_eq!(got[0].answer_text.as_deref(), Some("european central bank"));
        assert_eq!(got[1].grounding, Grounding::Normalized);
        assert_eq!(got[1].text, "\u{201C}Acme\u{2019}s\u{201D}");
    }

    #[test]
    fn small_slips_ground_as_fuzzy_and_inventions_are_flagged() {
        let page = "The Treaty of Westphalia ended the war in 1648.";
        let got = ground(
            page,
            2,
            &[
                m("Treaty of Westfalia", "law"),
                m("Congress of Vienna", "law"),
                m("", "law"),
            ],
        );
        assert_eq!(got[0].grounding, Grounding::Fuzzy);
        assert_eq!(got[0].text, "Treaty of Westphalia");
        assert!(got[0].score >= FUZZY_MIN && got[0].score < 1.0);
        assert_eq!(got[1].grounding, Grounding::None);
        assert_eq!((got[1].start, got[1].end), (None, None));
        assert_eq!(got[2].grounding, Grounding::None);
    }

    #[test]
    fn merging_joins_names_but_never_repeated_values() {
        let page1 = "Acme paid $5 to Jane Doe on 1 May.";
        let page2 = "ACME paid $5 again; Jane Doe and Doe.";
        let mut all = ground(
            page1,
            1,
            &[
                m("Acme", "organization"),
                m("$5", "money"),
                m("Jane Doe", "person"),
                m("1 May", "date"),
            ],
        );
        all.extend(ground(
            page2,
            2,
            &[
                m("ACME", "organization"),
                m("$5", "money"),
                m("Jane Doe", "person"),
                m("Jane Doe", "person"),
                m("Doe", "person"),
            ],
        ));
        let entities = merge(all);
        let find = |text: &str, kind: &str| {
            entities
                .iter()
                .filter(|e| fold(&e.text) == fold(text) && e.kind == kind)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("acme", "organization").len(), 1);
        assert_eq!(find("acme", "organization")[0].mentions.len(), 2);
        assert_eq!(find("$5", "money").len(), 2, "two payments stay two items");
        let jane = find("Jane Doe", "person");
        assert_eq!(jane.len(), 1);
        assert_eq!(
            jane[0].mentions.len(),
            2,
            "the same place repeated by the model counts once"
        );
        assert_eq!(
            find("Doe", "person").len(),
            1,
            "a surname is not merged into a full name"
        );
    }
}
