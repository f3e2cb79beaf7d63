//! The eval section: configurations' quality against their cost (from the JSON `pagemill eval`
//! writes), and each document's entity errors placed in its pages (page texts from the ledger,
//! when one is given).

use std::collections::BTreeMap;
use std::path::Path;

use pagemill_pipeline::eval::score::{Counts, SummaryChecks};
use pagemill_pipeline::store::History;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ReportError;
use crate::documents::MentionView;

/// An eval report, as shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalView {
    /// The eval report file.
    pub path: String,
    /// Costs are dollars a page (else prompt + completion tokens a page).
    pub by_dollars: bool,
    /// Each configuration.
    pub configurations: Vec<ConfigView>,
}

/// One configuration's figures and errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConfigView {
    /// Its name.
    pub name: String,
    /// Mean of the figures its gold allows.
    pub overall: Option<f64>,
    /// Dollars (or tokens) a page.
    pub cost: Option<f64>,
    /// No other configuration is both cheaper and better.
    pub pareto_front: bool,
    /// Strict entity F1.
    pub entity_f1: Option<f64>,
    /// Mean normalized metadata score.
    pub metadata: Option<f64>,
    /// Mean ROUGE-L.
    pub rouge_l: Option<f64>,
    /// Share of summary sentences backed by their section.
    pub support: Option<f64>,
    /// Each scored document's errors.
    pub documents: Vec<ErrorsView>,
}

/// One document's entity errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorsView {
    /// As the gold names it.
    pub document: String,
    /// Content id.
    pub id: String,
    /// Errors by kind.
    pub counts: BTreeMap<String, u64>,
    /// Pages with errors placed in them (text from the ledger).
    pub pages: Vec<ErrorPage>,
    /// Errors with no place (entity-level gold, ungrounded predictions, no ledger).
    pub unplaced: Vec<MentionView>,
}

/// A page and the errors on it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorPage {
    /// 1-based.
    pub number: u32,
    /// Its text.
    pub text: String,
    /// Errors as marks: `kind` is the error (`missed`, `spurious`, `wrong_type`,
    /// `wrong_span`), `grounding` the entity type and what was predicted instead.
    pub errors: Vec<MentionView>,
}

/// True when `v` is what `pagemill eval --format json` writes.
pub fn is_eval(v: &Value) -> bool {
    v.get("configurations").is_some()
        || (v.get("unmatched").is_some() && v.get("documents").is_some())
}

/// Reads an eval report; page texts come from `ledger` when given.
pub fn build(
    path: &Path,
    v: &Value,
    ledger: Option<&dyn History>,
) -> Result<EvalView, ReportError> {
    let configs: Vec<(String, &Value, Option<f64>, bool)> = match v["configurations"].as_array() {
        Some(list) => list
            .iter()
            .map(|c| {
                (
                    c["results"].as_str().unwrap_or("?").to_owned(),
                    &c["report"],
                    c["overall"].as_f64(),
                    c["pareto_front"].as_bool().unwrap_or(false),
                )
            })
            .collect(),
        None => vec![("run".to_owned(), v, None, true)],
    };
    let by_dollars = configs
        .iter()
        .all(|(_, r, _, _)| r["run"]["cost_per_page_usd"].is_number());
    let mut texts: BTreeMap<(String, u32), String> = BTreeMap::new();
    let mut out = EvalView {
        path: path.display().to_string(),
        by_dollars,
        configurations: Vec::new(),
    };
    for (name, r, overall, front) in configs {
        let run = &r["run"];
        let cost = if by_dollars {
            run["cost_per_page_usd"].as_f64()
        } else {
            match (
                run["prompt_tokens_per_page"].as_f64(),
                run["completion_tokens_per_page"].as_f64(),
            ) {
                (Some(p), Some(c)) => Some(p + c),
                _ => None,
            }
        };
        // The scorer's own counts and conventions (0/0 is 1, a share of nothing is none).
        let f1 = |c: &Value| Counts::deserialize(c).ok().map(|c| c.f1());
        let metadata = r["metadata"]
            .as_object()
            .filter(|m| !m.is_empty())
            .map(|m| {
                m.values()
                    .filter_map(|f| f["normalized"].as_f64())
                    .sum::<f64>()
                    / m.len() as f64
            });
        let support = SummaryChecks::deserialize(&r["summary_checks"])
            .ok()
            .and_then(|c| c.support());
        let mut documents = Vec::new();
        for d in r["documents"].as_array().into_iter().flatten() {
            let id = d["id"].as_str().unwrap_or("").to_owned();
            let mut view = ErrorsView {
                document: d["document"].as_str().unwrap_or("?").to_owned(),
                id: id.clone(),
                ..ErrorsView::default()
            };
            let mut by_page: BTreeMap<u32, Vec<MentionView>> = BTreeMap::new();
            for e in d["errors"].as_array().into_iter().flatten() {
                let kind = e["kind"].as_str().unwrap_or("?").to_owned();
                *view.counts.entry(kind.clone()).or_default() += 1;
                let entity_type = e["type"].as_str().unwrap_or("");
                let mark = MentionView {
                    text: e["text"].as_str().unwrap_or("").to_owned(),
                    kind,
                    start: e["start"].as_u64().map(|x| x as usize),
                    end: e["end"].as_u64().map(|x| x as usize),
                    grounding: match e["predicted"].as_str() {
                        Some(p) => format!("{entity_type}; predicted {p}"),
                        None => entity_type.to_owned(),
                    },
                };
                match e["page"].as_u64() {
                    Some(p) if ledger.is_some() && mark.start.is_some() => {
                        by_page.entry(p as u32).or_default().push(mark);
                    }
                    _ => view.unplaced.push(mark),
                }
            }
            for (number, errors) in by_page {
                let key = (id.clone(), number);
                if !texts.contains_key(&key)
                    && let Some(l) = ledger
                {
                    for p in l.pages(&id)? {
                        texts.insert((id.clone(), p.number), p.text);
                    }
                }
                match texts.get(&key) {
                    Some(text) => view.pages.push(ErrorPage {
                        number,
                        text: text.clone(),
                        errors,
                    }),
                    None => view.unplaced.extend(errors),
                }
            }
            documents.push(view);
        }
        out.configurations.push(ConfigView {
            name,
            overall,
            cost,
            pareto_front: front,
            entity_f1: f1(&r["entities"]["strict"]),
            metadata,
            rouge_l: r["summaries"]["rouge"]["rouge_l"].as_f64(),
            support,
            documents,
        });
    }
    Ok(out)
}
