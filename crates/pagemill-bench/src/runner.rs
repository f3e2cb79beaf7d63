//! Runs a load against targets and collects its records.
//!
//! Targets (endpoints, or the arms of an experiment) are interleaved request by request — request
//! `i` goes to target `i % T` with workload item `i / T` — so every target sees the same prompts in
//! the same time window. Workers send each [`Record`] over a channel to one collector task that
//! owns the statistics; nothing on the request path takes a shared lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pagemill_client::Client;
use pagemill_client::clock::mono_ns;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::collect::{SloItem, TargetStats};
use crate::record::Record;
use crate::schedule::{Arrivals, Load};
use crate::workload::Workload;

/// Something requests are sent to: an endpoint, or one arm of an experiment.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name in reports.
    pub name: String,
    /// The client (its endpoint, pool and prices).
    pub client: Client,
    /// What it is sent.
    pub workload: Arc<Workload>,
}

impl Target {
    /// The same target with a connection pool of its own (for a client core).
    fn with_own_pool(&self) -> Self {
        Self {
            client: self.client.with_own_pool(),
            ..self.clone()
        }
    }
}

/// How long a run lasts and what it keeps.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The offered load.
    pub load: Load,
    /// Stop after this many requests (warm-up included).
    pub requests: Option<u64>,
    /// Stop scheduling after this long.
    pub duration: Option<Duration>,
    /// The first requests are not measured.
    pub warmup: u64,
    /// Seed of the arrival process.
    pub seed: u64,
    /// SLOs for goodput.
    pub slo: Vec<SloItem>,
    /// Keep every content read's time in records (for checks against a server's log).
    pub keep_chunk_times: bool,
    /// Keep answers in records (for agreement).
    pub keep_content: bool,
    /// Name requests with `x-pagemill-request-id: {run}-{index}`.
    pub run_tag: Option<String>,
    /// Client threads, each with a single-threaded runtime and its own connections (≤ 1: the
    /// load runs on the caller's runtime).
    pub client_cores: usize,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutput {
    /// Per target.
    pub stats: Vec<TargetStats>,
    /// Records kept for checks (only when `keep_chunk_times` or `keep_content`).
    pub kept: Vec<Record>,
    /// Stopped early by cancellation.
    pub interrupted: bool,
    /// Requests sent.
    pub sent: u64,
    /// Content events received.
    pub events: u64,
    /// Event-loop stalls over 5 ms, and the longest (all cores).
    pub stalls: (u64, Duration),
    /// Per client core, when there are several.
    pub per_core: Vec<CoreReport>,
    /// Wall time of the run.
    pub wall: Duration,
    /// Process CPU time over the run.
    pub cpu: Duration,
}

enum Msg {
    Record(Box<Record>),
    InFlight(u64),
}

/// CPU time of this process.
pub fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Peak resident memory of this process, from `/proc/self/status` (0 where unavailable).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

