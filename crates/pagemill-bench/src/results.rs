//! What a benchmark found: the JSON `pagemill bench --format json` prints and `-o FILE` writes
//! (described by `schemas/bench-report.schema.json`), which `pagemill report` reads and
//! `pagemill_report::terminal::bench` shows as tables.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::schedule::Load;

/// Version of the results format.
pub const SCHEMA_VERSION: u32 = 1;

/// A whole benchmark run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResults {
    /// Report format version.
    pub schema_version: u32,
    /// Seconds since the Unix epoch at the start.
    pub started_at: u64,
    /// The workload's name.
    pub workload: String,
    /// One point per load level (one unless sweeping).
    pub points: Vec<Point>,
    /// Same-model agreement, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<Agreement>,
    /// The experiment, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// The client's check on itself.
    pub self_check: SelfCheck,
    /// True when Ctrl-C stopped the run early.
    pub interrupted: bool,
    /// Timings checked against a pagemill simulator's log (`--truth`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<Truth>,
}

/// Results at one load level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// The offered load.
    pub load: Load,
    /// Per target (endpoint or experiment arm), every repeat.
    pub targets: Vec<TargetResults>,
    /// Paired comparisons against the first target.
    pub comparisons: Vec<Comparison>,
}

/// Results of one target at one load level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetResults {
    /// Target name.
    pub name: String,
    /// Model name.
    pub model: String,
    /// Repeats merged into the figures below.
    pub repeats: u32,
    /// Requests measured (warm-up excluded).
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// Failures by `class/kind`.
    pub errors: BTreeMap<String, u64>,
    /// Requests throttled (429).
    pub throttled: u64,
    /// Seconds from the first scheduled send to the last completion.
    pub duration_s: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_token_throughput: f64,
    /// Requests per second meeting every SLO.
    pub goodput: Option<f64>,
    /// Share of requests meeting every SLO.
    pub slo_attainment: Option<f64>,
    /// Each SLO: the percentile value observed and whether it met the target.
    pub slo: Vec<SloResult>,
    /// Latency distributions, in milliseconds.
    pub latency_ms: BTreeMap<String, Percentiles>,
    /// The same distributions as `[ms, quantile]` points (quantiles 0–0.99 by 0.01, 0.999, 1),
    /// for CDF plots. Empty in reports written before it was added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latency_cdf_ms: BTreeMap<String, Vec<[f64; 2]>>,
    /// Per-request output tokens per second.
    pub output_tokens_per_sec: Percentiles,
    /// Token accounting.
    pub tokens: Tokens,
    /// Cost figures (`None` fields: unknown prices or usage).
    pub cost: Costs,
    /// Completed requests and output tokens in each second of the run.
    pub throughput_over_time: Vec<Bucket>,
    /// Requests in flight, sampled.
    pub in_flight: Percentiles,
    /// Connections.
    pub connections: Connections,
    /// Figures per page (or per item, for packing): tokens and latency.
    pub per_page: Option<PerPage>,
    /// Across repeats: mean and 95% confidence half-width of the headline figures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub across_repeats: BTreeMap<String, Estimate>,
}

/// A distribution summary.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub stdev: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

/// Token accounting of a target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens the workload meant to send, summed.
    pub input_requested: u64,
    /// Prompt tokens as counted (server where reported, else tokenizer), summed.
    pub input_counted: u64,
    /// Requests whose server prompt count differed from the workload's.
    pub input_mismatches: u64,
    /// Mean server − workload prompt tokens.
    pub input_discrepancy_mean: f64,
    /// Output tokens asked for (`max_tokens`), summed.
    pub output_requested: u64,
    /// Output tokens received, summed.
    pub output_received: u64,
    /// Requests that returned fewer tokens than asked.
    pub output_short: u64,
    /// Output tokens counted by the server / by our tokenizer.
    pub output_source_server: u64,
    /// See `output_source_server`.
    pub output_source_tokenizer: u64,
    /// Content events received; with `output_received`, tokens per event.
    pub content_events: u64,
    /// Cached prompt tokens over prompt tokens, among requests that reported caching.
    pub cached_ratio: Option<f64>,
    /// Requests whose server did not report cached tokens.
    pub cached_unreported: u64,
    /// Prompt tokens written to the provider's cache, summed (Anthropic prices them above
    /// input).
    #[serde(default)]
    pub cache_written: u64,
    /// Reasoning tokens, summed (part of `output_received`).
    #[serde(default)]
    pub reasoning: u64,
}

/// Cost of a target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Costs {
    /// USD over all measured requests.
    pub total_usd: Option<f64>,
    /// USD per request.
    pub per_request_usd: Option<f64>,
    /// USD per 1M output tokens.
    pub per_1m_output_tokens_usd: Option<f64>,
    /// USD per 1,000 pages of the workload.
    pub per_1k_pages_usd: Option<f64>,
    /// USD per month at `--pages-per-day`.
    pub per_month_usd: Option<f64>,
    /// Requests whose cost was unknown.
    pub unknown: u64,
    /// Where the target's prices come from.
    #[serde(default)]
    pub prices_from: pagemill_client::prices::PriceSource,
}

/// One second of a run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Bucket {
    /// Seconds since the start.
    pub second: u64,
    /// Requests completed.
    pub completed: u64,
    /// Output tokens received.
    pub output_tokens: u64,
    /// Requests failed.
    pub errors: u64,
}

