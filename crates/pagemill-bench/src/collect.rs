//! The one owner of a run's statistics: records arrive over a channel and fold into HDR
//! histograms and counters, so memory stays flat however many requests a run sends.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use pagemill_client::Source;

use crate::record::Record;
use crate::results::{
    Bucket, Connections, Costs, PerPage, Percentiles, SloResult, TargetResults, Tokens,
};

/// A latency SLO: the `pct` percentile of `metric` must be at most `threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct SloItem {
    /// `ttft`, `tpot`, `itl` or `e2e`.
    pub metric: String,
    /// Percentile, e.g. 99.0.
    pub pct: f64,
    /// Bound.
    pub threshold: Duration,
}

/// Three significant digits, auto-resizing: nanoseconds up to hours.
#[allow(clippy::expect_used)] // `Histogram::new` fails only for more than 5 significant digits.
pub(crate) fn hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is a valid HDR histogram")
}

fn record(h: &mut Histogram<u64>, v: u64) {
    // Auto-resizing histograms accept any value; saturate rather than fail on overflow.
    let _ = h.record(v.max(1));
}

/// Folded measurements of one target.
#[derive(Debug, Clone)]
pub struct TargetStats {
    latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Per-request prompt tokens, cached tokens and cost (picodollars): compared across targets.
    amounts: BTreeMap<&'static str, Histogram<u64>>,
    tokens_per_sec: Histogram<u64>,
    in_flight: Histogram<u64>,
    connect: Histogram<u64>,
    lag: Histogram<u64>,
    write_lag: Histogram<u64>,
    requests: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    throttled: u64,
    tokens: Tokens,
    cached_num: u64,
    cached_den: u64,
    discrepancy_sum: i64,
    discrepancy_n: u64,
    cost_pico: u128,
    cost_known: u64,
    pages: f64,
    pages_known_cost: f64,
    output_known_cost: u64,
    slo_met: u64,
    first_ns: Option<u64>,
    last_ns: u64,
    buckets: Vec<Bucket>,
    start_ns: u64,
    reused: u64,
    new: u64,
    /// Kept-alive connections the server closed while idle, and under a request.
    server_closed: (u64, u64),
    slo: Vec<SloItem>,
}

const LATENCIES: [&str; 8] = [
    "ttft_headers",
    "ttft_first_byte",
    "ttft_content",
    "ttft_answer",
    "itl_chunk",
    "itl_token",
    "tpot",
    "e2e",
];
const AMOUNTS: [&str; 4] = [
    "prompt_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_pico",
];

impl TargetStats {
    /// Empty statistics for a run that started at `start_ns`, judged against `slo`.
    pub fn new(start_ns: u64, slo: Vec<SloItem>) -> Self {
        Self {
            latency: LATENCIES.iter().map(|k| (*k, hist())).collect(),
            amounts: AMOUNTS.iter().map(|k| (*k, hist())).collect(),
            tokens_per_sec: hist(),
            in_flight: hist(),
            connect: hist(),
            lag: hist(),
            write_lag: hist(),
            requests: 0,
            ok: 0,
            errors: BTreeMap::new(),
            throttled: 0,
            tokens: Tokens::default(),
            cached_num: 0,
            cached_den: 0,
            discrepancy_sum: 0,
            discrepancy_n: 0,
            cost_pico: 0,
            cost_known: 0,
            pages: 0.0,
            pages_known_cost: 0.0,
            output_known_cost: 0,
            slo_met: 0,
            first_ns: None,
            last_ns: 0,
            buckets: Vec::new(),
            start_ns,
            server_closed: (0, 0),
            reused: 0,
            new: 0,
            slo,
        }
    }

    fn lat(&mut self, k: &'static str, v: Option<u64>) {
        if let (Some(v), Some(h)) = (v, self.latency.get_mut(k)) {
            record(h, v);
        }
    }

    /// Folds one measured record in (warm-up records are only counted for lag).
    pub fn add(&mut self, r: &Record) {
        record(&mut self.lag, r.lag_ns);
        if let Some(w) = r.write_lag_ns {
            record(&mut self.write_lag, w);
        }
        if !r.measured {
            return;
        }
        let second = self.count(r);
        if r.error.is_some() {
            return;
        }
        let tpot = self.latencies(r);
        let out = r.output_tokens.map_or(0, |c| c.tokens);
        self.buckets[second].output_tokens += out;
        self.tokens(r, out);
        self.amounts(r, out);
        if self.meets_slo(r, tpot) {
            self.slo_met += 1;
        }
    }

