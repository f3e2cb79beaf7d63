//! What a run leaves for its users: one JSON per document (`schemas/document-result.schema.json`)
//! and a run summary. Both are built from the ledger alone, so a resumed run writes exactly
//! what an uninterrupted one would. Document results hold no timings, costs or request ids;
//! those live in the summary.

mod files;
mod rows;

pub use files::{SUMMARY_FILE, result_file, result_files, write_atomic, write_results};
pub use rows::{MentionRow, mention_rows};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pagemill_client::Client;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checks::{self, ValueGrounding};
use super::grounding::{Entity, Grounding, Mention, merge};
use super::plan::{PageSkip, Work};
use super::{Progress, exec};
use crate::ingest::{Document, Quality};
use crate::store::{Store, StoreError, UnitRow, UnitStatus};
use crate::tasks::TaskKind;

/// Version of the document result format.
pub const RESULT_SCHEMA_VERSION: u32 = 2;

/// What happens to values the document does not back: mentions and metadata not found in the
/// document, and mentions typed `date` or `money` that are neither. Values from the prompt's
/// worked examples are left out under either policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UngroundedPolicy {
    /// Keep them, flagged (`grounding: "none"` and no offsets, or a `flag`).
    KeepFlagged,
    /// Leave them out, counted by reason in `dropped`.
    #[default]
    Drop,
}

/// The worked examples' values, by task: what a model copying its prompt would return.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// From the entities prompt.
    pub entities: Vec<String>,
    /// From the metadata prompt.
    pub metadata: Vec<String>,
}

impl Examples {
    /// The example values of the tasks that are on.
    pub fn of(tasks: &super::Tasks) -> Self {
        let of = |t: Option<&crate::tasks::Task>| {
            t.map(|t| checks::example_values(t.system_prompt()))
                .unwrap_or_default()
        };
        Self {
            entities: of(tasks.entities.as_ref()),
            metadata: of(tasks.metadata.as_ref()),
        }
    }
}

impl std::str::FromStr for UngroundedPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "keep" | "keep-flagged" | "keep_flagged" => Ok(Self::KeepFlagged),
            "drop" => Ok(Self::Drop),
            _ => Err(format!("`{s}`: expected keep-flagged or drop")),
        }
    }
}

impl std::fmt::Display for UngroundedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::KeepFlagged => "keep-flagged",
            Self::Drop => "drop",
        })
    }
}

/// Where a unit stands, as shown in results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Its validated result is in.
    Done,
    /// Given up on; see the reason.
    Failed,
    /// Not sent (no usable text); see the reason.
    Skipped,
    /// Not finished yet (the run was stopped); a rerun picks it up.
    Pending,
}

/// One page in a document result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageResult {
    /// 1-based page number.
    pub number: u32,
    /// Readability, from ingest.
    pub quality: Quality,
    /// Where its entities stand.
    pub entities: State,
    /// Why it has no entities, when failed or skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Mentions found on it.
    pub mentions: usize,
}

