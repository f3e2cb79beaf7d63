//! The report's figures as terminal tables. Document pages are printed with their mentions in
//! brackets (`[Acme Corp]{organization}`), or coloured when `color` is set; terminal control
//! characters in document text are replaced, so a hostile document cannot drive the terminal.

use std::fmt::Write as _;

use comfy_table::{Cell, CellAlignment, Table, presets};

use pagemill_client::probe::{EndpointChecks, Status};

use crate::documents::{DocumentView, segments};
use crate::fmt::{count, inert, inert_text};
use crate::{Report, time};

pub mod bench;
pub mod eval;
pub mod ingest;
pub mod prices;
pub mod run;
mod runs;

/// A table in the one style every view uses, fitted to the terminal (see [`fit`]).
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_BORDERS_ONLY);
    t.set_header(header.iter().map(|h| Cell::new(*h)));
    fit(&mut t);
    t
}

/// Fits `table` to the width of the terminal standard output is (or to `$COLUMNS`, when set,
/// for output that is not a terminal): columns wrap instead of running past the edge. With
/// neither, the table keeps its natural width (a file or a pipe has no edge).
pub fn fit(table: &mut Table) {
    use std::io::IsTerminal as _;
    let width = if std::io::stdout().is_terminal() {
        terminal_size::terminal_size().map(|(w, _)| w.0)
    } else {
        None
    }
    .or_else(|| std::env::var("COLUMNS").ok()?.trim().parse().ok());
    if let Some(w) = width.filter(|w| *w >= 20) {
        table.set_width(w);
        table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    }
}

/// Numbers read right-aligned: columns `from` on.
pub(crate) fn right(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

/// Eight-level bars for a row of values.
pub(crate) fn sparkline(v: &[f64]) -> String {
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
        runs::view(&mut out, runs);
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
                    inert_text(&d.path),
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
        eval::view(&mut out, e);
    }
    out
}

fn bench_text(out: &mut String, b: &crate::BenchInput) {
    let _ = writeln!(
        out,
        "\nBench {} · {}",
        inert(&b.path),
        time::datetime(b.report.started_at as i64)
    );
    out.push_str(&bench::render(&b.report));
}

/// `pagemill doctor`'s table: one row per check, one column per endpoint.
pub fn doctor(reports: &[EndpointChecks]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED);
    fit(&mut t);
    let mut header = vec!["check".to_owned()];
    header.extend(
        reports
            .iter()
            .map(|r| format!("{} ({})", inert(&r.endpoint), inert(&r.model))),
    );
    t.set_header(header);
    let names: Vec<&'static str> = reports
        .iter()
        .max_by_key(|r| r.checks.len())
        .map(|r| r.checks.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for name in names {
        let mut row = vec![name.to_owned()];
        for r in reports {
            let cell = r.checks.iter().find(|c| c.name == name).map_or_else(
                || "-".to_owned(),
                |c| {
                    let tag = match c.status {
                        Status::Ok => "ok",
                        Status::Warn => "warn",
                        Status::Fail => "FAIL",
                        Status::Skipped => "skipped",
                    };
                    format!("{tag}: {}", inert(&c.detail))
                },
            );
            row.push(cell);
        }
        t.add_row(row);
    }
    t
}

/// `ttft 21.3 ms · total 190.2 ms · prompt 12 (server) · …` — the line under the answer.
pub fn chat_line(
    ex: &pagemill_client::Exchange,
    retries: usize,
    prices: &pagemill_client::prices::PriceSource,
) -> String {
    use crate::fmt;
    let conn = match ex.timeline.connection {
        Some(c) if c.reused => "connection reused".to_owned(),
        Some(c) => format!(
            "new connection ({})",
            fmt::opt_duration(c.connect_ns.map(std::time::Duration::from_nanos))
        ),
        None => "connection n/a".to_owned(),
    };
    let tl = &ex.timeline;
    // A reasoning model has two first tokens: its first thought, and its answer's.
    let ttft = match (tl.first_content, tl.first_answer) {
        (Some(c), Some(a)) if c < a => format!(
            "ttft {} (first reasoning {})",
            fmt::opt_duration(tl.ttft()),
            fmt::opt_duration(tl.since_scheduled(Some(c)))
        ),
        _ => format!("ttft {}", fmt::opt_duration(tl.ttft())),
    };
    let mut parts = vec![
        ttft,
        format!("total {}", fmt::opt_duration(ex.timeline.total())),
        format!("prompt {}", fmt::tokens(ex.usage.prompt)),
        format!("cached {}", fmt::tokens(ex.usage.cached_prompt)),
    ];
    if ex.usage.cache_write.is_some_and(|w| w.tokens > 0) {
        parts.push(format!("cache write {}", fmt::tokens(ex.usage.cache_write)));
    }
    parts.push(format!("completion {}", fmt::tokens(ex.usage.completion)));
    if ex.usage.reasoning.is_some() {
        parts.push(format!(
            "of which reasoning {}",
            fmt::tokens(ex.usage.reasoning)
        ));
    }
    parts.extend([
        format!("decode {}", fmt::rate(ex.decode_tokens_per_sec())),
        format!("e2e {}", fmt::rate(ex.e2e_tokens_per_sec())),
        conn,
        match ex.cost {
            Some(c) => format!("cost {} ({prices})", c.total),
            None => format!("cost {}", fmt::cost(None)),
        },
    ]);
    if ex.cost.is_some_and(|c| c.cached_unreported) {
        parts.push("(cache unreported: cost is an upper bound)".into());
    }
    if retries > 0 {
        parts.push(format!("{retries} retries"));
    }
    parts.join(" · ")
}

/// One document page by page, mentions marked.
pub fn document(d: &DocumentView, color: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({}, {} pages)",
        inert_text(&d.path),
        d.kind,
        d.pages.len()
    );
    if let Some(m) = &d.metadata {
        let _ = writeln!(out, "metadata: {}", inert_text(&m.to_string()));
    }
    for s in &d.sections {
        let _ = writeln!(
            out,
            "§ {} (p. {}–{}): {}",
            inert_text(&s.title),
            s.pages.0,
            s.pages.1,
            inert_text(s.summary.as_deref().unwrap_or(&s.state))
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
                        inert_text(s.text),
                        inert_text(&m.kind)
                    );
                }
                Some(m) => {
                    let _ = write!(out, "[{}]{{{}}}", inert_text(s.text), inert_text(&m.kind));
                }
                None => out.push_str(&inert_text(s.text)),
            }
        }
        out.push('\n');
        let lost: Vec<String> = p
            .mentions
            .iter()
            .filter(|m| m.start.is_none())
            .map(|m| format!("{} ({})", inert_text(&m.text), inert_text(&m.kind)))
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
        assert_eq!(
            inert_text("a\x1b[31mb\u{9b}c\nd"),
            "a\\u{1b}[31mb\\u{9b}c\nd"
        );
        assert_eq!(sparkline(&[0.0, 1.0, 2.0]), "▁▅█");
    }
}
