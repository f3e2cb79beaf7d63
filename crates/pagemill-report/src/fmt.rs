//! How every view writes a number: one formatter for dollars, counts, shares, latencies and
//! rates, used by the terminal tables of `run`, `quote`, `bench`, `eval` and `report` and by the
//! HTML page, so the same figure reads the same everywhere. Text from documents, files and
//! servers goes through [`inert`] before it reaches a terminal.

use std::time::Duration;

use pagemill_bench::schedule::Load;
use pagemill_client::{Count, Money};

/// What a missing figure shows.
pub const NONE: &str = "–";

/// US dollars, exact to the picodollar as money is counted: `$0.000228`, `$12.3400`.
pub fn usd(v: f64) -> String {
    Money((v.max(0.0) * 1e12).round() as u64).to_string()
}

/// A price per 1M tokens, as providers write it: `$0.075`, `$2.50`, `$10.00` (at least cents,
/// every digit the price has).
pub fn price(v: f64) -> String {
    let s = format!("{v:.6}");
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let frac = frac.trim_end_matches('0');
    format!("${whole}.{frac:0<2}")
}

/// Dollars that may be unknown (no prices): `unknown` says so.
pub fn usd_or(v: Option<f64>, unknown: &str) -> String {
    v.map_or_else(|| unknown.to_owned(), usd)
}

/// A cost that may be unknown, as money: `$0.000228`, or `unknown (no prices)`.
pub fn cost(c: Option<Money>) -> String {
    c.map_or_else(|| "unknown (no prices)".to_owned(), |m| m.to_string())
}

/// A count with thousands separators: `12,345`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// About three significant digits, without trailing zeros: `0.42`, `12.5`, `340`, `12,345`.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        return NONE.into();
    }
    if a >= 1000.0 {
        let s = count(a.round() as u64);
        return if v < 0.0 { format!("-{s}") } else { s };
    }
    if a != 0.0 && a < 0.01 {
        return format!("{v:.2e}");
    }
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A score between 0 and 1 (F1, ROUGE, a metadata field's score) to two places: `0.87`.
pub fn score(v: f64) -> String {
    format!("{v:.2}")
}

/// A signed difference: `+0.12`, `−3.4` (a true minus sign).
pub fn signed(v: f64) -> String {
    format!("{}{}", if v < 0.0 { "−" } else { "+" }, num(v.abs()))
}

/// A share as a percentage: `42.0%`.
pub fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// Milliseconds with their unit: `0.85 ms`, `349 ms`, `2,400 ms`; seconds from ten seconds on
/// (`12.3 s`).
pub fn ms(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} s", v / 1e3)
    } else {
        format!("{} ms", num(v))
    }
}

/// A duration: `12.3 ms`, `1.24 s` (the client's own formatter, so probe details and tables
/// agree).
pub use pagemill_client::clock::human as duration;

/// A duration that may be unknown.
pub fn opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "n/a".to_owned(), duration)
}

/// A token count with where it came from: `1234 (server)`, or `unreported`.
pub fn tokens(c: Option<Count>) -> String {
    c.map_or_else(
        || "unreported".to_owned(),
        |c| format!("{} ({})", c.tokens, c.source),
    )
}

/// Tokens per second, or `n/a`.
pub fn rate(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite())
        .map_or_else(|| "n/a".to_owned(), |r| format!("{r:.1} tok/s"))
}

/// A value formatted with `f`, or [`NONE`].
pub fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| NONE.to_owned(), f)
}

/// Names a load level: `concurrency 4`, `2 req/s`, `ramp 1→8 req/s`.
pub fn load(l: &Load) -> String {
    match *l {
        Load::Concurrency { n } => format!("concurrency {n}"),
        Load::Rate { per_sec, .. } => format!("{} req/s", num(per_sec)),
        Load::Ramp { from, to, .. } => format!("ramp {}→{} req/s", num(from), num(to)),
    }
}

/// `s` made inert for a terminal: control characters (escape sequences included) shown as
/// escapes (`\u{1b}`), so a file name or a server's message cannot move the cursor, recolour
/// or retitle the terminal. Line breaks and tabs too: what this shows is one line.
pub fn inert(s: &str) -> String {
    inert_keeping(s, &[])
}

/// [`inert`] for text of many lines (document pages): line breaks and tabs are kept.
pub fn inert_text(s: &str) -> String {
    inert_keeping(s, &['\n', '\t'])
}

fn inert_keeping(s: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && !keep.contains(&c) {
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
mod tests {
    use super::*;

    #[test]
    fn numbers_read_the_same_everywhere() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(num(0.4200), "0.42");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(-1234.0), "-1,234");
        assert_eq!(num(0.0012), "1.20e-3");
        assert_eq!(num(f64::NAN), NONE);
        assert_eq!(signed(-3.4), "−3.4");
        assert_eq!(pct(0.4204), "42.0%");
        assert_eq!(usd(0.000228), "$0.000228");
        assert_eq!(usd(12.34), "$12.3400");
        assert_eq!(usd_or(None, "unknown"), "unknown");
        assert_eq!(price(0.075), "$0.075");
        assert_eq!(price(2.5), "$2.50");
        assert_eq!(price(10.0), "$10.00");
        assert_eq!(price(0.005), "$0.005");
        assert_eq!(ms(349.4), "349 ms");
        assert_eq!(ms(0.85), "0.85 ms");
        assert_eq!(ms(12_345.0), "12.3 s");
        assert_eq!(duration(Duration::from_millis(1240)), "1.24 s");
        assert_eq!(rate(Some(f64::INFINITY)), "n/a");
        assert_eq!(opt(None, pct), NONE);
    }

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
        assert_eq!(inert_text("two\nlines\u{1b}]0;x"), "two\nlines\\u{1b}]0;x");
        assert_eq!(inert("Kraków.pdf"), "Kraków.pdf");
    }
}
