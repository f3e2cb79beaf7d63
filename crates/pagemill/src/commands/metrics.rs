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

/// The run's counters as Prometheus metrics.
#[derive(Debug)]
struct RunCollector {
    progress: Arc<Progress>,
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
            for (endpoint, l) in &latency {
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
        single(
            &mut encoder,
            "process_cpu_seconds",
            "CPU time of this process, user and system.",
            MetricType::Counter,
            &ConstCounter::new(process_cpu_seconds()),
        )?;
        let rss = pagemill_bench::runner::rss_bytes();
        single(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory of this process.",
            MetricType::Gauge,
            &ConstGauge::new(i64::try_from(rss).unwrap_or(i64::MAX)),
        )?;
        Ok(())
    }
}

/// CPU time of this process, in seconds.
fn process_cpu_seconds() -> f64 {
    pagemill_bench::runner::cpu_time().as_secs_f64()
}

/// What the metrics show: the counters of passes that ended (a watcher's) and of the one
/// running.
#[derive(Debug, Default)]
pub struct Live {
    ended: Progress,
    running: std::sync::Mutex<Option<Arc<Progress>>>,
}

impl Live {
    /// The metrics of one run.
    pub fn of(progress: &Arc<Progress>) -> Arc<Self> {
        let live = Self::default();
        live.start(progress);
        Arc::new(live)
    }

    /// A pass starts: its counters show as they move.
    pub fn start(&self, pass: &Arc<Progress>) {
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(pass));
    }

    /// The pass ended: its counters join those of the passes before.
    pub fn end(&self) {
        let pass = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(pass) = pass {
            fold(&self.ended, &pass);
        }
    }

    /// Every counter now.
    fn snapshot(&self) -> Progress {
        let now = Progress::default();
        fold(&now, &self.ended);
        if let Some(pass) = &*self.running.lock().unwrap_or_else(|p| p.into_inner()) {
            fold(&now, pass);
        }
        now
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
    registry.register_collector(Box::new(RunCollector {
        progress: Arc::new(live.snapshot()),
    }));
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `addr` for as long as the handle lives.
pub async fn serve(addr: SocketAddr, live: Arc<Live>) -> anyhow::Result<ServerHandle> {
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
    let handle = pagemill_sim::serve_with(options, move |req, sink| {
        let reply = if req.path == "/metrics" {
            Reply::status(200)
                .header(
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .bytes(render(&live))
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
