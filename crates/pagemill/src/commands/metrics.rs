//! Prometheus metrics of a run (`run --metrics-addr`), read from the run's own live counters
//! ([`Progress`]) at each scrape, so a scrape and `run-summary.json` come from the same
//! numbers. Served by the project's loopback HTTP server at `GET /metrics`, in the OpenMetrics
//! text format (`prometheus-client`).
//!
//! Names follow Prometheus conventions: a `pagemill_` prefix, base units (`_usd`, `_seconds`,
//! `_bytes`), `_total` on counters, labels `task` (entities, summary, metadata), `state` and
//! `kind`; the standard `process_cpu_seconds_total` and `process_resident_memory_bytes`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pagemill_client::Client;
use pagemill_pipeline::run::budget::BudgetStatus;
use pagemill_pipeline::run::drift::Drift;
use pagemill_pipeline::run::{Buckets, LATENCY_BOUNDS, Latency, Progress};
use pagemill_sim::{Reply, ServerHandle, ServerOptions};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::NoLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

const TASKS: [&str; 3] = ["entities", "summary", "metadata"];

/// A metric's values by label set.
type Series<'a, M> = Vec<(Vec<(&'a str, &'a str)>, M)>;

/// The run's counters as Prometheus metrics, with its gauges as they stand.
#[derive(Debug)]
struct RunCollector {
    /// Counters: every pass's, added up.
    progress: Arc<Progress>,
    /// Gauges: the pass running, or the last one.
    now: Gauges,
}

/// What the gauges show, read at the scrape.
#[derive(Debug, Default)]
struct Gauges {
    /// Requests in flight.
    in_flight: u64,
    /// Per task: units not finished yet.
    queued: [u64; 3],
    /// Per endpoint: its name and the limiter's headroom.
    headroom: Vec<(String, pagemill_client::Headroom)>,
    budget: Option<BudgetStatus>,
    /// When a watcher waiting for the next day's budget resumes (Unix seconds).
    paused_until: Option<i64>,
    /// The last pass's drift figures.
    drift: Vec<Drift>,
}

/// One metric with a value per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: &Series<'_, M>,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(labels)?)?;
    }
    Ok(())
}

