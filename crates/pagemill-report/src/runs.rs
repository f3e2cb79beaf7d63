//! Figures from a ledger: what runs cost per page, day and month; tokens per page by task and
//! prompt version across runs; cached share per prompt template; retries and what they cost;
//! latency by endpoint over time; errors by class.
//!
//! Pages: an entities unit covers its page; a summary or metadata unit covers its document's
//! pages. "Pages" of a set of units is the number of distinct pages they cover, so a page whose
//! entities and summary both ran counts once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pagemill_client::Timeline;
use pagemill_pipeline::store::{History, RequestRow, StoreError, UnitBrief, UnitStatus};
use serde::{Deserialize, Serialize};

use crate::time;

/// Figures from one ledger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunsReport {
    /// The ledger file.
    pub ledger: String,
    /// Over everything recorded.
    pub totals: Totals,
    /// Monthly cost, projected.
    pub projection: Projection,
    /// Each run, oldest first.
    pub runs: Vec<RunFigures>,
    /// Each UTC day with requests.
    pub days: Vec<DayFigures>,
    /// Each task's prompt versions, oldest first within a task.
    pub prompts: Vec<PromptFigures>,
    /// Prompt tokens per page by task and prompt version, per run.
    pub prompt_runs: Vec<PromptRun>,
    /// Retries and re-sent work.
    pub retries: Retries,
    /// Latency by endpoint.
    pub endpoints: Vec<EndpointLatency>,
    /// Width of the latency-over-time buckets, seconds.
    pub bucket_secs: i64,
    /// Failures by endpoint and class.
    pub errors: Vec<ErrorRow>,
    /// Units given up on (the first 100).
    pub dead_letters: Vec<DeadLetter>,
    /// Units given up on, in all.
    pub dead_letters_total: u64,
}

/// Totals over the whole ledger.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    /// Runs recorded.
    pub runs: u64,
    /// Documents recorded.
    pub documents: u64,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed in the end.
    pub failed_requests: u64,
    /// Requests a killed run left unfinished.
    pub interrupted_requests: u64,
    /// Units done.
    pub units_done: u64,
    /// Distinct pages covered by done units.
    pub pages: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Cached prompt tokens (where reported).
    pub cached_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached over prompt tokens, among requests that reported caching.
    pub cached_share: Option<f64>,
    /// USD spent (known costs).
    pub cost_usd: Option<f64>,
    /// Requests whose cost is unknown (no prices, or interrupted).
    pub cost_unknown_requests: u64,
    /// USD per page.
    pub cost_per_page_usd: Option<f64>,
    /// Prompt tokens per page.
    pub prompt_tokens_per_page: Option<f64>,
    /// Completion tokens per page.
    pub completion_tokens_per_page: Option<f64>,
}

/// Monthly cost, projected (30 days).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Projection {
    /// UTC days with requests.
    pub active_days: u64,
    /// Pages per active day, observed.
    pub observed_pages_per_day: Option<f64>,
    /// USD per active day, observed.
    pub observed_cost_per_day_usd: Option<f64>,
    /// 30 × the observed cost per day.
    pub observed_per_month_usd: Option<f64>,
    /// Pages a day given with `--pages-per-day`.
    pub pages_per_day: Option<f64>,
    /// 30 × pages a day × cost per page.
    pub per_month_usd: Option<f64>,
}

/// One run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunFigures {
    /// Its id.
    pub id: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds, when it ended.
    pub finished_at: Option<i64>,
    /// `finished`, `stopped: …` or `did not finish` (killed, or still going).
    pub state: String,
    /// Drift alarms the run raised against its ledger's trailing 7 days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// Endpoints, primary first.
    pub endpoints: Vec<String>,
    /// Requests made.
    pub requests: u64,
    /// Requests that failed.
    pub failed_requests: u64,
    /// Units it finished.
    pub units_done: u64,
    /// Distinct pages covered by the units it finished.
    pub pages: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached share.
    pub cached_share: Option<f64>,
    /// Client retries.
    pub retries: u64,
    /// USD (known costs).
    pub cost_usd: Option<f64>,
    /// USD per page.
    pub cost_per_page_usd: Option<f64>,
    /// Prompt tokens per page.
    pub prompt_tokens_per_page: Option<f64>,
    /// Seconds from start to end.
    pub wall_s: Option<f64>,
    /// Where each endpoint's prices came from (`endpoint: source`), from the run's summary.
    #[serde(default)]
    pub prices_from: Vec<String>,
}

