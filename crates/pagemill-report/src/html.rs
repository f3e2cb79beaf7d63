//! The report as one HTML file: CSS, JavaScript and SVG inline, nothing fetched, so it opens
//! offline and can be mailed.
//!
//! Safety of what it shows: document text, entity names, summaries, metadata, error messages
//! and file names all come from outside. Every one is written through maud, which escapes it;
//! nothing is marked pre-escaped but our own CSS and script. As a second wall the page carries
//! a Content-Security-Policy that allows no network at all and runs only the script and style
//! whose SHA-256 it names, so even markup that got through could not run or fetch anything.

use base64::Engine as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use pagemill_bench::results::{Point, TargetResults};
use pagemill_bench::schedule::Load;
use sha2::{Digest, Sha256};

use crate::chart::{self, Line, Series, XAxis};
use crate::documents::{DocumentView, PageView, segments};
use crate::fmt::{count, load as load_text, ms, num, opt, pct, signed, usd};
use crate::runs::{Pcts, RunsReport};
use crate::{BenchInput, Report, time};

const CSS: &str = include_str!("../assets/report.css");
const JS: &str = include_str!("../assets/report.js");

/// Entity types with their own colour (the default ones); anything else is drawn as `other`.
const TYPES: [&str; 7] = pagemill_pipeline::tasks::DEFAULT_ENTITY_TYPES;

fn hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

fn type_class(kind: &str) -> &'static str {
    match TYPES.iter().position(|t| t.eq_ignore_ascii_case(kind)) {
        Some(0) => "t-person",
        Some(1) => "t-organization",
        Some(2) => "t-location",
        Some(3) => "t-date",
        Some(4) => "t-money",
        Some(5) => "t-law",
        Some(6) => "t-product",
        _ => "t-other",
    }
}

/// A numeric cell: shown formatted, sorted by value.
fn cell(v: Option<f64>, f: fn(f64) -> String) -> Markup {
    html! { td data-v=(v.map(|v| v.to_string()).unwrap_or_default()) { (opt(v, f)) } }
}

fn share_cell(v: Option<f64>) -> Markup {
    cell(v, pct)
}

fn int(v: u64) -> Markup {
    html! { td data-v=(v) { (count(v)) } }
}

/// Renders the whole report.
pub fn render(r: &Report) -> String {
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; base-uri 'none'; form-action 'none'",
        hash(JS),
        hash(CSS)
    );
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp);
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="generator" content=(concat!("pagemill ", env!("CARGO_PKG_VERSION")));
                title { "pagemill report" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top {
                    h1 { "pagemill report" }
                    p.muted {
                        "Made " (time::datetime(r.generated_at)) " from "
                        @if let Some(runs) = &r.runs { "the ledger " code { (runs.ledger) } }
                        @if r.runs.is_some() && !r.benchmarks.is_empty() { " and " }
                        @if !r.benchmarks.is_empty() {
                            (r.benchmarks.len()) " bench report" @if r.benchmarks.len() > 1 { "s" }
                        }
                        @if let Some(e) = &r.eval {
                            @if r.runs.is_some() || !r.benchmarks.is_empty() { " and " }
                            "the eval report " code { (e.path) }
                        }
                        "."
                    }
                }
                nav.toc {
                    @if r.runs.is_some() {
                        a href="#runs" { "Cost" }
                        a href="#prompts" { "Tokens & prompts" }
                        a href="#retries" { "Retries" }
                        a href="#latency" { "Latency" }
                        a href="#errors" { "Errors" }
                    }
                    @if !r.benchmarks.is_empty() { a href="#bench" { "Benchmarks" } }
                    @if r.eval.is_some() { a href="#eval" { "Quality" } }
                    @if r.runs.is_some() { a href="#documents" { "Documents" } }
                }
                main {
                    @if let Some(runs) = &r.runs { (runs_html(runs)) }
                    @if !r.benchmarks.is_empty() { (bench_html(&r.benchmarks)) }
                    @if let Some(e) = &r.eval { (eval_html(e)) }
                    @if r.runs.is_some() { (documents_html(r)) }
                }
                script { (PreEscaped(JS)) }
            }
        }
    };
    page.into_string()
}

