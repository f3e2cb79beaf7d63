//! PDF through poppler (Debian's `poppler-utils`), run as a child process.
//!
//! Why not in-process: we measured on `shared/data/pdf` — the pure-Rust `pdf-extract` panicked on
//! 3 of 8 real papers (its CMap parser) and took 2.2× pdftotext's time on the longest manual;
//! poppler read all of them. Bindings (`poppler-glib`) would put a C parser in our process, where
//! a hostile file could crash or hang the whole run. A child process gives poppler's text with
//! a hard time bound and crash isolation: when it dies mid-document, the pages it finished are
//! kept, the failing page is recorded with the reason, and extraction resumes after it.
//!
//! Then, per page: hyphenation at line ends joined, headers and footers that repeat on most
//! pages removed (and listed), and numbered headings (`2.1 Title`) found.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Extracted, Limits};

/// The hint shown when poppler is missing.
pub const POPPLER_HINT: &str = "PDF support runs poppler's `pdfinfo` and `pdftotext`: install them (Debian/Ubuntu: `apt-get install poppler-utils`, Fedora: `dnf install poppler-utils`, Arch: `pacman -S poppler`, macOS: `brew install poppler`; in a clone of pagemill, `./dev setup --tests` does it)";

pub(crate) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, String> {
    let (pages, info) = page_count(bytes)?;
    let mut raw: Vec<(String, Option<String>)> = Vec::with_capacity(pages as usize);
    let mut next = 1u32;
    let mut restarts = 0;
    while next <= pages {
        let budget = Duration::from_secs_f64(
            limits.pdf_base_secs + limits.pdf_secs_per_page * f64::from(pages - next + 1),
        );
        let run = run_tool(
            "pdftotext",
            &[
                "-q",
                "-enc",
                "UTF-8",
                "-f",
                &next.to_string(),
                "-l",
                &pages.to_string(),
                "-",
                "-",
            ],
            bytes,
            budget,
        )?;
        let mut texts: Vec<&str> = run.stdout.split('\u{c}').collect();
        // Every finished page ends with a form feed; what follows the last one is unfinished.
        let unfinished = texts.pop().unwrap_or("");
        for t in &texts {
            raw.push(((*t).to_owned(), None));
        }
        next += texts.len() as u32;
        if run.ok || next > pages {
            if next <= pages {
                // A clean exit that produced fewer pages than the file declares.
                for n in next..=pages {
                    raw.push((
                        String::new(),
                        Some(format!("page {n} produced no text (poppler stopped early)")),
                    ));
                }
            }
            break;
        }
        // The tool died or timed out on page `next`: keep what it started, record why, go on.
        let why = run.failure.unwrap_or_else(|| "extraction failed".into());
        raw.push((unfinished.to_owned(), Some(format!("page {next}: {why}"))));
        next += 1;
        restarts += 1;
        if restarts > 20 {
            for n in next..=pages {
                raw.push((
                    String::new(),
                    Some(format!(
                        "page {n} not tried: too many failures in this file"
                    )),
                ));
            }
            break;
        }
    }
    let texts: Vec<String> = raw
        .iter()
        .map(|(t, _)| join_hyphens(&super::text::normalize(t)))
        .collect();
    let (texts, furniture) = strip_furniture(&texts);
    let mut ex = Extracted::default();
    for (page, text) in texts.iter().enumerate() {
        ex.headings.extend(
            super::headings::numbered_headings(text)
                .into_iter()
                .map(|(off, t, l)| (page, off, t, l)),
        );
    }
    ex.pages = texts
        .into_iter()
        .zip(raw.into_iter().map(|(_, f)| f))
        .collect();
    ex.furniture = furniture;
    // The first page's layout, for title and author candidates; a failure costs only those.
    let layout = run_tool(
        "pdftotext",
        &[
            "-q",
            "-enc",
            "UTF-8",
            "-bbox-layout",
            "-f",
            "1",
            "-l",
            "1",
            "-",
            "-",
        ],
        bytes,
        Duration::from_secs_f64(limits.pdf_base_secs + limits.pdf_secs_per_page),
    )
    .ok()
    .filter(|r| r.ok)
    .map(|r| r.stdout)
    .unwrap_or_default();
    ex.hints = super::hints::from_pdf(&info, &layout);
    Ok(ex)
}

/// Pages the file declares, from `pdfinfo`, and all it said.
fn page_count(bytes: &[u8]) -> Result<(u32, String), String> {
    let run = run_tool("pdfinfo", &["-"], bytes, Duration::from_secs(30))?;
    if !run.ok {
        let why = run
            .stderr
            .lines()
            .next()
            .unwrap_or("unreadable")
            .trim()
            .to_owned();
        return Err(format!("not a readable PDF: {why}"));
    }
    let pages = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| "not a readable PDF: no page count".to_owned())?;
    Ok((pages, run.stdout))
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    failure: Option<String>,
}

