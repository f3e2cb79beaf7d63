//! A whole benchmark: load points (one, a sweep, or found by a saturation search), repeats,
//! paired comparisons against the first target, same-model agreement and the self-check.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::collect::{SloItem, TargetStats, percentiles};
use crate::record::Record;
use crate::results::{
    Agreement, AgreementRow, BenchResults, Comparison, CoreCheck, Point, SCHEMA_VERSION, SelfCheck,
};
use crate::runner::{RunSpec, Target, peak_rss_bytes, run};
use crate::schedule::{Arrival, Load};
use crate::stats::{estimate, welch};

/// Everything a benchmark does besides its targets.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Load points, run one after another.
    pub points: Vec<Load>,
    /// Find the saturation rate first, then run points below it (replaces `points`).
    pub find_saturation: bool,
    /// Requests per run (warm-up included).
    pub requests: Option<u64>,
    /// Duration of each run.
    pub duration: Option<Duration>,
    /// Unmeasured requests at the start of each run.
    pub warmup: u64,
    /// Runs per point.
    pub repeat: u32,
    /// Seed.
    pub seed: u64,
    /// SLOs for goodput.
    pub slo: Vec<SloItem>,
    /// For cost per month.
    pub pages_per_day: Option<f64>,
    /// Keep chunk receive times and tag requests (for checks against a server log).
    pub keep_chunk_times: bool,
    /// Prompts for the same-model agreement check (0: none).
    pub agreement_prompts: u64,
    /// Experiment name, for the report.
    pub experiment: Option<String>,
    /// Client threads with a runtime and connections each (≤ 1: the command's runtime).
    pub client_cores: usize,
}

/// What every run of a benchmark adds to the client's check on itself.
#[derive(Default)]
struct Client {
    cpu: Duration,
    wall: Duration,
    sent: u64,
    events: u64,
    stalls: u64,
    worst_stall: Duration,
    /// Per client core (when there are several), summed over runs.
    per_core: Vec<crate::runner::CoreReport>,
    /// Lags of every request, all targets together.
    lag: Option<TargetStats>,
    interrupted: bool,
}

impl Client {
    fn add(&mut self, out: &crate::runner::RunOutput) {
        self.interrupted |= out.interrupted;
        self.cpu += out.cpu;
        self.wall += out.wall;
        self.sent += out.sent;
        self.events += out.events;
        self.stalls += out.stalls.0;
        self.worst_stall = self.worst_stall.max(out.stalls.1);
        if self.per_core.len() < out.per_core.len() {
            self.per_core.resize(out.per_core.len(), Default::default());
        }
        for (sum, c) in self.per_core.iter_mut().zip(&out.per_core) {
            sum.sent += c.sent;
            sum.cpu += c.cpu;
            sum.stalls += c.stalls;
            sum.worst_stall = sum.worst_stall.max(c.worst_stall);
        }
        let lag = self
            .lag
            .get_or_insert_with(|| TargetStats::new(0, Vec::new()));
        for s in &out.stats {
            lag.merge(s);
        }
    }

