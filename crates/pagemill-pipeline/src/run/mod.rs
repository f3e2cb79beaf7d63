//! `pagemill run`: documents → units → requests → validated, grounded results in the ledger →
//! one JSON per document and a run summary.
//!
//! - [`plan`]: the units of a set of documents, with their keys, and the pages that get none.
//! - `exec`: packing, sending, checking, routing failures (re-run alone, re-ask, split, fall
//!   back, give up with a reason), committing.
//! - `batch`: the same through an OpenAI-style batch API.
//! - [`mod@array`]: the same as prompt arrays on legacy completions, written in the model's chat
//!   template.
//! - [`grounding`]: mentions placed in their pages; mentions merged into entities.
//! - [`output`]: per-document results and the run summary, from the ledger alone; their files
//!   (named the same on every run, written whole or not at all); mentions as flat rows.
//! - [`quote`]: tokens and cost before running.
//! - [`setup`]: the tasks asked for, fitted to how the endpoint's model is prompted.

pub mod array;
mod batch;
pub mod budget;
pub mod checks;
pub mod drift;
mod exec;
pub mod grounding;
pub mod output;
pub mod plan;
pub mod quote;
pub mod setup;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagemill_client::Client;
use serde::{Deserialize, Serialize};

use crate::ingest::Document;
use crate::store::{Replan, Store, StoreError};
use crate::tasks::TaskKind;
pub use output::{DocumentResult, Examples, RunSummary, UngroundedPolicy};
pub use plan::{PageSkip, Tasks, Work};

/// How many items go in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackSize {
    /// Exactly this many (fewer at the end).
    Fixed(usize),
    /// As many as fit the token budget ([`RunOptions::pack_tokens`]), up to 16.
    Auto,
}

impl std::str::FromStr for PackSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(PackSize::Auto),
            n => match n.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(PackSize::Fixed(k)),
                _ => Err(format!("pack size `{s}`: expected `auto` or a number ≥ 1")),
            },
        }
    }
}

impl std::fmt::Display for PackSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// How answers are asked to be JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FormatMode {
    /// `json_schema`, falling back to `json_object`, then plain text, when the endpoint
    /// refuses it.
    Auto,
    /// `response_format: json_schema` only.
    JsonSchema,
    /// `response_format: json_object`.
    JsonObject,
    /// No `response_format`: the prompt alone asks for JSON.
    Text,
}

impl std::str::FromStr for FormatMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => FormatMode::Auto,
            "json_schema" => FormatMode::JsonSchema,
            "json_object" => FormatMode::JsonObject,
            "text" => FormatMode::Text,
            _ => {
                return Err(format!(
                    "`{s}`: expected auto, json_schema, json_object or text"
                ));
            }
        })
    }
}

impl std::fmt::Display for FormatMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::JsonSchema => "json_schema",
            Self::JsonObject => "json_object",
            Self::Text => "text",
        })
    }
}

