//! `pagemill ingest`: documents → pages and sections, printed (text or JSON) and optionally
//! dumped, so users can see exactly what pagemill will send to a model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use pagemill_pipeline::ingest::{Document, Limits, Quality, read_all};
use serde::Serialize;
use serde_json::{Value, json};

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
            dump(dir, d)?;
        }
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let v = json!({
                "schema_version": 1,
                "documents": docs.iter().map(doc_json).collect::<Vec<_>>(),
                "skipped": skipped.iter().map(|(p, why)| json!({"path": p, "reason": why})).collect::<Vec<_>>(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        Format::Text => {
            for d in &docs {
                write!(out, "{}", doc_text(d, args.all_pages))?;
            }
            for (_, why) in &skipped {
                writeln!(out, "skipped: {}", pagemill_report::fmt::inert(why))?;
            }
            let pages: usize = docs.iter().map(|d| d.pages.len()).sum();
            writeln!(
                out,
                "{} document(s), {pages} page(s), {} skipped",
                docs.len(),
                skipped.len()
            )?;
        }
    }
    Ok(if skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Serialize)]
struct PageJson<'a> {
    number: u32,
    chars: usize,
    quality: Quality,
    failure: &'a Option<String>,
    range: (usize, usize),
    furniture: &'a [String],
}

fn doc_json(d: &Document) -> Value {
    json!({
        "id": d.id,
        "path": d.path,
        "kind": d.kind,
        "encoding": d.encoding,
        "chars": d.text.chars().count(),
        "pages": d.pages.iter().map(|p| PageJson {
            number: p.number, chars: p.chars, quality: p.quality, failure: &p.failure, range: p.range, furniture: &p.furniture,
        }).collect::<Vec<_>>(),
        "headings": d.headings,
        "sections": d.sections,
        "warnings": d.warnings,
        "metadata_candidates": d.hints,
    })
}

fn quality(q: Quality) -> &'static str {
    match q {
        Quality::Ok => "ok",
        Quality::NeedsOcr => "needs OCR",
        Quality::Garbled => "garbled",
        Quality::Failed => "FAILED",
    }
}

fn doc_text(d: &Document, all_pages: bool) -> String {
    let mut s = format!(
        "{}  {:?}  id {}  {} pages  {} sections{}\n",
        pagemill_report::fmt::inert(&d.path.display().to_string()),
        d.kind,
        &d.id[..16],
        d.pages.len(),
        d.sections.len(),
        d.encoding
            .as_deref()
            .map(|e| format!("  encoding {e}"))
            .unwrap_or_default()
    );
    for p in &d.pages {
        if all_pages || p.quality != Quality::Ok {
            s.push_str(&format!(
                "  page {:>4}  {:>6} chars  {}{}\n",
                p.number,
                p.chars,
                quality(p.quality),
                p.failure
                    .as_deref()
                    .map(|f| format!(": {f}"))
                    .unwrap_or_default()
            ));
        }
    }
    for sec in &d.sections {
        let part = sec
            .part
            .map(|(k, n)| format!(" (part {k}/{n})"))
            .unwrap_or_default();
        let pages = if sec.pages.0 == sec.pages.1 {
            format!("p{}", sec.pages.0)
        } else {
            format!("p{}-{}", sec.pages.0, sec.pages.1)
        };
        s.push_str(&format!(
            "  {}{} [{}]{part}\n",
            "  ".repeat(usize::from(sec.level.saturating_sub(1))),
            sec.title,
            pages
        ));
    }
    if !d.hints.titles.is_empty() {
        s.push_str(&format!(
            "  title candidates: {}\n",
            d.hints.titles.join(" | ")
        ));
    }
    if !d.hints.authors.is_empty() {
        s.push_str(&format!(
            "  author candidates: {}\n",
            d.hints.authors.join(" | ")
        ));
    }
    for w in &d.warnings {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

/// `DIR/<name>-<id>/page-0001.txt`…
fn dump(dir: &Path, d: &Document) -> anyhow::Result<()> {
    let stem = d
        .path
        .file_stem()
        .map_or_else(|| "document".into(), |s| s.to_string_lossy().into_owned());
    let sub = dir.join(format!("{stem}-{}", &d.id[..12]));
    std::fs::create_dir_all(&sub).with_context(|| format!("creating `{}`", sub.display()))?;
    for p in &d.pages {
        let f = sub.join(format!("page-{:04}.txt", p.number));
        std::fs::write(&f, &p.text).with_context(|| format!("writing `{}`", f.display()))?;
    }
    Ok(())
}
