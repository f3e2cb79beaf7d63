//! What `pagemill run` and `pagemill quote` print: the run summary (a table per task and a
//! few lines) and the quote of each endpoint.

use pagemill_pipeline::run::RunSummary;
use pagemill_pipeline::run::quote::Quote;

use super::{right, table};
use crate::fmt::{count, inert, num, pct, usd_or};

fn usd(x: Option<f64>) -> String {
    usd_or(x, "unknown")
}

/// The summary as a table and a few lines.
pub fn summary(s: &RunSummary) -> String {
    let mut t = table(&[
        "task",
        "units",
        "done before",
        "done",
        "failed",
        "requests",
        "pack",
        "prompt tok",
        "cached",
        "completion",
        "prompt/page",
        "retries",
        "cost",
    ]);
    for (name, ts) in &s.tasks {
        if ts.units == 0 {
            continue;
        }
        t.add_row([
            name.clone(),
            count(ts.units),
            count(ts.already_done),
            count(ts.done),
            count(ts.failed),
            count(ts.requests),
            ts.pack_size.to_string(),
            count(ts.prompt_tokens),
            count(ts.cached_tokens),
            count(ts.completion_tokens),
            num(ts.prompt_tokens_per_page),
            count(ts.retries),
            usd(ts.cost_usd),
        ]);
    }
    right(&mut t, 1);
    let mut out = format!("{t}\n");
    out.push_str(&format!(
        "pages {} · done {} · skipped {} · failed {} · pending {} · documents {}/{} complete · {:.1} s\n",
        s.pages, s.pages_done, s.pages_skipped, s.pages_failed, s.pages_pending,
        s.complete_documents, s.documents, s.wall_secs
    ));
    out.push_str(&format!(
        "tokens/page: prompt {:.1} · completion {:.1} (max_tokens asked {:.1}, {} answers cut off) · cached share {} · requests {} (failed {}, client retries {}, re-asks {}, re-run alone {}, fallbacks {}, pack shrinks {})\n",
        s.prompt_tokens_per_page,
        s.completion_tokens_per_page,
        s.max_tokens_per_page,
        s.truncated,
        s.cached_share.map_or_else(|| "unreported".into(), pct),
        s.requests, s.failed_requests, s.retries, s.reasks, s.singles, s.fallbacks, s.shrinks
    ));
    if s.arrays > 0 {
        out.push_str(&format!(
            "prompt arrays: {} (one HTTP request each, carrying several of the requests; usage shared out among an array's prompts)\n",
            s.arrays
        ));
    }
    out.push_str(&format!(
        "cost {} · per page {}{}\n",
        usd(s.cost_usd),
        usd(s.cost_per_page_usd),
        s.cost_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    ));
    if !s.prices_from.is_empty() {
        let from: Vec<String> = s
            .prices_from
            .iter()
            .map(|(ep, src)| format!("{} — {src}", inert(ep)))
            .collect();
        out.push_str(&format!("prices: {}\n", from.join(" · ")));
    }
    if !s.errors.is_empty() {
        let list: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("errors by class: {}\n", list.join(" · ")));
    }
    if !s.dropped.is_empty() {
        let list: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "values left out as not backed by the document: {} (`--ungrounded keep-flagged` keeps them, flagged)\n",
            list.join(" · ")
        ));
    }
    if s.loops_cancelled > 0 {
        out.push_str(&format!(
            "{} looping answer(s) cancelled mid-stream, sparing up to {} completion tokens\n",
            s.loops_cancelled, s.loop_tokens_saved
        ));
    }
    if s.dead_letters > 0 {
        out.push_str(&format!(
            "{} unit(s) dead-lettered: see `dead_letters` in the document results\n",
            s.dead_letters
        ));
    }
    if let Some(why) = &s.stopped {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    for d in &s.drift {
        out.push_str(&format!("drift: {}\n", crate::fmt::inert(&d.message)));
    }
    out
}

/// Quotes side by side: tokens and cost of the same run on each endpoint, before running it.
pub fn quotes(quotes: &[Quote], pages_per_day: Option<u64>) -> String {
    let usd = |x: Option<f64>| usd_or(x, "unknown (no prices)");
    let mut header = vec![
        "endpoint",
        "model",
        "pages",
        "requests",
        "prompt tok",
        "of which prefix",
        "completion (est.)",
        "cost",
        "cost, prefix cached",
        "per page",
    ];
    if pages_per_day.is_some() {
        header.push("per month");
    }
    header.push("prices from");
    let mut t = table(&header);
    for q in quotes {
        let mut row = vec![
            inert(&q.endpoint),
            inert(&q.model),
            count(q.pages),
            count(q.requests),
            count(q.prompt_tokens),
            count(q.prefix_tokens),
            count(q.completion_tokens_estimate),
            usd(q.cost_usd),
            usd(q.cost_cached_usd),
            usd(q.cost_per_page_usd),
        ];
        if pages_per_day.is_some() {
            row.push(usd(q.per_month_usd));
        }
        row.push(q.prices_from.to_string());
        t.add_row(row);
    }
    right(&mut t, 2);
    let mut out = format!("{t}\n");
    if let Some(q) = quotes.first() {
        let units: Vec<String> = q.units.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "units: {} · prompt tokens exact ({}); completion estimated{}\n",
            units.join(" · "),
            q.tokenizer,
            pages_per_day
                .map(|d| format!(" · month = 30 days at {d} pages/day"))
                .unwrap_or_default()
        ));
    }
    out
}