/// Resident memory of this process now, from `/proc/self/status` (0 where unavailable).
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// A `kB` line of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Runs `spec` against `targets` until its bounds or `cancel`; `sink` receives every record
/// (for a JSONL file) before it is folded into statistics (`&mut |_| {}` for none).
///
/// With `client_cores` ≤ 1 the load runs as tasks on the caller's runtime. With N > 1 it runs
/// on N threads, each with a single-threaded runtime and a connection pool of its own (a
/// connection is driven by the runtime that opened it, so no request's bytes cross threads),
/// each taking every N-th worker or arrival; all send their records to the one collector here.
pub async fn run(
    targets: &[Target],
    spec: &RunSpec,
    cancel: CancellationToken,
    sink: &mut (dyn FnMut(&Record) + Send),
) -> RunOutput {
    let start_ns = mono_ns();
    let start = Instant::now();
    let cpu_start = cpu_time();
    let (tx, rx) = mpsc::unbounded_channel::<Msg>();
    let cores = spec.client_cores.max(1);
    let common = Arc::new(Common {
        spec: spec.clone(),
        cancel: cancel.clone(),
        in_flight: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        next: AtomicU64::new(0),
        clock: (start, start_ns),
        cores,
    });
    let mut reports = Vec::with_capacity(cores);
    for core in 0..cores {
        let (report_tx, report_rx) = tokio::sync::oneshot::channel();
        reports.push(report_rx);
        let shared = Arc::new(Shared {
            targets: if cores == 1 {
                targets.to_vec()
            } else {
                targets.iter().map(Target::with_own_pool).collect()
            },
            tx: tx.clone(),
            common: common.clone(),
        });
        let driver = drive(shared, core);
        let send_report = async move {
            let _ = report_tx.send(driver.await);
        };
        if cores == 1 {
            tokio::spawn(send_report);
        } else {
            let spawned = std::thread::Builder::new()
                .name(format!("bench-core-{core}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(send_report),
                        Err(e) => tracing::error!("cannot start client core {core}: {e}"),
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start client core {core}: {e}");
            }
        }
    }
    // The drivers hold the only other senders: the channel closes when the last one ends.
    drop(tx);
    let mut fold = Fold {
        stats: (0..targets.len())
            .map(|_| TargetStats::new(start_ns, spec.slo.clone()))
            .collect(),
        kept: Vec::new(),
        events: 0,
        keep: spec.keep_chunk_times || spec.keep_content,
    };
    fold.drain(rx, sink).await;
    let mut per_core = Vec::with_capacity(cores);
    for r in reports {
        per_core.push(r.await.unwrap_or_default());
    }
    for core in &per_core {
        for (st, closes) in fold.stats.iter_mut().zip(&core.server_closes) {
            st.add_server_closes(*closes);
        }
    }
    let stalls = per_core.iter().fold((0, Duration::ZERO), |(n, w), c| {
        (n + c.stalls, w.max(c.worst_stall))
    });
    RunOutput {
        stats: fold.stats,
        kept: fold.kept,
        interrupted: cancel.is_cancelled(),
        sent: common.sent.load(Ordering::Relaxed),
        events: fold.events,
        stalls,
        per_core: if cores > 1 { per_core } else { Vec::new() },
        wall: start.elapsed(),
        cpu: cpu_time().saturating_sub(cpu_start),
    }
}

/// What one client core did in a run.
#[derive(Debug, Clone, Default)]
pub struct CoreReport {
    /// Requests it sent.
    pub sent: u64,
    /// CPU time of its thread (zero for the in-runtime driver, whose tasks move between
    /// the runtime's threads).
    pub cpu: Duration,
    /// Event-loop stalls over 5 ms.
    pub stalls: u64,
    /// The longest.
    pub worst_stall: Duration,
    /// Per target: kept-alive connections the server closed while idle, and under a request.
    pub server_closes: Vec<(u64, u64)>,
}

/// One core's share of the load: its workers (closed loop) or every N-th arrival (open loop),
/// with its own stall ticker; returns when its last request is done.
async fn drive(shared: Arc<Shared>, core: usize) -> CoreReport {
    let cpu_start = thread_cpu_time();
    let tracker = TaskTracker::new();
    let done = CancellationToken::new();
    let ticker = stall_ticker(done.clone(), (core == 0).then(|| shared.clone()));
    let sent = Arc::new(AtomicU64::new(0));
    let c = &shared.common;
    let arrivals = Arrivals::new(c.spec.load, c.spec.seed);
    // A closed loop of k workers on this core keeps exactly k connections to each target; an
    // open loop opens as many as it has requests in flight.
    let workers = arrivals.is_none().then(|| workers_on(core, c));
    for t in &shared.targets {
        t.client.limit_connections(workers);
    }
    let closes_before: Vec<(u64, u64)> = shared
        .targets
        .iter()
        .map(|t| t.client.server_closes())
        .collect();
    match arrivals {
        None => closed_loop(&tracker, &shared, &sent, core),
        Some(arrivals) => open_loop(arrivals, &tracker, &shared, &sent, core).await,
    }
    tracker.close();
    tracker.wait().await;
    done.cancel();
    let (stalls, worst_stall) = ticker.await.unwrap_or((0, Duration::ZERO));
    let own_thread = c.cores > 1;
    let server_closes = shared
        .targets
        .iter()
        .zip(closes_before)
        .map(|(t, (idle, under))| {
            let (i, u) = t.client.server_closes();
            (i.saturating_sub(idle), u.saturating_sub(under))
        })
        .collect();
    CoreReport {
        server_closes,
        sent: sent.load(Ordering::Relaxed),
        cpu: if own_thread {
            thread_cpu_time().saturating_sub(cpu_start)
        } else {
            Duration::ZERO
        },
        stalls,
        worst_stall,
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The self-check: a ticker that notices when the event loop was too busy to wake it, and
/// (on the first core) samples the requests in flight; returns the stalls over 5 ms and the
/// longest.
fn stall_ticker(
    done: CancellationToken,
    sampler: Option<Arc<Shared>>,
) -> tokio::task::JoinHandle<(u64, Duration)> {
    tokio::spawn(async move {
        let period = Duration::from_millis(10);
        let (mut stalls, mut worst) = (0u64, Duration::ZERO);
        let mut next = Instant::now() + period;
        let mut tick = 0u64;
        loop {
            tokio::select! {
                () = done.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            let late = Instant::now().saturating_duration_since(next);
            if late > Duration::from_millis(5) {
                stalls += 1;
                worst = worst.max(late);
            }
            next = Instant::now() + period;
            tick += 1;
            if let Some(s) = &sampler
                && tick.is_multiple_of(10)
            {
                let n = s.common.in_flight.load(Ordering::Relaxed);
                let _ = s.tx.send(Msg::InFlight(n));
            }
        }
        (stalls, worst)
    })
}

/// Closed loop: n workers, each sending its next request when the last one ends; this core
/// runs workers `core`, `core + N`, ….
fn closed_loop(tracker: &TaskTracker, shared: &Arc<Shared>, sent: &Arc<AtomicU64>, core: usize) {
    let c = &shared.common;
    let deadline = c.spec.duration.map(|d| c.clock.0 + d);
    let limit = c.spec.requests.unwrap_or(u64::MAX);
    for _ in 0..workers_on(core, c) {
        let (sent, shared) = (sent.clone(), shared.clone());
        tracker.spawn(async move {
            let c = &shared.common;
            loop {
                let i = c.next.fetch_add(1, Ordering::Relaxed);
                if i >= limit
                    || c.cancel.is_cancelled()
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                c.sent.fetch_add(1, Ordering::Relaxed);
                sent.fetch_add(1, Ordering::Relaxed);
                one(shared.clone(), i, mono_ns()).await;
            }
        });
    }
}

/// The closed-loop workers core `core` runs: `core`, `core + N`, … of the `n` asked for.
fn workers_on(core: usize, c: &Common) -> usize {
    let n = match c.spec.load {
        Load::Concurrency { n } => n.max(1),
        _ => 1,
    };
    (core..n).step_by(c.cores.max(1)).len()
}

/// Open loop: each request at its scheduled time, whatever is still in flight; this core
/// sends arrivals `core`, `core + N`, … (every core draws the same arrival times).
async fn open_loop(
    arrivals: Arrivals,
    tracker: &TaskTracker,
    shared: &Arc<Shared>,
    sent: &Arc<AtomicU64>,
    core: usize,
) {
    let c = &shared.common;
    let (start, start_ns) = c.clock;
    let deadline = c.spec.duration.map(|d| start + d);
    let limit = c.spec.requests.unwrap_or(u64::MAX);
    let mine = (0..limit).zip(arrivals).skip(core).step_by(c.cores);
    for (i, offset) in mine {
        let due = start + offset;
        if deadline.is_some_and(|d| due >= d) || c.cancel.is_cancelled() {
            break;
        }
        if due > Instant::now() {
            tokio::select! {
                () = c.cancel.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        }
        c.sent.fetch_add(1, Ordering::Relaxed);
        sent.fetch_add(1, Ordering::Relaxed);
        let scheduled = start_ns + offset.as_nanos() as u64;
        tracker.spawn(one(shared.clone(), i, scheduled));
    }
}

/// The one owner of a run's statistics: records fold in as they arrive.
struct Fold {
    stats: Vec<TargetStats>,
    kept: Vec<Record>,
    events: u64,
    keep: bool,
}

impl Fold {
    /// Folds records until every driver is done (the channel closes with the last sender).
    async fn drain(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        sink: &mut (dyn FnMut(&Record) + Send),
    ) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Record(r) => {
                    // Every SSE event is parsed, content or not: CPU per event counts
                    // them all (a whole, unstreamed answer has none: its content counts).
                    self.events += u64::from(r.events.max(r.content_events));
                    sink(&r);
                    if let Some(st) = self.stats.get_mut(r.target) {
                        st.add(&r);
                    }
                    if self.keep {
                        self.kept.push(*r);
                    }
                }
                Msg::InFlight(n) => {
                    for s in &mut self.stats {
                        s.sample_in_flight(n);
                    }
                }
            }
        }
    }
}

/// What every core of a run shares.
struct Common {
    spec: RunSpec,
    cancel: CancellationToken,
    in_flight: AtomicU64,
    /// Requests sent, all cores.
    sent: AtomicU64,
    /// The next request index (closed loop).
    next: AtomicU64,
    /// The run's start, as an instant and in `mono_ns`.
    clock: (Instant, u64),
    cores: usize,
}

/// One core's view: its targets (with its own pools) and its sender to the collector.
struct Shared {
    targets: Vec<Target>,
    tx: mpsc::UnboundedSender<Msg>,
    common: Arc<Common>,
}

/// Sends request `i` (to target `i % T`, workload item `i / T`) and reports its record.
async fn one(shared: Arc<Shared>, i: u64, scheduled: u64) {
    let n = shared.targets.len().max(1) as u64;
    let target = (i % n) as usize;
    let Some(t) = shared.targets.get(target) else {
        return;
    };
    let item = t.workload.item(i / n);
    let c = &shared.common;
    let tag = c.spec.run_tag.as_ref().map(|r| format!("{r}-{i}"));
    c.in_flight.fetch_add(1, Ordering::Relaxed);
    let ex = t
        .client
        .send_tagged(&item.request, scheduled, tag.as_deref())
        .await;
    c.in_flight.fetch_sub(1, Ordering::Relaxed);
    // A prompt array asks for `max_tokens` a prompt.
    let prompts = u32::try_from(item.request.prompts.len().max(1)).unwrap_or(u32::MAX);
    let max_tokens = item.request.max_tokens.unwrap_or(0).saturating_mul(prompts);
    let mut r = Record::from_exchange(
        target,
        i,
        i >= c.spec.warmup,
        &ex,
        item.input_tokens,
        max_tokens,
        item.pages,
    );
    if c.spec.keep_chunk_times {
        // One time per content event: a read that carried several repeats its time.
        r.chunk_at_ns = ex
            .timeline
            .chunks
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.at, c.events as usize))
            .collect();
    }
    if c.spec.keep_content {
        r.content = Some(ex.content);
    }
    r.tag = tag;
    let _ = shared.tx.send(Msg::Record(Box::new(r)));
}