/// One metric with a single value and no labels.
fn single<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: &M,
) -> Result<(), std::fmt::Error> {
    value.encode(encoder.encode_descriptor(name, help, None, kind)?)
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.progress;
        let per_task = |f: &dyn Fn(usize) -> u64| -> Series<'_, ConstCounter<u64>> {
            TASKS
                .iter()
                .enumerate()
                .map(|(i, t)| (vec![("task", *t)], ConstCounter::new(f(i))))
                .collect()
        };
        let mut units = Vec::new();
        for (i, t) in TASKS.iter().enumerate() {
            for (state, v) in [
                ("planned", load(&p.total[i])),
                ("done_before", load(&p.already[i])),
                ("done", load(&p.done[i])),
                ("failed", load(&p.failed[i])),
            ] {
                units.push((
                    vec![("task", *t), ("state", state)],
                    ConstGauge::new(v as i64),
                ));
            }
        }
        family(
            &mut encoder,
            "pagemill_units",
            "Units of work by task and state: planned, done by an earlier run, done or given up on by this one.",
            MetricType::Gauge,
            &units,
        )?;
        let stats = |i: usize| &p.tasks[i];
        family(
            &mut encoder,
            "pagemill_requests",
            "Requests finished, by task.",
            MetricType::Counter,
            &per_task(&|i| load(&stats(i).requests)),
        )?;
        family(
            &mut encoder,
            "pagemill_failed_requests",
            "Requests that failed in the end, by task.",
            MetricType::Counter,
            &per_task(&|i| load(&stats(i).failed_requests)),
        )?;
        family(
            &mut encoder,
            "pagemill_retries",
            "Attempts the client retried, by task.",
            MetricType::Counter,
            &per_task(&|i| load(&stats(i).retries)),
        )?;
        let mut tokens = Vec::new();
        for (i, t) in TASKS.iter().enumerate() {
            let s = stats(i);
            for (kind, v) in [
                ("prompt", load(&s.prompt)),
                ("cached", load(&s.cached)),
                ("completion", load(&s.completion)),
            ] {
                tokens.push((vec![("task", *t), ("kind", kind)], ConstCounter::new(v)));
            }
        }
        family(
            &mut encoder,
            "pagemill_tokens",
            "Tokens by task and kind (prompt, of which cached, and completion), as the server counted them.",
            MetricType::Counter,
            &tokens,
        )?;
        let cost: Vec<_> = TASKS
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let usd = load(&stats(i).cost_pico) as f64 / 1e12;
                (vec![("task", *t)], ConstCounter::new(usd))
            })
            .collect();
        family(
            &mut encoder,
            "pagemill_cost_usd",
            "What requests of known price cost, in dollars, by task.",
            MetricType::Counter,
            &cost,
        )?;
        for (name, help, v) in [
            (
                "pagemill_reasks",
                "Answers asked again with what was wrong.",
                load(&p.reasks),
            ),
            (
                "pagemill_max_tokens_asked",
                "max_tokens asked for, summed over requests (with the prompt, what a provider counts against a tokens-per-minute limit).",
                load(&p.max_tokens_asked),
            ),
            (
                "pagemill_truncated",
                "Answers cut off at max_tokens.",
                load(&p.truncated),
            ),
            (
                "pagemill_fallbacks",
                "Jobs moved to a fallback endpoint.",
                load(&p.fallbacks),
            ),
        ] {
            single(
                &mut encoder,
                name,
                help,
                MetricType::Counter,
                &ConstCounter::new(v),
            )?;
        }
        let latency = p.latency.lock().unwrap_or_else(|p| p.into_inner()).clone();
        encode_latency(&mut encoder, &latency)?;
        self.now.encode(&mut encoder)?;
        let errors = p.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let errors: Series<'_, ConstCounter<u64>> = errors
            .iter()
            .map(|(class, n)| (vec![("class", class.as_str())], ConstCounter::new(*n)))
            .collect();
        family(
            &mut encoder,
            "pagemill_request_errors",
            "Failed attempts by error class (transient, throttled, permanent, context_too_long), retried ones included.",
            MetricType::Counter,
            &errors,
        )?;
        encode_process(&mut encoder)
    }
}

/// The TTFT and end-to-end histograms, by endpoint.
fn encode_latency(
    encoder: &mut DescriptorEncoder,
    latency: &std::collections::BTreeMap<String, Latency>,
) -> Result<(), std::fmt::Error> {
    for (name, help, pick) in [
        (
            "pagemill_ttft_seconds",
            "Time to first answer token of answered streamed requests, by endpoint.",
            (|l: &Latency| &l.ttft) as fn(&Latency) -> &Buckets,
        ),
        (
            "pagemill_request_duration_seconds",
            "End-to-end time of answered requests, by endpoint.",
            |l: &Latency| &l.e2e,
        ),
    ] {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (endpoint, l) in latency {
            let b = pick(l);
            let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                .iter()
                .copied()
                .chain([f64::MAX])
                .zip(b.counts)
                .collect();
            let count = b.counts.iter().sum();
            metric
                .encode_family(&[("endpoint", endpoint.as_str())])?
                .encode_histogram::<NoLabelSet>(b.sum_secs, count, &buckets, None)?;
        }
    }
    Ok(())
}