    /// Counts the request: its outcome (by error class and kind), its one-second bucket, its
    /// connection. Returns the bucket.
    fn count(&mut self, r: &Record) -> usize {
        self.requests += 1;
        self.first_ns = Some(
            self.first_ns
                .map_or(r.scheduled_ns, |f| f.min(r.scheduled_ns)),
        );
        self.last_ns = self.last_ns.max(r.done_ns);
        let second = (r.done_ns.saturating_sub(self.start_ns) / 1_000_000_000) as usize;
        if self.buckets.len() <= second {
            let from = self.buckets.len() as u64;
            self.buckets.extend((from..=second as u64).map(|s| Bucket {
                second: s,
                ..Bucket::default()
            }));
        }
        match r.error {
            Some((class, kind)) => {
                *self
                    .errors
                    .entry(format!(
                        "{class}/{}",
                        serde_json::to_value(kind)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ))
                    .or_default() += 1;
                if r.status == Some(429) {
                    self.throttled += 1;
                }
                self.buckets[second].errors += 1;
            }
            None => {
                self.ok += 1;
                self.buckets[second].completed += 1;
            }
        }
        match r.reused {
            Some(true) => self.reused += 1,
            Some(false) => self.new += 1,
            None => {}
        }
        if let Some(c) = r.connect_ns {
            record(&mut self.connect, c);
        }
        second
    }

    /// Every latency of a successful request, and its output rate; returns its TPOT.
    fn latencies(&mut self, r: &Record) -> Option<u64> {
        self.lat("ttft_headers", r.ttft_headers_ns);
        self.lat("ttft_first_byte", r.ttft_first_byte_ns);
        self.lat("ttft_content", r.ttft_content_ns);
        self.lat("ttft_answer", r.ttft_answer_ns);
        self.lat("e2e", r.e2e_ns);
        let tpot = r.tpot_ns();
        self.lat("tpot", tpot);
        let per_chunk = r.tokens_per_chunk().unwrap_or(1.0).max(1.0);
        for g in &r.chunk_gaps_ns {
            self.lat("itl_chunk", Some(*g));
            self.lat("itl_token", Some((*g as f64 / per_chunk) as u64));
        }
        let out = r.output_tokens.map_or(0, |c| c.tokens);
        if let (Some(e2e), true) = (r.e2e_ns, out > 0) {
            // Tokens per second × 1000, to keep three decimals in an integer histogram.
            record(
                &mut self.tokens_per_sec,
                (out as f64 / (e2e as f64 / 1e9) * 1e3) as u64,
            );
        }
        tpot
    }

    /// Token accounting: asked against received, who counted, the prompt against the server's
    /// count, the cached share.
    fn tokens(&mut self, r: &Record, out: u64) {
        let t = &mut self.tokens;
        t.input_requested += r.input_tokens_requested;
        t.output_requested += u64::from(r.output_tokens_requested);
        t.output_received += out;
        t.content_events += u64::from(r.content_events);
        if out < u64::from(r.output_tokens_requested) {
            t.output_short += 1;
        }
        match r.output_tokens.map(|c| c.source) {
            Some(Source::Server) => t.output_source_server += out,
            Some(Source::Tokenizer) => t.output_source_tokenizer += out,
            None => {}
        }
        if let Some(p) = r.prompt_tokens {
            t.input_counted += p.tokens;
            if p.source == Source::Server {
                let d = p.tokens as i64 - r.input_tokens_requested as i64;
                self.discrepancy_sum += d;
                self.discrepancy_n += 1;
                if d != 0 {
                    t.input_mismatches += 1;
                }
            }
            match r.cached_tokens {
                Some(c) => {
                    self.cached_num += c;
                    self.cached_den += p.tokens;
                }
                None => t.cached_unreported += 1,
            }
        }
        t.cache_written += r.cache_write_tokens.unwrap_or(0);
        t.reasoning += r.reasoning_tokens.unwrap_or(0);
    }

    /// Pages, per-request amounts (prompt, cached, output tokens, cost) and what is known to
    /// have cost.
    fn amounts(&mut self, r: &Record, out: u64) {
        self.pages += r.pages;
        let amounts = [
            ("prompt_tokens", r.prompt_tokens.map(|c| c.tokens)),
            ("cached_tokens", r.cached_tokens),
            ("output_tokens", Some(out)),
            ("cost_pico", r.cost_pico),
        ];
        for (k, v) in amounts {
            if let (Some(v), Some(h)) = (v, self.amounts.get_mut(k)) {
                // Zero is a real amount here; HDR histograms start at 1, so shift by one.
                let _ = h.record(v.saturating_add(1));
            }
        }
        if let Some(c) = r.cost_pico {
            self.cost_pico += u128::from(c);
            self.cost_known += 1;
            self.pages_known_cost += r.pages;
            self.output_known_cost += out;
        }
    }

