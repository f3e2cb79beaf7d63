//! The report's figures as terminal tables. Document pages are printed with their mentions in
//! brackets (`[Acme Corp]{organization}`), or coloured when `color` is set; terminal control
//! characters in document text are replaced, so a hostile document cannot drive the terminal.

use std::fmt::Write as _;

use comfy_table::{Cell, CellAlignment, Table, presets};

use pagemill_client::probe::{EndpointChecks, Status};

use crate::documents::{DocumentView, segments};
use crate::fmt::{count, inert, inert_text, ms, num, opt, pct, usd};
use crate::runs::{Pcts, RunsReport};
use crate::{Report, time};

pub mod bench;
pub mod eval;
pub mod run;

/// A table in the one style every view uses, fitted to the terminal (see [`fit`]).
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    fit(&mut t);
    t
}

/// Fits `table` to the width of the terminal standard output is (or to `$COLUMNS`, when set,
/// for output that is not a terminal): columns wrap instead of running past the edge. With
/// neither, the table keeps its natural width (a file or a pipe has no edge).
pub fn fit(table: &mut Table) {
    use std::io::IsTerminal as _;
    let width = if std::io::stdout().is_terminal() {
        terminal_size::terminal_size().map(|(w, _)| w.0)
    } else {
        None
    }
    .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok());
    if let Some(w) = width.filter(|w| *w >= 20) {
        table.set_width(w);
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    }
}

/// Numbers read right-aligned: columns `from` on.
pub(crate) fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Eight-level bars for a row of values.
fn sparkline(v: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = v.iter().copied().fold(0.0f64, f64::max);
    v.iter()
        .map(|x| {
            if max > 0.0 {
                BARS[((x / max) * 7.0).round().clamp(0.0, 7.0) as usize]
            } else {
                BARS[0]
            }
        })
        .collect()
}

/// The whole report as text.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    if let Some(runs) = &r.runs {
        runs_text(&mut out, runs);
        if !r.documents.is_empty() {
            let _ = writeln!(out, "\nDocuments");
            let mut t = table(&[
                "document",
                "kind",
                "pages",
                "mentions",
                "not found",
                "summaries",
                "metadata",
            ]);
            for d in &r.documents {
                t.add_row(vec![
                    inert_text(&d.path),
                    d.kind.clone(),
                    d.pages.len().to_string(),
                    count(d.entity_counts.values().sum()),
                    count(d.ungrounded),
                    format!(
                        "{}/{}",
                        d.sections.iter().filter(|s| s.summary.is_some()).count(),
                        d.sections.len()
                    ),
                    d.metadata_state.clone(),
                ]);
            }
            right(&mut t, 2);
            let _ = writeln!(out, "{t}");
            if r.documents_omitted > 0 {
                let _ = writeln!(
                    out,
                    "{} more in the ledger; --document PATH-OR-ID shows one page by page.",
                    count(r.documents_omitted as u64)
                );
            }
        }
    }
    for b in &r.benchmarks {
        bench_text(&mut out, b);
    }
    if let Some(e) = &r.eval {
        eval::view(&mut out, e);
    }
    out
}