/// The process's CPU time and resident memory, under their standard names.
fn encode_process(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    single(
        encoder,
        "process_cpu_seconds",
        "CPU time of this process, user and system.",
        MetricType::Counter,
        &ConstCounter::new(process_cpu_seconds()),
    )?;
    let rss = pagemill_bench::runner::rss_bytes();
    single(
        encoder,
        "process_resident_memory_bytes",
        "Resident memory of this process.",
        MetricType::Gauge,
        &ConstGauge::new(i64::try_from(rss).unwrap_or(i64::MAX)),
    )
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

impl Gauges {
    /// Reads the gauges of `pass` (the running one, or the last) and of `endpoints`.
    /// `pass` is the pass's live progress (for its budget), `counts` a copy of its counters
    /// taken once, so the queue agrees with the units the same scrape shows.
    fn read(
        pass: Option<(&Progress, &Progress)>,
        endpoints: &[Arc<Client>],
        paused_until: Option<i64>,
        drift: &[Drift],
    ) -> Self {
        let mut g = Gauges {
            paused_until,
            drift: drift.to_vec(),
            ..Gauges::default()
        };
        if let Some((live, p)) = pass {
            g.in_flight = load(&live.in_flight);
            for (i, q) in g.queued.iter_mut().enumerate() {
                *q = load(&p.total[i])
                    .saturating_sub(load(&p.already[i]))
                    .saturating_sub(load(&p.done[i]))
                    .saturating_sub(load(&p.failed[i]));
            }
            g.budget = live.budget_status();
        }
        g.headroom = endpoints
            .iter()
            .map(|c| (c.endpoint().name.clone(), c.limiter().headroom()))
            .collect();
        g
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        single(
            encoder,
            "pagemill_in_flight_requests",
            "Requests recorded and not finished: waiting for the rate limiter, or sent.",
            MetricType::Gauge,
            &ConstGauge::new(i64::try_from(self.in_flight).unwrap_or(i64::MAX)),
        )?;
        let queued: Series<'_, ConstGauge> = TASKS
            .iter()
            .zip(self.queued)
            .map(|(t, n)| {
                (
                    vec![("task", *t)],
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX)),
                )
            })
            .collect();
        family(
            encoder,
            "pagemill_queue_units",
            "Units of the current (or last) pass not finished yet: waiting, or in a request in flight.",
            MetricType::Gauge,
            &queued,
        )?;
        self.encode_headroom(encoder)?;
        self.encode_budget(encoder)?;
        self.encode_drift(encoder)
    }

    fn encode_headroom(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (mut available, mut wait, mut server) = (Vec::new(), Vec::new(), Vec::new());
        for (name, h) in &self.headroom {
            let e = name.as_str();
            for (kind, v) in [
                ("requests", h.requests),
                ("tokens", h.tokens),
                ("slots", h.slots.map(|s| s as f64)),
            ] {
                if let Some(v) = v {
                    available.push((vec![("endpoint", e), ("kind", kind)], gauge(v)));
                }
            }
            wait.push((vec![("endpoint", e)], gauge(h.wait.as_secs_f64())));
            for (kind, v) in [("requests", h.server_requests), ("tokens", h.server_tokens)] {
                if let Some(v) = v {
                    server.push((vec![("endpoint", e), ("kind", kind)], gauge(v as f64)));
                }
            }
        }
        family(
            encoder,
            "pagemill_rate_limit_available",
            "What the rate limiter would let out now without waiting, by endpoint and kind (requests and tokens of its per-minute buckets, negative when reservations run ahead of the refill; free concurrency slots).",
            MetricType::Gauge,
            &available,
        )?;
        family(
            encoder,
            "pagemill_rate_limit_wait_seconds",
            "How long one more request to the endpoint would wait now (a server's pause, or the limiter's buckets).",
            MetricType::Gauge,
            &wait,
        )?;
        family(
            encoder,
            "pagemill_rate_limit_server_remaining",
            "What the endpoint's last rate-limit headers said was left in its window, by kind.",
            MetricType::Gauge,
            &server,
        )
    }

    fn encode_budget(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        single(
            encoder,
            "pagemill_budget_paused",
            "1 while a watcher waits for the next day's budget.",
            MetricType::Gauge,
            &ConstGauge::new(i64::from(self.paused_until.is_some())),
        )?;
        let Some(b) = &self.budget else {
            return Ok(());
        };
        let spent = vec![
            (vec![("period", "run")], gauge(b.spent_usd)),
            (vec![("period", "day")], gauge(b.spent_today_usd)),
        ];
        family(
            encoder,
            "pagemill_budget_spent_usd",
            "Dollars spent by requests that ended: this run's, and today's on the ledger.",
            MetricType::Gauge,
            &spent,
        )?;
        let limits: Series<'_, ConstGauge<f64>> =
            [("run", b.run_limit_usd), ("day", b.day_limit_usd)]
                .into_iter()
                .filter_map(|(period, v)| v.map(|v| (vec![("period", period)], gauge(v))))
                .collect();
        family(
            encoder,
            "pagemill_budget_limit_usd",
            "The dollar budgets set (--budget-usd, --budget-usd-per-day).",
            MetricType::Gauge,
            &limits,
        )?;
        single(
            encoder,
            "pagemill_budget_held_usd",
            "The most the requests in flight can still cost, held against the budgets.",
            MetricType::Gauge,
            &gauge(b.held_usd),
        )?;
        single(
            encoder,
            "pagemill_budget_spent_tokens",
            "Tokens spent today (prompt and completion) on the ledger.",
            MetricType::Gauge,
            &gauge(b.spent_today_tokens as f64),
        )?;
        if let Some(t) = b.day_limit_tokens {
            single(
                encoder,
                "pagemill_budget_limit_tokens",
                "The day's token budget (--budget-tokens-per-day).",
                MetricType::Gauge,
                &gauge(t as f64),
            )?;
        }
        single(
            encoder,
            "pagemill_budget_reached",
            "1 once a request did not fit the budget with nothing in flight: no new work until more budget (or the next day).",
            MetricType::Gauge,
            &ConstGauge::new(i64::from(b.reached || self.paused_until.is_some())),
        )?;
        if let Some(t) = self.paused_until {
            single(
                encoder,
                "pagemill_budget_resume_timestamp_seconds",
                "When a paused watcher takes work again (the next day's start), Unix seconds.",
                MetricType::Gauge,
                &ConstGauge::new(t),
            )?;
        }
        Ok(())
    }

    fn encode_drift(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let alarms: Series<'_, ConstGauge> = self
            .drift
            .iter()
            .map(|d| {
                (
                    vec![("figure", d.figure.as_str())],
                    ConstGauge::new(i64::from(d.alarm)),
                )
            })
            .collect();
        family(
            encoder,
            "pagemill_drift_alarm",
            "1 when the last run's figure moved beyond its threshold against the ledger's trailing 7 days, 0 when within it.",
            MetricType::Gauge,
            &alarms,
        )?;
        let mut values = Vec::new();
        for d in &self.drift {
            let f = d.figure.as_str();
            values.push((vec![("figure", f), ("window", "run")], gauge(d.now)));
            values.push((
                vec![("figure", f), ("window", "trailing_7d")],
                gauge(d.trailing),
            ));
        }
        family(
            encoder,
            "pagemill_drift_value",
            "The drift figures: the last run's value and the trailing 7 days' (tokens a page, cached share and error rate as fractions, p95 latency in milliseconds).",
            MetricType::Gauge,
            &values,
        )
    }
}

