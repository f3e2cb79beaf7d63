//! `pagemill prices`: what the configured endpoints will be charged and where each price comes
//! from; a model's entries in the price tables; `prices import` of LiteLLM's file.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_client::Config;
use pagemill_client::prices::{self, Entry, Table};
use serde_json::json;

use crate::cli::{Format, GlobalArgs, PricesArgs, PricesCommand, PricesImportArgs};

/// Runs the command.
pub fn run(global: &GlobalArgs, args: PricesArgs) -> anyhow::Result<ExitCode> {
    if let Some(PricesCommand::Import(import)) = &args.command {
        return import_litellm(import);
    }
    let mut out = std::io::stdout().lock();
    match &args.model {
        Some(model) => {
            let entries = matching(model);
            if entries.is_empty() {
                anyhow::bail!(
                    "no model like `{model}` in the price tables: set `prices` on its endpoint in pagemill.toml, or `pagemill prices import` LiteLLM's file"
                );
            }
            match args.format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(
                        &entries.iter().map(|(e, _)| e).collect::<Vec<_>>()
                    )?
                )?,
                Format::Text => write!(
                    out,
                    "{}",
                    pagemill_report::terminal::prices::entries(&entries)
                )?,
            }
        }
        None => {
            let config = Config::load(global.config.as_deref())?;
            match args.format {
                Format::Json => {
                    let v: Vec<_> = config
                        .endpoint
                        .iter()
                        .map(|e| json!({"endpoint": e.name, "model": e.model, "prices": e.prices, "prices_from": e.price_source}))
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
                Format::Text => {
                    writeln!(
                        out,
                        "{}",
                        pagemill_report::terminal::prices::endpoints(&config.endpoint)
                    )?;
                    writeln!(
                        out,
                        "built in: `sim` is priced like gpt-4o-mini (simulated), `local` costs nothing per token; `pagemill prices MODEL` shows the table's entries"
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Entries whose model contains `model` (case-insensitive): the user's imported table first.
fn matching(model: &str) -> Vec<(&'static Entry, bool)> {
    let needle = model.to_ascii_lowercase();
    let hit = |e: &&Entry| e.model.to_ascii_lowercase().contains(&needle);
    let mut out: Vec<(&'static Entry, bool)> = Table::user()
        .into_iter()
        .flat_map(|t| t.entries.iter().filter(hit).map(|e| (e, true)))
        .collect();
    out.extend(
        Table::builtin()
            .entries
            .iter()
            .filter(hit)
            .map(|e| (e, false)),
    );
    out
}

/// `pagemill prices import FILE`.
fn import_litellm(args: &PricesImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading `{}`", args.file.display()))?;
    let today = pagemill_report::time::date(pagemill_report::time::now());
    let table = prices::import_litellm(&text, &today)?;
    let path = match &args.out {
        Some(p) => p.clone(),
        None => prices::user_table_path()
            .context("no $XDG_CONFIG_HOME or $HOME to keep the table in: give --out")?,
    };
    prices::write_table(&table, &path).with_context(|| format!("writing `{}`", path.display()))?;
    eprintln!(
        "imported {} chat model(s) from `{}` into `{}` (consulted before pagemill's own table)",
        table.entries.len(),
        args.file.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
