//! What people read, pinned: the help of every command and the tables of commands whose
//! figures are deterministic (quote, ingest), as insta snapshots in `snapshots/`. A change to
//! wording, a column or a number format shows up here as a diff to review
//! (`cargo insta review`, or `INSTA_UPDATE=always` to accept).

use crate::common::{pagemill, repo};

/// `pagemill ARGS` in the repository's root (so paths print as `examples/docs/…`); stdout.
fn stdout(args: &[&str]) -> String {
    let out = pagemill(&repo("")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_texts() {
    for command in [
        "",
        "run",
        "quote",
        "ingest",
        "bench",
        "eval",
        "report",
        "chat",
        "doctor",
        "sim",
        "serve",
        "model",
        "completions",
    ] {
        let args: Vec<&str> = [command, "--help"]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let name = if command.is_empty() {
            "help".to_owned()
        } else {
            format!("help-{command}")
        };
        insta::assert_snapshot!(name, stdout(&args));
    }
}

#[test]
fn the_quote_table() {
    insta::assert_snapshot!(stdout(&[
        "quote",
        "examples/docs",
        "-e",
        "sim",
        "--pages-per-day",
        "10000",
    ]));
}

#[test]
fn the_ingest_listing() {
    insta::assert_snapshot!(stdout(&["ingest", "examples/docs", "--all-pages"]));
}