    /// The self-check: lag, CPU, stalls, memory, and warnings when the client is the limit.
    fn check(&self) -> SelfCheck {
        let empty = TargetStats::new(0, Vec::new());
        let lag = self.lag.as_ref().unwrap_or(&empty);
        let lag_ms = percentiles(lag.lag(), 1e-6);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let mut warnings = Vec::new();
        if lag_ms.p99 > 10.0 {
            warnings.push(format!(
                "the client sent requests late (lag p99 {:.1} ms): it, not the endpoint, may be the limit",
                lag_ms.p99
            ));
        }
        let busy = if self.wall.is_zero() {
            0.0
        } else {
            self.cpu.as_secs_f64() / self.wall.as_secs_f64()
        };
        if busy > 0.9 * cores {
            warnings.push(format!(
                "the client used {busy:.2} of {cores} cores: it is likely the bottleneck"
            ));
        }
        let write_lag_ms = percentiles(lag.write_lag(), 1e-6);
        if self.stalls > 0 {
            // Arrivals are the kernel's receive times on plain TCP (Linux), so a busy loop
            // delays what this client sends, not what it sees come back.
            let arrivals = if cfg!(target_os = "linux") {
                "; arrival times over plain HTTP are the kernel's and not delayed"
            } else {
                ", and arrivals timed late"
            };
            warnings.push(format!(
                "the client's event loop stalled {} times (longest {:.1} ms): requests may have \
                 gone out late (write lag p99 {:.1} ms, inside TTFT from the schedule){arrivals}",
                self.stalls,
                self.worst_stall.as_secs_f64() * 1e3,
                write_lag_ms.p99
            ));
        }
        let per = |n: u64| {
            if n > 0 {
                self.cpu.as_secs_f64() * 1e6 / n as f64
            } else {
                0.0
            }
        };
        SelfCheck {
            lag_ms,
            write_lag_ms,
            stalls: self.stalls,
            max_stall_ms: self.worst_stall.as_secs_f64() * 1e3,
            cpu_s: self.cpu.as_secs_f64(),
            wall_s: self.wall.as_secs_f64(),
            cpu_per_request_us: per(self.sent),
            cpu_per_event_us: per(self.events),
            peak_rss_bytes: peak_rss_bytes(),
            per_core: self
                .per_core
                .iter()
                .map(|c| CoreCheck {
                    requests: c.sent,
                    cpu_s: c.cpu.as_secs_f64(),
                    cpu_per_request_us: if c.sent > 0 {
                        c.cpu.as_secs_f64() * 1e6 / c.sent as f64
                    } else {
                        0.0
                    },
                    busy: if self.wall.is_zero() {
                        0.0
                    } else {
                        c.cpu.as_secs_f64() / self.wall.as_secs_f64()
                    },
                    stalls: c.stalls,
                })
                .collect(),
            warnings,
        }
    }
}

/// Runs the benchmark. `sink` receives every record (e.g. to write JSONL; `&mut |_| {}` for
/// none).
pub async fn bench(
    targets: &[Target],
    spec: &BenchSpec,
    cancel: CancellationToken,
    sink: &mut (dyn FnMut(&Record) + Send),
) -> (BenchResults, Vec<Record>) {
    let started_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let points = if spec.find_saturation {
        below_saturation(targets, spec, cancel.clone()).await
    } else {
        spec.points.clone()
    };
    let mut session = Session {
        targets,
        spec,
        cancel: cancel.clone(),
        client: Client::default(),
        kept: Vec::new(),
    };
    let mut out_points = Vec::new();
    for (p, load) in points.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        out_points.push(session.point(p, *load, sink).await);
    }
    let Session { client, kept, .. } = session;
    let agreement = if spec.agreement_prompts > 0 && targets.len() > 1 && !cancel.is_cancelled() {
        Some(agreement(targets, spec.agreement_prompts).await)
    } else {
        None
    };
    let results = BenchResults {
        schema_version: SCHEMA_VERSION,
        started_at,
        workload: targets
            .first()
            .map(|t| t.workload.name.clone())
            .unwrap_or_default(),
        points: out_points,
        agreement,
        experiment: spec.experiment.clone(),
        self_check: client.check(),
        interrupted: client.interrupted,
        truth: None,
    };
    (results, kept)
}

/// Finds the rate where the targets stop keeping up, and returns points at 50, 75 and 90% of
/// it.
async fn below_saturation(
    targets: &[Target],
    spec: &BenchSpec,
    cancel: CancellationToken,
) -> Vec<Load> {
    let (found, probes) = saturation(targets, spec, cancel).await;
    tracing::info!(rate = found, probes, "saturation rate found");
    [0.5, 0.75, 0.9]
        .iter()
        .map(|f| Load::Rate {
            per_sec: (found * f).max(0.1),
            arrival: Arrival::Poisson,
        })
        .collect()
}