/// How a run goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Items per request.
    pub pack: PackSize,
    /// Item tokens a packed request may carry (with [`PackSize::Auto`]).
    pub pack_tokens: u64,
    /// Re-asks of a unit whose answer is unusable.
    pub max_reasks: u32,
    /// Prompt tokens a unit's re-asks may spend in all.
    pub reask_tokens: u64,
    /// Times a unit goes back in the queue after the client's own retries gave up on a
    /// transient failure, before it is given up on.
    pub rounds: u32,
    /// Requests in flight (the endpoint's limits still apply).
    pub concurrency: usize,
    /// Structured output.
    pub format: FormatMode,
    /// Stream answers (timelines with first-token times).
    pub stream: bool,
    /// Largest `max_tokens` of a request.
    pub max_completion_tokens: u64,
    /// What becomes of units the ledger already knows: resume (retrying the endpoint's
    /// failures), retry every failed one too, or redo everything.
    #[serde(skip)]
    pub replan: Replan,
    /// Record the documents and plan their units, and send nothing (workers do the work).
    #[serde(skip)]
    pub plan_only: bool,
    /// Use the endpoint's batch API.
    pub batch: bool,
    /// How often to poll a batch.
    pub batch_poll: Duration,
    /// Most items in one batch file.
    pub batch_max_lines: usize,
    /// Most items in one request, whatever the pack size says (small models).
    pub max_pack: usize,
    /// Answers refused for their quality (a copied or off-topic summary, repeated list values)
    /// are asked again once with the reason before they are flagged. Off for tiny models: on
    /// the embedded 135M model none of 9 such re-asks came back fixed, and they were a third of
    /// the run's requests.
    #[serde(default = "yes")]
    pub quality_reasks: bool,
    /// Keeps this configuration's results apart from other configurations' in the same
    /// ledger (see [`crate::store::UnitSpec::variant`]); empty for an ordinary run.
    #[serde(default)]
    pub variant: String,
    /// Requests of one task sent together as one prompt array on legacy `/v1/completions`
    /// (see [`mod@array`]); 0 or 1: each request alone.
    #[serde(default)]
    pub array: usize,
    /// Spending limits: the run's, and the day's counted in the ledger (see [`budget`]);
    /// requests go out only while the most they can cost fits, then the run stops, resumable.
    #[serde(default)]
    pub budget: budget::BudgetSpec,
}

fn yes() -> bool {
    true
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            pack: PackSize::Auto,
            pack_tokens: 6000,
            max_reasks: 2,
            reask_tokens: 16_000,
            rounds: 3,
            concurrency: 8,
            format: FormatMode::Auto,
            stream: true,
            max_completion_tokens: 8192,
            replan: Replan::Resume,
            plan_only: false,
            batch: false,
            batch_poll: Duration::from_secs(10),
            batch_max_lines: 50_000,
            max_pack: exec::AUTO_MAX_ITEMS,
            quality_reasks: true,
            variant: String::new(),
            array: 0,
            budget: budget::BudgetSpec::default(),
        }
    }
}

/// Running totals of one task.
#[derive(Debug, Default)]
pub struct TaskStats {
    /// Requests made.
    pub requests: AtomicU64,
    /// Items sent (a unit re-run counts again).
    pub items: AtomicU64,
    /// Prompt tokens (every attempt).
    pub prompt: AtomicU64,
    /// Cached prompt tokens reported.
    pub cached: AtomicU64,
    /// Completion tokens.
    pub completion: AtomicU64,
    /// Picodollars (known costs).
    pub cost_pico: AtomicU64,
    /// Requests whose server did not report cached tokens.
    pub cached_unreported: AtomicU64,
    /// Requests of unknown cost.
    pub cost_unknown: AtomicU64,
    /// Attempts the client retried.
    pub retries: AtomicU64,
    /// Requests that failed in the end.
    pub failed_requests: AtomicU64,
}

/// Live counters of a run, for progress bars and the summary; cancelling `stop` asks the run to
/// finish what is in flight, take nothing new, and write its results (the same token stops a
/// benchmark: Ctrl-C drains the same way everywhere).
#[derive(Debug, Default)]
pub struct Progress {
    /// Cancelled to stop taking new work.
    pub stop: tokio_util::sync::CancellationToken,
    /// Units by task (entities, summary, metadata): in the plan.
    pub total: [AtomicU64; 3],
    /// Units finished by an earlier run.
    pub already: [AtomicU64; 3],
    /// Units finished by this run.
    pub done: [AtomicU64; 3],
    /// Units given up on by this run.
    pub failed: [AtomicU64; 3],
    /// Tokens, cost and requests by task.
    pub tasks: [TaskStats; 3],
    /// Re-asks made.
    pub reasks: AtomicU64,
    /// Items re-run alone after their pack failed them.
    pub singles: AtomicU64,
    /// Jobs moved to a fallback endpoint.
    pub fallbacks: AtomicU64,
    /// Packs split because they did not fit the context.
    pub splits: AtomicU64,
    /// Times a task's pack size was halved.
    pub shrinks: AtomicU64,
    /// Batches submitted.
    pub batches: AtomicU64,
    /// Prompt arrays sent (each one HTTP request carrying several requests).
    pub arrays: AtomicU64,
    /// `max_tokens` asked for, summed over requests: with the prompt, what a provider charges
    /// against a tokens-per-minute limit.
    pub max_tokens_asked: AtomicU64,
    /// Answers cut off at `max_tokens` (their items asked again with the full budget).
    pub truncated: AtomicU64,
    /// Streams cancelled because their answer looped.
    pub loops: AtomicU64,
    /// Completion tokens those cancellations spared (their `max_tokens` less what came).
    pub loop_tokens_saved: AtomicU64,
    /// Latencies of answered requests, by endpoint.
    pub latency: std::sync::Mutex<std::collections::BTreeMap<String, Latency>>,
    /// Requests recorded and not finished yet: waiting for the rate limiter, or sent.
    pub in_flight: AtomicU64,
    /// Failed attempts by error class, retried ones included (as the summary's `errors`).
    pub errors: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// The run's spending limits, when it has any.
    pub budget: budget::BudgetCell,
}

