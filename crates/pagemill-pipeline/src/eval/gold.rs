//! Gold annotations: one JSON object per line, one line per document (`schemas/gold.schema.json`).
//!
//! ```json
//! {"document": {"path": "examples/docs/river-survey.txt"},
//!  "entities": [{"text": "Helena Kowalczyk", "type": "person", "page": 1, "start": 49, "end": 65}],
//!  "metadata": {"title": "Field report: river survey, autumn 2025", "authors": ["Helena Kowalczyk"]},
//!  "summaries": [{"section": "Recommendations", "text": "Sample again near Tarnobrzeg …"}]}
//! ```
//!
//! A document is named by its path (matched by file name when the gold was written elsewhere)
//! or by its content id (the BLAKE3 hex a run reports, or its first 8+ characters). Entities
//! carry a page and character offsets within that page's text, or none of them: with offsets
//! they are scored mention by mention, without as a set of (text, type) per document. Any of
//! `entities`, `metadata` and `summaries` may be left out; only what is given is scored. A
//! reference summary names its section by title, or a page range (`"pages": [3, 5]`: the
//! sections within it), or neither (the whole document).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which document a gold line is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocRef {
    /// Its path, as given to `pagemill run`, or any path ending in its file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Its content id (BLAKE3 hex), whole or its first 8 or more characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl DocRef {
    /// True when this names the document with content id `id` read from `path`.
    pub fn matches(&self, id: &str, path: &str) -> bool {
        if let Some(want) = &self.id {
            return want.len() >= 8 && id.starts_with(want.as_str());
        }
        let Some(want) = &self.path else {
            return false;
        };
        let name = |p: &str| p.rsplit(['/', '\\']).next().unwrap_or(p).to_owned();
        want == path || path.ends_with(want.as_str()) || name(want) == name(path)
    }

    /// How to name it in messages.
    pub fn label(&self) -> String {
        self.path
            .clone()
            .or_else(|| self.id.clone())
            .unwrap_or_else(|| "?".to_owned())
    }
}

/// An entity as the gold has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldEntity {
    /// Its text, as printed.
    pub text: String,
    /// Its type (`person`, `organization`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The page it is on (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    /// Character offset in the page's text where it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    /// Character offset where it ends (exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<usize>,
}

impl GoldEntity {
    /// Page and offsets, when all three are given.
    pub fn span(&self) -> Option<(u32, usize, usize)> {
        Some((self.page?, self.start?, self.end?))
    }
}

/// A reference summary of one section (by its title), of a page range, or of the whole
/// document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldSummary {
    /// The section's title, as `pagemill ingest` shows it; with neither this nor `pages`, the
    /// whole document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// First and last page: the sections within them, their summaries joined in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<(u32, u32)>,
    /// The reference text.
    pub text: String,
}

/// One line of a gold file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldDocument {
    /// Which document.
    pub document: DocRef,
    /// Its entities (all of them: what is missing here counts as spurious when predicted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entities: Option<Vec<GoldEntity>>,
    /// Metadata fields; `null` means the document has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Reference summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summaries: Option<Vec<GoldSummary>>,
}

/// A gold file that cannot be used, and where.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("gold line {line}: {message}")]
pub struct GoldError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads a gold JSONL text (blank lines are skipped).
pub fn parse(text: &str) -> Result<Vec<GoldDocument>, GoldError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let err = |message: String| GoldError { line, message };
        let doc: GoldDocument = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
        check(&doc).map_err(err)?;
        out.push(doc);
    }
    Ok(out)
}