/// CPU time of this process, in seconds.
fn process_cpu_seconds() -> f64 {
    pagemill_bench::runner::cpu_time().as_secs_f64()
}

/// What the metrics show: the counters of passes that ended (a watcher's) and of the one
/// running; the gauges of the one running, or else of the last.
#[derive(Debug, Default)]
pub struct Live {
    ended: Progress,
    running: std::sync::Mutex<Option<Arc<Progress>>>,
    /// The pass that ended last: its gauges show until the next starts.
    last: std::sync::Mutex<Option<Arc<Progress>>>,
    /// The endpoints, for their limiters' headroom.
    endpoints: std::sync::Mutex<Vec<Arc<Client>>>,
    /// A watcher waiting for the next day's budget: until when (Unix seconds).
    paused_until: std::sync::Mutex<Option<i64>>,
    /// The last pass's drift figures.
    drift: std::sync::Mutex<Vec<Drift>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    /// The metrics of one run on `endpoints`.
    pub fn of(progress: &Arc<Progress>, endpoints: &[Arc<Client>]) -> Arc<Self> {
        let live = Self::default();
        live.endpoints(endpoints);
        live.start(progress);
        Arc::new(live)
    }

    /// The endpoints whose limiters' headroom shows.
    pub fn endpoints(&self, endpoints: &[Arc<Client>]) {
        *lock(&self.endpoints) = endpoints.to_vec();
    }