fn runs_text(out: &mut String, r: &RunsReport) {
    let t = &r.totals;
    let p = &r.projection;
    let _ = writeln!(out, "Ledger {}", inert_text(&r.ledger));
    let _ = writeln!(
        out,
        "{} run{} · {} documents · {} pages · {} requests ({} failed, {} interrupted)",
        t.runs,
        if t.runs == 1 { "" } else { "s" },
        count(t.documents),
        count(t.pages),
        count(t.requests),
        count(t.failed_requests),
        count(t.interrupted_requests)
    );
    let _ = writeln!(
        out,
        "cost {} · per page {} · per active day {} ({} day{}) · per month at that rate {}{}",
        t.cost_usd
            .map_or_else(|| "unknown (no prices)".to_owned(), usd),
        opt(t.cost_per_page_usd, usd),
        opt(p.observed_cost_per_day_usd, usd),
        p.active_days,
        if p.active_days == 1 { "" } else { "s" },
        opt(p.observed_per_month_usd, usd),
        match (p.pages_per_day, p.per_month_usd) {
            (Some(n), Some(m)) => format!(" · at {} pages/day {}", num(n), usd(m)),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "prompt tokens/page {} · completion/page {} · cached share {} · spent on repeats {} ({})",
        opt(t.prompt_tokens_per_page, num),
        opt(t.completion_tokens_per_page, num),
        opt(t.cached_share, pct),
        opt(r.retries.repeat_cost_usd, usd),
        opt(r.retries.repeat_cost_share, pct)
    );
    if r.days.iter().filter(|d| d.cost_usd.is_some()).count() > 1 {
        let costs: Vec<f64> = r.days.iter().filter_map(|d| d.cost_usd).collect();
        let _ = writeln!(
            out,
            "cost by day {} → {}: {}",
            r.days[0].day,
            r.days[r.days.len() - 1].day,
            sparkline(&costs)
        );
    }

    let _ = writeln!(out, "\nRuns");
    let mut tb = table(&[
        "started",
        "state",
        "requests",
        "failed",
        "pages",
        "tok/page",
        "cached",
        "retries",
        "cost",
        "cost/page",
    ]);
    for run in &r.runs {
        tb.add_row(vec![
            time::datetime(run.started_at),
            run.state.clone(),
            count(run.requests),
            count(run.failed_requests),
            count(run.pages),
            opt(run.prompt_tokens_per_page, num),
            opt(run.cached_share, pct),
            count(run.retries),
            opt(run.cost_usd, usd),
            opt(run.cost_per_page_usd, usd),
        ]);
    }
    right(&mut tb, 2);
    let _ = writeln!(out, "{tb}");

    let _ = writeln!(out, "\nTokens per page by task and prompt version");
    let mut tb = table(&[
        "task",
        "version",
        "first used",
        "runs",
        "units",
        "tok/unit",
        "tok/page",
        "change",
        "cached",
        "cacheable",
    ]);
    for p in &r.prompts {
        tb.add_row(vec![
            p.task.clone(),
            p.prompt_version.clone(),
            time::datetime(p.first_seen),
            count(p.runs),
            count(p.units),
            opt(p.prompt_tokens_per_unit, num),
            opt(p.prompt_tokens_per_page, num),
            opt(p.change_vs_previous, |c| format!("{:+.1}%", c * 100.0)),
            opt(p.cached_share, pct),
            opt(p.cacheable_share, pct),
        ]);
    }
    right(&mut tb, 3);
    let _ = writeln!(out, "{tb}");

    let x = &r.retries;
    let _ = writeln!(
        out,
        "\nRetries: {} client retries{} · {} request(s) re-sent work, costing {} · {} failed · {} interrupted",
        count(x.client_retries),
        if x.retried_by_class.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                x.retried_by_class
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        count(x.repeat_requests),
        opt(x.repeat_cost_usd, usd),
        count(x.failed_requests),
        count(x.interrupted_requests)
    );

    let _ = writeln!(out, "\nLatency by endpoint");
    let mut tb = table(&[
        "endpoint",
        "requests",
        "ok",
        "TTFT p50",
        "TTFT p90",
        "TTFT p99",
        "e2e p50",
        "e2e p90",
        "e2e p99",
        "ITL p50",
        "TTFT p50 over time",
    ]);
    let three = |p: Option<Pcts>| {
        [
            opt(p.map(|p| p.p50), ms),
            opt(p.map(|p| p.p90), ms),
            opt(p.map(|p| p.p99), ms),
        ]
    };
    for e in &r.endpoints {
        let mut row = vec![e.endpoint.clone(), count(e.requests), count(e.ok)];
        row.extend(three(e.ttft_ms));
        row.extend(three(e.e2e_ms));
        row.push(opt(e.itl_ms.map(|p| p.p50), ms));
        let line: Vec<f64> = e
            .over_time
            .iter()
            .filter_map(|b| b.ttft_ms.map(|p| p.p50))
            .collect();
        row.push(sparkline(&line));
        tb.add_row(row);
    }
    right(&mut tb, 1);
    let _ = writeln!(out, "{tb}");

    if !r.errors.is_empty() {
        let _ = writeln!(out, "\nErrors");
        let mut tb = table(&["endpoint", "class", "final", "retried", "latest message"]);
        for e in &r.errors {
            let mut msg = inert_text(e.example.as_deref().unwrap_or(""));
            if msg.chars().count() > 80 {
                msg = msg.chars().take(79).collect::<String>() + "…";
            }
            tb.add_row(vec![
                e.endpoint.clone(),
                e.class.clone(),
                count(e.final_failures),
                count(e.retried_attempts),
                msg,
            ]);
        }
        let _ = writeln!(out, "{tb}");
    }
    if r.dead_letters_total > 0 {
        let _ = writeln!(out, "\nDead letters: {}", count(r.dead_letters_total));
        for d in r.dead_letters.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} {} {}: {}",
                inert_text(&d.document),
                d.task,
                d.target,
                inert_text(&d.reason)
            );
        }
    }
}