/// One section in a document result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionResult {
    /// Section id.
    pub id: u32,
    /// Title.
    pub title: String,
    /// Heading level.
    pub level: u8,
    /// First and last page.
    pub pages: (u32, u32),
    /// The summary, when done.
    pub summary: Option<String>,
    /// Where it stands.
    pub state: State,
    /// Why not done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What is doubtful about the summary (e.g. a copy of another section's), when anything is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// A unit given up on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Task.
    pub task: String,
    /// What within the document.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// Everything pagemill learned about one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentResult {
    /// Format version.
    pub schema_version: u32,
    /// Content hash (same bytes, same id).
    pub id: String,
    /// Path given.
    pub path: String,
    /// Detected type.
    pub kind: crate::ingest::DocKind,
    /// True when every unit is done.
    pub complete: bool,
    /// Every page, with its entities' state.
    pub pages: Vec<PageResult>,
    /// Entities, merged from grounded mentions.
    pub entities: Vec<Entity>,
    /// Values left out (mentions and metadata), by reason: `ungrounded`, `not_a_date`,
    /// `not_an_amount`, `from_example`.
    pub dropped: std::collections::BTreeMap<String, usize>,
    /// Sections with their summaries.
    pub sections: Vec<SectionResult>,
    /// Metadata, when done: only values the policy keeps.
    pub metadata: Option<Value>,
    /// Where each kept metadata value is in the document (derived fields such as
    /// `language` are not looked up).
    pub metadata_grounding: Vec<ValueGrounding>,
    /// What is doubtful about the metadata (e.g. repeated keywords, removed).
    pub metadata_flags: Vec<String>,
    /// Where metadata stands.
    pub metadata_state: State,
    /// Units given up on.
    pub dead_letters: Vec<DeadLetter>,
    /// Ingest warnings.
    pub warnings: Vec<String>,
}

fn state(row: Option<&UnitRow>) -> (State, Option<String>) {
    match row {
        Some(r) if r.status == UnitStatus::Done => (State::Done, None),
        Some(r) if r.status == UnitStatus::Failed => (State::Failed, r.reason.clone()),
        _ => (State::Pending, None),
    }
}

/// Builds every document's result from the ledger.
pub fn documents(
    docs: &[Document],
    work: &[Work],
    skips: &[PageSkip],
    ledger: &dyn Store,
    policy: UngroundedPolicy,
    examples: &Examples,
) -> Result<Vec<DocumentResult>, StoreError> {
    let keys: Vec<String> = work.iter().map(|w| w.key.clone()).collect();
    let rows: HashMap<String, UnitRow> = ledger
        .units(&keys)?
        .into_iter()
        .map(|r| (r.key.clone(), r))
        .collect();
    let mut by_doc: Vec<Vec<&Work>> = vec![Vec::new(); docs.len()];
    for w in work {
        by_doc[w.doc].push(w);
    }
    Ok(docs
        .iter()
        .enumerate()
        .map(|(d, doc)| {
            Assembly {
                d,
                doc,
                units: &by_doc[d],
                rows: &rows,
                skips,
                keep_flagged: policy == UngroundedPolicy::KeepFlagged,
                examples,
                dead: Vec::new(),
                dropped: Default::default(),
            }
            .result()
        })
        .collect())
}

/// One document's units and their ledger rows, being put together into its result.
struct Assembly<'a> {
    d: usize,
    doc: &'a Document,
    units: &'a [&'a Work],
    rows: &'a HashMap<String, UnitRow>,
    skips: &'a [PageSkip],
    keep_flagged: bool,
    examples: &'a Examples,
    dead: Vec<DeadLetter>,
    dropped: std::collections::BTreeMap<String, usize>,
}

impl<'a> Assembly<'a> {
    fn result(mut self) -> DocumentResult {
        let (pages, mentions) = self.pages();
        let sections = self.sections();
        let (metadata, metadata_state, metadata_flags, metadata_grounding) = self.metadata();
        let complete = pages
            .iter()
            .all(|p| p.entities != State::Pending && p.entities != State::Failed)
            && sections
                .iter()
                .all(|s| s.state == State::Done || s.state == State::Skipped)
            && metadata_state != State::Pending
            && metadata_state != State::Failed;
        let doc = self.doc;
        DocumentResult {
            schema_version: RESULT_SCHEMA_VERSION,
            id: doc.id.clone(),
            path: doc.path.to_string_lossy().into_owned(),
            kind: doc.kind,
            complete,
            pages,
            entities: merge(mentions),
            dropped: self.dropped,
            sections,
            metadata,
            metadata_grounding,
            metadata_flags,
            metadata_state,
            dead_letters: self.dead,
            warnings: doc.warnings.clone(),
        }
    }

