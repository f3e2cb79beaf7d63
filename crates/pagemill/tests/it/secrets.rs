//! Secrets stay secret: a provider that echoes the API key in its 401 — in any form, for keys
//! of any shape — leaves no trace of it in the terminal, the `-vv` log, the ledger, the
//! per-document JSON, the run summary, or the report (HTML and terminal).

use std::path::Path;

use pagemill_sim::script;

use crate::common::{pagemill, tempdir};

/// Keys of several shapes: OpenAI-like, an underscore prefix with no digits (the shape net
/// misses it), letters only, and punctuation that JSON escapes.
const KEYS: [&str; 4] = [
    "sk-test-Zq9xK2mP4vL8wN7b",
    "gsk_live_abcdefghijklmnopq",
    "AbCdEfGhIjKlMnOpQrStUvWx",
    "k3y:with=odd\"chars/and\\more",
];

/// The ways providers echo a key: after `=`, quoted after a colon, inside JSON, after Bearer.
fn echo(key: &str, n: u64) -> String {
    match n % 4 {
        0 => format!("invalid credentials key={key}"),
        1 => format!("Incorrect API key provided: '{key}'. Find yours in your account."),
        2 => format!("{{\"api_key\":\"{key}\",\"valid\":false}}"),
        _ => format!("auth failed for Bearer {key}"),
    }
}

fn all_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_by_a_provider_is_kept_nowhere() {
    for (i, key) in KEYS.iter().enumerate() {
        let server = pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), |req| {
            let sent = req
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ")
                .to_owned();
            script::error(401, "invalid_request_error", &echo(&sent, req.index))
        })
        .await
        .unwrap();
        let dir = tempdir(&format!("secrets-{i}"));
        std::fs::write(
            dir.join("memo.md"),
            "# Memo\n\nHalvorsen Marine Supplies AS ships to Aberdeen.\n\n## Terms\n\nPayment within 30 days.\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("p.toml"),
            format!(
                "[[endpoint]]\nname = \"echo\"\nbase_url = \"{}\"\nmodel = \"m\"\napi_key_env = \"ECHO_KEY\"\n",
                server.base_url()
            ),
        )
        .unwrap();
        let run = pagemill(&dir)
            .env("ECHO_KEY", key)
            .args(["--config", "p.toml", "-vv", "run", "memo.md", "-o", "out"])
            .output()
            .unwrap();
        assert_eq!(
            run.status.code(),
            Some(4),
            "the endpoint refused every request"
        );
        let html = pagemill(&dir)
            .args(["report", "out/ledger.sqlite", "-o", "report.html"])
            .output()
            .unwrap();
        assert!(
            html.status.success(),
            "{}",
            String::from_utf8_lossy(&html.stderr)
        );
        let terminal = pagemill(&dir)
            .args(["report", "out/ledger.sqlite", "--terminal"])
            .output()
            .unwrap();
        let mut seen = vec![
            ("run stdout".to_owned(), run.stdout),
            ("run stderr (-vv)".to_owned(), run.stderr),
            ("report --terminal".to_owned(), terminal.stdout),
        ];
        all_files(&dir.join("out"), &mut seen);
        seen.push((
            "report.html".into(),
            std::fs::read(dir.join("report.html")).unwrap(),
        ));
        let escaped = serde_json::to_string(key).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        for (place, bytes) in &seen {
            assert!(!contains(bytes, key), "{key} in {place}");
            assert!(!contains(bytes, escaped), "{key} (JSON-escaped) in {place}");
        }
        // Not vacuous: the provider's messages were kept, with the key cut out.
        let ledger = &seen
            .iter()
            .find(|(p, _)| p.ends_with("ledger.sqlite"))
            .unwrap()
            .1;
        assert!(
            contains(ledger, "invalid credentials key=<redacted>"),
            "{key}"
        );
    }
}