fn tile(k: &str, v: String, note: Option<String>) -> Markup {
    html! {
        div.tile {
            div.k { (k) }
            div.v { (v) }
            @if let Some(n) = note { div.k { (n) } }
        }
    }
}

fn runs_html(r: &RunsReport) -> Markup {
    let t = &r.totals;
    let p = &r.projection;
    let days: Vec<(String, Option<f64>)> =
        r.days.iter().map(|d| (d.day.clone(), d.cost_usd)).collect();
    let cost_chart = if r.days.len() > 14 {
        chart::line(&Line {
            title: "Cost per day",
            x_label: "day (UTC)",
            y_label: "USD",
            x: XAxis::Time,
            step: false,
            y_fmt: usd,
            series: vec![Series {
                name: "cost".into(),
                points: r
                    .days
                    .iter()
                    .filter_map(|d| Some((d.start as f64, d.cost_usd?)))
                    .collect(),
            }],
        })
    } else {
        chart::bars("Cost per day (UTC)", usd, &days)
    };
    html! {
        section #runs {
            h2 { "Cost" }
            div.tiles {
                (tile("Cost per page", opt(t.cost_per_page_usd, usd), Some(format!("{} pages", count(t.pages)))))
                (tile("Cost per active day", opt(p.observed_cost_per_day_usd, usd),
                      Some(format!("{} day{} with requests", p.active_days, if p.active_days == 1 { "" } else { "s" }))))
                (tile("Per month at that rate", opt(p.observed_per_month_usd, usd), Some("30 × cost per active day".into())))
                @if let Some(n) = p.pages_per_day {
                    (tile("Per month at --pages-per-day", opt(p.per_month_usd, usd), Some(format!("{} pages a day", num(n)))))
                }
                (tile("Prompt tokens per page", opt(t.prompt_tokens_per_page, num),
                      Some(format!("completion {}", opt(t.completion_tokens_per_page, num)))))
                (tile("Cached share", opt(t.cached_share, pct), Some("of prompt tokens, where reported".into())))
                (tile("Spent on repeats", opt(r.retries.repeat_cost_share, pct), Some(opt(r.retries.repeat_cost_usd, usd))))
                (tile("Total spent", opt(t.cost_usd, usd),
                      Some(format!("{} requests{}", count(t.requests),
                          if t.cost_unknown_requests > 0 { format!(", {} of unknown cost", count(t.cost_unknown_requests)) } else { String::new() }))))
            }
            (cost_chart)
            h3 { "Runs" }
            div.wrap { table.sortable #runs-table {
                thead { tr {
                    th { "started" } th.l { "state" } th.l { "endpoints" } th { "requests" } th { "failed" }
                    th { "units done" } th { "pages" } th { "prompt tok/page" } th { "cached" } th { "retries" }
                    th { "cost" } th { "cost/page" } th { "wall" } th.l { "prices from" }
                } }
                tbody { @for run in &r.runs { tr {
                    td data-v=(run.started_at) title=(run.id) { (time::datetime(run.started_at)) }
                    td.l { (run.state) @for d in &run.drift { br; strong { "drift: " } (d) } }
                    td.l { (run.endpoints.join(", ")) }
                    (int(run.requests)) (int(run.failed_requests)) (int(run.units_done)) (int(run.pages))
                    (cell(run.prompt_tokens_per_page, num)) (share_cell(run.cached_share)) (int(run.retries))
                    (cell(run.cost_usd, usd)) (cell(run.cost_per_page_usd, usd))
                    (cell(run.wall_s, |s| format!("{} s", num(s))))
                    td.l { (run.prices_from.join("; ")) }
                } } }
            } }
            details {
                summary { "By day" }
                table.sortable {
                    thead { tr { th { "day (UTC)" } th { "requests" } th { "pages" } th { "prompt tokens" } th { "completion tokens" } th { "cost" } th { "cost/page" } } }
                    tbody { @for d in &r.days { tr {
                        td data-v=(d.start) { (d.day) } (int(d.requests)) (int(d.pages)) (int(d.prompt_tokens)) (int(d.completion_tokens))
                        (cell(d.cost_usd, usd)) (cell(d.cost_per_page_usd, usd))
                    } } }
                }
            }
        }
        (prompts_html(r))
        (retries_html(r))
        (latency_html(r))
        (errors_html(r))
    }
}