    fn meets_slo(&self, r: &Record, tpot: Option<u64>) -> bool {
        self.slo.iter().all(|s| {
            let v = match s.metric.as_str() {
                "ttft" => r.ttft_answer_ns.or(r.ttft_content_ns),
                "tpot" => tpot,
                "itl" => r.chunk_gaps_ns.iter().max().copied().or(Some(0)),
                _ => r.e2e_ns,
            };
            v.is_some_and(|v| v <= s.threshold.as_nanos() as u64)
        })
    }

    /// Adds connections the server closed (read off the client's transport after a run).
    pub fn add_server_closes(&mut self, (idle, under_request): (u64, u64)) {
        self.server_closed.0 += idle;
        self.server_closed.1 += under_request;
    }

    /// Records a sample of requests in flight.
    pub fn sample_in_flight(&mut self, n: u64) {
        record(&mut self.in_flight, n);
    }

    /// Merges another repeat's statistics into these.
    pub fn merge(&mut self, o: &TargetStats) {
        for (k, h) in &mut self.latency {
            if let Some(other) = o.latency.get(k) {
                let _ = h.add(other);
            }
        }
        for (k, h) in &mut self.amounts {
            if let Some(other) = o.amounts.get(k) {
                let _ = h.add(other);
            }
        }
        for (a, b) in [
            (&mut self.tokens_per_sec, &o.tokens_per_sec),
            (&mut self.in_flight, &o.in_flight),
            (&mut self.connect, &o.connect),
            (&mut self.lag, &o.lag),
            (&mut self.write_lag, &o.write_lag),
        ] {
            let _ = a.add(b);
        }
        self.requests += o.requests;
        self.ok += o.ok;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.throttled += o.throttled;
        let (t, u) = (&mut self.tokens, &o.tokens);
        t.input_requested += u.input_requested;
        t.input_counted += u.input_counted;
        t.input_mismatches += u.input_mismatches;
        t.output_requested += u.output_requested;
        t.output_received += u.output_received;
        t.output_short += u.output_short;
        t.output_source_server += u.output_source_server;
        t.output_source_tokenizer += u.output_source_tokenizer;
        t.content_events += u.content_events;
        t.cached_unreported += u.cached_unreported;
        t.cache_written += u.cache_written;
        t.reasoning += u.reasoning;
        self.cached_num += o.cached_num;
        self.cached_den += o.cached_den;
        self.discrepancy_sum += o.discrepancy_sum;
        self.discrepancy_n += o.discrepancy_n;
        self.cost_pico += o.cost_pico;
        self.cost_known += o.cost_known;
        self.pages += o.pages;
        self.pages_known_cost += o.pages_known_cost;
        self.output_known_cost += o.output_known_cost;
        self.slo_met += o.slo_met;
        self.reused += o.reused;
        self.server_closed.0 += o.server_closed.0;
        self.server_closed.1 += o.server_closed.1;
        self.new += o.new;
        // Durations add up (repeats run one after another); time buckets stay the first run's.
        let span = o.last_ns.saturating_sub(o.first_ns.unwrap_or(o.last_ns));
        let mine = self
            .last_ns
            .saturating_sub(self.first_ns.unwrap_or(self.last_ns));
        let first = self.first_ns.unwrap_or(0);
        self.first_ns = Some(first);
        self.last_ns = first + mine + span;
    }

    /// The send-lag histogram (for the self-check).
    pub fn lag(&self) -> &Histogram<u64> {
        &self.lag
    }

    /// Hand-off-to-socket histogram (for the self-check).
    pub fn write_lag(&self) -> &Histogram<u64> {
        &self.write_lag
    }

    /// A per-request amount's histogram (`prompt_tokens`, `cached_tokens`, `output_tokens`,
    /// `cost_pico`), each value stored plus one.
    pub fn amount(&self, name: &str) -> Option<&Histogram<u64>> {
        self.amounts.get(name)
    }

    /// A latency histogram by name.
    pub fn latency(&self, name: &str) -> Option<&Histogram<u64>> {
        self.latency.get(name)
    }

    /// Seconds from first scheduled send to last completion.
    pub fn duration_s(&self) -> f64 {
        self.last_ns
            .saturating_sub(self.first_ns.unwrap_or(self.last_ns)) as f64
            / 1e9
    }