/// One UTC day.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DayFigures {
    /// `2026-11-27`.
    pub day: String,
    /// Unix seconds of its start.
    pub start: i64,
    /// Requests started that day.
    pub requests: u64,
    /// Distinct pages covered by units finished by those requests.
    pub pages: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// USD (`None`: no request that day had a known cost).
    pub cost_usd: Option<f64>,
    /// USD per page.
    pub cost_per_page_usd: Option<f64>,
}

/// One prompt version of one task.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PromptFigures {
    /// Task.
    pub task: String,
    /// Prompt version.
    pub prompt_version: String,
    /// Unix seconds of its first request.
    pub first_seen: i64,
    /// Runs that used it.
    pub runs: u64,
    /// Requests.
    pub requests: u64,
    /// Distinct units sent.
    pub units: u64,
    /// Distinct pages those units cover.
    pub pages: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Prompt tokens per unit sent.
    pub prompt_tokens_per_unit: Option<f64>,
    /// Prompt tokens per page covered.
    pub prompt_tokens_per_page: Option<f64>,
    /// Completion tokens per unit sent.
    pub completion_tokens_per_unit: Option<f64>,
    /// Tokens of its byte-stable system prefix.
    pub prefix_tokens: Option<u64>,
    /// Cached over prompt tokens, among requests that reported caching.
    pub cached_share: Option<f64>,
    /// Prefix over prompt tokens: the cached share a perfect cache would give.
    pub cacheable_share: Option<f64>,
    /// Requests that did not report cached tokens.
    pub cached_unreported: u64,
    /// Relative change of prompt tokens per page against the task's previous version.
    pub change_vs_previous: Option<f64>,
}

/// Prompt tokens per page of one task and prompt version in one run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PromptRun {
    /// Run id.
    pub run: String,
    /// Unix seconds the run started.
    pub started_at: i64,
    /// Task.
    pub task: String,
    /// Prompt version.
    pub prompt_version: String,
    /// Prompt tokens per page covered.
    pub prompt_tokens_per_page: f64,
}

/// Retries and re-sent work.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Retries {
    /// Attempts the client retried.
    pub client_retries: u64,
    /// Retried attempts by error class.
    pub retried_by_class: BTreeMap<String, u64>,
    /// Requests that carried a unit an earlier request had carried (re-asks, items re-run
    /// alone, retries after failure, `--force`).
    pub repeat_requests: u64,
    /// Their cost, prorated by the share of repeated units in each (`None`: no known costs).
    pub repeat_cost_usd: Option<f64>,
    /// Their prompt tokens, prorated the same way.
    pub repeat_prompt_tokens: u64,
    /// Share of all known cost spent on repeats.
    pub repeat_cost_share: Option<f64>,
    /// Requests that failed in the end.
    pub failed_requests: u64,
    /// What failed requests cost (providers bill some; `None`: no known costs).
    pub failed_cost_usd: Option<f64>,
    /// Requests left unfinished by a killed run.
    pub interrupted_requests: u64,
}

/// A distribution summary, milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Pcts {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Pcts {
    /// Of `v` (sorted here; nearest-rank percentiles).
    pub fn of(v: &mut [f64]) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Self {
            count: v.len() as u64,
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// Latency of one endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EndpointLatency {
    /// Endpoint name.
    pub endpoint: String,
    /// Requests.
    pub requests: u64,
    /// Requests that succeeded.
    pub ok: u64,
    /// From send to the first answer token.
    pub ttft_ms: Option<Pcts>,
    /// From send to the end.
    pub e2e_ms: Option<Pcts>,
    /// Mean gap between content chunks, per request.
    pub itl_ms: Option<Pcts>,
    /// Per time bucket.
    pub over_time: Vec<LatencyBucket>,
}