/// Upper bounds of the latency buckets, seconds (the last bucket is everything above).
pub const LATENCY_BOUNDS: [f64; 11] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

/// Counts of latencies in [`LATENCY_BOUNDS`] buckets (not cumulative; the last is above them
/// all), with their sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// Per bucket.
    pub counts: [u64; LATENCY_BOUNDS.len() + 1],
    /// Sum of the latencies, seconds.
    pub sum_secs: f64,
}

impl Buckets {
    fn add(&mut self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i] += 1;
        self.sum_secs += s;
    }

    /// Adds `o`'s counts.
    pub fn merge(&mut self, o: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_secs += o.sum_secs;
    }
}

/// One endpoint's latencies: time to first answer token, and end to end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// Time to first answer token (streams).
    pub ttft: Buckets,
    /// End to end.
    pub e2e: Buckets,
}

impl Progress {
    /// Where the run's spending limits stand, when it has any.
    pub fn budget_status(&self) -> Option<budget::BudgetStatus> {
        self.budget.0.get().map(|b| b.status())
    }

    pub(crate) fn set_budget(&self, budget: Arc<budget::Budget>) {
        let _ = self.budget.0.set(budget);
    }

    /// Records an answered request's latencies.
    pub fn record_latency(
        &self,
        endpoint: &str,
        ttft: Option<std::time::Duration>,
        e2e: Option<std::time::Duration>,
    ) {
        let mut all = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        // The name is copied only the first time (a benchmark records thousands a second).
        if !all.contains_key(endpoint) {
            all.insert(endpoint.to_owned(), Latency::default());
        }
        let Some(l) = all.get_mut(endpoint) else {
            return;
        };
        if let Some(t) = ttft {
            l.ttft.add(t);
        }
        if let Some(t) = e2e {
            l.e2e.add(t);
        }
    }

    /// Units finished or given up on (by this run or an earlier one), and the plan's total.
    pub fn units(&self) -> (u64, u64) {
        let sum = |a: &[AtomicU64; 3]| a.iter().map(|x| x.load(Ordering::Relaxed)).sum::<u64>();
        (
            sum(&self.already) + sum(&self.done) + sum(&self.failed),
            sum(&self.total),
        )
    }

    /// Pages whose entities are finished or given up on, and pages with an entities unit.
    pub fn pages(&self) -> (u64, u64) {
        let i = exec::slot(TaskKind::Entities);
        (
            self.already[i].load(Ordering::Relaxed)
                + self.done[i].load(Ordering::Relaxed)
                + self.failed[i].load(Ordering::Relaxed),
            self.total[i].load(Ordering::Relaxed),
        )
    }