/// Runs a poppler tool on `input` (stdin) within `budget`; kills it when the budget is spent.
fn run_tool(tool: &str, args: &[&str], input: &[u8], budget: Duration) -> Result<Run, String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("`{tool}` not found. {POPPLER_HINT}"),
            _ => format!("cannot run `{tool}`: {e}"),
        })?;
    // Feed stdin and drain stdout/stderr on their own threads, so no pipe fills and blocks.
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(&input);
        }
    });
    let mut out = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_end(&mut buf);
        }
        buf
    });
    let mut err = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = e.take(64 * 1024).read_to_end(&mut buf);
        }
        buf
    });
    let deadline = Instant::now() + budget;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => return Err(format!("waiting for `{tool}`: {e}")),
        }
    };
    let _ = feeder.join();
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let (ok, failure) = match status {
        None => (
            false,
            Some(format!("timed out after {:.0}s", budget.as_secs_f64())),
        ),
        Some(s) if s.success() => (true, None),
        Some(s) => {
            #[cfg(unix)]
            let signal = std::os::unix::process::ExitStatusExt::signal(&s);
            #[cfg(not(unix))]
            let signal: Option<i32> = None;
            let what = match signal {
                Some(sig) => format!("poppler crashed (signal {sig})"),
                None => format!(
                    "poppler failed ({s}): {}",
                    stderr.lines().next().unwrap_or("").trim()
                ),
            };
            (false, Some(what))
        }
    };
    Ok(Run {
        ok,
        stdout,
        stderr,
        failure,
    })
}

/// Joins words hyphenated at a line end: `exam-\nple` → `example` (only letter-hyphen-lowercase,
/// so `well-\nKnown` and `x-\n2` stay).
pub fn join_hyphens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("-\n") {
        let before = rest[..i].chars().next_back();
        let after = rest[i + 2..].chars().next();
        out.push_str(&rest[..i]);
        if before.is_some_and(char::is_alphabetic) && after.is_some_and(char::is_lowercase) {
            // Joined: drop the hyphen and the line end.
        } else {
            out.push_str("-\n");
        }
        rest = &rest[i + 2..];
    }
    out.push_str(rest);
    out
}

fn shape(line: &str) -> String {
    let mut s = String::new();
    let mut in_digits = false;
    for c in line.trim().chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                s.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            if !c.is_whitespace() || !s.ends_with(' ') {
                s.push(if c.is_whitespace() { ' ' } else { c });
            }
        }
    }
    s
}

/// Removes lines that open or close most pages (running headers, footers, page numbers);
/// returns the new texts and the removed lines of each page.
pub fn strip_furniture(pages: &[String]) -> (Vec<String>, Vec<Vec<String>>) {
    const EDGE: usize = 2;
    let edges = |t: &str| -> Vec<(usize, String)> {
        let lines: Vec<(usize, &str)> = t
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let n = lines.len();
        lines
            .iter()
            .enumerate()
            .filter(|(k, _)| *k < EDGE || *k + EDGE >= n)
            .map(|(_, (i, l))| (*i, shape(l)))
            .collect()
    };
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let per_page: Vec<Vec<(usize, String)>> = pages.iter().map(|p| edges(p)).collect();
    for e in &per_page {
        let mut seen = std::collections::HashSet::new();
        for (_, s) in e {
            if seen.insert(s) {
                *counts.entry(s.clone()).or_default() += 1;
            }
        }
    }
    let threshold = (pages.len() / 2).max(3);
    let repeated = |s: &String| {
        pages.len() >= 4
            && counts.get(s).is_some_and(|&c| c >= threshold)
            && s.chars().count() <= 120
    };
    let mut texts = Vec::with_capacity(pages.len());
    let mut removed = Vec::with_capacity(pages.len());
    for (p, e) in pages.iter().zip(&per_page) {
        let drop: std::collections::HashSet<usize> = e
            .iter()
            .filter(|(_, s)| repeated(s))
            .map(|(i, _)| *i)
            .collect();
        let mut kept = Vec::new();
        let mut gone = Vec::new();
        for (i, line) in p.lines().enumerate() {
            if drop.contains(&i) {
                gone.push(line.trim().to_owned());
            } else {
                kept.push(line);
            }
        }
        texts.push(kept.join("\n").trim_matches('\n').to_owned());
        removed.push(gone);
    }
    (texts, removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyphens_at_line_ends_join_only_inside_words() {
        assert_eq!(join_hyphens("regres-\nsion model"), "regression model");
        assert_eq!(join_hyphens("well-\nKnown"), "well-\nKnown");
        assert_eq!(join_hyphens("pages 3-\n4"), "pages 3-\n4");
        assert_eq!(join_hyphens("no hyphen\nhere"), "no hyphen\nhere");
    }

    #[test]
    fn running_headers_and_page_numbers_are_removed_and_listed() {
        let pages: Vec<String> = (1..=6)
                        .map(|n| {
                let words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"][n % 6];
                format!("Journal of Statistical Software\nBody text about {words} goes here.\nMore on {words}.\n{n}")
            })
            .collect();
        let (texts, removed) = strip_furniture(&pages);
        assert_eq!(texts[2], "Body text about delta goes here.\nMore on delta.");
        assert_eq!(removed[2], ["Journal of Statistical Software", "3"]);
    }
}
