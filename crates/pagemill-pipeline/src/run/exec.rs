//! Executing units: packs formed on the fly, sent under the endpoints' limits, answers checked
//! item by item, failures routed (re-run alone, re-ask, split, fall back, give up with a
//! reason), every outcome committed to the ledger as it happens.
//!
//! Workers share one queue. Fresh units are packed when a worker takes them, so a pack size
//! reduced after failures applies to the very next pack. Explicit jobs (items re-run alone,
//! re-asks, fallbacks) go first. A unit is leased while in flight and released when it goes
//! back to the queue, so a killed run leaves it `pending`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use pagemill_client::wire::StreamOptions;
use pagemill_client::{ChatRequest, Client, ErrorClass, Message, Outcome, RequestError};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::budget::{Reserve, Spend};
use super::checks;
use super::grounding::ground;
use super::plan::{Tasks, Work};
use super::{FormatMode, PackSize, Progress, RunOptions, TaskStats};
use crate::store::{RequestEnd, Store, StoreError, UnitStatus};
use crate::tasks::answers::{check_pack, parse_lenient};
use crate::tasks::{Item, TaskKind};

/// Pack size when chosen by budget alone.
pub(crate) const AUTO_MAX_ITEMS: usize = 16;
/// Packs in a row with failed items before the pack size is halved.
const SHRINK_AFTER: u32 = 2;

/// One request to make.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub(crate) kind: TaskKind,
    /// Indices into the work list.
    pub(crate) units: Vec<usize>,
    /// Index into the endpoint list (0 = primary, then fallbacks).
    pub(crate) endpoint: usize,
    /// The earlier answer and what was wrong with it, for a re-ask.
    pub(crate) reask: Option<(String, String)>,
}

#[derive(Debug, Default, Clone)]
struct UnitState {
    reasks: u32,
    reask_tokens: u64,
    rounds: u32,
    /// Answers refused for their quality (a copied summary, repeated keywords): one more try,
    /// then the answer is kept with a flag.
    quality: u32,
    /// An answer carrying it was cut off at `max_tokens`: from now on it is asked with the
    /// full budget, never a learned one.
    cut: bool,
}

/// How long answers run, as a share of their full `max_tokens` budget, per task: the p99 of
/// the latest [`Lengths::KEEP`] (with this run's and the ledger's earlier answers) sets the
/// `max_tokens` a request asks for, since providers charge `prompt + max_tokens` against a
/// tokens-per-minute limit whatever is generated.
///
/// An answer cut off at its budget counts at that budget — a length it reached at least. Left
/// out, the long answers a tight budget cuts would vanish from the sample, its p99 would fall
/// below the budget, and each tighter budget would cut more (a ratchet down); counted, more
/// than 1% cut puts the p99 at the budget and the next one 20% above it.
#[derive(Debug, Default)]
struct Lengths {
    shares: VecDeque<f32>,
}

impl Lengths {
    const KEEP: usize = 1024;
    /// Answers needed before the budget is learned rather than the full one.
    const LEARN_AFTER: usize = 20;
    /// Headroom over the p99.
    const MARGIN: f64 = 1.2;

    fn add(&mut self, share: f32) {
        if self.shares.len() == Self::KEEP {
            self.shares.pop_front();
        }
        self.shares.push_back(share);
    }

    /// The share of the full budget to ask for, once enough answers were seen.
    fn budget_share(&self) -> Option<f64> {
        if self.shares.len() < Self::LEARN_AFTER {
            return None;
        }
        let mut v: Vec<f32> = self.shares.iter().copied().collect();
        v.sort_by(f32::total_cmp);
        let p99 = v[((v.len() - 1) as f64 * 0.99).round() as usize];
        Some((f64::from(p99) * Self::MARGIN).min(1.0))
    }
}

/// What the workers share.
pub(crate) struct Shared {
    pub(crate) work: Vec<Work>,
    pub(crate) page_texts: Vec<HashMap<u32, String>>,
    pub(crate) tasks: Tasks,
    pub(crate) endpoints: Vec<Arc<Client>>,
    pub(crate) ledger: Mutex<Box<dyn Store>>,
    pub(crate) opts: RunOptions,
    pub(crate) progress: Arc<Progress>,
    /// Per task slot: its prompt version (hashed once, not per request).
    versions: [String; 3],
    /// Per endpoint and task slot: tokens of the system prefix under that endpoint's tokenizer.
    prefix_tokens: Vec<[u64; 3]>,
    queue: Mutex<Queue>,
    notify: Notify,
    /// Per document: the latest summary answered for each of its units in this run (summary,
    /// unit), kept or refused, to catch one copied into
    /// another section.
    summaries: Mutex<HashMap<usize, Vec<(String, usize)>>>,
    /// The words of the summary prompt's worked example.
    example_words: std::collections::HashSet<String>,
    /// Per task slot: how long answers run (see [`Lengths`]).
    lengths: Mutex<[Lengths; 3]>,
    /// Per endpoint: how its prompts are written for prompt arrays (`run --array`), when
    /// they are sent so.
    pub(crate) templates: Vec<Option<Arc<super::array::PromptTemplate>>>,
    /// The run's spending limit (`--budget-usd`).
    budget: Option<Arc<super::budget::Budget>>,
}

/// A summary with this many words of the prompt's example that its section lacks (the
/// example's "Skerrow", "keeper", "wicks") is the example, not the section.
const EXAMPLE_BORROWED: usize = 2;

struct Queue {
    fresh: [VecDeque<usize>; 3],
    jobs: VecDeque<Job>,
    next_task: usize,
    k: [usize; 3],
    streak: [u32; 3],
    in_flight: usize,
    /// Per endpoint: the structured-output mode in use (downgraded when refused).
    format: Vec<FormatMode>,
    state: HashMap<usize, UnitState>,
    error: Option<String>,
    /// A job waits for requests in flight to give budget back (see `run/budget.rs`).
    budget_wait: bool,
    /// Units another run (a worker sharing the store) holds: asked for again every
    /// [`PARKED_POLL`] once there is nothing else to do, until done or theirs lapses.
    parked: Vec<usize>,
}

/// How often units another run holds are looked at again.
const PARKED_POLL: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) fn slot(kind: TaskKind) -> usize {
    match kind {
        TaskKind::Entities => 0,
        TaskKind::Summary => 1,
        TaskKind::Metadata => 2,
    }
}

const KINDS: [TaskKind; 3] = [TaskKind::Entities, TaskKind::Summary, TaskKind::Metadata];

