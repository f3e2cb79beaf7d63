//! `pagemill quote`: tokens and cost of a run on each endpoint, before running it.

use std::io::Write;
use std::process::ExitCode;

use pagemill_pipeline::run::quote::{Quote, quote};

use crate::cli::{Format, GlobalArgs, QuoteArgs};
use crate::commands::run::prepare;
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: QuoteArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(&args.pipeline).await?;
    let resolved =
        settings::resolve_with(global, &args.endpoint, &args.pipeline.work.sim_profile).await?;
    let mut quotes: Vec<Quote> = Vec::new();
    for ep in &resolved.endpoints {
        let tokenizer = ep.tokenizer()?;
        // Each endpoint quoted as it would run: fitted to how its model is prompted.
        let (tasks, opts) = prepared.setup.fitted(ep.prompt_profile)?;
        quotes.push(quote(
            &prepared.docs,
            &tasks,
            ep,
            &tokenizer,
            &opts,
            args.pages_per_day,
        ));
    }
    for (path, why) in &prepared.skipped {
        eprintln!("skipped {}", pagemill_report::fmt::skipped(path, why));
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &quotes)?;
            writeln!(out)?;
        }
        Format::Text => write!(
            out,
            "{}",
            pagemill_report::terminal::run::quotes(&quotes, args.pages_per_day)
        )?,
    }
    Ok(ExitCode::SUCCESS)
}