    /// The report of this target.
    pub fn report(
        &self,
        name: &str,
        model: &str,
        repeats: u32,
        pages_per_day: Option<f64>,
    ) -> TargetResults {
        let duration = self.duration_s();
        let per_sec = |n: f64| if duration > 0.0 { n / duration } else { 0.0 };
        let latency_ms = self
            .latency
            .iter()
            .map(|(k, h)| ((*k).to_owned(), percentiles(h, 1e-6)))
            .collect();
        let latency_cdf_ms = self
            .latency
            .iter()
            .filter(|(_, h)| !h.is_empty())
            .map(|(k, h)| ((*k).to_owned(), cdf(h, 1e-6)))
            .collect();
        let mut tokens = self.tokens.clone();
        tokens.cached_ratio =
            (self.cached_den > 0).then(|| self.cached_num as f64 / self.cached_den as f64);
        tokens.input_discrepancy_mean = if self.discrepancy_n > 0 {
            self.discrepancy_sum as f64 / self.discrepancy_n as f64
        } else {
            0.0
        };
        let usd = self.cost_pico as f64 / 1e12;
        let known = self.cost_known > 0;
        let per_page = (known && self.pages_known_cost > 0.0).then(|| usd / self.pages_known_cost);
        let cost = Costs {
            total_usd: known.then_some(usd),
            per_request_usd: known.then(|| usd / self.cost_known as f64),
            per_1m_output_tokens_usd: (known && self.output_known_cost > 0)
                .then(|| usd / self.output_known_cost as f64 * 1e6),
            per_1k_pages_usd: per_page.map(|p| p * 1e3),
            per_month_usd: per_page.zip(pages_per_day).map(|(p, d)| p * d * 30.0),
            unknown: self.ok.saturating_sub(self.cost_known),
            prices_from: Default::default(),
        };
        let slo = self
            .slo
            .iter()
            .filter_map(|s| {
                let key = match s.metric.as_str() {
                    "ttft" => "ttft_answer",
                    "itl" => "itl_chunk",
                    m => m,
                };
                let h = self.latency.get(key)?;
                let observed = h.value_at_quantile(s.pct / 100.0) as f64 / 1e6;
                let target = s.threshold.as_secs_f64() * 1e3;
                Some(SloResult {
                    name: format!("{}_p{}", s.metric, s.pct),
                    target_ms: target,
                    observed_ms: observed,
                    met: !h.is_empty() && observed <= target,
                })
            })
            .collect();
        TargetResults {
            name: name.to_owned(),
            model: model.to_owned(),
            repeats,
            requests: self.requests,
            ok: self.ok,
            errors: self.errors.clone(),
            throttled: self.throttled,
            duration_s: duration,
            request_throughput: per_sec(self.ok as f64),
            output_token_throughput: per_sec(self.tokens.output_received as f64),
            goodput: (!self.slo.is_empty()).then(|| per_sec(self.slo_met as f64)),
            slo_attainment: (!self.slo.is_empty() && self.requests > 0)
                .then(|| self.slo_met as f64 / self.requests as f64),
            slo,
            latency_ms,
            latency_cdf_ms,
            output_tokens_per_sec: percentiles(&self.tokens_per_sec, 1e-3),
            tokens,
            cost,
            throughput_over_time: self.buckets.clone(),
            in_flight: percentiles(&self.in_flight, 1.0),
            connections: Connections {
                reused: self.reused,
                new: self.new,
                connect_ms: percentiles(&self.connect, 1e-6),
                closed_by_server_idle: self.server_closed.0,
                closed_by_server_under_request: self.server_closed.1,
            },
            per_page: (self.pages > 0.0).then(|| PerPage {
                pages: self.pages,
                input_tokens: self.tokens.input_counted as f64 / self.pages,
                output_tokens: self.tokens.output_received as f64 / self.pages,
                e2e_ms: self.latency.get("e2e").map_or(0.0, |h| h.mean() / 1e6) * self.ok as f64
                    / self.pages,
            }),
            across_repeats: BTreeMap::new(),
        }
    }
}

/// A histogram's distribution as `[value × scale, quantile]` points: every percentile from 0
/// to 100, then 99.9 and the maximum — enough to draw its CDF.
pub fn cdf(h: &Histogram<u64>, scale: f64) -> Vec<[f64; 2]> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut qs: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
    qs.extend([0.999, 1.0]);
    qs.into_iter()
        .map(|q| [h.value_at_quantile(q) as f64 * scale, q])
        .collect()
}

