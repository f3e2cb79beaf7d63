//! `pagemill ingest`: documents → pages and sections, printed (text or JSON) and optionally
//! dumped, so users can see exactly what pagemill will send to a model.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_pipeline::ingest::{Document, Limits, read_all};

use crate::cli::{Format, IngestArgs};

/// Documents read from `inputs` (files, directories, globs) on worker threads, and the inputs
/// that could not be read, with why (shared by `ingest`, `run`, `quote` and `eval`).
pub(crate) async fn read_inputs(
    inputs: &[PathBuf],
    page_chars: usize,
    section_tokens: u64,
) -> anyhow::Result<(Vec<Document>, Vec<(PathBuf, String)>)> {
    let limits = Limits {
        text_page_chars: page_chars,
        section_tokens,
        ..Limits::default()
    };
    let inputs = inputs.to_vec();
    let read = tokio::task::spawn_blocking(move || read_all(&inputs, &limits))
        .await
        .context("ingest workers")?;
    Ok((read.docs, read.skipped))
}

/// Runs the command.
pub async fn run(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let (docs, skipped) = read_inputs(&args.inputs, args.page_chars, args.section_tokens).await?;
    if let Some(dir) = &args.dump {
        for d in &docs {
            d.dump_pages(dir)?;
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let v = pagemill_pipeline::ingest::listing(&docs, &skipped);
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Text => write!(
            out,
            "{}",
            pagemill_report::terminal::ingest::listing(&docs, &skipped, args.all_pages)
        )?,
    }
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
