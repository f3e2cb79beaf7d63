//! What `pagemill ingest` prints: each document with its pages (those that need attention,
//! or all), its sections as an outline, its metadata candidates and warnings.

use std::fmt::Write as _;
use std::path::PathBuf;

use pagemill_pipeline::ingest::{Document, Quality};

use crate::fmt::inert;

fn quality(q: Quality) -> &'static str {
    match q {
        Quality::Ok => "ok",
        Quality::NeedsOcr => "needs OCR",
        Quality::Garbled => "garbled",
        Quality::Failed => "FAILED",
    }
}

/// Every document, the inputs skipped, and the totals.
pub fn listing(docs: &[Document], skipped: &[(PathBuf, String)], all_pages: bool) -> String {
    let mut s = String::new();
    for d in docs {
        document(&mut s, d, all_pages);
    }
    for (_, why) in skipped {
        let _ = writeln!(s, "skipped: {}", inert(why));
    }
    let pages: usize = docs.iter().map(|d| d.pages.len()).sum();
    let _ = writeln!(
        s,
        "{} document(s), {pages} page(s), {} skipped",
        docs.len(),
        skipped.len()
    );
    s
}

fn document(s: &mut String, d: &Document, all_pages: bool) {
    let _ = writeln!(
        s,
        "{}  {:?}  id {}  {} pages  {} sections{}",
        inert(&d.path.display().to_string()),
        d.kind,
        &d.id[..d.id.len().min(16)],
        d.pages.len(),
        d.sections.len(),
        d.encoding
            .as_deref()
            .map(|e| format!("  encoding {e}"))
            .unwrap_or_default()
    );
    for p in &d.pages {
        if all_pages || p.quality != Quality::Ok {
            let _ = writeln!(
                s,
                "  page {:>4}  {:>6} chars  {}{}",
                p.number,
                p.chars,
                quality(p.quality),
                p.failure
                    .as_deref()
                    .map(|f| format!(": {}", inert(f)))
                    .unwrap_or_default()
            );
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
        let _ = writeln!(
            s,
            "  {}{} [{}]{part}",
            "  ".repeat(usize::from(sec.level.saturating_sub(1))),
            inert(&sec.title),
            pages
        );
    }
    for (what, list) in [("title", &d.hints.titles), ("author", &d.hints.authors)] {
        if !list.is_empty() {
            let _ = writeln!(s, "  {what} candidates: {}", inert(&list.join(" | ")));
        }
    }
    for w in &d.warnings {
        let _ = writeln!(s, "  warning: {}", inert(w));
    }
}
