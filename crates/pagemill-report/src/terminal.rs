//! The report's figures as terminal tables. Document pages are printed with their mentions in
//! brackets (`[Acme Corp]{organization}`), or coloured when `color` is set; terminal control
//! characters in document text are replaced, so a hostile document cannot drive the terminal.

use std::fmt::Write as _;

use comfy_table::{Cell, CellAlignment, Table, presets};

use crate::documents::{DocumentView, segments};
use crate::runs::{Pcts, RunsReport};
use crate::{Report, count, num, opt, pct, time, usd};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    t
}

fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn ms(v: f64) -> String {
    format!("{} ms", num(v))
}

/// Characters that could steer a terminal (ESC, other C0/C1 controls) are shown as `�`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
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
                    clean(&d.path),
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
        eval_text(&mut out, e);
    }
    out
}

fn eval_text(out: &mut String, e: &crate::eval::EvalView) {
    let _ = writeln!(out, "\nQuality against gold ({})", clean(&e.path));
    let cost = if e.by_dollars {
        "$ a page"
    } else {
        "tokens a page"
    };
    let mut t = table(&[
        "configuration",
        "front",
        "overall",
        "entity F1",
        "metadata",
        "ROUGE-L",
        "support",
        cost,
        "missed",
        "spurious",
        "wrong type",
        "wrong span",
    ]);
    let f = |v: Option<f64>| opt(v, num);
    for c in &e.configurations {
        let errors =
            |k: &str| -> String { count(c.documents.iter().filter_map(|d| d.counts.get(k)).sum()) };
        t.add_row(vec![
            clean(&c.name),
            if c.pareto_front { "*" } else { "" }.to_owned(),
            f(c.overall),
            f(c.entity_f1),
            f(c.metadata),
            f(c.rouge_l),
            f(c.support),
            opt(c.cost, if e.by_dollars { usd } else { num }),
            errors("missed"),
            errors("spurious"),
            errors("wrong_type"),
            errors("wrong_span"),
        ]);
    }
    right(&mut t, 2);
    let _ = writeln!(out, "{t}");
}

fn runs_text(out: &mut String, r: &RunsReport) {
    let t = &r.totals;
    let p = &r.projection;
    let _ = writeln!(out, "Ledger {}", clean(&r.ledger));
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
            let mut msg = clean(e.example.as_deref().unwrap_or(""));
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
                clean(&d.document),
                d.task,
                d.target,
                clean(&d.reason)
            );
        }
    }
}

fn bench_text(out: &mut String, b: &crate::BenchInput) {
    let r = &b.report;
    let _ = writeln!(
        out,
        "\nBench {} · workload {} · {}",
        clean(&b.path),
        r.workload,
        time::datetime(r.started_at as i64)
    );
    let mut tb = table(&[
        "target",
        "load",
        "requests",
        "ok",
        "throttled",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "e2e p50",
        "out tok/s",
        "cached",
        "cost/1k pages",
    ]);
    let mut comparisons = String::new();
    for p in &r.points {
        if !p.comparisons.is_empty() {
            let _ = writeln!(comparisons, "  at {}:", crate::load_text(&p.load));
        }
        for t in &p.targets {
            let lat = |k: &str, f: fn(&pagemill_bench::report::Percentiles) -> f64| {
                opt(t.latency_ms.get(k).filter(|p| p.count > 0).map(f), ms)
            };
            tb.add_row(vec![
                t.name.clone(),
                crate::load_text(&p.load),
                count(t.requests),
                count(t.ok),
                count(t.throttled),
                lat("ttft_answer", |p| p.p50),
                lat("ttft_answer", |p| p.p99),
                lat("itl_chunk", |p| p.p50),
                lat("e2e", |p| p.p50),
                num(t.output_token_throughput),
                opt(t.tokens.cached_ratio, pct),
                opt(t.cost.per_1k_pages_usd, usd),
            ]);
        }
        for c in &p.comparisons {
            let _ = writeln!(
                comparisons,
                "    {} vs {}: {} {}{} ± {} ({}{})",
                c.target,
                c.baseline,
                c.metric,
                if c.difference < 0.0 { "−" } else { "+" },
                num(c.difference.abs()),
                num(c.ci95),
                if c.significant {
                    "significant"
                } else {
                    "not significant"
                },
                format_args!(", {}", c.method)
            );
        }
    }
    right(&mut tb, 2);
    let _ = writeln!(out, "{tb}");
    if !comparisons.is_empty() {
        let _ = writeln!(
            out,
            "Paired comparisons (difference ± 95% confidence half-width):"
        );
        out.push_str(&comparisons);
    }
}

/// One document page by page, mentions marked.
pub fn document(d: &DocumentView, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}, {} pages)",
        clean(&d.path),
        d.kind,
        d.pages.len()
    );
    if let Some(m) = &d.metadata {
        let _ = writeln!(out, "metadata: {}", clean(&m.to_string()));
    }
    for s in &d.sections {
        let _ = writeln!(
            out,
            "§ {} (p. {}–{}): {}",
            clean(&s.title),
            s.pages.0,
            s.pages.1,
            clean(s.summary.as_deref().unwrap_or(&s.state))
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
                        clean(s.text),
                        clean(&m.kind)
                    );
                }
                Some(m) => {
                    let _ = write!(out, "[{}]{{{}}}", clean(s.text), clean(&m.kind));
                }
                None => out.push_str(&clean(s.text)),
            }
        }
        out.push('\n');
        let lost: Vec<String> = p
            .mentions
            .iter()
            .filter(|m| m.start.is_none())
            .map(|m| format!("{} ({})", clean(&m.text), clean(&m.kind)))
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
        assert_eq!(clean("a\x1b[31mb\u{9b}c\nd"), "a\u{fffd}[31mb\u{fffd}c\nd");
        assert_eq!(sparkline(&[0.0, 1.0, 2.0]), "▁▅█");
    }
}
