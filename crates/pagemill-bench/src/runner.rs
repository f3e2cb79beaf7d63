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
    /// Event-loop stalls over 5 ms, and the longest.
    pub stalls: (u64, Duration),
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
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `spec` against `targets` until its bounds or `cancel`; `sink` receives every record
/// (for a JSONL file) before it is folded into statistics (`&mut |_| {}` for none).
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
    let in_flight = Arc::new(AtomicU64::new(0));
    let tracker = TaskTracker::new();
    let done = CancellationToken::new();
    let ticker = stall_ticker(done.clone(), tx.clone(), in_flight.clone());
    let shared = Arc::new(Shared {
        targets: targets.to_vec(),
        tx,
        in_flight,
        warmup: spec.warmup,
        keep_chunk_times: spec.keep_chunk_times,
        keep_content: spec.keep_content,
        run_tag: spec.run_tag.clone(),
    });
    let sent = Arc::new(AtomicU64::new(0));
    let clock = (start, start_ns);
    match Arrivals::new(spec.load, spec.seed) {
        None => closed_loop(spec, &tracker, &shared, &sent, &cancel, start),
        Some(arrivals) => open_loop(spec, arrivals, &tracker, &shared, &sent, &cancel, clock).await,
    }
    tracker.close();
    drop(shared);
    let mut fold = Fold {
        stats: (0..targets.len())
            .map(|_| TargetStats::new(start_ns, spec.slo.clone()))
            .collect(),
        kept: Vec::new(),
        events: 0,
        keep: spec.keep_chunk_times || spec.keep_content,
    };
    fold.drain(rx, &tracker, &done, sink).await;
    done.cancel();
    let stalls = ticker.await.unwrap_or((0, Duration::ZERO));
    RunOutput {
        stats: fold.stats,
        kept: fold.kept,
        interrupted: cancel.is_cancelled(),
        sent: sent.load(Ordering::Relaxed),
        events: fold.events,
        stalls,
        wall: start.elapsed(),
        cpu: cpu_time().saturating_sub(cpu_start),
    }
}

/// The self-check: a ticker that notices when the event loop was too busy to wake it, and
/// samples the requests in flight; returns the stalls over 5 ms and the longest.
fn stall_ticker(
    done: CancellationToken,
    tx: mpsc::UnboundedSender<Msg>,
    in_flight: Arc<AtomicU64>,
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
            if tick.is_multiple_of(10) {
                let _ = tx.send(Msg::InFlight(in_flight.load(Ordering::Relaxed)));
            }
        }
        (stalls, worst)
    })
}

/// Closed loop: n workers, each sending its next request when the last one ends.
fn closed_loop(
    spec: &RunSpec,
    tracker: &TaskTracker,
    shared: &Arc<Shared>,
    sent: &Arc<AtomicU64>,
    cancel: &CancellationToken,
    start: Instant,
) {
    let deadline = spec.duration.map(|d| start + d);
    let limit = spec.requests.unwrap_or(u64::MAX);
    let n = match spec.load {
        Load::Concurrency { n } => n.max(1),
        _ => 1,
    };
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..n {
        let (next, cancel, sent, shared) =
            (next.clone(), cancel.clone(), sent.clone(), shared.clone());
        tracker.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit
                    || cancel.is_cancelled()
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                one(shared.clone(), i, mono_ns()).await;
            }
        });
    }
}

/// Open loop: each request at its scheduled time, whatever is still in flight.
async fn open_loop(
    spec: &RunSpec,
    arrivals: Arrivals,
    tracker: &TaskTracker,
    shared: &Arc<Shared>,
    sent: &Arc<AtomicU64>,
    cancel: &CancellationToken,
    (start, start_ns): (Instant, u64),
) {
    let deadline = spec.duration.map(|d| start + d);
    let limit = spec.requests.unwrap_or(u64::MAX);
    for (i, offset) in (0..limit).zip(arrivals) {
        let due = start + offset;
        if deadline.is_some_and(|d| due >= d) || cancel.is_cancelled() {
            break;
        }
        if due > Instant::now() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        }
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
    /// Folds records until every worker is done and the channel is empty.
    async fn drain(
        &mut self,
        mut rx: mpsc::UnboundedReceiver<Msg>,
        tracker: &TaskTracker,
        done: &CancellationToken,
        sink: &mut (dyn FnMut(&Record) + Send),
    ) {
        let waiting = tracker.wait();
        tokio::pin!(waiting);
        let mut drained = false;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(Msg::Record(r)) => {
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
                    Some(Msg::InFlight(n)) => {
                        for s in &mut self.stats {
                            s.sample_in_flight(n);
                        }
                    }
                    None => break,
                },
                () = &mut waiting, if !drained => {
                    drained = true;
                    // The ticker holds a sender: stop it, so the channel can close.
                    done.cancel();
                }
            }
        }
    }
}

struct Shared {
    targets: Vec<Target>,
    tx: mpsc::UnboundedSender<Msg>,
    in_flight: Arc<AtomicU64>,
    warmup: u64,
    keep_chunk_times: bool,
    keep_content: bool,
    run_tag: Option<String>,
}

/// Sends request `i` (to target `i % T`, workload item `i / T`) and reports its record.
async fn one(shared: Arc<Shared>, i: u64, scheduled: u64) {
    let n = shared.targets.len().max(1) as u64;
    let target = (i % n) as usize;
    let Some(t) = shared.targets.get(target) else {
        return;
    };
    let item = t.workload.item(i / n);
    let tag = shared.run_tag.as_ref().map(|r| format!("{r}-{i}"));
    shared.in_flight.fetch_add(1, Ordering::Relaxed);
    let ex = t
        .client
        .send_tagged(&item.request, scheduled, tag.as_deref())
        .await;
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    // A prompt array asks for `max_tokens` a prompt.
    let prompts = u32::try_from(item.request.prompts.len().max(1)).unwrap_or(u32::MAX);
    let max_tokens = item.request.max_tokens.unwrap_or(0).saturating_mul(prompts);
    let mut r = Record::from_exchange(
        target,
        i,
        i >= shared.warmup,
        &ex,
        item.input_tokens,
        max_tokens,
        item.pages,
    );
    if shared.keep_chunk_times {
        // One time per content event: a read that carried several repeats its time.
        r.chunk_at_ns = ex
            .timeline
            .chunks
            .iter()
            .flat_map(|c| std::iter::repeat_n(c.at, c.events as usize))
            .collect();
    }
    if shared.keep_content {
        r.content = Some(ex.content);
    }
    r.tag = tag;
    let _ = shared.tx.send(Msg::Record(Box::new(r)));
}