    /// A pass starts: its counters show as they move.
    pub fn start(&self, pass: &Arc<Progress>) {
        *lock(&self.paused_until) = None;
        *lock(&self.running) = Some(Arc::clone(pass));
    }

    /// The pass ended: its counters join those of the passes before.
    pub fn end(&self) {
        let pass = lock(&self.running).take();
        if let Some(pass) = pass {
            fold(&self.ended, &pass);
            *lock(&self.last) = Some(pass);
        }
    }

    /// Runs one pass of a long-lived command (a watcher's, a worker's): `run` gets the pass's
    /// progress, whose counters show as they move and join the others when it ends; its drift
    /// figures show after it.
    pub async fn pass<F>(
        &self,
        stop: &tokio_util::sync::CancellationToken,
        run: impl FnOnce(Arc<Progress>) -> F,
    ) -> anyhow::Result<pagemill_pipeline::run::RunOutcome>
    where
        F: std::future::Future<
                Output = Result<
                    pagemill_pipeline::run::RunOutcome,
                    pagemill_pipeline::run::RunError,
                >,
            >,
    {
        let progress = Arc::new(Progress {
            stop: stop.child_token(),
            ..Progress::default()
        });
        self.start(&progress);
        let outcome = run(progress).await;
        self.end();
        let outcome = outcome?;
        self.drift(&outcome.compared);
        Ok(outcome)
    }

    /// The last pass's drift figures (see [`pagemill_pipeline::run::RunOutcome::compared`]).
    pub fn drift(&self, compared: &[Drift]) {
        *lock(&self.drift) = compared.to_vec();
    }

    /// A watcher pauses for the day's budget until `until` (Unix seconds); `None`: it goes on.
    pub fn paused_until(&self, until: Option<i64>) {
        *lock(&self.paused_until) = until;
    }

    /// Every counter now, and the gauges.
    fn snapshot(&self) -> (Progress, Gauges) {
        let now = Progress::default();
        fold(&now, &self.ended);
        let running = lock(&self.running).clone();
        let pass = running.clone().or_else(|| lock(&self.last).clone());
        // The pass's counters read once: what the counters and the gauges show agree.
        let counts = Progress::default();
        if let Some(pass) = &pass {
            fold(&counts, pass);
        }
        if running.is_some() {
            fold(&now, &counts);
        }
        let gauges = Gauges::read(
            pass.as_deref().map(|live| (live, &counts)),
            &lock(&self.endpoints),
            *lock(&self.paused_until),
            &lock(&self.drift),
        );
        (now, gauges)
    }
}

/// Adds `pass`'s counters into `into`.
pub(crate) fn fold(into: &Progress, pass: &Progress) {
    use std::sync::atomic::Ordering::Relaxed;
    let add = |a: &std::sync::atomic::AtomicU64, b: &std::sync::atomic::AtomicU64| {
        a.fetch_add(b.load(Relaxed), Relaxed);
    };
    for i in 0..3 {
        add(&into.total[i], &pass.total[i]);
        add(&into.already[i], &pass.already[i]);
        add(&into.done[i], &pass.done[i]);
        add(&into.failed[i], &pass.failed[i]);
        let (a, b) = (&into.tasks[i], &pass.tasks[i]);
        for (x, y) in [
            (&a.requests, &b.requests),
            (&a.items, &b.items),
            (&a.prompt, &b.prompt),
            (&a.cached, &b.cached),
            (&a.completion, &b.completion),
            (&a.cost_pico, &b.cost_pico),
            (&a.cached_unreported, &b.cached_unreported),
            (&a.cost_unknown, &b.cost_unknown),
            (&a.retries, &b.retries),
            (&a.failed_requests, &b.failed_requests),
        ] {
            add(x, y);
        }
    }
    {
        let pass_latency = pass
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut all = into.latency.lock().unwrap_or_else(|p| p.into_inner());
        for (endpoint, l) in pass_latency {
            let mine = all.entry(endpoint).or_default();
            mine.ttft.merge(&l.ttft);
            mine.e2e.merge(&l.e2e);
        }
    }
    {
        let pass_errors = pass
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut all = into.errors.lock().unwrap_or_else(|p| p.into_inner());
        for (class, n) in pass_errors {
            *all.entry(class).or_default() += n;
        }
    }
    for (x, y) in [
        (&into.reasks, &pass.reasks),
        (&into.max_tokens_asked, &pass.max_tokens_asked),
        (&into.truncated, &pass.truncated),
        (&into.fallbacks, &pass.fallbacks),
    ] {
        add(x, y);
    }
}

