//! `pagemill quote`: tokens and cost of a run on each endpoint, before running it.

use std::io::Write;
use std::process::ExitCode;

use comfy_table::Table;
use pagemill_pipeline::run::quote::{Quote, quote};

use crate::cli::{GlobalArgs, QuoteArgs};
use crate::commands::run::{prepare, tokenizer_of};
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: QuoteArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(&args.pipeline).await?;
    let resolved =
        settings::resolve_with(global, &args.endpoint, &args.pipeline.work.sim_profile).await?;
    let mut quotes: Vec<Quote> = Vec::new();
    for ep in &resolved.endpoints {
        let tokenizer = tokenizer_of(ep)?;
        quotes.push(quote(
            &prepared.docs,
            &prepared.tasks,
            ep,
            &tokenizer,
            &prepared.opts,
            args.pages_per_day,
        ));
    }
    for (path, why) in &prepared.skipped {
        eprintln!("skipped {}", crate::printer::skipped(path, why));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &quotes)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let usd = |x: Option<f64>| crate::printer::usd(x, "unknown (no prices)");
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    crate::printer::fit(&mut t);
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
    if args.pages_per_day.is_some() {
        header.push("per month");
    }
    t.set_header(header);
    for q in &quotes {
        let mut row = vec![
            q.endpoint.clone(),
            q.model.clone(),
            q.pages.to_string(),
            q.requests.to_string(),
            q.prompt_tokens.to_string(),
            q.prefix_tokens.to_string(),
            q.completion_tokens_estimate.to_string(),
            usd(q.cost_usd),
            usd(q.cost_cached_usd),
            usd(q.cost_per_page_usd),
        ];
        if args.pages_per_day.is_some() {
            row.push(usd(q.per_month_usd));
        }
        t.add_row(row);
    }
    writeln!(out, "{t}")?;
    if let Some(q) = quotes.first() {
        let units: Vec<String> = q.units.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(
            out,
            "units: {} · prompt tokens exact ({}); completion estimated{}",
            units.join(" · "),
            q.tokenizer,
            args.pages_per_day
                .map(|d| format!(" · month = 30 days at {d} pages/day"))
                .unwrap_or_default()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