    /// The unit of `kind` for a page, a section or the document, with its ledger row.
    fn find(
        &self,
        kind: TaskKind,
        page: Option<u32>,
        section: Option<u32>,
    ) -> Option<(&'a Work, Option<&'a UnitRow>)> {
        let rows = self.rows;
        self.units
            .iter()
            .find(|w| w.kind == kind && w.page == page && w.section == section)
            .map(|w| (*w, rows.get(&w.key)))
    }

    /// Where a unit stands; a failed one is listed as a dead letter.
    fn state(&mut self, task: &str, w: &Work, row: Option<&UnitRow>) -> (State, Option<String>) {
        let (st, reason) = state(row);
        if st == State::Failed {
            self.dead.push(DeadLetter {
                task: task.into(),
                target: w.spec.target.clone(),
                reason: reason.clone().unwrap_or_default(),
            });
        }
        (st, reason)
    }

    /// Every page with its entities' state, and the mentions the policy keeps.
    fn pages(&mut self) -> (Vec<PageResult>, Vec<Mention>) {
        let mut mentions: Vec<Mention> = Vec::new();
        let mut pages = Vec::with_capacity(self.doc.pages.len());
        for p in &self.doc.pages {
            let skip = self
                .skips
                .iter()
                .find(|s| s.doc == self.d && s.page == p.number);
            let (st, reason, n) = match (skip, self.find(TaskKind::Entities, Some(p.number), None))
            {
                (Some(s), _) => (State::Skipped, Some(s.reason.clone()), 0),
                (None, Some((w, row))) => {
                    let (st, reason) = self.state("entities", w, row);
                    let kept = self.kept_mentions(row);
                    let n = kept.len();
                    mentions.extend(kept);
                    (st, reason, n)
                }
                (None, None) => (State::Skipped, Some("entities not requested".into()), 0),
            };
            pages.push(PageResult {
                number: p.number,
                quality: p.quality,
                entities: st,
                reason,
                mentions: n,
            });
        }
        (pages, mentions)
    }

    /// A page's mentions under the policy: copies of the prompt's examples dropped always,
    /// ungrounded or doubtful ones dropped or kept flagged; drops counted by reason.
    fn kept_mentions(&mut self, row: Option<&UnitRow>) -> Vec<Mention> {
        let found: Vec<Mention> = row
            .and_then(|r| r.result.as_ref())
            .and_then(|v| serde_json::from_value(v["mentions"].clone()).ok())
            .unwrap_or_default();
        let mut kept: Vec<Mention> = Vec::with_capacity(found.len());
        for mut m in found {
            let why = if m.grounding == Grounding::None
                && checks::from_example(&m.text, &self.examples.entities)
            {
                Some(checks::reason::FROM_EXAMPLE)
            } else {
                match checks::mention_flag(&m) {
                    Some(f) if self.keep_flagged => {
                        if f != checks::reason::UNGROUNDED {
                            m.flag = Some(f.to_owned());
                        }
                        None
                    }
                    other => other,
                }
            };
            match why {
                Some(why) => *self.dropped.entry(why.to_owned()).or_default() += 1,
                None => kept.push(m),
            }
        }
        kept
    }

    /// Every section with its summary.
    fn sections(&mut self) -> Vec<SectionResult> {
        let mut sections = Vec::with_capacity(self.doc.sections.len());
        for s in &self.doc.sections {
            let (summary, st, reason, flag) = match self.find(TaskKind::Summary, None, Some(s.id)) {
                Some((w, row)) => {
                    let (st, reason) = self.state("summary", w, row);
                    let result = row.and_then(|r| r.result.as_ref());
                    let summary = result.and_then(|v| v["summary"].as_str().map(str::to_owned));
                    let flag = result.and_then(|v| v["flag"].as_str().map(str::to_owned));
                    (summary, st, reason, flag)
                }
                None => (
                    None,
                    State::Skipped,
                    Some("no text or summaries not requested".into()),
                    None,
                ),
            };
            sections.push(SectionResult {
                id: s.id,
                title: s.title.clone(),
                level: s.level,
                pages: s.pages,
                summary,
                state: st,
                reason,
                flag,
            });
        }
        sections
    }