/// A benchmark under way: what it runs, and what its runs have added up to.
struct Session<'a> {
    targets: &'a [Target],
    spec: &'a BenchSpec,
    cancel: CancellationToken,
    client: Client,
    kept: Vec<Record>,
}

impl Session<'_> {
    /// Load point `p`: every repeat, merged per target, with spreads across repeats and the
    /// comparisons against the first target.
    async fn point(
        &mut self,
        p: usize,
        load: Load,
        sink: &mut (dyn FnMut(&Record) + Send),
    ) -> Point {
        let (targets, spec, cancel) = (self.targets, self.spec, self.cancel.clone());
        let mut merged: Vec<Option<TargetStats>> = vec![None; targets.len()];
        let mut per_repeat: Vec<Vec<TargetStats>> = vec![Vec::new(); targets.len()];
        for r in 0..spec.repeat.max(1) {
            if cancel.is_cancelled() {
                break;
            }
            let run_spec = RunSpec {
                load,
                requests: spec.requests,
                duration: spec.duration,
                warmup: spec.warmup,
                seed: spec.seed.wrapping_add(u64::from(r)),
                slo: spec.slo.clone(),
                keep_chunk_times: spec.keep_chunk_times,
                keep_content: false,
                run_tag: spec.keep_chunk_times.then(|| format!("p{p}r{r}")),
                client_cores: spec.client_cores,
            };
            let out = run(targets, &run_spec, cancel.clone(), &mut *sink).await;
            self.client.add(&out);
            self.kept.extend(out.kept);
            for (t, s) in out.stats.into_iter().enumerate() {
                match &mut merged[t] {
                    Some(m) => m.merge(&s),
                    slot @ None => *slot = Some(s.clone()),
                }
                per_repeat[t].push(s);
            }
        }
        let mut reports = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            let Some(m) = &merged[t] else { continue };
            let mut rep = m.report(
                &target.name,
                &target.client.endpoint().model,
                per_repeat[t].len() as u32,
                spec.pages_per_day,
            );
            if per_repeat[t].len() > 1 {
                rep.across_repeats = headline(&per_repeat[t], &target.name, spec.pages_per_day);
            }
            rep.cost.prices_from = target.client.endpoint().price_source.clone();
            reports.push(rep);
        }
        Point {
            load,
            targets: reports,
            comparisons: compare(targets, &merged, &per_repeat, spec.pages_per_day),
        }
    }
}

/// The headline figures of each repeat, as mean ± CI.
fn headline(
    repeats: &[TargetStats],
    name: &str,
    pages_per_day: Option<f64>,
) -> BTreeMap<String, crate::results::Estimate> {
    let reports: Vec<_> = repeats
        .iter()
        .map(|s| s.report(name, "", 1, pages_per_day))
        .collect();
    let mut out = BTreeMap::new();
    let mut add = |k: &str, f: &dyn Fn(&crate::results::TargetResults) -> Option<f64>| {
        let v: Vec<f64> = reports.iter().filter_map(f).collect();
        if !v.is_empty() {
            out.insert(k.to_owned(), estimate(&v));
        }
    };
    add("ttft_answer_p50_ms", &|r| {
        r.latency_ms.get("ttft_answer").map(|p| p.p50)
    });
    add("ttft_answer_p99_ms", &|r| {
        r.latency_ms.get("ttft_answer").map(|p| p.p99)
    });
    add("tpot_p50_ms", &|r| r.latency_ms.get("tpot").map(|p| p.p50));
    add("e2e_p50_ms", &|r| r.latency_ms.get("e2e").map(|p| p.p50));
    add("request_throughput", &|r| Some(r.request_throughput));
    add("output_token_throughput", &|r| {
        Some(r.output_token_throughput)
    });
    add("cost_per_request_usd", &|r| r.cost.per_request_usd);
    out
}