/// Latency in one time bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// Unix seconds of the bucket's start.
    pub start: i64,
    /// Requests measured.
    pub requests: u64,
    /// TTFT.
    pub ttft_ms: Option<Pcts>,
    /// End to end.
    pub e2e_ms: Option<Pcts>,
}

/// Failures of one class at one endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorRow {
    /// Endpoint.
    pub endpoint: String,
    /// `transient`, `throttled`, `permanent`, `context`, …, or `interrupted`.
    pub class: String,
    /// Requests that failed with it in the end.
    pub final_failures: u64,
    /// Attempts the client retried after it.
    pub retried_attempts: u64,
    /// The latest message (already redacted by the client).
    pub example: Option<String>,
}

/// A unit given up on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Document path.
    pub document: String,
    /// Task.
    pub task: String,
    /// Target.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// Latency of one request, from its timeline.
struct Timing {
    ttft_ms: Option<f64>,
    e2e_ms: Option<f64>,
    itl_ms: Option<f64>,
}

fn timing(r: &RequestRow) -> Option<Timing> {
    let t: Timeline = serde_json::from_str(r.end.timeline.as_deref()?).ok()?;
    let ms = |at: Option<u64>| {
        at.filter(|&a| a >= t.sent)
            .map(|a| (a - t.sent) as f64 / 1e6)
    };
    let content: Vec<u64> = t.chunks.iter().filter(|c| c.answer).map(|c| c.at).collect();
    let itl_ms = (content.len() >= 2).then(|| {
        (content[content.len() - 1].saturating_sub(content[0])) as f64
            / 1e6
            / (content.len() - 1) as f64
    });
    Some(Timing {
        ttft_ms: ms(t.first_answer.or(t.first_content)),
        e2e_ms: ms(t.done),
        itl_ms,
    })
}

/// Which pages units cover.
struct Coverage<'a> {
    units: HashMap<&'a str, &'a UnitBrief>,
    pages: HashMap<&'a str, u32>,
}

impl Coverage<'_> {
    fn pages<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> u64 {
        let mut seen: HashSet<(&str, u32)> = HashSet::new();
        for k in keys {
            let Some(u) = self.units.get(k) else { continue };
            let doc = u.document_id.as_str();
            match u.target.strip_prefix("page:").and_then(|n| n.parse().ok()) {
                Some(n) if u.task == "entities" => {
                    seen.insert((doc, n));
                }
                _ => {
                    for n in 1..=self.pages.get(doc).copied().unwrap_or(0) {
                        seen.insert((doc, n));
                    }
                }
            }
        }
        seen.len() as u64
    }
}

