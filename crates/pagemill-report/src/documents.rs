//! One document as the ledger holds it: each page's text with its grounded entities, each
//! section's summary, the metadata. The ledger's newest finished result of each unit is shown
//! (a rerun with a new prompt version replaces what is shown, not what is kept).

use std::collections::{BTreeMap, HashMap};

use pagemill_pipeline::store::{History, StoreError, UnitBrief, UnitStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Options;

/// One document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DocumentView {
    /// Content hash.
    pub id: String,
    /// Path.
    pub path: String,
    /// `pdf`, `html`, …
    pub kind: String,
    /// Pages.
    pub pages: Vec<PageView>,
    /// Sections.
    pub sections: Vec<SectionView>,
    /// Metadata, when done.
    pub metadata: Option<Value>,
    /// Where metadata stands.
    pub metadata_state: String,
    /// Mentions by entity type.
    pub entity_counts: BTreeMap<String, u64>,
    /// Mentions not found in their page.
    pub ungrounded: u64,
}

/// One page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PageView {
    /// 1-based.
    pub number: u32,
    /// Readability.
    pub quality: String,
    /// Why it could not be read.
    pub failure: Option<String>,
    /// Where its entities stand: `done`, `failed`, `pending` or `not sent`.
    pub state: String,
    /// Why failed.
    pub reason: Option<String>,
    /// Its text.
    pub text: String,
    /// Its mentions, in page order (ungrounded ones last, without offsets).
    pub mentions: Vec<MentionView>,
}

/// One mention.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MentionView {
    /// As found in the page.
    pub text: String,
    /// Entity type.
    pub kind: String,
    /// Character offsets into the page text.
    pub start: Option<usize>,
    /// End (exclusive).
    pub end: Option<usize>,
    /// `exact`, `normalized`, `fuzzy` or `none`.
    pub grounding: String,
}

/// One section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SectionView {
    /// Id.
    pub id: u32,
    /// Title.
    pub title: String,
    /// Heading level.
    pub level: u8,
    /// First and last page.
    pub pages: (u32, u32),
    /// Summary, when done.
    pub summary: Option<String>,
    /// `done`, `failed`, `pending` or `not sent`.
    pub state: String,
    /// Why failed.
    pub reason: Option<String>,
}

/// A piece of page text: plain, or the mention at this index.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment<'a> {
    /// The text.
    pub text: &'a str,
    /// Index into the page's mentions.
    pub mention: Option<usize>,
}

/// Splits `text` at its mentions' character offsets. Offsets come from a file, so they are
/// checked: out of range, reversed or overlapping an earlier mention, a mention is not
/// highlighted (it is still listed).
pub fn segments<'a>(text: &'a str, mentions: &[MentionView]) -> Vec<Segment<'a>> {
    let bytes: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect();
    let mut spans: Vec<(usize, usize, usize)> = mentions
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let (s, e) = (m.start?, m.end?);
            (s < e && e < bytes.len()).then(|| (bytes[s], bytes[e], i))
        })
        .collect();
    spans.sort();
    let mut out = Vec::new();
    let mut at = 0;
    for (s, e, i) in spans {
        if s < at {
            continue;
        }
        if s > at {
            out.push(Segment {
                text: &text[at..s],
                mention: None,
            });
        }
        out.push(Segment {
            text: &text[s..e],
            mention: Some(i),
        });
        at = e;
    }
    if at < text.len() {
        out.push(Segment {
            text: &text[at..],
            mention: None,
        });
    }
    out
}

fn state(u: Option<&&UnitBrief>) -> (String, Option<String>) {
    match u.map(|u| (u.status, u.reason.clone())) {
        Some((UnitStatus::Done, _)) => ("done".into(), None),
        Some((UnitStatus::Failed, reason)) => ("failed".into(), reason),
        Some(_) => ("pending".into(), None),
        None => ("not sent".into(), None),
    }
}

fn mentions(result: Option<&Value>) -> Vec<MentionView> {
    let Some(list) = result.and_then(|r| r["mentions"].as_array()) else {
        return Vec::new();
    };
    let off = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok());
    let mut out: Vec<MentionView> = list
        .iter()
        .filter_map(|m| {
            Some(MentionView {
                text: m["text"].as_str()?.to_owned(),
                kind: m["type"].as_str().unwrap_or("other").to_owned(),
                start: off(&m["start"]),
                end: off(&m["end"]),
                grounding: m["grounding"].as_str().unwrap_or("none").to_owned(),
            })
        })
        .collect();
    out.sort_by_key(|m| (m.start.is_none(), m.start, m.end));
    out
}

