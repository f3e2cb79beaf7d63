//! Formatting of durations, rates and money for terminal output.

use std::time::Duration;

use pagemill_client::{Count, Money};

/// `12.3 ms`, `1.24 s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

/// A duration that may be unknown.
pub fn opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), duration)
}

/// `1234 (server)`, or `unreported`.
pub fn count(c: Option<Count>) -> String {
    c.map_or_else(
        || "unreported".to_owned(),
        |c| format!("{} ({})", c.tokens, c.source),
    )
}

/// A cost, or `unknown (no prices)`.
pub fn cost(c: Option<Money>) -> String {
    c.map_or_else(|| "unknown (no prices)".to_owned(), |m| m.to_string())
}

/// Tokens per second, or `n/a`.
pub fn rate(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite())
        .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1} tok/s"))
}

/// Dollars as exact money (`$0.000228`), or `unknown` (what to say then is the caller's).
pub fn usd(x: Option<f64>, unknown: &str) -> String {
    x.map_or_else(
        || unknown.to_owned(),
        |v| Money((v * 1e12).round() as u64).to_string(),
    )
}

/// Fits `table` to the width of the terminal standard output is (or to `$COLUMNS`, when set,
/// for output that is not a terminal): columns wrap instead of running past the edge. With
/// neither, the table keeps its natural width (a file or a pipe has no edge).
pub fn fit(table: &mut comfy_table::Table) {
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

/// `s` made inert for a terminal: control characters (escape sequences included) shown as
/// escapes (`\u{1b}`), so a file name cannot move the cursor, recolour or retitle the
/// terminal. Line breaks and tabs too: a name is one line.
pub fn inert(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A skipped input and why, made inert, its path said once: reasons that already name the
/// file ("cannot read `x.pdf`: …") are not prefixed with it again.
pub fn skipped(path: &std::path::Path, why: &str) -> String {
    let p = path.display().to_string();
    if p.is_empty() || why.contains(&p) {
        inert(why)
    } else {
        format!("{}: {}", inert(&p), inert(why))
    }
}

#[cfg(test)]
mod inert_tests {
    use super::{inert, skipped};

    #[test]
    fn a_skipped_file_is_named_once() {
        let p = std::path::Path::new("locked.txt");
        assert_eq!(
            skipped(p, "cannot read `locked.txt`: Permission denied"),
            "cannot read `locked.txt`: Permission denied"
        );
        assert_eq!(skipped(p, "binary data"), "locked.txt: binary data");
        assert_eq!(
            skipped(std::path::Path::new(""), "`x`: no such file"),
            "`x`: no such file"
        );
    }

    #[test]
    fn control_characters_are_shown_not_run() {
        assert_eq!(inert("a\u{1b}[2Jb\u{7}.txt"), "a\\u{1b}[2Jb\\u{7}.txt");
        assert_eq!(inert("two\nlines"), "two\\nlines");
        assert_eq!(inert("Kraków.pdf"), "Kraków.pdf");
    }
}
