//! From documents to units: entities of every readable page, a summary of every section,
//! metadata of every document — each with the exact text it will send and its ledger key.
//! Pages that cannot yield entities (scans, garbled text, failed extraction, blank pages) get
//! no unit but a recorded reason, so every page ends with a result or a reason.

use pagemill_client::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::ingest::{Document, Quality};
use crate::store::UnitSpec;
use crate::tasks::{Task, TaskKind};

/// One unit of work, ready to send.
#[derive(Debug, Clone)]
pub struct Work {
    /// Its ledger key.
    pub key: String,
    /// What decides its answer.
    pub spec: UnitSpec,
    /// Which task.
    pub kind: TaskKind,
    /// Index of its document in the run's list.
    pub doc: usize,
    /// The id its answer must carry: `<doc>:p<page>`, `<doc>:s<section>`, `<doc>:doc`.
    pub item_id: String,
    /// The text sent.
    pub text: String,
    /// The page (entities).
    pub page: Option<u32>,
    /// The section (summaries).
    pub section: Option<u32>,
    /// Tokens of `text`.
    pub tokens: u64,
    /// Metadata candidates sent with the item (metadata only).
    pub hints: Option<crate::ingest::Hints>,
}

/// A page that gets no entities unit, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSkip {
    /// Index of its document.
    pub doc: usize,
    /// Page number.
    pub page: u32,
    /// Why.
    pub reason: String,
}

/// The three tasks of a run (any may be off).
#[derive(Debug, Clone)]
pub struct Tasks {
    /// Entities of pages.
    pub entities: Option<Task>,
    /// Summaries of sections.
    pub summary: Option<Task>,
    /// Metadata of documents.
    pub metadata: Option<Task>,
    /// Tokens of the document head that metadata reads.
    pub metadata_tokens: u64,
}

impl Tasks {
    /// The task of `kind`, if on.
    pub fn get(&self, kind: TaskKind) -> Option<&Task> {
        match kind {
            TaskKind::Entities => self.entities.as_ref(),
            TaskKind::Summary => self.summary.as_ref(),
            TaskKind::Metadata => self.metadata.as_ref(),
        }
    }
}

/// Hex BLAKE3 of a text.
pub fn hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// The units of `docs` for `model`, and the pages that get none.
pub fn plan(
    docs: &[Document],
    tasks: &Tasks,
    model: &str,
    tokenizer: &Tokenizer,
) -> (Vec<Work>, Vec<PageSkip>) {
    let mut work = Vec::new();
    let mut skips = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let short = &doc.id[..doc.id.len().min(8)];
        let hints = (!doc.hints.is_empty()).then_some(&doc.hints);
        let mut unit = |kind: TaskKind, target: String, item_id: String, text: String| {
            let Some(task) = tasks.get(kind) else { return };
            let hints = hints.filter(|_| kind == TaskKind::Metadata).cloned();
            // What is sent decides the answer: the candidates too.
            let content_hash = match &hints {
                Some(h) => hash(&format!("{text}\u{0}{h:?}")),
                None => hash(&text),
            };
            let spec = UnitSpec {
                document_id: doc.id.clone(),
                task: kind.name().to_owned(),
                target,
                content_hash,
                prompt_version: task.prompt_version(),
                model: model.to_owned(),
                schema_hash: hash(&task.schema().to_string()),
                variant: String::new(),
            };
            let (page, section) = parse_target(&spec.target);
            work.push(Work {
                key: spec.key(),
                tokens: tokenizer.count(&text),
                spec,
                kind,
                doc: d,
                item_id,
                text,
                page,
                section,
                hints,
            });
        };
        if tasks.entities.is_some() {
            for p in &doc.pages {
                let reason = match p.quality {
                    Quality::Ok if !p.text.trim().is_empty() => None,
                    Quality::Ok => Some("blank page".to_owned()),
                    Quality::NeedsOcr => Some("no text layer (needs OCR)".to_owned()),
                    Quality::Garbled => Some("garbled text (needs OCR)".to_owned()),
                    Quality::Failed => Some(format!(
                        "extraction failed: {}",
                        p.failure.as_deref().unwrap_or("unknown")
                    )),
                };
                match reason {
                    Some(reason) => skips.push(PageSkip {
                        doc: d,
                        page: p.number,
                        reason,
                    }),
                    None => unit(
                        TaskKind::Entities,
                        format!("page:{}", p.number),
                        format!("{short}:p{}", p.number),
                        p.text.clone(),
                    ),
                }
            }
        }
        for s in &doc.sections {
            let text = doc.text.get(s.range.0..s.range.1).unwrap_or("").trim();
            if text.is_empty() {
                continue;
            }
            unit(
                TaskKind::Summary,
                format!("section:{}", s.id),
                format!("{short}:s{}", s.id),
                text.to_owned(),
            );
        }
        let head = head(doc, tokenizer, tasks.metadata_tokens);
        if !head.trim().is_empty() {
            unit(
                TaskKind::Metadata,
                "document".into(),
                format!("{short}:doc"),
                head,
            );
        }
    }
    // Identical documents (the same bytes under two names) have the same unit keys: each
    // keeps its own work items (for its results), and the executor sends each key once.
    (work, skips)
}

fn parse_target(target: &str) -> (Option<u32>, Option<u32>) {
    match target.split_once(':') {
        Some(("page", n)) => (n.parse().ok(), None),
        Some(("section", n)) => (None, n.parse().ok()),
        _ => (None, None),
    }
}

/// The start of a document, whole pages up to about `budget` tokens (at least the first
/// readable page, cut at a character boundary if that alone is over).
fn head(doc: &Document, tokenizer: &Tokenizer, budget: u64) -> String {
    let mut out = String::new();
    let mut used = 0;
    for p in doc.pages.iter().filter(|p| !p.text.trim().is_empty()) {
        let t = tokenizer.count(&p.text);
        if used + t > budget {
            if out.is_empty() {
                // About 4 characters a token: cut, then trust the count.
                let cut: String = p.text.chars().take((budget * 4) as usize).collect();
                out.push_str(&cut);
            }
            break;
        }
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(&p.text);
        used += t;
    }
    out
}
