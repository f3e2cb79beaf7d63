//! Quality measured next to cost: gold annotations in an open JSONL format ([`gold`]) and the
//! scores of a run's results against them ([`score`]).
//!
//! [`configs`] runs every configuration into one ledger and scores it; [`compare`] puts
//! configurations side by side (paired bootstrap, Pareto front); [`spend`]
//! reads a configuration's tokens, cost and latency from the ledger; [`results`] reads
//! finished runs back; [`import`] turns CoNLL/BIO and CSV into gold.
//!
//! The scorer reads what a run wrote (the per-document result JSON), not the pipeline's
//! internals, so it scores any run — of any endpoint, prompt or pack size — the same way.

pub mod compare;
pub mod configs;
pub mod gold;
pub mod import;
pub mod results;
pub mod score;
pub mod spend;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use gold::GoldDocument;
use score::{DocumentScores, EntityScores, Rouge, Sources, SummaryChecks};

/// Version of the eval report's JSON (`schemas/eval-report.schema.json`).
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// A run's results scored against a gold file.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Version of this shape.
    pub schema_version: u32,
    /// Per gold document matched to a result.
    pub documents: Vec<DocumentScores>,
    /// Gold documents with no result in the run, by their gold name.
    pub unmatched: Vec<String>,
    /// Entity scores summed over the documents whose gold has entities.
    pub entities: Option<EntityScores>,
    /// Per metadata field: mean normalized and exact score, and over how many documents.
    pub metadata: BTreeMap<String, FieldMean>,
    /// Mean ROUGE over the reference summaries the run answered, and how many it did not.
    pub summaries: Option<SummaryMeans>,
    /// Source support and length compliance of every summary of the scored documents.
    pub summary_checks: SummaryChecks,
}

/// A metadata field's mean score over documents.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FieldMean {
    /// Mean normalized score.
    pub normalized: f64,
    /// Mean exact score.
    pub exact: f64,
    /// Documents scored.
    pub documents: usize,
}

/// Mean ROUGE of summaries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SummaryMeans {
    /// Means over all references (one left unanswered scores 0).
    pub rouge: Rouge,
    /// References scored.
    pub references: usize,
    /// References with no summary in the run.
    pub unanswered: usize,
}

/// Scores every gold document that has a result among `results` (each as `pagemill run`
/// writes it: `id`, `path`, `entities`, `metadata`, `sections`); `sources` adds the section
/// texts and word limit that summaries are checked against.
pub fn evaluate(gold: &[GoldDocument], results: &[Value], sources: &Sources) -> EvalReport {
    let mut documents = Vec::new();
    let mut unmatched = Vec::new();
    let mut entities: Option<EntityScores> = None;
    let mut fields: BTreeMap<String, FieldMean> = BTreeMap::new();
    let mut summaries: Option<SummaryMeans> = None;
    let mut summary_checks = SummaryChecks::default();
    for g in gold {
        let found = results.iter().find(|r| {
            g.document.matches(
                r["id"].as_str().unwrap_or(""),
                r["path"].as_str().unwrap_or(""),
            )
        });
        let Some(result) = found else {
            unmatched.push(g.document.label());
            continue;
        };
        let s = score::score_document(g, result, sources);
        summary_checks.add(&s.summary_checks);
        if let Some(e) = &s.entities {
            match &mut entities {
                Some(sum) => sum.add(e),
                None => entities = Some(e.clone()),
            }
        }
        for f in &s.metadata {
            let m = fields.entry(f.field.clone()).or_default();
            m.normalized += f.normalized;
            m.exact += f.exact;
            m.documents += 1;
        }
        for (_, r) in &s.summaries {
            let m = summaries.get_or_insert_with(SummaryMeans::default);
            m.references += 1;
            let r = r.unwrap_or_else(|| {
                m.unanswered += 1;
                Rouge::default()
            });
            m.rouge.rouge1 += r.rouge1;
            m.rouge.rouge2 += r.rouge2;
            m.rouge.rouge_l += r.rouge_l;
        }
        documents.push(s);
    }
    for m in fields.values_mut() {
        m.normalized /= m.documents as f64;
        m.exact /= m.documents as f64;
    }
    if let Some(m) = &mut summaries {
        let n = m.references as f64;
        m.rouge.rouge1 /= n;
        m.rouge.rouge2 /= n;
        m.rouge.rouge_l /= n;
    }
    EvalReport {
        schema_version: REPORT_SCHEMA_VERSION,
        documents,
        unmatched,
        entities,
        metadata: fields,
        summaries,
        summary_checks,
    }
}