fn prompts_html(r: &RunsReport) -> Markup {
    // One place per run, oldest first: runs minutes or months apart read alike.
    let mut runs: Vec<(&str, i64)> = Vec::new();
    for p in &r.prompt_runs {
        if !runs.iter().any(|(id, _)| *id == p.run) {
            runs.push((&p.run, p.started_at));
        }
    }
    let mut series: Vec<Series> = Vec::new();
    for p in &r.prompt_runs {
        let name = p.prompt_version.clone();
        let x = runs.iter().position(|(id, _)| *id == p.run).unwrap_or(0) as f64;
        let point = (x, p.prompt_tokens_per_page);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    let run_labels: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(i, (_, at))| format!("#{} {}", i + 1, time::tick(*at, 4 * 86_400)))
        .collect();
    let cache_bars: Vec<(String, Option<f64>)> = r
        .prompts
        .iter()
        .map(|p| (p.prompt_version.clone(), p.cached_share.map(|s| s * 100.0)))
        .collect();
    html! {
        section #prompts {
            h2 { "Tokens per page by task and prompt version" }
            p.muted { "Did the last prompt change save tokens? Each task's prompt versions in the order they were first used; the change is against the version before. An entities unit covers its page; summary and metadata units cover their document's pages." }
            div.charts {
                (chart::line(&Line {
                    title: "Prompt tokens per page, by run",
                    x_label: "run (oldest first, start date UTC)",
                    y_label: "prompt tokens / page",
                    x: XAxis::Labels(run_labels),
                    step: false,
                    y_fmt: num,
                    series,
                }))
                (chart::bars("Cached share of prompt tokens, per prompt template (%)", |v| format!("{v:.1}%"), &cache_bars))
            }
            div.wrap { table.sortable #prompts-table {
                thead { tr {
                    th { "task" } th.l { "prompt version" } th { "first used" } th { "runs" } th { "requests" } th { "units" } th { "pages" }
                    th { "prompt tok/unit" } th { "prompt tok/page" } th { "change" } th { "completion tok/unit" }
                    th { "prefix tokens" } th { "cached share" } th { "cacheable share" } th { "cache unreported" }
                } }
                tbody { @for p in &r.prompts { tr {
                    td { (p.task) } td.l { code { (p.prompt_version) } }
                    td data-v=(p.first_seen) { (time::datetime(p.first_seen)) }
                    (int(p.runs)) (int(p.requests)) (int(p.units)) (int(p.pages))
                    (cell(p.prompt_tokens_per_unit, num)) (cell(p.prompt_tokens_per_page, num))
                    @match p.change_vs_previous {
                        Some(c) => td data-v=(c) class=(if c < 0.0 { "good" } else if c > 0.0 { "bad" } else { "" }) { (format!("{:+.1}%", c * 100.0)) },
                        None => td data-v="" { "–" },
                    }
                    (cell(p.completion_tokens_per_unit, num))
                    (cell(p.prefix_tokens.map(|v| v as f64), num))
                    (share_cell(p.cached_share)) (share_cell(p.cacheable_share)) (int(p.cached_unreported))
                } } }
            } }
            p.muted { "Cacheable share: the prompt's byte-stable prefix over its prompt tokens — the cached share a provider that caches every prefix would report." }
        }
    }
}

fn retries_html(r: &RunsReport) -> Markup {
    let x = &r.retries;
    html! {
        section #retries {
            h2 { "Retries and their cost" }
            div.tiles {
                (tile("Client retries", count(x.client_retries), Some("attempts re-sent after an error".into())))
                (tile("Requests re-sending work", count(x.repeat_requests), Some("re-asks, items re-run alone, retried packs".into())))
                (tile("Their cost", opt(x.repeat_cost_usd, usd), Some(format!("{} of all spend · {} prompt tokens", opt(x.repeat_cost_share, pct), count(x.repeat_prompt_tokens)))))
                (tile("Failed requests", count(x.failed_requests), Some(format!("billed {}", opt(x.failed_cost_usd, usd)))))
                (tile("Interrupted requests", count(x.interrupted_requests), Some("left open by a killed run".into())))
            }
            @if !x.retried_by_class.is_empty() {
                table.sortable {
                    thead { tr { th { "retried after" } th { "attempts" } } }
                    tbody { @for (class, n) in &x.retried_by_class { tr { td { (class) } (int(*n)) } } }
                }
            }
        }
    }
}