impl Shared {
    #[allow(clippy::too_many_arguments)] // one call site, each argument a different part
    pub(crate) fn new(
        work: Vec<Work>,
        page_texts: Vec<HashMap<u32, String>>,
        tasks: Tasks,
        endpoints: Vec<Arc<Client>>,
        ledger: Box<dyn Store>,
        opts: RunOptions,
        progress: Arc<Progress>,
        todo: &HashSet<String>,
    ) -> Self {
        let mut fresh: [VecDeque<usize>; 3] = Default::default();
        let mut scheduled = HashSet::new();
        for (i, w) in work.iter().enumerate() {
            if todo.contains(&w.key) && scheduled.insert(w.key.clone()) {
                fresh[slot(w.kind)].push_back(i);
            }
        }
        if ledger.shared() {
            // Workers sharing a store start at different points of the same plan, so their
            // first leases do not all ask for the same units.
            for f in &mut fresh {
                if !f.is_empty() {
                    let at = rand::random_range(0..f.len());
                    f.rotate_left(at);
                }
            }
        }
        let k0 = match opts.pack {
            PackSize::Fixed(k) => k.max(1),
            PackSize::Auto => AUTO_MAX_ITEMS.min(opts.max_pack.max(1)),
        };
        // Metadata reads a whole document head: one a request.
        let k = [k0, k0, 1];
        let format = vec![opts.format; endpoints.len()];
        let versions = KINDS.map(|k| tasks.get(k).map(|t| t.prompt_version()).unwrap_or_default());
        let tasks_example_words = tasks
            .summary
            .as_ref()
            .map(|t| checks::example_words(t.system_prompt()))
            .unwrap_or_default();
        let prefix_tokens = endpoints
            .iter()
            .map(|c| {
                KINDS.map(|k| {
                    tasks
                        .get(k)
                        .map_or(0, |t| c.tokenizer().count(t.system_prompt()))
                })
            })
            .collect();
        Self {
            budget: None,
            versions,
            prefix_tokens,
            work,
            page_texts,
            tasks,
            endpoints,
            ledger: Mutex::new(ledger),
            opts,
            progress,
            queue: Mutex::new(Queue {
                fresh,
                jobs: VecDeque::new(),
                next_task: 0,
                k,
                streak: [0; 3],
                in_flight: 0,
                format,
                state: HashMap::new(),
                error: None,
                budget_wait: false,
                parked: Vec::new(),
            }),
            notify: Notify::new(),
            summaries: Mutex::new(HashMap::new()),
            example_words: tasks_example_words,
            lengths: Mutex::new(Default::default()),
            templates: Vec::new(),
        }
    }

    /// Sets the run's spending limits, with what was spent today before it.
    pub(crate) fn set_budget(&mut self, spec: &super::budget::BudgetSpec, today: (u64, u64)) {
        let today = Spend {
            pico: today.0,
            tokens: today.1,
        };
        let budget = Arc::new(super::budget::Budget::new(spec, today));
        self.progress.set_budget(Arc::clone(&budget));
        self.budget = Some(budget);
    }