    /// The metadata the policy keeps, its state, its flags, and where each value is.
    fn metadata(&mut self) -> (Option<Value>, State, Vec<String>, Vec<ValueGrounding>) {
        let (metadata, metadata_state) = match self.find(TaskKind::Metadata, None, None) {
            Some((w, row)) => {
                let (st, _) = self.state("metadata", w, row);
                (row.and_then(|r| r.result.clone()), st)
            }
            None => (None, State::Skipped),
        };
        // Results are `{"values", "flags"}`; ledgers from before hold the values alone.
        let (metadata, flags) = match metadata {
            Some(v) if v.get("values").is_some() => {
                let flags = v["flags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|f| f.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                (Some(v["values"].clone()), flags)
            }
            other => (other, Vec::new()),
        };
        let Some(values) = metadata else {
            return (None, metadata_state, flags, Vec::new());
        };
        let page_texts: Vec<(u32, &str)> = self
            .doc
            .pages
            .iter()
            .map(|p| (p.number, p.text.as_str()))
            .collect();
        let found = checks::ground_metadata(&page_texts, &values, &self.doc.hints);
        let (kept, grounding) = checks::keep_metadata(
            &values,
            found,
            self.keep_flagged,
            &self.examples.metadata,
            &mut self.dropped,
        );
        (Some(kept), metadata_state, flags, grounding)
    }
}

/// Tokens and requests of one task in this run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// Units in the plan.
    pub units: u64,
    /// Units an earlier run had finished (not paid again).
    pub already_done: u64,
    /// Units finished now.
    pub done: u64,
    /// Units given up on now.
    pub failed: u64,
    /// Requests made.
    pub requests: u64,
    /// Items sent (re-runs included).
    pub items_sent: u64,
    /// Pack size at the end of the run.
    pub pack_size: usize,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Cached prompt tokens (as reported).
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt tokens per page processed this run (entities: per page sent).
    pub prompt_tokens_per_page: f64,
    /// Client retries.
    pub retries: u64,
    /// Known cost, USD (`None` when no request of the task had a known cost).
    pub cost_usd: Option<f64>,
}