fn pcts_cells(p: Option<Pcts>) -> Markup {
    html! {
        (cell(p.map(|p| p.p50), ms)) (cell(p.map(|p| p.p90), ms)) (cell(p.map(|p| p.p99), ms))
    }
}

fn latency_html(r: &RunsReport) -> Markup {
    let over = |pick: fn(&crate::runs::LatencyBucket) -> Option<f64>, suffix: &str| {
        r.endpoints
            .iter()
            .map(|e| Series {
                name: format!("{} {suffix}", e.endpoint),
                points: e
                    .over_time
                    .iter()
                    .filter_map(|b| Some(((b.start + r.bucket_secs / 2) as f64, pick(b)?)))
                    .collect(),
            })
            .collect::<Vec<_>>()
    };
    let mut ttft = over(|b| b.ttft_ms.map(|p| p.p50), "p50");
    ttft.extend(over(|b| b.ttft_ms.map(|p| p.p90), "p90"));
    let mut e2e = over(|b| b.e2e_ms.map(|p| p.p50), "p50");
    e2e.extend(over(|b| b.e2e_ms.map(|p| p.p90), "p90"));
    html! {
        section #latency {
            h2 { "Latency by endpoint over time" }
            p.muted { "From the moment a request was written to the socket (client-side pacing excluded), per " (bucket(r.bucket_secs)) " bucket." }
            div.charts {
                (chart::line(&Line { title: "Time to first token", x_label: "time (UTC)", y_label: "ms", x: XAxis::Time, step: false, y_fmt: ms, series: ttft }))
                (chart::line(&Line { title: "Request latency (end to end)", x_label: "time (UTC)", y_label: "ms", x: XAxis::Time, step: false, y_fmt: ms, series: e2e }))
            }
            div.wrap { table.sortable #latency-table {
                thead {
                    tr { th rowspan="2" { "endpoint" } th rowspan="2" { "requests" } th rowspan="2" { "ok" }
                         th colspan="3" { "TTFT" } th colspan="3" { "end to end" } th colspan="3" { "inter-token (mean per request)" } }
                    tr { @for _ in 0..3 { th { "p50" } th { "p90" } th { "p99" } } }
                }
                tbody { @for e in &r.endpoints { tr {
                    td { (e.endpoint) } (int(e.requests)) (int(e.ok))
                    (pcts_cells(e.ttft_ms)) (pcts_cells(e.e2e_ms)) (pcts_cells(e.itl_ms))
                } } }
            } }
        }
    }
}

fn bucket(secs: i64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}-day", s / 86_400),
        s if s % 3600 == 0 => format!("{}-hour", s / 3600),
        s if s % 60 == 0 => format!("{}-minute", s / 60),
        s => format!("{s}-second"),
    }
}

fn errors_html(r: &RunsReport) -> Markup {
    let throttled: u64 = r
        .errors
        .iter()
        .filter(|e| e.class == "throttled")
        .map(|e| e.final_failures + e.retried_attempts)
        .sum();
    html! {
        section #errors {
            h2 { "Errors and throttling" }
            p { "Throttled (429) responses: " strong { (count(throttled)) } ". Attempts the client retried count under “retried”; requests that failed in the end under “final”." }
            @if r.errors.is_empty() { p.muted { "No errors recorded." } } @else {
                div.wrap { table.sortable #errors-table {
                    thead { tr { th { "endpoint" } th.l { "class" } th { "final" } th { "retried" } th.l { "latest message" } } }
                    tbody { @for e in &r.errors { tr {
                        td { (e.endpoint) } td.l { (e.class) } (int(e.final_failures)) (int(e.retried_attempts))
                        td.l.msg { (e.example.as_deref().unwrap_or("")) }
                    } } }
                } }
            }
            h3 { "Dead letters (" (count(r.dead_letters_total)) ")" }
            @if r.dead_letters.is_empty() { p.muted { "None: every unit finished or is still to do." } } @else {
                div.wrap { table.sortable {
                    thead { tr { th { "document" } th.l { "task" } th.l { "target" } th.l { "reason" } } }
                    tbody { @for d in &r.dead_letters { tr { td { (d.document) } td.l { (d.task) } td.l { (d.target) } td.l.msg { (d.reason) } } } }
                } }
                @if r.dead_letters_total > r.dead_letters.len() as u64 {
                    p.muted { "The newest " (r.dead_letters.len()) " are shown; the ledger has them all." }
                }
            }
        }
    }
}