    /// Tokens (prompt + completion) and known cost so far, in picodollars (`None` until a
    /// request of known cost has finished: an endpoint without prices never shows `$0`).
    pub fn spend(&self) -> (u64, Option<u64>) {
        let mut tokens = 0;
        let mut cost = 0;
        let mut known = 0;
        for t in &self.tasks {
            tokens += t.prompt.load(Ordering::Relaxed) + t.completion.load(Ordering::Relaxed);
            cost += t.cost_pico.load(Ordering::Relaxed);
            known += t
                .requests
                .load(Ordering::Relaxed)
                .saturating_sub(t.cost_unknown.load(Ordering::Relaxed));
        }
        (tokens, (known > 0).then_some(cost))
    }
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The ledger failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No endpoint to send to.
    #[error("no endpoint to run on")]
    NoEndpoint,
    /// `--array` on an endpoint whose prompts cannot be written as text.
    #[error("endpoint `{endpoint}`: prompt arrays need its chat template: {why}")]
    Template {
        /// The endpoint.
        endpoint: String,
        /// What is missing or wrong.
        why: String,
    },
    /// A run's task panicked (a bug; the ledger keeps what was finished).
    #[error("{0} (a bug: the ledger keeps every finished result)")]
    Panicked(String),
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// One result per document, in input order.
    pub documents: Vec<DocumentResult>,
    /// The summary.
    pub summary: RunSummary,
    /// Every unit's key (done by this run or an earlier one), for figures read from the ledger.
    pub keys: Vec<String>,
    /// Every drift figure against the ledger's trailing 7 days, alarms (also in the summary)
    /// and figures within their thresholds.
    pub compared: Vec<drift::Drift>,
}