/// What a run did and spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Format version.
    pub schema_version: u32,
    /// The run's id (in the ledger's requests).
    pub run_id: String,
    /// Endpoints, primary first.
    pub endpoints: Vec<String>,
    /// Wall time, seconds.
    pub wall_secs: f64,
    /// Documents.
    pub documents: usize,
    /// Documents with every unit done.
    pub complete_documents: usize,
    /// Pages in all.
    pub pages: u64,
    /// Pages whose entities are done.
    pub pages_done: u64,
    /// Pages with no entities unit, and why (scans, blank pages…).
    pub pages_skipped: u64,
    /// Pages whose entities were given up on.
    pub pages_failed: u64,
    /// Pages not finished (a stopped run).
    pub pages_pending: u64,
    /// By task: entities, summary, metadata.
    pub tasks: std::collections::BTreeMap<String, TaskSummary>,
    /// Prompt tokens per page (all tasks), over pages processed this run.
    pub prompt_tokens_per_page: f64,
    /// Completion tokens per page.
    pub completion_tokens_per_page: f64,
    /// `max_tokens` asked for per page: with the prompt tokens, what a provider counts against
    /// a tokens-per-minute limit.
    #[serde(default)]
    pub max_tokens_per_page: f64,
    /// Answers cut off at `max_tokens`.
    #[serde(default)]
    pub truncated: u64,
    /// Cached share of prompt tokens (`None` when no server reported cached tokens).
    pub cached_share: Option<f64>,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed in the end.
    pub failed_requests: u64,
    /// Client retries (429s, 5xx, resets…).
    pub retries: u64,
    /// Re-asks after unusable answers.
    pub reasks: u64,
    /// Items re-run alone after their pack failed them.
    pub singles: u64,
    /// Jobs moved to a fallback endpoint.
    pub fallbacks: u64,
    /// Times a pack size was halved.
    pub shrinks: u64,
    /// Batches submitted (batch mode).
    pub batches: u64,
    /// Prompt arrays sent (`--array`): HTTP requests, each carrying several of `requests`.
    #[serde(default)]
    pub arrays: u64,
    /// Streams cancelled because the answer looped (the unit was re-run or re-asked).
    pub loops_cancelled: u64,
    /// Completion tokens those cancellations spared: each request's `max_tokens` less the
    /// tokens that came (an upper bound: a loop could have ended by itself).
    pub loop_tokens_saved: u64,
    /// Known cost of this run, USD (`None` when no request had a known cost).
    pub cost_usd: Option<f64>,
    /// Cost per page processed, USD.
    pub cost_per_page_usd: Option<f64>,
    /// Some requests' cost is unknown (no prices) or an upper bound (cached tokens unreported).
    pub cost_note: Option<String>,
    /// Where each endpoint's prices come from (configuration, price table, simulated, local,
    /// unknown).
    #[serde(default)]
    pub prices_from: std::collections::BTreeMap<String, pagemill_client::prices::PriceSource>,
    /// Requests by error class (failed attempts included).
    pub errors: std::collections::BTreeMap<String, u64>,
    /// 95th percentile of answered requests' end-to-end time (from the client's timeline:
    /// sent, rate-limit waits not included), milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p95_ms: Option<f64>,
    /// Units given up on, across documents.
    pub dead_letters: u64,
    /// Values left out of the results, by reason (see the document results' `dropped`).
    pub dropped: std::collections::BTreeMap<String, u64>,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Figures that moved beyond their thresholds against the ledger's trailing 7 days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<crate::run::drift::Drift>,
}