fn documents_html(r: &Report) -> Markup {
    html! {
        section #documents {
            h2 { "Documents" }
            @if r.documents_omitted > 0 {
                p.note { (count(r.documents_omitted as u64)) " more document(s) in the ledger are not shown: choose with "
                    code { "--document PATH-OR-ID" } " or show more with " code { "--documents N" } "." }
            }
            div.filters {
                "Highlight: "
                @for t in TYPES.iter().chain(std::iter::once(&"other")) {
                    label { input type="checkbox" checked disabled data-type=(t); " " span class=(format!("chip t-{t}")) { (t) } }
                }
                span.chip.ungrounded { "not found in the page" }
            }
            @for (i, d) in r.documents.iter().enumerate() { (document_html(d, i == 0)) }
        }
    }
}

fn document_html(d: &DocumentView, open: bool) -> Markup {
    let mentions: u64 = d.entity_counts.values().sum();
    html! {
        details.doc open[open] {
            summary {
                (d.path) " "
                span.muted { "· " (d.kind) " · " (d.pages.len()) " pages · " (count(mentions)) " mentions" @if d.ungrounded > 0 { " (" (d.ungrounded) " not found in the page)" } }
            }
            p.muted { "id " code { (d.id) } }
            @if !d.entity_counts.is_empty() {
                p { @for (k, n) in &d.entity_counts { span class=(format!("chip {}", type_class(k))) { (k) " " (n) } } }
            }
            h4 { "Metadata " span.muted { "(" (d.metadata_state) ")" } }
            @match &d.metadata {
                Some(serde_json::Value::Object(m)) => dl.meta { @for (k, v) in m { dt { (k) } dd { (value_text(v)) } } },
                Some(v) => pre.text { (v.to_string()) },
                None => p.muted { "none" },
            }
            @if !d.sections.is_empty() {
                h4 { "Sections" }
                div.wrap { table.sections {
                    thead { tr { th { "section" } th { "pages" } th.l { "summary" } } }
                    tbody { @for s in &d.sections { tr {
                        td.l.msg { (s.title) }
                        td { (s.pages.0) @if s.pages.1 != s.pages.0 { "–" (s.pages.1) } }
                        td.l.msg {
                            @match &s.summary {
                                Some(text) => (text),
                                None => span.muted { (s.state) @if let Some(r) = &s.reason { ": " (r) } },
                            }
                        }
                    } } }
                } }
            }
            @for p in &d.pages { (page_html(p)) }
        }
    }
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        serde_json::Value::Null => "–".into(),
        other => other.to_string(),
    }
}

fn page_html(p: &PageView) -> Markup {
    let ungrounded: Vec<_> = p.mentions.iter().filter(|m| m.start.is_none()).collect();
    html! {
        article.page id=(format!("p{}", p.number)) {
            h4 {
                "Page " (p.number) " "
                span.muted {
                    "· entities " (p.state)
                    @if let Some(r) = &p.reason { ": " (r) }
                    @if p.quality != "ok" && p.quality != "good" { " · " (p.quality) }
                    @if let Some(f) = &p.failure { " · " (f) }
                }
            }
            @if !p.text.is_empty() {
                pre.text {
                    @for s in segments(&p.text, &p.mentions) {
                        @match s.mention.and_then(|i| p.mentions.get(i)) {
                            Some(m) => mark class=(format!("ent {} g-{}", type_class(&m.kind), grounding_class(&m.grounding)))
                                title=(format!("{} · {}", m.kind, m.grounding)) { (s.text) },
                            None => (s.text),
                        }
                    }
                }
            }
            @if !ungrounded.is_empty() {
                p { "Not found in the page: " @for m in ungrounded { span.chip.ungrounded title=(m.kind) { (m.text) } } }
            }
        }
    }
}

/// Error kinds, as classes and as said.
const ERRORS: [(&str, &str); 4] = [
    ("missed", "missed"),
    ("spurious", "spurious"),
    ("wrong_type", "wrong type"),
    ("wrong_span", "wrong span"),
];

