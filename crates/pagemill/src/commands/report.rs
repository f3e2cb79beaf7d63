//! `pagemill report`: a self-contained HTML file, terminal tables or JSON from a ledger and
//! bench reports.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use pagemill_report::{Options, Source};

use crate::cli::{ReportArgs, ReportFormat};
use pagemill_pipeline::run::output::write_atomic;

const DEFAULT_LEDGER: &str = "pagemill-out/ledger.sqlite";

/// Runs the command.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let inputs = if args.inputs.is_empty() {
        let default = PathBuf::from(DEFAULT_LEDGER);
        if !default.is_file() {
            bail!(
                "no inputs given and no `{DEFAULT_LEDGER}` here: give a ledger (pagemill run's <out>/ledger.sqlite) or bench results (pagemill bench -o FILE)"
            );
        }
        vec![default]
    } else {
        args.inputs.clone()
    };
    let mut sources = Vec::with_capacity(inputs.len());
    for path in &inputs {
        sources.push(Source::detect(path)?);
    }
    if sources
        .iter()
        .filter(|s| matches!(s, Source::Ledger(_)))
        .count()
        > 1
    {
        bail!("one ledger at a time: give one ledger, and as many bench results as you like");
    }
    let opts = Options {
        documents: args.documents,
        select: args.document.clone(),
        pages_per_day: args.pages_per_day,
    };
    let report = pagemill_report::build(&sources, &opts)?;
    if !args.document.is_empty() && report.runs.is_some() && report.documents.is_empty() {
        bail!(
            "no document in the ledger matches {}",
            args.document.join(", ")
        );
    }

    let format = if args.terminal {
        ReportFormat::Text
    } else {
        args.format
    };
    let (bytes, default_out) = match format {
        ReportFormat::Text => {
            print_text(&report, !args.document.is_empty())?;
            return Ok(ExitCode::SUCCESS);
        }
        ReportFormat::Json => {
            let mut v = serde_json::to_vec_pretty(&report)?;
            v.push(b'\n');
            (v, None)
        }
        ReportFormat::Html => (
            pagemill_report::html::render(&report).into_bytes(),
            Some(PathBuf::from("pagemill-report.html")),
        ),
    };
    match args.out.or(default_out) {
        Some(path) if path != Path::new("-") => {
            write_atomic(&path, &bytes)?;
            let runs = report.runs.as_ref().map_or(0, |r| r.runs.len());
            eprintln!(
                "wrote {} ({} KB): {} run(s), {} document(s) shown, {} bench report(s)",
                path.display(),
                bytes.len().div_ceil(1024),
                runs,
                report.documents.len(),
                report.benchmarks.len()
            );
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(&bytes)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as tables, or the selected documents page by page.
fn print_text(report: &pagemill_report::Report, documents: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if documents {
        let color = out.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        for d in &report.documents {
            write!(out, "{}", pagemill_report::terminal::document(d, color))?;
        }
    } else {
        write!(out, "{}", pagemill_report::terminal::render(report))?;
    }
    Ok(())
}
