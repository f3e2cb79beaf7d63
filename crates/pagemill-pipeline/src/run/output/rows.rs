//! A run's entities as flat rows, one per mention, for people who load results into a
//! dataframe or a warehouse: `pagemill run --format jsonl|csv`.

use serde::Serialize;

use super::DocumentResult;
use crate::run::grounding::Grounding;

/// One mention of an entity, with its document and place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MentionRow {
    /// The document's id (content hash).
    pub document: String,
    /// The document's path as given.
    pub path: String,
    /// 1-based page number.
    pub page: u32,
    /// First character within the page's text (empty when not grounded).
    pub start: Option<usize>,
    /// One past the last character.
    pub end: Option<usize>,
    /// Entity type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The document's text at that place (the model's text when not grounded).
    pub text: String,
    /// The entity this mention belongs to (its most frequent form).
    pub entity: String,
    /// How the mention was found in its page: exact, normalized, fuzzy, none.
    pub grounding: Grounding,
    /// Similarity of the match (1 for exact and normalized).
    pub score: f64,
    /// Why it is kept only under `--ungrounded keep-flagged`, if it is.
    pub flag: Option<String>,
}

/// Every mention of `documents`' entities, by document, then page and offset.
pub fn mention_rows(documents: &[DocumentResult]) -> Vec<MentionRow> {
    let mut rows = Vec::new();
    for d in documents {
        let start = rows.len();
        for e in &d.entities {
            rows.extend(e.mentions.iter().map(|m| MentionRow {
                document: d.id.clone(),
                path: d.path.clone(),
                page: m.page,
                start: m.start,
                end: m.end,
                kind: m.kind.clone(),
                text: m.text.clone(),
                entity: e.text.clone(),
                grounding: m.grounding,
                score: m.score,
                flag: m.flag.clone(),
            }));
        }
        rows[start..].sort_by_key(|r| (r.page, r.start));
    }
    rows
}
