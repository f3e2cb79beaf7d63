//! A ledger's figures as terminal tables (`pagemill report --format text`).

use std::fmt::Write as _;

use super::{right, sparkline, table};
use crate::fmt::{count, inert_text, ms, num, opt, pct, usd};
use crate::runs::{Pcts, RunsReport};
use crate::time;

/// A ledger's figures: totals, runs, prompt versions, retries, latency, errors, dead letters.
pub(super) fn view(out: &mut String, r: &RunsReport) {
    totals(out, r);
    runs(out, r);
    prompts(out, r);
    retries(out, r);
    latency(out, r);
    errors(out, r);
}

/// What the ledger holds and cost, and the cost by day.
fn totals(out: &mut String, r: &RunsReport) {
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
}

/// One row a run.
fn runs(out: &mut String, r: &RunsReport) {
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
        "prices from",
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
            inert_text(&run.prices_from.join("; ")),
        ]);
    }
    right(&mut tb, 2);
    let _ = writeln!(out, "{tb}");
    for run in &r.runs {
        for d in &run.drift {
            let _ = writeln!(
                out,
                "drift in the run of {}: {}",
                time::datetime(run.started_at),
                inert_text(d)
            );
        }
    }
}

/// Tokens a page by task and prompt version, and what each version changed.
fn prompts(out: &mut String, r: &RunsReport) {
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
}

/// What repeats cost.
fn retries(out: &mut String, r: &RunsReport) {
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
}

/// Latency percentiles by endpoint, and TTFT over time.
fn latency(out: &mut String, r: &RunsReport) {
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
}

/// Errors by endpoint and class, and the dead letters.
fn errors(out: &mut String, r: &RunsReport) {
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