/// Builds the run summary.
#[allow(clippy::too_many_arguments)]
pub(crate) fn summary(
    docs: &[DocumentResult],
    work: &[Work],
    ledger: &dyn Store,
    progress: &Progress,
    pack_sizes: [usize; 3],
    wall: Duration,
    endpoints: &[Arc<Client>],
    stopped: Option<String>,
) -> Result<RunSummary, StoreError> {
    let _ = work;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut s = RunSummary {
        schema_version: 1,
        run_id: ledger.run_id().to_owned(),
        endpoints: endpoints
            .iter()
            .map(|c| c.endpoint().name.clone())
            .collect(),
        prices_from: endpoints
            .iter()
            .map(|c| (c.endpoint().name.clone(), c.endpoint().price_source.clone()))
            .collect(),
        wall_secs: wall.as_secs_f64(),
        documents: docs.len(),
        complete_documents: docs.iter().filter(|d| d.complete).count(),
        reasks: load(&progress.reasks),
        singles: load(&progress.singles),
        fallbacks: load(&progress.fallbacks),
        shrinks: load(&progress.shrinks),
        batches: load(&progress.batches),
        arrays: load(&progress.arrays),
        loops_cancelled: load(&progress.loops),
        loop_tokens_saved: load(&progress.loop_tokens_saved),
        stopped,
        drift: Vec::new(),
        ..RunSummary::default()
    };
    for d in docs {
        for p in &d.pages {
            s.pages += 1;
            match p.entities {
                State::Done => s.pages_done += 1,
                State::Skipped => s.pages_skipped += 1,
                State::Failed => s.pages_failed += 1,
                State::Pending => s.pages_pending += 1,
            }
        }
        s.dead_letters += d.dead_letters.len() as u64;
        for (why, n) in &d.dropped {
            *s.dropped.entry(why.clone()).or_default() += *n as u64;
        }
    }
    let ent = exec::slot(TaskKind::Entities);
    // Pages processed this run: entities units finished or failed now; without the entities
    // task, every page of the documents (a metadata-only run spreads over them all). At least 1.
    let pages_now = if load(&progress.total[ent]) == 0 {
        s.pages
    } else {
        load(&progress.done[ent]) + load(&progress.failed[ent])
    }
    .max(1) as f64;
    let (mut prompt, mut cached, mut completion, mut cost, mut unknown, mut unreported) =
        (0, 0, 0, 0u64, 0, 0);
    for kind in [TaskKind::Entities, TaskKind::Summary, TaskKind::Metadata] {
        let i = exec::slot(kind);
        let t = &progress.tasks[i];
        let ts = TaskSummary {
            units: load(&progress.total[i]),
            already_done: load(&progress.already[i]),
            done: load(&progress.done[i]),
            failed: load(&progress.failed[i]),
            requests: load(&t.requests),
            items_sent: load(&t.items),
            pack_size: pack_sizes[i],
            prompt_tokens: load(&t.prompt),
            cached_tokens: load(&t.cached),
            completion_tokens: load(&t.completion),
            prompt_tokens_per_page: round2(load(&t.prompt) as f64 / pages_now),
            retries: load(&t.retries),
            cost_usd: (load(&t.requests) > load(&t.cost_unknown))
                .then(|| load(&t.cost_pico) as f64 / 1e12),
        };
        prompt += ts.prompt_tokens;
        cached += ts.cached_tokens;
        completion += ts.completion_tokens;
        cost += load(&t.cost_pico);
        unknown += load(&t.cost_unknown);
        unreported += load(&t.cached_unreported);
        s.requests += ts.requests;
        s.retries += ts.retries;
        s.failed_requests += load(&t.failed_requests);
        s.tasks.insert(kind.name().to_owned(), ts);
    }
    s.prompt_tokens_per_page = round2(prompt as f64 / pages_now);
    s.completion_tokens_per_page = round2(completion as f64 / pages_now);
    s.max_tokens_per_page = round2(load(&progress.max_tokens_asked) as f64 / pages_now);
    s.truncated = load(&progress.truncated);
    s.cached_share =
        (s.requests > unreported && prompt > 0).then(|| round4(cached as f64 / prompt as f64));
    if s.requests > unknown {
        s.cost_usd = Some(cost as f64 / 1e12);
        s.cost_per_page_usd = Some(cost as f64 / 1e12 / pages_now);
    }
    s.cost_note = match (unknown, unreported) {
        (0, 0) => None,
        (u, _) if u == s.requests => {
            Some("cost unknown: the endpoint has no prices (none configured, and not in the price table)".into())
        }
        (u, 0) => Some(format!("{u} request(s) of unknown cost are not included")),
        (_, r) => Some(format!(
            "{r} request(s) did not report cached tokens: their cost is an upper bound"
        )),
    };
    let mut latencies = Vec::new();
    for r in ledger.requests()? {
        if r.run_id != s.run_id {
            continue;
        }
        if r.end.ok
            && let Some(total) = r
                .end
                .timeline
                .as_deref()
                .and_then(|t| serde_json::from_str::<pagemill_client::Timeline>(t).ok())
                .and_then(|t| t.total())
        {
            latencies.push(total.as_secs_f64() * 1e3);
        }
        if let Some(class) = r.end.error_class {
            *s.errors.entry(class).or_default() += 1;
        }
        for class in r.end.retried_errors {
            *s.errors.entry(class).or_default() += 1;
        }
    }
    s.latency_p95_ms = p95(&mut latencies).map(round2);
    Ok(s)
}

/// The 95th percentile (nearest rank), if there are any.
fn p95(xs: &mut [f64]) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    let rank = ((xs.len() as f64) * 0.95).ceil() as usize;
    xs.get(rank.max(1) - 1).copied()
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}