/// A histogram's summary, each value multiplied by `scale`.
pub fn percentiles(h: &Histogram<u64>, scale: f64) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let q = |p: f64| h.value_at_quantile(p) as f64 * scale;
    Percentiles {
        count: h.len(),
        mean: h.mean() * scale,
        stdev: h.stdev() * scale,
        p50: q(0.5),
        p90: q(0.9),
        p95: q(0.95),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 * scale,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pagemill_client::Count;

    pub(crate) fn rec(ttft_ms: u64, tokens: u64, gaps_ms: &[u64]) -> Record {
        Record {
            target: 0,
            index: 0,
            measured: true,
            scheduled_ns: 1_000_000_000,
            lag_ns: 0,
            write_lag_ns: None,
            done_ns: 1_000_000_000 + (ttft_ms + gaps_ms.iter().sum::<u64>()) * 1_000_000,
            status: Some(200),
            error: None,
            ttft_headers_ns: Some(ttft_ms * 500_000),
            ttft_first_byte_ns: Some(ttft_ms * 900_000),
            ttft_content_ns: Some(ttft_ms * 1_000_000),
            ttft_answer_ns: Some(ttft_ms * 1_000_000),
            e2e_ns: Some((ttft_ms + gaps_ms.iter().sum::<u64>()) * 1_000_000),
            chunk_gaps_ns: gaps_ms.iter().map(|g| g * 1_000_000).collect(),
            chunk_at_ns: Vec::new(),
            content_events: gaps_ms.len() as u32 + 1,
            events: gaps_ms.len() as u32 + 3,
            sequences: 1,
            output_tokens: Some(Count::server(tokens)),
            prompt_tokens: Some(Count::server(100)),
            cached_tokens: Some(40),
            cache_write_tokens: None,
            reasoning_tokens: None,
            input_tokens_requested: 100,
            output_tokens_requested: tokens as u32,
            cost_pico: Some(1_000_000),
            pages: 1.0,
            reused: Some(true),
            connect_ns: None,
            content: None,
            tag: None,
        }
    }

    #[test]
    fn a_prompt_arrays_tpot_is_one_sequences() {
        // Four sequences of 10 tokens, their 40 reads 90 ms apart in all: each sequence's
        // tokens came 10 ms apart.
        let mut r = rec(100, 40, &[90]);
        r.sequences = 4;
        assert_eq!(r.tpot_ns(), Some(10_000_000));
        r.sequences = 1;
        assert_eq!(r.tpot_ns(), Some(90_000_000 / 39));
    }

    #[test]
    fn itl_per_token_divides_by_tokens_per_chunk_from_usage() {
        let mut s = TargetStats::new(0, Vec::new());
        // 9 tokens in 3 events: 3 tokens per chunk, 30 ms between chunks → 10 ms a token.
        s.add(&rec(100, 9, &[30, 30]));
        let r = s.report("a", "m", 1, Some(1000.0));
        assert!((r.latency_ms["itl_chunk"].p50 - 30.0).abs() < 0.1);
        assert!((r.latency_ms["itl_token"].p50 - 10.0).abs() < 0.1);
        // TPOT: 60 ms over 8 tokens after the first.
        assert!((r.latency_ms["tpot"].p50 - 7.5).abs() < 0.01);
        assert_eq!(r.tokens.output_received, 9);
        assert_eq!(r.tokens.cached_ratio, Some(0.4));
        assert_eq!(r.cost.per_request_usd, Some(1e-6));
        assert!((r.cost.per_1k_pages_usd.unwrap() - 1e-3).abs() < 1e-15);
        assert!((r.cost.per_month_usd.unwrap() - 1e-6 * 1000.0 * 30.0).abs() < 1e-12);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let slo = crate::experiment::parse_slo("ttft_p99=150ms,tpot_p90=20ms").unwrap();
        let mut s = TargetStats::new(0, slo);
        s.add(&rec(100, 3, &[10, 10])); // meets both
        s.add(&rec(200, 3, &[10, 10])); // ttft too slow
        s.add(&rec(100, 3, &[50, 50])); // tpot too slow
        let r = s.report("a", "m", 1, None);
        assert_eq!(r.slo_attainment, Some(1.0 / 3.0));
        assert!(!r.slo[0].met, "{:?}", r.slo);
    }

    #[test]
    fn errors_are_counted_by_class_and_kind_and_kept_out_of_latency() {
        let mut s = TargetStats::new(0, Vec::new());
        let mut bad = rec(1, 1, &[]);
        bad.error = Some((
            pagemill_client::ErrorClass::Throttled,
            pagemill_client::FailureKind::Status,
        ));
        bad.status = Some(429);
        s.add(&bad);
        s.add(&rec(5, 1, &[]));
        let r = s.report("a", "m", 1, None);
        assert_eq!(r.errors["throttled/status"], 1);
        assert_eq!(r.throttled, 1);
        assert_eq!(r.latency_ms["e2e"].count, 1);
    }
}