/// The metrics text of `live`, as a scrape gets it.
pub fn render(live: &Live) -> String {
    let mut registry = Registry::default();
    let (progress, now) = live.snapshot();
    registry.register_collector(Box::new(RunCollector {
        progress: Arc::new(progress),
        now,
    }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `addr` for as long as the handle lives.
pub async fn serve(addr: SocketAddr, live: Arc<Live>) -> anyhow::Result<ServerHandle> {
    serve_text(addr, move || render(&live)).await
}

/// Serves what `text` renders at each scrape as `GET /metrics` on `addr`.
async fn serve_text(
    addr: SocketAddr,
    text: impl Fn() -> String + Send + Sync + 'static,
) -> anyhow::Result<ServerHandle> {
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: metrics on {addr} can be read by anyone who can reach it (they hold no \
             secrets: counts, tokens and costs)"
        );
    }
    let options = ServerOptions {
        addr,
        // Scrapes are not worth remembering.
        log_capacity: 16,
        ..ServerOptions::default()
    };
    let text = Arc::new(text);
    let handle = pagemill_sim::serve_with(options, move |req, sink| {
        let reply = if req.path == "/metrics" {
            Reply::status(200)
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .bytes(text())
        } else {
            Reply::error(404, "not_found", "metrics are at /metrics")
        };
        Box::pin(reply.play(sink))
    })
    .await
    .map_err(|e| anyhow::anyhow!("serving metrics on {addr}: {e}"))?;
    eprintln!("metrics: http://{}/metrics", handle.addr);
    Ok(handle)
}

/// A benchmark's metrics (`bench --metrics-addr`), folded from its records as the collector
/// receives them: one uncontended lock a record.
#[derive(Debug)]
pub struct BenchLive {
    targets: Vec<String>,
    counts: std::sync::Mutex<Vec<BenchCounts>>,
    /// Latencies by target name (the run's histograms, so the dashboard's panels read both).
    latency: Progress,
}

/// One target's counts.
#[derive(Debug, Default, Clone)]
struct BenchCounts {
    ok: u64,
    failed: u64,
    errors: std::collections::BTreeMap<String, u64>,
    prompt: u64,
    cached: u64,
    completion: u64,
    cost_pico: u64,
}

impl BenchLive {
    /// Metrics of a benchmark of `targets` (their names, in order).
    pub fn new(targets: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            counts: std::sync::Mutex::new(vec![BenchCounts::default(); targets.len()]),
            targets,
            latency: Progress::default(),
        })
    }

    /// Folds one record in.
    pub fn add(&self, r: &pagemill_bench::record::Record) {
        let Some(name) = self.targets.get(r.target) else {
            return;
        };
        {
            let mut counts = lock(&self.counts);
            let Some(c) = counts.get_mut(r.target) else {
                return;
            };
            match &r.error {
                Some((class, _)) => {
                    c.failed += 1;
                    *c.errors.entry(class.to_string()).or_default() += 1;
                }
                None => c.ok += 1,
            }
            c.prompt += r.prompt_tokens.map_or(0, |t| t.tokens);
            c.cached += r.cached_tokens.unwrap_or(0);
            c.completion += r.output_tokens.map_or(0, |t| t.tokens);
            c.cost_pico += r.cost_pico.unwrap_or(0);
        }
        if r.error.is_none() {
            let ns = |v: Option<u64>| v.map(std::time::Duration::from_nanos);
            self.latency.record_latency(
                name,
                ns(r.ttft_answer_ns.or(r.ttft_content_ns)),
                ns(r.e2e_ns),
            );
        }
    }

    /// The metrics text, as a scrape gets it.
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BenchCollector {
            targets: self.targets.clone(),
            counts: lock(&self.counts).clone(),
            latency: lock(&self.latency.latency).clone(),
        }));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Serves the benchmark's metrics on `addr` for as long as the handle lives.
    pub async fn serve(self: Arc<Self>, addr: SocketAddr) -> anyhow::Result<ServerHandle> {
        serve_text(addr, move || self.render()).await
    }
}