fn bench_text(out: &mut String, b: &crate::BenchInput) {
    let _ = writeln!(
        out,
        "\nBench {} · {}",
        inert(&b.path),
        time::datetime(b.report.started_at as i64)
    );
    out.push_str(&bench::render(&b.report));
}

/// `pagemill doctor`'s table: one row per check, one column per endpoint.
pub fn doctor(reports: &[EndpointChecks]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    fit(&mut t);
    let mut header = vec!["check".to_owned()];
    header.extend(
        reports
            .iter()
            .map(|r| format!("{} ({})", inert(&r.endpoint), inert(&r.model))),
    );
    t.set_header(header);
    let names: Vec<&'static str> = reports
        .iter()
        .max_by_key(|r| r.checks.len())
        .map(|r| r.checks.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for name in names {
        let mut row = vec![name.to_owned()];
        for r in reports {
            let cell = r.checks.iter().find(|c| c.name == name).map_or_else(
                || "-".to_owned(),
                |c| {
                    let tag = match c.status {
                        Status::Ok => "ok",
                        Status::Warn => "warn",
                        Status::Fail => "FAIL",
                        Status::Skipped => "skipped",
                    };
                    format!("{tag}: {}", inert(&c.detail))
                },
            );
            row.push(cell);
        }
        t.add_row(row);
    }
    t
}

/// One document page by page, mentions marked.
pub fn document(d: &DocumentView, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}, {} pages)",
        inert_text(&d.path),
        d.kind,
        d.pages.len()
    );
    if let Some(m) = &d.metadata {
        let _ = writeln!(out, "metadata: {}", inert_text(&m.to_string()));
    }
    for s in &d.sections {
        let _ = writeln!(
            out,
            "§ {} (p. {}–{}): {}",
            inert_text(&s.title),
            s.pages.0,
            s.pages.1,
            inert_text(s.summary.as_deref().unwrap_or(&s.state))
        );
    }
    for p in &d.pages {
        let _ = writeln!(out, "\n── page {} · entities {} ──", p.number, p.state);
        for s in segments(&p.text, &p.mentions) {
            match s.mention.and_then(|i| p.mentions.get(i)) {
                Some(m) if color => {
                    let _ = write!(
                        out,
                        "\x1b[1;4m{}\x1b[0m\x1b[2m{{{}}}\x1b[0m",
                        inert_text(s.text),
                        inert_text(&m.kind)
                    );
                }
                Some(m) => {
                    let _ = write!(out, "[{}]{{{}}}", inert_text(s.text), inert_text(&m.kind));
                }
                None => out.push_str(&inert_text(s.text)),
            }
        }
        out.push('\n');
        let lost: Vec<String> = p
            .mentions
            .iter()
            .filter(|m| m.start.is_none())
            .map(|m| format!("{} ({})", inert_text(&m.text), inert_text(&m.kind)))
            .collect();
        if !lost.is_empty() {
            let _ = writeln!(out, "not found in the page: {}", lost.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_terminal() {
        assert_eq!(
            inert_text("a\x1b[31mb\u{9b}c\nd"),
            "a\\u{1b}[31mb\\u{9b}c\nd"
        );
        assert_eq!(sparkline(&[0.0, 1.0, 2.0]), "▁▅█");
    }
}