fn error_class(kind: &str) -> &'static str {
    ERRORS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("err-other", |(k, _)| match *k {
            "missed" => "err-missed",
            "spurious" => "err-spurious",
            "wrong_type" => "err-wrong_type",
            _ => "err-wrong_span",
        })
}

fn eval_html(e: &crate::eval::EvalView) -> Markup {
    let x_fmt: fn(f64) -> String = if e.by_dollars { usd } else { num };
    let points: Vec<chart::Point> = e
        .configurations
        .iter()
        .filter_map(|c| {
            Some(chart::Point {
                label: c.name.clone(),
                x: c.cost?,
                y: c.overall?,
                marked: c.pareto_front,
            })
        })
        .collect();
    let f = |v: Option<f64>| opt(v, num);
    html! {
        section #eval {
            h2 { "Quality against gold" }
            p.muted { "From " code { (e.path) } ". Overall: the mean of strict entity F1, metadata and ROUGE-L, as the gold allows. Filled points are on the Pareto front: no other configuration is both "
                @if e.by_dollars { "cheaper" } @else { "lighter in tokens" } " and better." }
            (chart::scatter("Overall quality against cost a page",
                if e.by_dollars { "dollars a page" } else { "prompt + completion tokens a page" },
                "overall quality", x_fmt, &points))
            div.wrap { table.sortable.configs {
                thead { tr { th.l { "configuration" } th { "front" } th { "overall" } th { "entity F1" } th { "metadata" } th { "ROUGE-L" } th { "support" }
                    th { @if e.by_dollars { "$ a page" } @else { "tokens a page" } } } }
                tbody { @for c in &e.configurations { tr {
                    td.l { (c.name) } td { @if c.pareto_front { "★" } }
                    td { (f(c.overall)) } td { (f(c.entity_f1)) } td { (f(c.metadata)) } td { (f(c.rouge_l)) } td { (f(c.support)) }
                    td { (opt(c.cost, x_fmt)) }
                } } }
            } }
            div.filters {
                "Errors: "
                @for (k, said) in ERRORS { span class=(format!("chip {}", error_class(k))) { (said) } }
            }
            @for (i, c) in e.configurations.iter().enumerate() {
                details.config open[i == 0] {
                    summary { (c.name) " " span.muted { "· " (c.documents.len()) " document(s)" } }
                    @for d in &c.documents {
                        div.eval-doc data-document=(d.document) {
                            h4 { (d.document) " "
                                span.muted { @for (k, said) in ERRORS { @if let Some(n) = d.counts.get(k) { "· " (said) " " (n) " " } }
                                    @if d.counts.is_empty() { "· no entity errors" } }
                            }
                            @for p in &d.pages {
                                article.page {
                                    h5 { "Page " (p.number) }
                                    pre.text {
                                        @for s in segments(&p.text, &p.errors) {
                                            @match s.mention.and_then(|i| p.errors.get(i)) {
                                                Some(m) => mark class=(format!("err {}", error_class(&m.kind)))
                                                    title=(format!("{}: {}", m.kind.replace('_', " "), m.grounding)) { (s.text) },
                                                None => (s.text),
                                            }
                                        }
                                    }
                                }
                            }
                            @if !d.unplaced.is_empty() {
                                p { @for m in &d.unplaced {
                                    span class=(format!("chip {}", error_class(&m.kind))) title=(format!("{}: {}", m.kind.replace('_', " "), m.grounding)) { (m.text) }
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn grounding_class(g: &str) -> &'static str {
    match g {
        "exact" => "exact",
        "normalized" => "normalized",
        "fuzzy" => "fuzzy",
        _ => "none",
    }
}

fn load_x(l: &Load) -> f64 {
    match *l {
        Load::Concurrency { n } => n as f64,
        Load::Rate { per_sec, .. } => per_sec,
        Load::Ramp { to, .. } => to,
    }
}

fn lat(
    t: &TargetResults,
    key: &str,
    pick: fn(&pagemill_bench::results::Percentiles) -> f64,
) -> Option<f64> {
    t.latency_ms.get(key).filter(|p| p.count > 0).map(pick)
}

fn bench_html(inputs: &[BenchInput]) -> Markup {
    let all: Vec<(&BenchInput, &Point, &TargetResults)> = inputs
        .iter()
        .flat_map(|b| {
            b.report
                .points
                .iter()
                .flat_map(move |p| p.targets.iter().map(move |t| (b, p, t)))
        })
        .collect();
    let label = |b: &BenchInput, p: &Point, t: &TargetResults| {
        if inputs.len() > 1 {
            format!(
                "{} · {} · {}",
                file_name(&b.path),
                t.name,
                load_text(&p.load)
            )
        } else {
            format!("{} · {}", t.name, load_text(&p.load))
        }
    };
    let cost_rows: Vec<(String, Option<f64>)> = all
        .iter()
        .map(|(b, p, t)| {
            (
                label(b, p, t),
                t.cost
                    .per_1k_pages_usd
                    .or(t.cost.per_request_usd.map(|c| c * 1e3)),
            )
        })
        .collect();
    html! {
        section #bench {
            h2 { "Benchmarks" }
            div.wrap { table.sortable #bench-table {
                thead { tr {
                    @if inputs.len() > 1 { th { "file" } }
                    th.l { "target" } th.l { "load" } th { "requests" } th { "ok" } th { "throttled" }
                    th { "TTFT p50" } th { "TTFT p99" } th { "ITL p50" } th { "e2e p50" } th { "e2e p99" }
                    th { "req/s" } th { "output tok/s" } th { "cached" } th { "cost/request" } th { "cost/1k pages" } th { "per month" }
                } }
                tbody { @for (b, p, t) in &all { tr {
                    @if inputs.len() > 1 { td { (file_name(&b.path)) } }
                    td.l { (t.name) " " span.muted { (t.model) } } td.l { (load_text(&p.load)) }
                    (int(t.requests)) (int(t.ok)) (int(t.throttled))
                    (cell(lat(t, "ttft_answer", |p| p.p50), ms)) (cell(lat(t, "ttft_answer", |p| p.p99), ms))
                    (cell(lat(t, "itl_chunk", |p| p.p50), ms))
                    (cell(lat(t, "e2e", |p| p.p50), ms)) (cell(lat(t, "e2e", |p| p.p99), ms))
                    (cell(Some(t.request_throughput), num)) (cell(Some(t.output_token_throughput), num))
                    (share_cell(t.tokens.cached_ratio))
                    (cell(t.cost.per_request_usd, usd)) (cell(t.cost.per_1k_pages_usd, usd)) (cell(t.cost.per_month_usd, usd))
                } } }
            } }
            (chart::bars("Cost per 1,000 pages (per 1,000 requests where pages are unknown)", usd, &cost_rows))
            @for b in inputs { (bench_file(b)) }
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

fn cdf(title: &str, key: &str, p: &Point) -> Markup {
    chart::line(&Line {
        title,
        x_label: "ms",
        y_label: "share of requests",
        x: XAxis::Linear,
        step: true,
        y_fmt: |v| format!("{:.0}%", v * 100.0),
        series: p
            .targets
            .iter()
            .map(|t| Series {
                name: t.name.clone(),
                points: t
                    .latency_cdf_ms
                    .get(key)
                    .map(|v| v.iter().map(|[ms, q]| (*ms, *q)).collect())
                    .unwrap_or_default(),
            })
            .collect(),
    })
}

fn against_load(b: &BenchInput, title: &str, key: &str) -> Markup {
    let names: Vec<&str> = b
        .report
        .points
        .first()
        .map(|p| p.targets.iter().map(|t| t.name.as_str()).collect())
        .unwrap_or_default();
    let mut series = Vec::new();
    for name in names {
        for (suffix, pick) in [
            (
                "p50",
                (|p: &pagemill_bench::results::Percentiles| p.p50) as fn(&_) -> f64,
            ),
            ("p90", |p| p.p90),
        ] {
            series.push(Series {
                name: format!("{name} {suffix}"),
                points: b
                    .report
                    .points
                    .iter()
                    .filter_map(|p| {
                        let t = p.targets.iter().find(|t| t.name == name)?;
                        Some((load_x(&p.load), lat(t, key, pick)?))
                    })
                    .collect(),
            });
        }
    }
    let x_label = match b.report.points.first().map(|p| p.load) {
        Some(Load::Concurrency { .. }) => "requests in flight",
        _ => "offered load, req/s",
    };
    chart::line(&Line {
        title,
        x_label,
        y_label: "ms",
        x: XAxis::Linear,
        step: false,
        y_fmt: ms,
        series,
    })
}

/// Output tokens per second, as a moving average over a twentieth of the run (at least one
/// second): completions arrive in bursts, so raw one-second buckets read as noise.
fn throughput(p: &Point) -> Markup {
    let longest = p
        .targets
        .iter()
        .map(|t| t.throughput_over_time.len())
        .max()
        .unwrap_or(0);
    let window = (longest / 20).max(1);
    let title = if window > 1 {
        format!("Output tokens per second over the run ({window}-second moving average)")
    } else {
        "Output tokens per second over the run".to_owned()
    };
    let series = p
        .targets
        .iter()
        .map(|t| {
            let v: Vec<f64> = t
                .throughput_over_time
                .iter()
                .map(|b| b.output_tokens as f64)
                .collect();
            Series {
                name: t.name.clone(),
                points: t
                    .throughput_over_time
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        let lo = i.saturating_sub(window / 2);
                        let hi = (lo + window).min(v.len());
                        (
                            b.second as f64,
                            v[lo..hi].iter().sum::<f64>() / (hi - lo).max(1) as f64,
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    chart::line(&Line {
        title: &title,
        x_label: "seconds since start",
        y_label: "tokens / s",
        x: XAxis::Linear,
        step: false,
        y_fmt: num,
        series,
    })
}

fn bench_file(b: &BenchInput) -> Markup {
    let r = &b.report;
    html! {
        h3 { (file_name(&b.path)) " " span.muted { "· workload " (r.workload) " · " (time::datetime(r.started_at as i64))
            @if let Some(e) = &r.experiment { " · experiment " (e) } @if r.interrupted { " · stopped early" } } }
        @if r.points.len() > 1 {
            div.charts {
                (against_load(b, "TTFT against load", "ttft_answer"))
                (against_load(b, "Inter-token latency against load", "itl_chunk"))
            }
        }
        @for p in &r.points {
            @if r.points.len() > 1 { h4 { (load_text(&p.load)) } }
            div.charts {
                (cdf("TTFT distribution (CDF)", "ttft_answer", p))
                (cdf("End-to-end latency distribution (CDF)", "e2e", p))
                (throughput(p))
            }
            @if p.targets.iter().any(|t| !t.across_repeats.is_empty()) {
                h4 { "Across repeats (mean ± 95% confidence half-width)" }
                div.wrap { table.sortable {
                    thead { tr { th.l { "target" } th.l { "figure" } th { "mean" } th { "± 95%" } th { "repeats" } } }
                    tbody { @for t in &p.targets { @for (k, e) in &t.across_repeats { tr {
                        td.l { (t.name) } td.l { (k) } (cell(Some(e.mean), num)) (cell(Some(e.ci95), num)) (int(e.n))
                    } } } }
                } }
            }
            @if !p.comparisons.is_empty() {
                h4 { "Paired comparison against " (p.comparisons[0].baseline) }
                div.wrap { table.sortable {
                    thead { tr { th.l { "metric" } th.l { "target" } th { "baseline" } th { "target" } th { "difference" } th { "95% CI ±" } th.l { "significant" } th.l { "method" } } }
                    tbody { @for c in &p.comparisons { tr {
                        td.l { (c.metric) } td.l { (c.target) } (cell(Some(c.baseline_value), num)) (cell(Some(c.target_value), num))
                        (cell(Some(c.difference), signed)) (cell(Some(c.ci95), num))
                        td class=(if c.significant { "l bad" } else { "l muted" }) { @if c.significant { "yes" } @else { "no" } }
                        td.l { (c.method) }
                    } } }
                } }
            }
        }
        @if let Some(a) = &r.agreement {
            h4 { "Same-model agreement with " (a.reference) " over " (a.prompts) " prompts" }
            table { thead { tr { th { "endpoint" } th { "exact match" } th { "JSON fields agreeing" } th { "failed" } } }
                tbody { @for e in &a.endpoints { tr { td { (e.name) } (cell(Some(e.exact_match_rate), pct)) (share_cell(e.json_field_agreement)) (int(e.failed)) } } } }
        }
        @if !r.self_check.warnings.is_empty() {
            div.note { "Client self-check: " @for w in &r.self_check.warnings { (w) " " } }
        }
    }
}