/// A snapshot of a benchmark's metrics.
#[derive(Debug)]
struct BenchCollector {
    targets: Vec<String>,
    counts: Vec<BenchCounts>,
    latency: std::collections::BTreeMap<String, Latency>,
}

impl Collector for BenchCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows: Vec<(&str, &BenchCounts)> = self
            .targets
            .iter()
            .map(String::as_str)
            .zip(&self.counts)
            .collect();
        let mut requests = Vec::new();
        let mut tokens = Vec::new();
        let mut errors = Vec::new();
        let mut cost = Vec::new();
        for (t, c) in &rows {
            for (outcome, n) in [("ok", c.ok), ("failed", c.failed)] {
                requests.push((
                    vec![("target", *t), ("outcome", outcome)],
                    ConstCounter::new(n),
                ));
            }
            for (kind, n) in [
                ("prompt", c.prompt),
                ("cached", c.cached),
                ("completion", c.completion),
            ] {
                tokens.push((vec![("target", *t), ("kind", kind)], ConstCounter::new(n)));
            }
            for (class, n) in &c.errors {
                errors.push((
                    vec![("target", *t), ("class", class.as_str())],
                    ConstCounter::new(*n),
                ));
            }
            cost.push((
                vec![("target", *t)],
                ConstCounter::new(c.cost_pico as f64 / 1e12),
            ));
        }
        family(
            &mut encoder,
            "pagemill_bench_requests",
            "Benchmark requests ended, by target and outcome (ok, failed).",
            MetricType::Counter,
            &requests,
        )?;
        family(
            &mut encoder,
            "pagemill_bench_tokens",
            "Tokens of the benchmark's requests by target and kind (prompt, of which cached, and completion), as the server counted them.",
            MetricType::Counter,
            &tokens,
        )?;
        family(
            &mut encoder,
            "pagemill_bench_request_errors",
            "Failed benchmark requests by target and error class.",
            MetricType::Counter,
            &errors,
        )?;
        family(
            &mut encoder,
            "pagemill_bench_cost_usd",
            "What the benchmark's requests of known price cost, in dollars, by target.",
            MetricType::Counter,
            &cost,
        )?;
        encode_latency(&mut encoder, &self.latency)?;
        encode_process(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figure(name: &str, now: f64, trailing: f64, alarm: bool) -> Drift {
        Drift {
            figure: name.to_owned(),
            now,
            trailing,
            runs: 3,
            message: String::new(),
            alarm,
        }
    }

    #[test]
    fn drift_figures_and_a_budget_pause_show_as_gauges() {
        let live = Live::default();
        live.drift(&[
            figure("prompt_tokens_per_page", 900.0, 610.0, true),
            figure("cached_share", 0.5, 0.52, false),
        ]);
        live.paused_until(Some(1_700_000_000));
        let text = render(&live);
        for line in [
            "pagemill_drift_alarm{figure=\"prompt_tokens_per_page\"} 1\n",
            "pagemill_drift_alarm{figure=\"cached_share\"} 0\n",
            "pagemill_drift_value{figure=\"prompt_tokens_per_page\",window=\"run\"} 900.0\n",
            "pagemill_drift_value{figure=\"prompt_tokens_per_page\",window=\"trailing_7d\"} 610.0\n",
            "pagemill_budget_paused 1\n",
            "pagemill_in_flight_requests 0\n",
        ] {
            assert!(text.contains(line), "no {line} in:\n{text}");
        }
        // A new pass clears the pause.
        live.start(&Arc::new(Progress::default()));
        assert!(render(&live).contains("pagemill_budget_paused 0\n"));
    }
}