fn check(doc: &GoldDocument) -> Result<(), String> {
    let d = &doc.document;
    if d.path.as_deref().is_none_or(str::is_empty) && d.id.as_deref().is_none_or(|id| id.len() < 8)
    {
        return Err("`document` needs a `path` or an `id` of 8 or more characters".into());
    }
    for (k, e) in doc.entities.iter().flatten().enumerate() {
        if e.text.trim().is_empty() || e.kind.trim().is_empty() {
            return Err(format!("entity {k}: empty text or type"));
        }
        match (e.start, e.end) {
            (None, None) => {}
            (Some(s), Some(t)) if s < t && e.page.is_some() => {}
            _ => {
                return Err(format!(
                    "entity {k} ({:?}): give `page`, `start` and `end` (start < end) together, or only `page`, or none",
                    e.text
                ));
            }
        }
    }
    if doc
        .summaries
        .iter()
        .flatten()
        .any(|s| s.text.trim().is_empty())
    {
        return Err("a summary with no text".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_and_bad_ones_named_by_number() {
        let text = r#"{"document": {"path": "docs/a.md"}, "entities": [{"text": "Bergen", "type": "location", "page": 1, "start": 3, "end": 9}]}

{"document": {"id": "99e8f0e3"}, "metadata": {"title": "Supply Agreement", "date": null}}"#;
        let g = parse(text).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].entities.as_ref().unwrap()[0].span(), Some((1, 3, 9)));
        assert!(g[1].metadata.as_ref().unwrap()["date"].is_null());

        let bad = r#"{"document": {"path": "a.md"}, "entities": [{"text": "X", "type": "person", "start": 3}]}"#;
        let e = parse(&format!("\n{bad}")).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("together"), "{e}");
        let e = parse(r#"{"document": {}}"#).unwrap_err();
        assert!(e.message.contains("`path` or an `id`"), "{e}");
        let e = parse(r#"{"document": {"path": "a"}, "entity": []}"#).unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }

    #[test]
    fn documents_are_found_by_id_prefix_path_or_file_name() {
        let by_id = DocRef {
            id: Some("99e8f0e3".into()),
            path: None,
        };
        assert!(by_id.matches("99e8f0e3a6e5", "x/supply.md"));
        assert!(!by_id.matches("00e8f0e3a6e5", "x/supply.md"));
        let by_path = DocRef {
            path: Some("examples/docs/supply.md".into()),
            id: None,
        };
        assert!(by_path.matches("id", "examples/docs/supply.md"));
        assert!(by_path.matches("id", "/home/u/p/examples/docs/supply.md"));
        assert!(by_path.matches("id", "elsewhere/supply.md"));
        assert!(!by_path.matches("id", "elsewhere/other.md"));
    }
}

/// A gold line to start from, made from a run's result for one document (as `pagemill run`
/// writes it): every kept mention with its page and offsets, the metadata values, each
/// section's summary. A person then corrects it: that is how gold is made cheaply.
pub fn skeleton(result: &Value) -> GoldDocument {
    // What the run placed (a mention it could not ground has no place to be gold at).
    let entities = super::score::predicted_mentions(result)
        .into_iter()
        .filter(|m| !m.text.is_empty() && !m.kind.is_empty())
        .filter_map(|m| {
            let (page, start, end) = m.span?;
            Some(GoldEntity {
                text: m.text,
                kind: m.kind,
                page: Some(page),
                start: Some(start),
                end: Some(end),
            })
        })
        .collect();
    let metadata = result["metadata"].as_object().cloned().unwrap_or_default();
    let summaries = result["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some(GoldSummary {
                section: Some(s["title"].as_str()?.to_owned()),
                pages: None,
                text: s["summary"]
                    .as_str()
                    .filter(|t| !t.trim().is_empty())?
                    .to_owned(),
            })
        })
        .collect();
    GoldDocument {
        document: DocRef {
            path: result["path"].as_str().map(str::to_owned),
            id: result["id"].as_str().map(str::to_owned),
        },
        entities: Some(entities),
        metadata: Some(metadata),
        summaries: Some(summaries),
    }
}

#[cfg(test)]
mod skeleton_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_skeleton_holds_what_the_run_found_and_reads_back() {
        let result = json!({
            "id": "99e8f0e3a6e5451a", "path": "docs/a.md",
            "entities": [{"text": "Bergen", "type": "location", "mentions": [
                {"text": "Bergen", "type": "location", "page": 1, "start": 3, "end": 9, "grounding": "exact"},
                {"text": "Bergen", "type": "location", "page": 2, "start": 0, "end": 6, "grounding": "none"}]}],
            "metadata": {"title": "A", "authors": []},
            "sections": [{"title": "1. Goods", "summary": "Lines."}, {"title": "2. Law", "summary": null}]
        });
        let g = skeleton(&result);
        let line = serde_json::to_string(&g).unwrap();
        assert_eq!(parse(&line).unwrap(), std::slice::from_ref(&g));
        assert_eq!(
            g.entities.as_ref().unwrap().len(),
            1,
            "an unplaced mention is not gold"
        );
        assert_eq!(g.entities.as_ref().unwrap()[0].span(), Some((1, 3, 9)));
        assert_eq!(g.summaries.as_ref().unwrap().len(), 1);
        assert!(g.document.matches("99e8f0e3a6e5451a", "docs/a.md"));
    }
}