    /// Why the run stopped for its budget, if it did.
    pub(crate) fn budget_reached(&self) -> Option<String> {
        self.budget
            .as_deref()
            .and_then(super::budget::Budget::reached)
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn ledger(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Times a unit may go back in the queue after a transient failure: batch rounds are
    /// cheap (a failed line costs nothing), so batch mode allows more.
    fn rounds(&self) -> u32 {
        if self.opts.batch {
            self.opts.rounds.max(8)
        } else {
            self.opts.rounds
        }
    }

    /// Final pack sizes by task.
    pub(crate) fn pack_sizes(&self) -> [usize; 3] {
        self.queue().k
    }

    /// A ledger error that stopped the run, if any.
    pub(crate) fn fatal(&self) -> Option<String> {
        self.queue().error.clone()
    }

    /// Takes the next job, packing fresh units under the current pack size and token budget.
    pub(crate) fn take(&self) -> Option<Job> {
        let mut q = self.queue();
        if q.error.is_some() || q.budget_wait || self.progress.stop.is_cancelled() {
            return None;
        }
        let job = if let Some(job) = q.jobs.pop_front() {
            job
        } else {
            let start = q.next_task;
            let t = (0..3)
                .map(|i| (start + i) % 3)
                .find(|&t| !q.fresh[t].is_empty())?;
            q.next_task = (t + 1) % 3;
            self.pack_fresh(&mut q, t)
        };
        q.in_flight += 1;
        Some(job)
    }

    /// Takes a job that can share a prompt array with `like`: the same task on the same
    /// endpoint, an explicit job first, else fresh units of that task (primary endpoint).
    pub(crate) fn take_like(&self, like: &Job) -> Option<Job> {
        let mut q = self.queue();
        if q.error.is_some() || q.budget_wait || self.progress.stop.is_cancelled() {
            return None;
        }
        let t = slot(like.kind);
        let job = match q
            .jobs
            .iter()
            .position(|j| j.kind == like.kind && j.endpoint == like.endpoint)
        {
            Some(i) => q.jobs.remove(i)?,
            None if like.endpoint == 0 && !q.fresh[t].is_empty() => self.pack_fresh(&mut q, t),
            None => return None,
        };
        q.in_flight += 1;
        Some(job)
    }

    /// The next pack of task `t`'s fresh units, under the current pack size and token budget.
    fn pack_fresh(&self, q: &mut Queue, t: usize) -> Job {
        let k = q.k[t];
        let budget = match self.opts.pack {
            PackSize::Auto => self.opts.pack_tokens,
            PackSize::Fixed(_) => u64::MAX,
        };
        let n = pack_len(q.fresh[t].iter().map(|&u| self.work[u].tokens), k, budget);
        let units: Vec<usize> = q.fresh[t].drain(..n).collect();
        Job {
            kind: KINDS[t],
            units,
            endpoint: 0,
            reask: None,
        }
    }

    /// Runs workers until every unit is done, failed, or the run is stopped.
    pub(crate) async fn drive(self: &Arc<Self>, workers: usize) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let me = Arc::clone(self);
            set.spawn(async move { me.worker().await });
        }
        while set.join_next().await.is_some() {}
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.take() {
                Some(job) => {
                    let template = self.templates.get(job.endpoint).cloned().flatten();
                    let r = match template {
                        Some(t) if self.opts.array > 1 => self.process_gathered(job, &t).await,
                        _ => self.process(job).await,
                    };
                    if let Err(e) = r {
                        self.queue().error = Some(e.to_string());
                    }
                    self.job_over();
                }
                None => {
                    let (idle, parked) = {
                        let q = self.queue();
                        let over = q.error.is_some() || self.progress.stop.is_cancelled();
                        (
                            q.in_flight == 0 || over,
                            q.in_flight == 0 && !over && !q.parked.is_empty(),
                        )
                    };
                    if parked {
                        // All that is left is held by other runs: look again in a while.
                        tokio::select! {
                            () = tokio::time::sleep(PARKED_POLL) => {}
                            () = self.progress.stop.cancelled() => {}
                        }
                        if let Err(e) = self.unpark() {
                            self.queue().error = Some(e.to_string());
                        }
                        continue;
                    }
                    if idle {
                        self.notify.notify_waiters();
                        return;
                    }
                    // Woken by finished work, or by a stop (which then finds the run idle).
                    tokio::select! {
                        () = notified => {}
                        () = self.progress.stop.cancelled() => {}
                    }
                }
            }
        }
    }

    pub(crate) fn keys(&self, units: &[usize]) -> Vec<String> {
        units.iter().map(|&u| self.work[u].key.clone()).collect()
    }

    /// Units of a job another run holds: set aside until [`Shared::unpark`].
    fn park(&self, units: Vec<usize>) {
        tracing::debug!(units = units.len(), "held by another run; set aside");
        self.queue().parked.extend(units);
    }

    /// Looks again at the units other runs held: those finished (or given up on) there are
    /// this run's no more; the rest go back to be leased, which takes them once free.
    fn unpark(&self) -> Result<(), StoreError> {
        let units = std::mem::take(&mut self.queue().parked);
        if units.is_empty() {
            return Ok(());
        }
        let rows = self.ledger().units(&self.keys(&units))?;
        let status: HashMap<&str, UnitStatus> =
            rows.iter().map(|r| (r.key.as_str(), r.status)).collect();
        let mut q = self.queue();
        for u in units {
            match status.get(self.work[u].key.as_str()) {
                Some(UnitStatus::Pending | UnitStatus::Leased) => {
                    q.fresh[slot(self.work[u].kind)].push_back(u);
                }
                // Finished or given up on there (or unknown to the store): not this run's to
                // wait for.
                _ => {
                    self.progress.already[slot(self.work[u].kind)].fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(q);
        self.notify.notify_waiters();
        Ok(())
    }

    /// Puts units back in the queue as `job`, still leased: a unit this run goes on working
    /// on (alone after a pack missed it, re-asked, retried) is not another worker's to take.
    fn requeue(&self, job: Job) -> Result<(), StoreError> {
        self.queue().jobs.push_back(job);
        Ok(())
    }

    /// Dead-letters `units` with `reason`; `retryable` when the endpoint failed them, not
    /// their answers (the next run tries them again).
    fn give_up(&self, units: &[usize], reason: &str, retryable: bool) -> Result<(), StoreError> {
        let ledger = self.ledger();
        for &u in units {
            ledger.fail(&self.work[u].key, reason, retryable)?;
            self.progress.failed[slot(self.work[u].kind)].fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The full `max_tokens` of a job's request: each item's budget, within the run's bounds.
    fn full_budget(&self, job: &Job) -> u64 {
        let sum: u64 = job
            .units
            .iter()
            .map(|&u| completion_budget(job.kind, self.work[u].tokens, &self.tasks))
            .sum();
        sum.clamp(64, self.opts.max_completion_tokens.max(64))
    }

    /// `max_tokens` of a job's request: the full budget scaled to how long this task's
    /// answers have run (p99 × 1.2, see [`Lengths`]) once enough have been seen; the full one
    /// before, and for items an answer was cut off on.
    fn max_tokens(&self, job: &Job) -> u64 {
        let full = self.full_budget(job);
        let cut = {
            let q = self.queue();
            job.units
                .iter()
                .any(|u| q.state.get(u).is_some_and(|st| st.cut))
        };
        if cut {
            return full;
        }
        let share = self.lengths()[slot(job.kind)].budget_share();
        match share {
            Some(share) => ((full as f64 * share).ceil() as u64).clamp(64.min(full), full),
            None => full,
        }
    }

    fn lengths(&self) -> std::sync::MutexGuard<'_, [Lengths; 3]> {
        self.lengths.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns from the ledger's earlier answers to these units' tasks (same endpoint, same
    /// prompt version) how long answers run, so a resumed or repeated run asks for tight
    /// budgets from its first request.
    pub(crate) fn learn_lengths(&self, rows: &[crate::store::RequestRow]) {
        let index: HashMap<&str, usize> = self
            .work
            .iter()
            .enumerate()
            .map(|(i, w)| (w.key.as_str(), i))
            .collect();
        let primary = self.endpoints[0].endpoint().name.as_str();
        let mut lengths = self.lengths();
        for r in rows {
            let (Some(completion), true) = (r.end.completion_tokens, r.end.ok) else {
                continue;
            };
            let Some(kind) = KINDS.iter().copied().find(|k| k.name() == r.task) else {
                continue;
            };
            if r.endpoint != primary || r.prompt_version != self.versions[slot(kind)] {
                continue;
            }
            let Some(units) = r
                .unit_keys
                .iter()
                .map(|k| index.get(k.as_str()).copied())
                .collect::<Option<Vec<usize>>>()
            else {
                continue;
            };
            let job = Job {
                kind,
                units,
                endpoint: 0,
                reask: None,
            };
            let full = self.full_budget(&job);
            if completion < full {
                lengths[slot(kind)].add(completion as f32 / full as f32);
            }
        }
    }

    fn request(&self, job: &Job, format: FormatMode) -> Option<ChatRequest> {
        let task = self.tasks.get(job.kind)?;
        let client = &self.endpoints[job.endpoint];
        let items: Vec<Item<'_>> = job
            .units
            .iter()
            .map(|&u| Item {
                id: &self.work[u].item_id,
                text: &self.work[u].text,
                hints: self.work[u].hints.as_ref(),
            })
            .collect();
        let mut messages = task.messages(&items);
        if let Some((answer, problem)) = &job.reask {
            messages.push(Message::assistant(answer.clone()));
            messages.push(Message::user(format!(
                "That answer cannot be used: {problem}. Answer again with only the JSON, in the shape the instructions give."
            )));
        }
        let narrowed = client.endpoint().per_request_schema;
        let response_format = match format {
            FormatMode::JsonSchema | FormatMode::Auto if narrowed => {
                let ids: Vec<&str> = items.iter().map(|i| i.id).collect();
                Some(task.response_format_for(&ids, items[0].hints))
            }
            FormatMode::JsonSchema | FormatMode::Auto => Some(task.response_format()),
            FormatMode::JsonObject => Some(json!({"type": "json_object"})),
            FormatMode::Text => None,
        };
        let max_tokens = self.max_tokens(job);
        Some(ChatRequest {
            cancel_loops: true,
            model: client.endpoint().model.clone(),
            messages,
            max_tokens: Some(max_tokens as u32),
            temperature: Some(0.0),
            seed: Some(0),
            stream: self.opts.stream,
            stream_options: self.opts.stream.then_some(StreamOptions {
                include_usage: true,
            }),
            response_format,
            prompt_cache_key: client
                .endpoint()
                .prompt_cache_key
                .then(|| self.versions[slot(job.kind)].clone()),
            ..ChatRequest::default()
        })
    }

    /// Sends one job and routes what comes back.
    pub(crate) async fn process(&self, mut job: Job) -> Result<(), StoreError> {
        let Some((req, rid, format)) = self.start(&mut job)? else {
            return Ok(());
        };
        let client = Arc::clone(&self.endpoints[job.endpoint]);
        let outcome = client
            .chat_tagged(&req, false, Some(&rid.to_string()))
            .await;
        self.finish(job, rid, format, &outcome)
    }

    /// Builds a job's request, leases its units and records the request; `None` when its task
    /// is off.
    pub(crate) fn start(
        &self,
        job: &mut Job,
    ) -> Result<Option<(ChatRequest, i64, FormatMode)>, StoreError> {
        // Lease first: what another run sharing the store holds is left out of the request.
        let mut keys = self.keys(&job.units);
        let leased = self.ledger().lease(&keys)?;
        if leased.len() < keys.len() {
            let got: HashSet<&str> = leased.iter().map(String::as_str).collect();
            let (mine, theirs): (Vec<usize>, Vec<usize>) = job
                .units
                .iter()
                .partition(|&&u| got.contains(self.work[u].key.as_str()));
            job.units = mine;
            keys = leased;
            self.park(theirs);
            if job.units.is_empty() {
                return Ok(None);
            }
        }
        let format = self.queue().format[job.endpoint];
        let Some(req) = self.request(job, format) else {
            self.ledger().release(&keys)?;
            return Ok(None);
        };
        let reserved = match &self.budget {
            Some(budget) => {
                let worst = super::budget::worst_cost(&self.endpoints[job.endpoint], &req);
                // Under the queue's lock, so a request that ends between this check and the
                // wait below still finds the wait to lift.
                let mut q = self.queue();
                match budget.reserve(worst) {
                    Reserve::Sent => Some(worst),
                    Reserve::Wait => {
                        // Back in the queue, untaken until a request in flight gives room back.
                        self.ledger().release(&keys)?;
                        q.jobs.push_front(job.clone());
                        q.budget_wait = true;
                        return Ok(None);
                    }
                    Reserve::Stop => {
                        // No new work: the run stops; this job waits in the queue for a rerun.
                        self.ledger().release(&keys)?;
                        q.jobs.push_front(job.clone());
                        self.progress.stop.cancel();
                        return Ok(None);
                    }
                }
            }
            None => None,
        };
        self.progress
            .max_tokens_asked
            .fetch_add(u64::from(req.max_tokens.unwrap_or(0)), Ordering::Relaxed);
        let version = &self.versions[slot(job.kind)];
        let prefix = self.prefix_tokens[job.endpoint][slot(job.kind)];
        let ledger = self.ledger();
        let rid = ledger.request_started(
            &self.endpoints[job.endpoint].endpoint().name,
            job.kind.name(),
            version,
            prefix,
            &keys,
        )?;
        if let (Some(budget), Some(worst)) = (&self.budget, reserved) {
            budget.hold(rid, worst);
        }
        self.progress.in_flight.fetch_add(1, Ordering::Relaxed);
        Ok(Some((req, rid, format)))
    }

    /// Records how a job's request ended and routes the answer or the failure.
    pub(crate) fn finish(
        &self,
        job: Job,
        rid: i64,
        format: FormatMode,
        outcome: &Outcome,
    ) -> Result<(), StoreError> {
        // (Never below zero, whatever a caller did: a gauge of 2⁶⁴ − 1 would mislead.)
        let _ = self
            .progress
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let end = record(outcome);
        if let Some(budget) = &self.budget {
            let tokens = match (end.prompt_tokens, end.completion_tokens) {
                (Some(p), Some(c)) => Some(p + c),
                _ => None,
            };
            budget.settle(rid, end.cost_pico, tokens);
            // Room given back: a job waiting for it may go (workers wake at `job_over`).
            self.queue().budget_wait = false;
        }
        self.ledger().request_finished(rid, &end)?;
        self.progress.add(job.kind, &end, job.units.len());
        if let Ok(ex) = outcome.result() {
            self.progress
                .record_latency(&ex.endpoint, ex.timeline.ttft(), ex.timeline.total());
            let ended = ex.cancelled.is_none();
            if ended && ex.finish_reason.as_deref() == Some("length") {
                self.progress.truncated.fetch_add(1, Ordering::Relaxed);
                let mut q = self.queue();
                for &u in &job.units {
                    q.state.entry(u).or_default().cut = true;
                }
            }
            // Every answer that ended by itself or at its budget tells how long answers run
            // (one cut off counts at the budget it reached: see [`Lengths`]).
            if let (true, Some(_), Some(c)) = (
                ended,
                ex.finish_reason.as_deref(),
                ex.usage.completion.map(|c| c.tokens),
            ) {
                let full = self.full_budget(&job);
                self.lengths()[slot(job.kind)].add(c as f32 / full.max(1) as f32);
            }
        }
        match outcome.result() {
            Err(e) => self.on_error(job, e, format),
            Ok(ex) => {
                let cut = match (&ex.cancelled, ex.finish_reason.as_deref()) {
                    (Some(why), _) => {
                        let spent = ex.usage.completion.map_or(0, |c| c.tokens);
                        let saved = self.max_tokens(&job).saturating_sub(spent);
                        self.progress.loops.fetch_add(1, Ordering::Relaxed);
                        self.progress
                            .loop_tokens_saved
                            .fetch_add(saved, Ordering::Relaxed);
                        Some(format!(" (answer looped, {why}: stream cancelled)"))
                    }
                    (None, Some("length")) => Some(" (answer cut off at max_tokens)".to_owned()),
                    _ => None,
                };
                self.on_answer(job, rid, &ex.content, cut)
            }
        }
    }

    /// Marks a job taken by [`Shared::take`] as over.
    pub(crate) fn job_over(&self) {
        self.queue().in_flight -= 1;
        self.notify.notify_waiters();
    }

    pub(crate) fn on_error(
        &self,
        mut job: Job,
        e: &RequestError,
        format: FormatMode,
    ) -> Result<(), StoreError> {
        let why = match e.status {
            Some(status) => format!("{}: HTTP {status}: {}", e.class, e.message),
            None => format!("{}: {}", e.class, e.message),
        };
        match e.class {
            ErrorClass::Permanent
                if self.opts.format == FormatMode::Auto
                    && format != FormatMode::Text
                    && refuses_format(e) =>
            {
                // The endpoint does not take json_schema: fall to json_object, then to text.
                let mut q = self.queue();
                let f = &mut q.format[job.endpoint];
                *f = match format {
                    FormatMode::Auto | FormatMode::JsonSchema => FormatMode::JsonObject,
                    _ => FormatMode::Text,
                };
                tracing::info!(endpoint = %self.endpoints[job.endpoint].endpoint().name, to = ?*f, "structured output refused; downgrading");
                drop(q);
                self.requeue(job)
            }
            ErrorClass::Permanent if job.endpoint + 1 < self.endpoints.len() => {
                job.endpoint += 1;
                self.progress.fallbacks.fetch_add(1, Ordering::Relaxed);
                self.requeue(job)
            }
            ErrorClass::ContextTooLong if job.units.len() > 1 => {
                let half = job.units.len() / 2;
                {
                    let mut q = self.queue();
                    let s = slot(job.kind);
                    q.k[s] = q.k[s].min(half.max(1));
                }
                let rest = job.units.split_off(half);
                self.progress.splits.fetch_add(1, Ordering::Relaxed);
                self.requeue(Job {
                    units: rest,
                    ..job.clone()
                })?;
                self.requeue(job)
            }
            ErrorClass::Transient | ErrorClass::Throttled => {
                let exhausted = {
                    let mut q = self.queue();
                    let mut over = false;
                    // Being throttled is the endpoint asking us to slow down, not the unit
                    // failing: it may go round several times as often.
                    let (cost, cap) = match e.class {
                        ErrorClass::Throttled => (1, self.rounds() * 4),
                        _ => (4, self.rounds() * 4),
                    };
                    for &u in &job.units {
                        let st = q.state.entry(u).or_default();
                        st.rounds += cost;
                        over |= st.rounds > cap;
                    }
                    over
                };
                if !exhausted {
                    self.requeue(job)
                } else if job.endpoint + 1 < self.endpoints.len() {
                    job.endpoint += 1;
                    self.progress.fallbacks.fetch_add(1, Ordering::Relaxed);
                    self.requeue(job)
                } else {
                    let rounds = rounds_of(&self.queue(), &job.units);
                    self.give_up(
                        &job.units,
                        &format!("{why} (after {rounds} rounds of retries)"),
                        true,
                    )
                }
            }
            _ => self.give_up(&job.units, &why, false),
        }
    }

    /// An answer came back: its valid items are checked for quality and committed, refused
    /// ones go back with the reason, failed ones are re-run alone (from a pack) or re-asked
    /// until they give up.
    fn on_answer(
        &self,
        job: Job,
        rid: i64,
        text: &str,
        cut: Option<String>,
    ) -> Result<(), StoreError> {
        let Some(task) = self.tasks.get(job.kind) else {
            return Ok(());
        };
        let (mut answers, mut failed) = self.read_answers(&job, task, text, cut.as_deref());
        // Alone, a cut answer the repair could close is kept: every value in it is still
        // grounded (or dropped) like any other, and asking again gives the same loop.
        let (flags, refused) = self.quality(&job, &mut answers, &mut failed);
        for &u in &job.units {
            let w = &self.work[u];
            if let Some(answer) = answers.get(&w.item_id) {
                let result = self.result(w, answer, flags.get(&u).map(String::as_str));
                self.ledger().complete(&w.key, &result, Some(rid))?;
                self.progress.done[slot(w.kind)].fetch_add(1, Ordering::Relaxed);
            }
        }
        // Answers refused for their quality go back with the reason: asked the same way again,
        // a model gives the same answer.
        for (u, answer, why) in refused {
            self.progress.reasks.fetch_add(1, Ordering::Relaxed);
            {
                let mut q = self.queue();
                q.state.entry(u).or_default().reasks += 1;
            }
            self.requeue(Job {
                kind: job.kind,
                units: vec![u],
                endpoint: job.endpoint,
                reask: Some((answer, why)),
            })?;
        }
        if job.units.len() > 1 {
            return self.after_pack(&job, failed);
        }
        match failed.into_iter().next() {
            Some((u, why)) => self.reask_or_give_up(&job, u, why, text),
            None => Ok(()),
        }
    }

    /// The valid answers of a reply by item id, and the units that got none (with why).
    fn read_answers(
        &self,
        job: &Job,
        task: &crate::tasks::Task,
        text: &str,
        cut: Option<&str>,
    ) -> (HashMap<String, Value>, Vec<(usize, String)>) {
        let ids: Vec<&str> = job
            .units
            .iter()
            .map(|&u| self.work[u].item_id.as_str())
            .collect();
        let cut_note = cut.unwrap_or("");
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut answers: HashMap<String, Value> = HashMap::new();
        if job.kind == TaskKind::Metadata {
            // Empty strings are candidates the model declined (see `response_format_for`).
            let parsed = parse_lenient(text).map(|(mut v, _)| {
                if let Some(o) = v.as_object_mut() {
                    for field in o.values_mut() {
                        if let Some(list) = field.as_array_mut() {
                            list.retain(|x| x.as_str() != Some(""));
                        }
                    }
                }
                v
            });
            match parsed.and_then(|v| task.compiled().validate(&v).map(|()| v)) {
                Ok(v) => {
                    answers.insert(ids[0].to_owned(), v);
                }
                Err(e) => failed.push((job.units[0], format!("{e}{cut_note}"))),
            }
        } else {
            // A cut answer's last entity may be half written: leave out what is incomplete.
            let pruned = (cut.is_some() && job.kind == TaskKind::Entities)
                .then(|| prune_entities(text))
                .flatten();
            match check_pack(pruned.as_deref().unwrap_or(text), task.compiled(), &ids) {
                Ok(check) => {
                    answers = check.answers;
                    let reasons: HashMap<&str, &str> = check
                        .invalid
                        .iter()
                        .map(|(id, why)| (id.as_str(), why.as_str()))
                        .collect();
                    for &u in &job.units {
                        let id = self.work[u].item_id.as_str();
                        if answers.contains_key(id) {
                            continue;
                        }
                        let why = reasons.get(id).map_or_else(
                            || format!("no answer for item `{id}`{cut_note}"),
                            |w| format!("invalid answer for item `{id}`: {w}"),
                        );
                        failed.push((u, why));
                    }
                }
                Err(e) => failed.extend(job.units.iter().map(|&u| (u, format!("{e}{cut_note}")))),
            }
        }
        if cut.is_some() && job.units.len() > 1 {
            // The item being answered when the answer was cut or cancelled was closed by the
            // repair, not by the model: it goes round again.
            if let Some(last) = last_item_id(text)
                && let Some(&u) = job.units.iter().find(|&&u| self.work[u].item_id == last)
                && answers.remove(&last).is_some()
            {
                failed.push((u, format!("answer for item `{last}` incomplete{cut_note}")));
            }
        }
        (answers, failed)
    }

    /// After a pack: packs shrink when they keep failing, and the items that failed in one are
    /// re-run alone.
    fn after_pack(&self, job: &Job, failed: Vec<(usize, String)>) -> Result<(), StoreError> {
        let s = slot(job.kind);
        {
            let mut q = self.queue();
            if failed.is_empty() {
                q.streak[s] = 0;
            } else {
                q.streak[s] += 1;
                if q.streak[s] >= SHRINK_AFTER && q.k[s] > 1 {
                    q.k[s] = (q.k[s] / 2).max(1);
                    q.streak[s] = 0;
                    self.progress.shrinks.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        task = job.kind.name(),
                        k = q.k[s],
                        "packs keep failing; smaller packs"
                    );
                }
            }
        }
        for (u, _) in failed {
            self.progress.singles.fetch_add(1, Ordering::Relaxed);
            self.requeue(Job {
                kind: job.kind,
                units: vec![u],
                endpoint: job.endpoint,
                reask: None,
            })?;
        }
        Ok(())
    }

    /// A unit asked alone failed: asked again with its answer and why (within the re-ask
    /// count and token budget), else given up on.
    fn reask_or_give_up(
        &self,
        job: &Job,
        u: usize,
        why: String,
        text: &str,
    ) -> Result<(), StoreError> {
        let prompt_tokens = self.work[u].tokens + 500;
        let reask = {
            let mut q = self.queue();
            let st = q.state.entry(u).or_default();
            if st.reasks < self.opts.max_reasks
                && st.reask_tokens + prompt_tokens <= self.opts.reask_tokens
            {
                st.reasks += 1;
                st.reask_tokens += prompt_tokens;
                true
            } else {
                false
            }
        };
        if reask {
            self.progress.reasks.fetch_add(1, Ordering::Relaxed);
            let answer: String = text.chars().take(4000).collect();
            self.requeue(Job {
                kind: job.kind,
                units: vec![u],
                endpoint: job.endpoint,
                reask: Some((answer, why)),
            })
        } else {
            let n = self.queue().state.get(&u).map_or(0, |s| s.reasks);
            self.give_up(&[u], &format!("{why} (after {n} re-asks)"), false)
        }
    }

    /// Answers that are well-formed but not worth keeping as they are (see [`Problem`]). The
    /// first time, the unit is refused: it goes back alone with its answer and the reason.
    /// After that, its answer is kept with the problem's flag, or, for a fatal problem, fails
    /// like any unusable answer. Returns the flags of answers kept and the refused units with
    /// their answer (as the model would have written it alone) and the reason.
    #[allow(clippy::type_complexity)]
    fn quality(
        &self,
        job: &Job,
        answers: &mut HashMap<String, Value>,
        failed: &mut Vec<(usize, String)>,
    ) -> (HashMap<usize, String>, Vec<(usize, String, String)>) {
        let mut flags = HashMap::new();
        let mut refused = Vec::new();
        for &u in &job.units {
            let w = &self.work[u];
            let Some(answer) = answers.get(&w.item_id) else {
                continue;
            };
            let problem = match w.kind {
                TaskKind::Summary => {
                    let s = answer["summary"].as_str().unwrap_or("");
                    let problem = self.summary_problem(u, s);
                    // Seen before it is judged or committed: a copy is caught whichever of
                    // two answers comes back first (packs and re-asks run concurrently).
                    let mut seen = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
                    let doc = seen.entry(w.doc).or_default();
                    doc.retain(|(_, other)| *other != u);
                    doc.push((s.to_owned(), u));
                    problem
                }
                TaskKind::Metadata => metadata_problem(answer),
                TaskKind::Entities => None,
            };
            let Some(Problem { why, flag, fatal }) = problem else {
                continue;
            };
            let first = self.opts.quality_reasks && {
                let mut q = self.queue();
                let st = q.state.entry(u).or_default();
                st.quality += 1;
                st.quality == 1
            };
            if first {
                if let Some(a) = answers.remove(&w.item_id) {
                    let alone = match w.kind {
                        TaskKind::Metadata => a.to_string(),
                        _ => json!({"items": [a]}).to_string(),
                    };
                    refused.push((u, alone, why));
                }
            } else if fatal {
                answers.remove(&w.item_id);
                failed.push((u, format!("invalid answer for item `{}`: {why}", w.item_id)));
            } else {
                flags.insert(u, flag);
            }
        }
        (flags, refused)
    }

    /// What is wrong with a summary of unit `u`, if anything: it borrows the prompt's example
    /// (fatal), speaks mostly of what its section does not say, or copies another section's.
    fn summary_problem(&self, u: usize, s: &str) -> Option<Problem> {
        let text = &self.work[u].text;
        if checks::borrowed_words(s, &self.example_words, text) >= EXAMPLE_BORROWED {
            return Some(Problem {
                why: "it copies the worked example of the instructions: summarise this section's own text".to_owned(),
                flag: String::new(),
                fatal: true,
            });
        }
        if let Some(what) = checks::not_a_summary(s, text) {
            return Some(Problem {
                why: format!("{what}: say in a sentence or two what this section says"),
                flag: what.to_owned(),
                fatal: false,
            });
        }
        if let Some(missing) = checks::unsupported_words(s, text) {
            let shown = missing
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Some(Problem {
                why: format!(
                    "it speaks of what the section does not mention ({shown}): summarise this section's own text"
                ),
                flag: format!("mostly words the section does not contain ({shown})"),
                fatal: false,
            });
        }
        self.copied_summary(u, s).map(|other| Problem {
            why: format!("its summary repeats, nearly word for word, the summary of {other}: summarise this section's own text"),
            flag: format!("near-identical to the summary of {other}"),
            fatal: false,
        })
    }

    /// The section whose latest summary (see `Shared::summaries`) `summary` copies, if any:
    /// near-identical summaries of sections whose texts differ.
    fn copied_summary(&self, u: usize, summary: &str) -> Option<String> {
        let w = &self.work[u];
        let differs =
            |other: usize| checks::similarity(&self.work[other].text, &w.text) < checks::COPY_MIN;
        let seen = self.summaries.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&w.doc)?
            .iter()
            .find(|(s, other)| {
                *other != u && checks::similarity(s, summary) >= checks::COPY_MIN && differs(*other)
            })
            .map(|(_, other)| {
                self.work[*other]
                    .section
                    .map_or_else(|| "another section".to_owned(), |s| format!("section {s}"))
            })
    }

    /// The result committed for a unit: grounded mentions, a summary, or metadata (with any
    /// flag from [`Shared::quality`]).
    fn result(&self, w: &Work, answer: &Value, flag: Option<&str>) -> Value {
        match w.kind {
            TaskKind::Entities => {
                let page = w.page.unwrap_or(0);
                let text = self.page_texts[w.doc].get(&page).map_or("", String::as_str);
                let mentions: Vec<(String, String)> = answer["entities"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|e| {
                                (
                                    e["text"].as_str().unwrap_or("").to_owned(),
                                    e["type"].as_str().unwrap_or("").to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!({"mentions": ground(text, page, &mentions)})
            }
            TaskKind::Summary => match flag {
                Some(f) => json!({"summary": answer["summary"], "flag": f}),
                None => json!({"summary": answer["summary"]}),
            },
            TaskKind::Metadata => {
                let mut values = answer.clone();
                if let Some(o) = values.as_object_mut() {
                    for v in o.values_mut() {
                        if let Some(list) = v.as_array() {
                            *v = Value::Array(checks::dedup_list(list));
                        }
                    }
                }
                let flags: Vec<&str> = flag.into_iter().collect();
                json!({"values": values, "flags": flags})
            }
        }
    }
}

/// An answer well-formed but not worth keeping as it is.
struct Problem {
    /// Told to the model when it is asked again.
    why: String,
    /// Kept with the answer when asking again did not help.
    flag: String,
    /// Never kept: the second time, the unit fails.
    fatal: bool,
}

/// Metadata whose list fields (keywords, authors, parties…) hold a value twice.
fn metadata_problem(answer: &Value) -> Option<Problem> {
    let mut repeats: Vec<String> = answer
        .as_object()?
        .iter()
        .filter_map(|(field, v)| {
            let r = checks::repeated(v.as_array()?);
            (!r.is_empty()).then(|| format!("{field} ({})", r.join(", ")))
        })
        .collect();
    repeats.sort();
    (!repeats.is_empty()).then(|| {
        let all = repeats.join(", ");
        Problem {
            why: format!("values repeat in {all}: list each one once"),
            flag: format!("repeated values removed: {all}"),
            fatal: false,
        }
    })
}

/// A repaired entities answer without entries that lack a text or a type. The answer was cut,
/// so what follows its last complete object is half-written (`{"text": "Bergen", "type":
/// "loc`, which a repair would close into a type that is none): it is cut back to there (or
/// to the last opened list) first, and further back while that does not parse.
fn prune_entities(text: &str) -> Option<String> {
    let mut v = None;
    let mut end = text.len();
    for _ in 0..32 {
        // The end of an object, or the start of a list (nothing complete in it yet).
        let Some(at) = text[..end].rfind(['}', '[']) else {
            break;
        };
        end = at;
        v = parse_lenient(&text[..=end]).ok().map(|(v, _)| v);
        if v.is_some() {
            break;
        }
    }
    let mut v = v.or_else(|| parse_lenient(text).ok().map(|(v, _)| v))?;
    for item in v.get_mut("items")?.as_array_mut()? {
        if let Some(list) = item.get_mut("entities").and_then(Value::as_array_mut) {
            list.retain(|e| {
                e["text"].as_str().is_some_and(|t| !t.is_empty()) && e["type"].is_string()
            });
        }
    }
    Some(v.to_string())
}

/// The id of the last item of a packed answer (the one being written when it was cut).
fn last_item_id(text: &str) -> Option<String> {
    let (v, _) = parse_lenient(text).ok()?;
    let last = v["items"].as_array()?.last()?;
    last["id"].as_str().map(str::to_owned)
}

/// Rounds (in transient-failure units) the most-tried of `units` has been through.
fn rounds_of(q: &Queue, units: &[usize]) -> u32 {
    units
        .iter()
        .filter_map(|u| q.state.get(u))
        .map(|s| s.rounds.div_ceil(4))
        .max()
        .unwrap_or(0)
}

/// How many of the next units (by their tokens) go in one pack: at most `k`, within `budget`
/// tokens, and always at least one.
pub(crate) fn pack_len(tokens: impl Iterator<Item = u64>, k: usize, budget: u64) -> usize {
    let mut n = 0;
    let mut sum = 0u64;
    for t in tokens {
        if n >= k || (n > 0 && sum.saturating_add(t) > budget) {
            break;
        }
        sum = sum.saturating_add(t);
        n += 1;
    }
    n
}

/// Whether a 4xx says the endpoint does not take our `response_format`.
fn refuses_format(e: &RequestError) -> bool {
    let m = e.message.to_ascii_lowercase();
    e.status.is_some_and(|s| (400..500).contains(&s))
        && (m.contains("response_format") || m.contains("json_schema") || m.contains("json schema"))
}

/// Completion tokens to allow an item.
///
/// What the schema's bounds allow (an answer that fits them is never cut), and for entities no
/// more than the page's length can call for: one and a half tokens a page token. A dense page
/// (board minutes: 23 mentions in 290 tokens) answers with about 1.2 tokens a page token, most
/// of it the JSON around each mention. The old allowance of half a token cut such answers:
/// the simulator answering every mention of `testdata/gold/examples-mentions.jsonl` right
/// scored strict recall 0.63 through the pipeline, and 1.00 after. A looping answer is
/// cancelled by the runaway guard long before this cap.
pub(crate) fn completion_budget(kind: TaskKind, item_tokens: u64, tasks: &Tasks) -> u64 {
    let bound = tasks.get(kind).and_then(|t| t.item_token_bound());
    let heuristic = match kind {
        TaskKind::Entities => (40 + item_tokens * 3 / 2).min(4000),
        TaskKind::Summary => {
            let words = tasks.summary.as_ref().map_or(80, |t| t.max_words());
            u64::from(words) * 2 + 40
        }
        TaskKind::Metadata => 1200,
    };
    match (kind, bound) {
        (TaskKind::Entities, Some(b)) => heuristic.min(b),
        (_, Some(b)) => b.min(4000),
        (_, None) => heuristic,
    }
}

/// The outcome of a request that failed before any answer: `e`, nothing billed.
pub(crate) fn failed(e: RequestError) -> Outcome {
    Outcome {
        last: pagemill_client::Exchange {
            error: Some(e),
            ..pagemill_client::Exchange::default()
        },
        retried: Vec::new(),
    }
}

/// The ledger record of a request: tokens and cost summed over every attempt (failed attempts
/// that were billed count too), the last attempt's timeline and error.
fn record(outcome: &Outcome) -> RequestEnd {
    let mut end = RequestEnd {
        ok: outcome.last.is_ok(),
        error_class: outcome.last.error.as_ref().map(|e| e.class.to_string()),
        error: outcome.last.error.as_ref().map(|e| e.to_string()),
        timeline: serde_json::to_string(&outcome.last.timeline).ok(),
        retries: outcome.retried.len() as u32,
        retried_errors: outcome
            .retried
            .iter()
            .filter_map(|ex| ex.error.as_ref())
            .map(|e| e.class.to_string())
            .collect(),
        retried_messages: outcome
            .retried
            .iter()
            .filter_map(|ex| ex.error.as_ref())
            .map(ToString::to_string)
            .collect(),
        ..RequestEnd::default()
    };
    let add = |slot: &mut Option<u64>, v: Option<u64>| {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0) + v);
        }
    };
    for ex in outcome.attempts() {
        add(&mut end.prompt_tokens, ex.usage.prompt.map(|c| c.tokens));
        add(
            &mut end.cached_tokens,
            ex.usage.cached_prompt.map(|c| c.tokens),
        );
        add(
            &mut end.completion_tokens,
            ex.usage.completion.map(|c| c.tokens),
        );
        add(&mut end.cost_pico, ex.cost.map(|c| c.total.0));
    }
    end
}

impl Progress {
    fn add(&self, kind: TaskKind, end: &RequestEnd, items: usize) {
        let s = slot(kind);
        let t: &TaskStats = &self.tasks[s];
        t.requests.fetch_add(1, Ordering::Relaxed);
        t.items.fetch_add(items as u64, Ordering::Relaxed);
        t.prompt
            .fetch_add(end.prompt_tokens.unwrap_or(0), Ordering::Relaxed);
        t.cached
            .fetch_add(end.cached_tokens.unwrap_or(0), Ordering::Relaxed);
        t.completion
            .fetch_add(end.completion_tokens.unwrap_or(0), Ordering::Relaxed);
        t.cost_pico
            .fetch_add(end.cost_pico.unwrap_or(0), Ordering::Relaxed);
        if end.cached_tokens.is_none() {
            t.cached_unreported.fetch_add(1, Ordering::Relaxed);
        }
        if end.cost_pico.is_none() {
            t.cost_unknown.fetch_add(1, Ordering::Relaxed);
        }
        t.retries
            .fetch_add(u64::from(end.retries), Ordering::Relaxed);
        if !end.ok {
            t.failed_requests.fetch_add(1, Ordering::Relaxed);
        }
        if end.error_class.is_some() || !end.retried_errors.is_empty() {
            let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            for class in end.error_class.iter().chain(&end.retried_errors) {
                *errors.entry(class.clone()).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_follow_the_p99_of_answers_with_headroom_once_enough_are_seen() {
        let mut l = Lengths::default();
        for _ in 0..Lengths::LEARN_AFTER - 1 {
            l.add(0.1);
        }
        assert_eq!(l.budget_share(), None, "too few answers: the full budget");
        for i in 0..200 {
            l.add(if i % 100 == 0 { 0.5 } else { 0.1 });
        }
        // p99 of the shares is 0.1 (2 long answers in 219), with 20% headroom.
        let share = l.budget_share().unwrap();
        assert!((share - 0.12).abs() < 1e-6, "{share}");
        for _ in 0..Lengths::KEEP {
            l.add(0.95);
        }
        assert_eq!(l.budget_share(), Some(1.0), "never above the full budget");
    }

    #[test]
    fn answers_cut_at_a_tight_budget_loosen_the_next_one() {
        // Answers run to 0.1–0.3 of the full budget; a budget of 0.2 cuts the longer half,
        // each counted at the 0.2 it reached.
        let mut l = Lengths::default();
        let mut budget = 0.2_f32;
        for round in 0..5 {
            for i in 0..200 {
                let natural = 0.1 + 0.2 * (i as f32 / 199.0);
                l.add(natural.min(budget));
            }
            let next = l.budget_share().unwrap() as f32;
            assert!(next >= budget, "round {round}: {next} < {budget}");
            budget = next;
        }
        assert!(budget >= 0.3, "grew past the longest answer: {budget}");
    }

    #[test]
    fn a_cut_entities_answer_loses_only_its_half_written_last_entity() {
        let cut = r#"{"items": [{"entities": [{"text": "Halvorsen", "type": "organization"}, {"text": "Bergen", "type": "loc"#;
        let pruned: Value = serde_json::from_str(&prune_entities(cut).unwrap()).unwrap();
        assert_eq!(
            pruned["items"][0]["entities"],
            json!([{"text": "Halvorsen", "type": "organization"}])
        );
        // Cut inside the first entity's key: nothing complete, nothing made up.
        let early = r#"{"items": [{"entities": [{"te"#;
        let pruned: Value = serde_json::from_str(&prune_entities(early).unwrap()).unwrap();
        assert_eq!(pruned["items"][0]["entities"], json!([]));
    }
}