fn share(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

fn per(v: f64, n: u64) -> Option<f64> {
    (n > 0).then(|| v / n as f64)
}

const PICO: f64 = 1e12;

/// Sums over a set of requests.
#[derive(Default)]
struct Sums {
    requests: u64,
    failed: u64,
    interrupted: u64,
    prompt: u64,
    completion: u64,
    cached: u64,
    cached_den: u64,
    cached_unreported: u64,
    cost_pico: u64,
    cost_known: u64,
    cost_unknown: u64,
    retries: u64,
}

impl Sums {
    fn add(&mut self, r: &RequestRow) {
        self.requests += 1;
        match r.status.as_str() {
            "failed" => self.failed += 1,
            "interrupted" => self.interrupted += 1,
            _ => {}
        }
        let prompt = r.end.prompt_tokens.unwrap_or(0);
        self.prompt += prompt;
        self.completion += r.end.completion_tokens.unwrap_or(0);
        match r.end.cached_tokens {
            Some(c) => {
                self.cached += c;
                self.cached_den += prompt;
            }
            None if r.end.ok => self.cached_unreported += 1,
            None => {}
        }
        match r.end.cost_pico {
            Some(c) => {
                self.cost_pico += c;
                self.cost_known += 1;
            }
            None if r.end.ok || r.status == "interrupted" => self.cost_unknown += 1,
            None => {}
        }
        self.retries += u64::from(r.end.retries);
    }

    fn cost_usd(&self) -> Option<f64> {
        (self.cost_known > 0).then(|| self.cost_pico as f64 / PICO)
    }
}

/// Computes every figure from the ledger.
pub fn build(view: &dyn History, pages_per_day: Option<f64>) -> Result<RunsReport, StoreError> {
    let runs = view.runs()?;
    // Each timeline is reduced to its few latencies as it is read, then dropped.
    let mut requests = Vec::new();
    let mut timings = Vec::new();
    view.each_request(&mut |mut r| {
        timings.push(timing(&r));
        r.end.timeline = None;
        requests.push(r);
    })?;
    let units = view.units()?;
    let documents = view.documents()?;
    let cov = Coverage {
        units: units.iter().map(|u| (u.key.as_str(), u)).collect(),
        pages: documents.iter().map(|d| (d.id.as_str(), d.pages)).collect(),
    };
    let paths: HashMap<&str, &str> = documents
        .iter()
        .map(|d| (d.id.as_str(), d.path.as_str()))
        .collect();
    // Units finished by each request.
    let mut finished_by: HashMap<i64, Vec<&str>> = HashMap::new();
    for u in &units {
        if let (UnitStatus::Done, Some(id)) = (u.status, u.request_id) {
            finished_by.entry(id).or_default().push(u.key.as_str());
        }
    }
    let done: Vec<&str> = units
        .iter()
        .filter(|u| u.status == UnitStatus::Done)
        .map(|u| u.key.as_str())
        .collect();

    let mut all = Sums::default();
    for r in &requests {
        all.add(r);
    }
    let run_figures = run_figures(&runs, &requests, &finished_by, &cov);
    let pages = cov.pages(done.iter().copied());
    let totals = Totals {
        runs: run_figures.len() as u64,
        documents: documents.len() as u64,
        requests: all.requests,
        failed_requests: all.failed,
        interrupted_requests: all.interrupted,
        units_done: done.len() as u64,
        pages,
        prompt_tokens: all.prompt,
        cached_tokens: all.cached,
        completion_tokens: all.completion,
        cached_share: share(all.cached, all.cached_den),
        cost_usd: all.cost_usd(),
        cost_unknown_requests: all.cost_unknown,
        cost_per_page_usd: all.cost_usd().and_then(|c| per(c, pages)),
        prompt_tokens_per_page: per(all.prompt as f64, pages),
        completion_tokens_per_page: per(all.completion as f64, pages),
    };

    let days = days(&requests, &finished_by, &cov);
    let (prompts, prompt_runs) = prompts(&requests, &run_figures, &cov);
    let projection = {
        let active = days.len() as u64;
        let day_pages: u64 = days.iter().map(|d| d.pages).sum();
        let observed_cost = totals.cost_usd.and_then(|c| per(c, active));
        Projection {
            active_days: active,
            observed_pages_per_day: per(day_pages as f64, active),
            observed_cost_per_day_usd: observed_cost,
            observed_per_month_usd: observed_cost.map(|c| c * 30.0),
            pages_per_day,
            per_month_usd: pages_per_day
                .zip(totals.cost_per_page_usd)
                .map(|(n, c)| n * c * 30.0),
        }
    };
    let (endpoints, bucket_secs) = latency(&requests, &timings);
    let mut dead: Vec<&UnitBrief> = units
        .iter()
        .filter(|u| u.status == UnitStatus::Failed)
        .collect();
    dead.sort_by_key(|u| std::cmp::Reverse(u.updated_at));
    Ok(RunsReport {
        ledger: view.name(),
        totals,
        projection,
        runs: run_figures,
        days,
        prompts,
        prompt_runs,
        retries: retries(&requests, all.cost_pico),
        endpoints,
        bucket_secs,
        errors: errors(&requests),
        dead_letters_total: dead.len() as u64,
        dead_letters: dead
            .iter()
            .take(100)
            .map(|u| DeadLetter {
                document: paths
                    .get(u.document_id.as_str())
                    .map_or_else(|| u.document_id.clone(), |p| (*p).to_owned()),
                task: u.task.clone(),
                target: u.target.clone(),
                reason: u.reason.clone().unwrap_or_default(),
            })
            .collect(),
    })
}

fn run_figures(
    runs: &[pagemill_pipeline::store::RunRow],
    requests: &[RequestRow],
    finished_by: &HashMap<i64, Vec<&str>>,
    cov: &Coverage<'_>,
) -> Vec<RunFigures> {
    let mut by_run: BTreeMap<&str, Vec<&RequestRow>> = BTreeMap::new();
    for r in requests {
        by_run.entry(r.run_id.as_str()).or_default().push(r);
    }
    let mut out: Vec<RunFigures> = Vec::new();
    let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    for id in by_run.keys() {
        if !runs.iter().any(|r| r.id == *id) {
            ids.push(id);
        }
    }
    for id in ids {
        let rows = by_run.get(id).map_or(&[][..], Vec::as_slice);
        let row = runs.iter().find(|r| r.id == id);
        let mut s = Sums::default();
        for r in rows {
            s.add(r);
        }
        let finished: Vec<&str> = rows
            .iter()
            .filter_map(|r| finished_by.get(&r.id))
            .flatten()
            .copied()
            .collect();
        let pages = cov.pages(finished.iter().copied());
        let started_at = row
            .map(|r| r.started_at)
            .or_else(|| rows.iter().map(|r| r.started_at).min())
            .unwrap_or(0);
        let finished_at = row.and_then(|r| r.finished_at);
        let summary = row.and_then(|r| r.summary.as_ref());
        let stopped = summary.and_then(|s| s["stopped"].as_str());
        let state = match (finished_at, stopped) {
            (Some(_), Some(why)) => format!("stopped: {why}"),
            (Some(_), None) => "finished".to_owned(),
            (None, _) => "did not finish".to_owned(),
        };
        let wall_s = summary
            .and_then(|s| s["wall_secs"].as_f64())
            .or_else(|| finished_at.map(|f| (f - started_at) as f64));
        let mut endpoints = row.map(|r| r.endpoints.clone()).unwrap_or_default();
        for r in rows {
            if !endpoints.contains(&r.endpoint) {
                endpoints.push(r.endpoint.clone());
            }
        }
        let prices_from = summary
            .and_then(|s| s["prices_from"].as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(ep, src)| {
                        let src: pagemill_client::prices::PriceSource =
                            serde_json::from_value(src.clone()).ok()?;
                        Some(format!("{ep}: {src}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let drift = summary
            .and_then(|s| s["drift"].as_array())
            .map(|d| {
                d.iter()
                    .filter_map(|d| d["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.push(RunFigures {
            drift,
            prices_from,
            id: id.to_owned(),
            started_at,
            finished_at,
            state,
            endpoints,
            requests: s.requests,
            failed_requests: s.failed,
            units_done: finished.len() as u64,
            pages,
            prompt_tokens: s.prompt,
            completion_tokens: s.completion,
            cached_share: share(s.cached, s.cached_den),
            retries: s.retries,
            cost_usd: s.cost_usd(),
            cost_per_page_usd: s.cost_usd().and_then(|c| per(c, pages)),
            prompt_tokens_per_page: per(s.prompt as f64, pages),
            wall_s,
        });
    }
    out.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    out
}

fn days(
    requests: &[RequestRow],
    finished_by: &HashMap<i64, Vec<&str>>,
    cov: &Coverage<'_>,
) -> Vec<DayFigures> {
    let mut by_day: BTreeMap<i64, (Sums, Vec<&str>)> = BTreeMap::new();
    for r in requests {
        let e = by_day.entry(r.started_at.div_euclid(86_400)).or_default();
        e.0.add(r);
        if let Some(keys) = finished_by.get(&r.id) {
            e.1.extend(keys.iter().copied());
        }
    }
    by_day
        .into_iter()
        .map(|(day, (s, keys))| {
            let pages = cov.pages(keys.iter().copied());
            let cost = s.cost_usd();
            DayFigures {
                day: time::date(day * 86_400),
                start: day * 86_400,
                requests: s.requests,
                pages,
                prompt_tokens: s.prompt,
                completion_tokens: s.completion,
                cost_usd: cost,
                cost_per_page_usd: cost.and_then(|c| per(c, pages)),
            }
        })
        .collect()
}

fn prompts(
    requests: &[RequestRow],
    runs: &[RunFigures],
    cov: &Coverage<'_>,
) -> (Vec<PromptFigures>, Vec<PromptRun>) {
    #[derive(Default)]
    struct Acc<'a> {
        first: i64,
        runs: BTreeSet<&'a str>,
        units: HashSet<&'a str>,
        sums: Sums,
        prefix: BTreeMap<u64, u64>,
        prefix_sum: u64,
        prefix_den: u64,
    }
    let mut acc: BTreeMap<(&str, &str), Acc<'_>> = BTreeMap::new();
    let mut per_run: BTreeMap<(&str, &str, &str), (u64, HashSet<&str>)> = BTreeMap::new();
    for r in requests {
        let a = acc
            .entry((r.task.as_str(), r.prompt_version.as_str()))
            .or_insert_with(|| Acc {
                first: r.started_at,
                ..Acc::default()
            });
        a.first = a.first.min(r.started_at);
        a.runs.insert(&r.run_id);
        a.units.extend(r.unit_keys.iter().map(String::as_str));
        a.sums.add(r);
        if let (Some(p), Some(prompt)) = (r.prefix_tokens, r.end.prompt_tokens) {
            *a.prefix.entry(p).or_default() += 1;
            a.prefix_sum += p.min(prompt);
            a.prefix_den += prompt;
        }
        let e = per_run
            .entry((
                r.run_id.as_str(),
                r.task.as_str(),
                r.prompt_version.as_str(),
            ))
            .or_default();
        e.0 += r.end.prompt_tokens.unwrap_or(0);
        e.1.extend(r.unit_keys.iter().map(String::as_str));
    }
    let mut out: Vec<PromptFigures> = acc
        .into_iter()
        .map(|((task, version), a)| {
            let pages = cov.pages(a.units.iter().copied());
            let units = a.units.len() as u64;
            PromptFigures {
                task: task.to_owned(),
                prompt_version: version.to_owned(),
                first_seen: a.first,
                runs: a.runs.len() as u64,
                requests: a.sums.requests,
                units,
                pages,
                prompt_tokens: a.sums.prompt,
                prompt_tokens_per_unit: per(a.sums.prompt as f64, units),
                prompt_tokens_per_page: per(a.sums.prompt as f64, pages),
                completion_tokens_per_unit: per(a.sums.completion as f64, units),
                prefix_tokens: a.prefix.iter().max_by_key(|(_, n)| **n).map(|(p, _)| *p),
                cached_share: share(a.sums.cached, a.sums.cached_den),
                cacheable_share: share(a.prefix_sum, a.prefix_den),
                cached_unreported: a.sums.cached_unreported,
                change_vs_previous: None,
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.task, a.first_seen).cmp(&(&b.task, b.first_seen)));
    for i in 1..out.len() {
        if out[i].task == out[i - 1].task
            && let (Some(now), Some(before)) = (
                out[i].prompt_tokens_per_page,
                out[i - 1].prompt_tokens_per_page,
            )
            && before > 0.0
        {
            out[i].change_vs_previous = Some(now / before - 1.0);
        }
    }
    let started: HashMap<&str, i64> = runs.iter().map(|r| (r.id.as_str(), r.started_at)).collect();
    let mut series: Vec<PromptRun> = per_run
        .into_iter()
        .filter_map(|((run, task, version), (prompt, keys))| {
            let pages = cov.pages(keys.iter().copied());
            Some(PromptRun {
                run: run.to_owned(),
                started_at: started.get(run).copied().unwrap_or(0),
                task: task.to_owned(),
                prompt_version: version.to_owned(),
                prompt_tokens_per_page: per(prompt as f64, pages)?,
            })
        })
        .collect();
    series.sort_by(|a, b| (a.started_at, &a.task).cmp(&(b.started_at, &b.task)));
    (out, series)
}

fn retries(requests: &[RequestRow], total_pico: u64) -> Retries {
    let mut out = Retries::default();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut repeat_pico = 0.0;
    let mut failed_pico = 0;
    for r in requests {
        out.client_retries += u64::from(r.end.retries);
        for class in &r.end.retried_errors {
            *out.retried_by_class.entry(class.clone()).or_default() += 1;
        }
        match r.status.as_str() {
            "failed" => {
                out.failed_requests += 1;
                failed_pico += r.end.cost_pico.unwrap_or(0);
            }
            "interrupted" => out.interrupted_requests += 1,
            _ => {}
        }
        let n = r.unit_keys.len().max(1) as f64;
        let repeated = r
            .unit_keys
            .iter()
            .filter(|k| !seen.insert(k.as_str()))
            .count();
        if repeated > 0 {
            out.repeat_requests += 1;
            let part = repeated as f64 / n;
            repeat_pico += r.end.cost_pico.unwrap_or(0) as f64 * part;
            out.repeat_prompt_tokens +=
                (r.end.prompt_tokens.unwrap_or(0) as f64 * part).round() as u64;
        }
    }
    let known = requests.iter().any(|r| r.end.cost_pico.is_some());
    out.repeat_cost_usd = known.then(|| repeat_pico / PICO);
    out.failed_cost_usd = known.then(|| failed_pico as f64 / PICO);
    out.repeat_cost_share = (total_pico > 0).then(|| repeat_pico / total_pico as f64);
    out
}

/// Bucket width: the smallest of a few round widths that gives at most 48 buckets.
fn bucket_width(span: i64) -> i64 {
    const WIDTHS: [i64; 9] = [
        10,
        60,
        300,
        900,
        3600,
        4 * 3600,
        86_400,
        7 * 86_400,
        30 * 86_400,
    ];
    WIDTHS
        .into_iter()
        .find(|w| span / w < 48)
        .unwrap_or(30 * 86_400)
}

fn latency(requests: &[RequestRow], timings: &[Option<Timing>]) -> (Vec<EndpointLatency>, i64) {
    let first = requests.iter().map(|r| r.started_at).min().unwrap_or(0);
    let last = requests.iter().map(|r| r.started_at).max().unwrap_or(0);
    let width = bucket_width(last - first);
    #[derive(Default)]
    struct Acc {
        requests: u64,
        ok: u64,
        ttft: Vec<f64>,
        e2e: Vec<f64>,
        itl: Vec<f64>,
        buckets: BTreeMap<i64, (u64, Vec<f64>, Vec<f64>)>,
    }
    let mut by: BTreeMap<&str, Acc> = BTreeMap::new();
    for (r, t) in requests.iter().zip(timings) {
        let a = by.entry(r.endpoint.as_str()).or_default();
        a.requests += 1;
        if !r.end.ok {
            continue;
        }
        a.ok += 1;
        let Some(t) = t else { continue };
        let b = a
            .buckets
            .entry(r.started_at.div_euclid(width) * width)
            .or_default();
        b.0 += 1;
        if let Some(v) = t.ttft_ms {
            a.ttft.push(v);
            b.1.push(v);
        }
        if let Some(v) = t.e2e_ms {
            a.e2e.push(v);
            b.2.push(v);
        }
        if let Some(v) = t.itl_ms {
            a.itl.push(v);
        }
    }
    let out = by
        .into_iter()
        .map(|(name, mut a)| EndpointLatency {
            endpoint: name.to_owned(),
            requests: a.requests,
            ok: a.ok,
            ttft_ms: Pcts::of(&mut a.ttft),
            e2e_ms: Pcts::of(&mut a.e2e),
            itl_ms: Pcts::of(&mut a.itl),
            over_time: a
                .buckets
                .into_iter()
                .map(|(start, (n, mut ttft, mut e2e))| LatencyBucket {
                    start,
                    requests: n,
                    ttft_ms: Pcts::of(&mut ttft),
                    e2e_ms: Pcts::of(&mut e2e),
                })
                .collect(),
        })
        .collect();
    (out, width)
}

fn errors(requests: &[RequestRow]) -> Vec<ErrorRow> {
    fn row<'a>(
        by: &'a mut BTreeMap<(String, String), ErrorRow>,
        endpoint: &str,
        class: String,
    ) -> &'a mut ErrorRow {
        by.entry((endpoint.to_owned(), class.clone()))
            .or_insert_with(|| ErrorRow {
                endpoint: endpoint.to_owned(),
                class,
                ..ErrorRow::default()
            })
    }
    let mut by: BTreeMap<(String, String), ErrorRow> = BTreeMap::new();
    for r in requests {
        match r.status.as_str() {
            "failed" => {
                let class = r
                    .end
                    .error_class
                    .clone()
                    .unwrap_or_else(|| "unknown".into());
                let e = row(&mut by, &r.endpoint, class);
                e.final_failures += 1;
                if r.end.error.is_some() {
                    e.example.clone_from(&r.end.error);
                }
            }
            "interrupted" => row(&mut by, &r.endpoint, "interrupted".into()).final_failures += 1,
            _ => {}
        }
        for class in &r.end.retried_errors {
            row(&mut by, &r.endpoint, class.clone()).retried_attempts += 1;
        }
    }
    by.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagemill_pipeline::store::{Ledger, RequestEnd, Store, UnitSpec};

    fn spec(target: &str, task: &str) -> UnitSpec {
        UnitSpec {
            document_id: "doc".into(),
            task: task.into(),
            target: target.into(),
            content_hash: "c".into(),
            prompt_version: format!("{task}-v1"),
            model: "m".into(),
            schema_hash: "s".into(),
            variant: String::new(),
        }
    }

    #[test]
    fn unknown_prices_stay_unknown_and_pages_count_once() {
        let dir = std::env::temp_dir().join(format!("pagemill-report-runs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.sqlite");
        let mut l = Ledger::open(&path).unwrap();
        l.add_document("doc", "a.txt", "text", 3).unwrap();
        l.run_started(&["local".into()]).unwrap();
        let keys = l
            .plan(
                &[spec("page:2", "entities"), spec("section:1", "summary")],
                pagemill_pipeline::store::Replan::Resume,
            )
            .unwrap();
        let ok = RequestEnd {
            ok: true,
            prompt_tokens: Some(300),
            completion_tokens: Some(20),
            ..RequestEnd::default()
        };
        // The entities unit is asked twice (a re-ask), the summary once; no request has a price.
        for key in [&keys[0], &keys[0], &keys[1]] {
            let id = l
                .request_started("local", "t", "t-v1", 100, std::slice::from_ref(key))
                .unwrap();
            l.request_finished(id, &ok).unwrap();
            l.complete(key, &serde_json::json!({}), Some(id)).unwrap();
        }
        let r = build(
            &pagemill_pipeline::store::LedgerView::open(&path).unwrap(),
            Some(1000.0),
        )
        .unwrap();
        assert_eq!(r.totals.cost_usd, None);
        assert_eq!(r.totals.cost_unknown_requests, 3);
        assert_eq!(r.totals.cost_per_page_usd, None);
        assert_eq!(r.projection.per_month_usd, None);
        assert_eq!(r.days[0].cost_usd, None);
        assert_eq!(r.retries.repeat_requests, 1);
        assert_eq!(r.retries.repeat_cost_usd, None);
        // The summary covers the document's 3 pages, page 2's entities among them: 3, not 4.
        assert_eq!(r.totals.pages, 3);
        assert_eq!(r.totals.prompt_tokens_per_page, Some(300.0));
        assert_eq!(r.runs.len(), 1);
        assert_eq!(r.runs[0].state, "did not finish");
        assert_eq!(r.runs[0].units_done, 2);
        assert_eq!(r.endpoints[0].ok, 3);
        assert!(r.endpoints[0].ttft_ms.is_none(), "no timelines recorded");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        let p = Pcts::of(&mut v).unwrap_or_default();
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max, p.count),
            (50.0, 90.0, 99.0, 100.0, 100)
        );
        assert!(Pcts::of(&mut []).is_none());
    }

    #[test]
    fn buckets_stay_under_fifty() {
        assert_eq!(bucket_width(0), 10);
        assert_eq!(bucket_width(400), 10);
        assert_eq!(bucket_width(3_000), 300);
        assert_eq!(bucket_width(30 * 86_400), 86_400);
    }
}