/// The documents to show, and how many were left out.
pub fn build(view: &dyn History, opts: &Options) -> Result<(Vec<DocumentView>, usize), StoreError> {
    let all = view.documents()?;
    let mut chosen: Vec<_> = if opts.select.is_empty() {
        all.iter().rev().take(opts.documents).collect()
    } else {
        all.iter()
            .filter(|d| {
                opts.select
                    .iter()
                    .any(|s| d.path.contains(s.as_str()) || d.id.starts_with(s.as_str()))
            })
            .take(opts.documents.max(1))
            .collect()
    };
    chosen.sort_by(|a, b| (a.added_at, &a.path).cmp(&(b.added_at, &b.path)));
    let omitted = all.len() - chosen.len();
    let mut out = Vec::with_capacity(chosen.len());
    for d in chosen {
        let units = view.units_of(&d.id)?;
        // The unit shown for each (task, target): the done one whose result came last (request
        // ids only grow), else the most recently changed.
        let mut pick: HashMap<(&str, &str), &UnitBrief> = HashMap::new();
        for u in &units {
            let slot = pick
                .entry((u.task.as_str(), u.target.as_str()))
                .or_insert(u);
            let rank = |x: &UnitBrief| (x.status == UnitStatus::Done, x.request_id, x.updated_at);
            if rank(u) >= rank(slot) {
                *slot = u;
            }
        }
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut ungrounded = 0;
        let pages = view
            .pages(&d.id)?
            .into_iter()
            .map(|p| {
                let target = format!("page:{}", p.number);
                let unit = pick.get(&("entities", target.as_str()));
                let (state, reason) = state(unit);
                let mentions = mentions(unit.and_then(|u| u.result.as_ref()));
                for m in &mentions {
                    *counts.entry(m.kind.clone()).or_default() += 1;
                    ungrounded += u64::from(m.start.is_none());
                }
                PageView {
                    number: p.number,
                    quality: p.quality,
                    failure: p.failure,
                    state,
                    reason,
                    text: p.text,
                    mentions,
                }
            })
            .collect();
        let sections = view
            .sections(&d.id)?
            .into_iter()
            .map(|s| {
                let target = format!("section:{}", s.id);
                let unit = pick.get(&("summary", target.as_str()));
                let (state, reason) = state(unit);
                SectionView {
                    id: s.id,
                    title: s.title,
                    level: s.level,
                    pages: s.pages,
                    summary: unit
                        .and_then(|u| u.result.as_ref())
                        .and_then(|r| r["summary"].as_str())
                        .map(str::to_owned),
                    state,
                    reason,
                }
            })
            .collect();
        let meta = pick.get(&("metadata", "document"));
        let (metadata_state, _) = state(meta);
        out.push(DocumentView {
            id: d.id.clone(),
            path: d.path.clone(),
            kind: d.kind.clone(),
            pages,
            sections,
            metadata: meta
                .filter(|u| u.status == UnitStatus::Done)
                .and_then(|u| u.result.clone()),
            metadata_state,
            entity_counts: counts,
            ungrounded,
        });
    }
    Ok((out, omitted))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(start: usize, end: usize) -> MentionView {
        MentionView {
            text: String::new(),
            kind: "person".into(),
            start: Some(start),
            end: Some(end),
            grounding: "exact".into(),
        }
    }

    #[test]
    fn segments_follow_character_offsets_and_survive_bad_ones() {
        let text = "Zoë met Ada in Köln.";
        let ms = [m(8, 11), m(0, 3), m(9, 12), m(15, 19), m(18, 400), m(5, 5)];
        let seg = segments(text, &ms);
        let shown: Vec<(&str, Option<usize>)> = seg.iter().map(|s| (s.text, s.mention)).collect();
        assert_eq!(
            shown,
            [
                ("Zoë", Some(1)),
                (" met ", None),
                ("Ada", Some(0)),
                (" in ", None),
                ("Köln", Some(3)),
                (".", None)
            ]
        );
        assert_eq!(seg.iter().map(|s| s.text).collect::<String>(), text);
    }
}