/// Each target against the first, on the main metrics.
fn compare(
    targets: &[Target],
    merged: &[Option<TargetStats>],
    per_repeat: &[Vec<TargetStats>],
    _ppd: Option<f64>,
) -> Vec<Comparison> {
    let mut out = Vec::new();
    let Some(Some(base)) = merged.first() else {
        return out;
    };
    for (t, target) in targets.iter().enumerate().skip(1) {
        let Some(Some(other)) = merged.get(t) else {
            continue;
        };
        for metric in [
            "ttft_answer",
            "tpot",
            "e2e",
            "prompt_tokens",
            "cached_tokens",
            "cost_pico",
        ] {
            let is_latency = !matches!(metric, "prompt_tokens" | "cached_tokens" | "cost_pico");
            let (scale, unit) = match metric {
                "prompt_tokens" | "cached_tokens" => (1.0, "tokens"),
                "cost_pico" => (1e12, "USD"),
                _ => (1e6, "ms"),
            };
            fn get<'a>(
                s: &'a TargetStats,
                metric: &str,
                is_latency: bool,
            ) -> Option<&'a Histogram<u64>> {
                if is_latency {
                    s.latency(metric)
                } else {
                    s.amount(metric)
                }
            }
            let (Some(a), Some(b)) = (
                get(base, metric, is_latency),
                get(other, metric, is_latency),
            ) else {
                continue;
            };
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let repeats = per_repeat[0].len().min(per_repeat[t].len());
            let (diff, ci, method) = if repeats >= 2 {
                let diffs: Vec<f64> = (0..repeats)
                    .filter_map(|r| {
                        let x = get(&per_repeat[0][r], metric, is_latency)?.mean();
                        let y = get(&per_repeat[t][r], metric, is_latency)?.mean();
                        Some((y - x) / scale)
                    })
                    .collect();
                let e = estimate(&diffs);
                (e.mean, e.ci95, "paired over repeats")
            } else {
                let (d, ci) = welch(a.mean(), a.stdev(), a.len(), b.mean(), b.stdev(), b.len());
                (d / scale, ci / scale, "welch over requests")
            };
            out.push(Comparison {
                metric: format!("{} mean {unit}", metric.trim_end_matches("_pico")),
                baseline: targets[0].name.clone(),
                target: target.name.clone(),
                // Amounts are stored plus one (HDR histograms start at 1).
                baseline_value: (a.mean() - if is_latency { 0.0 } else { 1.0 }) / scale,
                target_value: (b.mean() - if is_latency { 0.0 } else { 1.0 }) / scale,
                difference: diff,
                ci95: ci,
                significant: ci.is_finite() && diff.abs() > ci,
                method: method.to_owned(),
            });
        }
    }
    out
}

/// Doubles an open-loop Poisson rate until the targets stop keeping up (achieved below 90% of
/// offered, or more than 5% errors); returns the last rate that kept up.
async fn saturation(targets: &[Target], spec: &BenchSpec, cancel: CancellationToken) -> (f64, u32) {
    let mut rate = match spec.points.first() {
        Some(Load::Rate { per_sec, .. }) => *per_sec,
        Some(Load::Concurrency { n }) => *n as f64,
        _ => 1.0,
    }
    .max(0.5);
    let mut good = 0.0;
    let probe_time = spec
        .duration
        .unwrap_or(Duration::from_secs(5))
        .min(Duration::from_secs(10));
    for probe in 1..=20u32 {
        if cancel.is_cancelled() {
            return (good, probe);
        }
        let run_spec = RunSpec {
            load: Load::Rate {
                per_sec: rate,
                arrival: Arrival::Poisson,
            },
            requests: None,
            duration: Some(probe_time),
            warmup: 0,
            seed: spec.seed,
            slo: Vec::new(),
            keep_chunk_times: false,
            keep_content: false,
            run_tag: None,
            client_cores: spec.client_cores,
        };
        let out = run(targets, &run_spec, cancel.clone(), &mut |_| {}).await;
        let (mut ok, mut total) = (0u64, 0u64);
        for s in &out.stats {
            let r = s.report("", "", 1, None);
            ok += r.ok;
            total += r.requests;
        }
        let achieved = ok as f64 / out.wall.as_secs_f64().max(1e-9);
        let errors = if total > 0 {
            1.0 - ok as f64 / total as f64
        } else {
            1.0
        };
        if achieved < 0.9 * rate || errors > 0.05 {
            return (good.max(rate / 2.0), probe);
        }
        good = rate;
        rate *= 2.0;
    }
    (good, 20)
}