/// Runs `tasks` over `docs` on `endpoints` (the first is primary, the others fallbacks on
/// permanent failure), recording everything in `ledger`.
pub async fn run(
    docs: &[Document],
    tasks: Tasks,
    endpoints: Vec<Arc<Client>>,
    ledger: Box<dyn Store>,
    opts: RunOptions,
    progress: Arc<Progress>,
    policy: UngroundedPolicy,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let primary = endpoints.first().ok_or(RunError::NoEndpoint)?;
    // A reasoning effort changes the answers: results under one are not another's.
    let ep = primary.endpoint();
    let model = match ep.reasoning_effort {
        Some(e) => format!("{} reasoning_effort={e}", ep.model),
        None => ep.model.clone(),
    };
    let (mut work, skips) = plan::plan(docs, &tasks, &model, primary.tokenizer());
    if !opts.variant.is_empty() {
        for w in &mut work {
            w.spec.variant.clone_from(&opts.variant);
            w.key = w.spec.key();
        }
    }
    let mut ledger = ledger;
    // Workers sharing the store share each endpoint's rate limits too (one provider account).
    for c in &endpoints {
        let ep = c.endpoint();
        if let Some(budget) = ledger.rate_budget(
            &crate::store::postgres::budget_name(&ep.base_url, &ep.model),
            &ep.limits,
        ) {
            c.limiter().share(budget);
        }
    }
    for d in docs {
        ledger.record_document(d, kind_name(d))?;
    }
    let names: Vec<String> = endpoints
        .iter()
        .map(|c| c.endpoint().name.clone())
        .collect();
    ledger.run_started(&names)?;
    let specs: Vec<_> = work.iter().map(|w| w.spec.clone()).collect();
    let todo: HashSet<String> = ledger.plan(&specs, opts.replan)?.into_iter().collect();
    let mut seen = HashSet::new();
    for w in &work {
        if seen.insert(&w.key) {
            let i = exec::slot(w.kind);
            progress.total[i].fetch_add(1, Ordering::Relaxed);
            if !todo.contains(&w.key) {
                progress.already[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let page_texts: Vec<HashMap<u32, String>> = docs
        .iter()
        .map(|d| d.pages.iter().map(|p| (p.number, p.text.clone())).collect())
        .collect();
    let workers = opts.concurrency.max(1);
    let batch = opts.batch;
    if opts.plan_only {
        // Planned: the work is left for workers; the run stops before its first request.
        progress.stop.cancel();
    }
    let opts_budget = opts.budget.clone();
    let templates = if opts.array > 1 && !batch {
        templates(&endpoints)?
    } else {
        Vec::new()
    };
    let mut shared = exec::Shared::new(
        work,
        page_texts,
        tasks,
        endpoints,
        ledger,
        opts,
        Arc::clone(&progress),
        &todo,
    );
    shared.templates = templates;
    if opts_budget.is_set() {
        let day_start = opts_budget.day_start(crate::store::unix_now());
        let today = shared.ledger().spent_since(day_start)?;
        shared.set_budget(&opts_budget, today);
    }
    // The latest answers are plenty to learn lengths from (a few thousand a task at most).
    shared.learn_lengths(&shared.ledger().recent_requests(20_000)?);
    let shared = Arc::new(shared);
    if batch {
        batch::drive(&shared).await?;
    } else {
        shared.drive(workers).await;
    }
    if let Some(e) = shared.fatal() {
        tracing::error!("run stopped: {e}");
    }
    let stopped = shared.fatal().or_else(|| shared.budget_reached());
    let ledger = shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
    let examples = Examples::of(&shared.tasks);
    let documents = output::documents(docs, &shared.work, &skips, &**ledger, policy, &examples)?;
    let summary = output::summary(
        &documents,
        &shared.work,
        &**ledger,
        &progress,
        shared.pack_sizes(),
        started.elapsed(),
        &shared.endpoints,
        stopped,
    )?;
    let mut summary = summary;
    let since = crate::store::unix_now() - drift::WINDOW_SECS;
    let history: Vec<serde_json::Value> = ledger
        .run_summaries_since(since)?
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let mut compared = Vec::new();
    if let Ok(current) = serde_json::to_value(&summary) {
        compared = drift::compare(&current, &history);
        summary.drift = compared.iter().filter(|d| d.alarm).cloned().collect();
    }
    for d in &summary.drift {
        tracing::warn!("drift: {}", d.message);
    }
    ledger.run_finished(&serde_json::to_string(&summary).unwrap_or_default())?;
    let keys = shared.work.iter().map(|w| w.key.clone()).collect();
    Ok(RunOutcome {
        documents,
        summary,
        keys,
        compared,
    })
}

/// Each endpoint's prompt template, for prompt arrays: the primary must have one (that is
/// where the work goes); a fallback without one takes its jobs one request at a time.
fn templates(
    endpoints: &[Arc<Client>],
) -> Result<Vec<Option<Arc<array::PromptTemplate>>>, RunError> {
    endpoints
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ep = c.endpoint();
            let refuse = |why: String| RunError::Template {
                endpoint: ep.name.clone(),
                why,
            };
            match (&ep.prompt_template, c.dialect().api) {
                (_, api) if api != pagemill_client::Api::Chat => Err(refuse(format!(
                    "its API is `{}`, which has no legacy completions",
                    api.name()
                ))),
                (Some(spec), _) => {
                    if ep.per_request_schema {
                        // Measured on the embedded 135M model: 25 re-asks and 12 units given up
                        // on for 4 pages, against 1 and none with a schema per request.
                        tracing::warn!(
                            endpoint = %ep.name,
                            "prompt arrays share one answer schema: this endpoint's per-request schemas (exactly each request's items) are given up, which costs a small model much of its accuracy"
                        );
                    }
                    array::PromptTemplate::new(spec)
                    .map(|t| Some(Arc::new(t)))
                    .map_err(refuse)
                }
                (None, _) if i == 0 => Err(refuse(
                    "set `prompt_template` (chatml, llama3, or the model's Jinja template)".into(),
                )),
                (None, _) => Ok(None),
            }
        })
        .collect()
}

fn kind_name(d: &Document) -> &'static str {
    match d.kind {
        crate::ingest::DocKind::Pdf => "pdf",
        crate::ingest::DocKind::Html => "html",
        crate::ingest::DocKind::Markdown => "markdown",
        crate::ingest::DocKind::Text => "text",
        crate::ingest::DocKind::Docx => "docx",
    }
}