/// Figures per page (or item) of the workload.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct PerPage {
    /// Pages (items) answered.
    pub pages: f64,
    /// Prompt tokens per page.
    pub input_tokens: f64,
    /// Output tokens per page.
    pub output_tokens: f64,
    /// Request latency per page, ms (a packed request's latency shared by its items).
    pub e2e_ms: f64,
}

/// Connection reuse of a target.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Connections {
    /// Requests on a reused connection.
    pub reused: u64,
    /// Requests that opened one.
    pub new: u64,
    /// Connect time of new connections, ms.
    pub connect_ms: Percentiles,
    /// Kept-alive connections the server closed while idle in the pool (idle timeouts,
    /// request limits): the next request opened another, nothing lost.
    #[serde(default)]
    pub closed_by_server_idle: u64,
    /// Kept-alive connections the server closed under a request just sent (that request
    /// failed before headers).
    #[serde(default)]
    pub closed_by_server_under_request: u64,
}

/// One SLO's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SloResult {
    /// e.g. `ttft_p99`.
    pub name: String,
    /// Target in ms.
    pub target_ms: f64,
    /// Observed in ms.
    pub observed_ms: f64,
    /// Observed ≤ target.
    pub met: bool,
}

/// A mean with a 95% confidence half-width.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    /// Mean.
    pub mean: f64,
    /// Half-width of the 95% confidence interval (0 with one sample).
    pub ci95: f64,
    /// Samples.
    pub n: u64,
}

/// A target against the baseline (first) target on one metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Metric, e.g. `ttft_answer mean ms`.
    pub metric: String,
    /// Baseline target.
    pub baseline: String,
    /// Compared target.
    pub target: String,
    /// Baseline value.
    pub baseline_value: f64,
    /// Target value.
    pub target_value: f64,
    /// target − baseline.
    pub difference: f64,
    /// 95% confidence half-width of the difference.
    pub ci95: f64,
    /// The interval excludes zero.
    pub significant: bool,
    /// How it was computed: `paired over repeats` or `welch over requests`.
    pub method: String,
}

/// Same-model agreement across endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Agreement {
    /// Reference endpoint.
    pub reference: String,
    /// Prompts sent to every endpoint.
    pub prompts: u64,
    /// Per other endpoint.
    pub endpoints: Vec<AgreementRow>,
}

/// One endpoint's agreement with the reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgreementRow {
    /// Endpoint.
    pub name: String,
    /// Answers identical to the reference's.
    pub exact_match_rate: f64,
    /// For JSON answers, share of the reference's fields with equal values.
    pub json_field_agreement: Option<f64>,
    /// Prompts where either side failed.
    pub failed: u64,
}

/// The client's check on itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SelfCheck {
    /// Send lag behind schedule, ms.
    pub lag_ms: Percentiles,
    /// From handing a request to the transport to its last byte on the socket, ms: the
    /// client's own queueing before the wire.
    pub write_lag_ms: Percentiles,
    /// Event-loop stalls over 5 ms seen by a 10 ms ticker.
    pub stalls: u64,
    /// Longest stall, ms.
    pub max_stall_ms: f64,
    /// Client CPU time, seconds.
    pub cpu_s: f64,
    /// Wall time, seconds.
    pub wall_s: f64,
    /// CPU per request, µs.
    pub cpu_per_request_us: f64,
    /// CPU per SSE content event, µs.
    pub cpu_per_event_us: f64,
    /// Peak resident memory, bytes.
    pub peak_rss_bytes: u64,
    /// Per client core, with `--client-cores N` (N > 1); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_core: Vec<CoreCheck>,
    /// Warnings: when the client, not the endpoint, is likely the limit.
    pub warnings: Vec<String>,
}

/// What one client core did (`--client-cores`), over all runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CoreCheck {
    /// Requests it sent.
    pub requests: u64,
    /// CPU time of its thread, seconds.
    pub cpu_s: f64,
    /// CPU per request, µs.
    pub cpu_per_request_us: f64,
    /// Share of the wall time its thread was on a CPU (1.0: a whole core).
    pub busy: f64,
    /// Event-loop stalls over 5 ms.
    pub stalls: u64,
}

/// How far pagemill's timings are from the server's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Truth {
    /// Records matched with a log entry by request id.
    pub matched: u64,
    /// Records with no log entry (evicted from the server's log, or not a pagemill simulator).
    pub unmatched: u64,
    /// Content events compared, each with the server write that carried it.
    pub chunks: u64,
    /// Requests whose content event count differed from the server's (skipped).
    pub chunk_count_mismatch: u64,
    /// Client receive − server send of each content chunk, µs.
    pub chunk_delay_us: Percentiles,
    /// Client TTFT (request on the wire → first content) − server TTFT (request read → first
    /// content sent), µs: network, kernel and the server's own input queue.
    pub ttft_delta_us: Percentiles,
    /// The same, for requests that opened their connection.
    #[serde(default)]
    pub ttft_delta_new_us: Percentiles,
    /// The same, for requests on a reused connection.
    #[serde(default)]
    pub ttft_delta_reused_us: Percentiles,
    /// |client connect time − the server's handshake time| of each new TLS connection, µs
    /// (plain TCP connects complete in the kernel, before the server sees them).
    #[serde(default)]
    pub connect_delta_us: Percentiles,
    /// Chunks the client stamped *before* the server sent them (must be 0 on one clock).
    pub causality_violations: u64,
}