/// Same prompts at temperature 0 (seed 42) to every target: exact-match rate and JSON field
/// agreement against the first.
async fn agreement(targets: &[Target], prompts: u64) -> Agreement {
    let mut answers: Vec<Vec<Option<String>>> = vec![Vec::new(); targets.len()];
    for i in 0..prompts {
        for (t, target) in targets.iter().enumerate() {
            let mut req = target.workload.item(i).request;
            req.temperature = Some(0.0);
            req.seed = Some(42);
            let ex = target
                .client
                .send(&req, pagemill_client::clock::mono_ns())
                .await;
            answers[t].push(ex.is_ok().then_some(ex.content));
        }
    }
    let rows = (1..targets.len())
        .map(|t| {
            let (mut same, mut failed, mut both) = (0u64, 0u64, 0u64);
            let (mut fields, mut agree) = (0u64, 0u64);
            for (a, b) in answers[0].iter().zip(&answers[t]) {
                let (Some(a), Some(b)) = (a, b) else {
                    failed += 1;
                    continue;
                };
                both += 1;
                if a == b {
                    same += 1;
                }
                if let (Ok(Value::Object(x)), Ok(y)) = (
                    serde_json::from_str::<Value>(a),
                    serde_json::from_str::<Value>(b),
                ) {
                    let mut flat = Vec::new();
                    flatten("", &Value::Object(x), &mut flat);
                    for (path, v) in flat {
                        fields += 1;
                        if y.pointer(&path) == Some(&v) {
                            agree += 1;
                        }
                    }
                }
            }
            AgreementRow {
                name: targets[t].name.clone(),
                exact_match_rate: if both > 0 {
                    same as f64 / both as f64
                } else {
                    0.0
                },
                json_field_agreement: (fields > 0).then(|| agree as f64 / fields as f64),
                failed,
            }
        })
        .collect();
    Agreement {
        reference: targets[0].name.clone(),
        prompts,
        endpoints: rows,
    }
}

/// Leaf values of a JSON document with their JSON-pointer paths.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(
                    &format!("{prefix}/{}", k.replace('~', "~0").replace('/', "~1")),
                    v,
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&format!("{prefix}/{i}"), v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stall warning says what a stall delays: sends (with the write lag's p99), not the
    /// arrival times, which are the kernel's.
    #[test]
    fn a_stall_warning_gives_the_write_lag_it_caused() {
        let mut lag = TargetStats::new(0, Vec::new());
        for ms in [1, 2, 7] {
            let mut r = crate::collect::tests::rec(10, 4, &[5, 5]);
            r.write_lag_ns = Some(ms * 1_000_000);
            lag.add(&r);
        }
        let client = Client {
            stalls: 2,
            worst_stall: Duration::from_millis(12),
            lag: Some(lag),
            ..Client::default()
        };
        let check = client.check();
        assert_eq!(check.stalls, 2);
        let warning = check
            .warnings
            .iter()
            .find(|w| w.contains("stalled 2 times (longest 12.0 ms)"))
            .expect("a stall warning");
        assert!(warning.contains("write lag p99 7.0 ms"), "{warning}");
        if cfg!(target_os = "linux") {
            assert!(
                warning.contains("are the kernel's and not delayed"),
                "{warning}"
            );
        }
    }

    #[test]
    fn flatten_gives_json_pointers_to_leaves() {
        let v: Value = serde_json::json!({"a": {"b": [1, {"c": "x"}]}, "d/e": true});
        let mut out = Vec::new();
        flatten("", &v, &mut out);
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["/a/b/0", "/a/b/1/c", "/d~1e"]);
        for (p, leaf) in &out {
            assert_eq!(v.pointer(p), Some(leaf));
        }
    }
}
