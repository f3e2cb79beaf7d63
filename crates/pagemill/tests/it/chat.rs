//! `pagemill chat`, run as a user runs it.

use pagemill_sim::{Script, script};

use crate::common::{pagemill, tempdir};

#[test]
fn chat_with_nothing_configured_uses_the_embedded_local_model() {
    let dir = tempdir("chat-default");
    let out = pagemill(&dir)
        .args([
            "chat",
            "--max-tokens",
            "16",
            "What is the capital of France? Answer in one word.",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Greedy by default on the tiny model: at llama.cpp's default temperature of 0.8 it
    // answered "the United States".
    assert!(stdout.contains("Paris"), "{stdout:?}");
    assert!(
        stderr.contains("using the embedded local model"),
        "{stderr}"
    );
    let line = stderr.lines().last().unwrap();
    for part in [
        "ttft ",
        "total ",
        "(server)",
        "cached 0 (server)",
        "decode ",
        "new connection",
        "(local model: no per-token charge)",
    ] {
        assert!(line.contains(part), "missing `{part}` in: {line}");
    }
}

#[test]
fn chat_with_sim_uses_the_in_process_simulator() {
    let dir = tempdir("chat-sim");
    let out = pagemill(&dir)
        .args(["chat", "-e", "sim", "--max-tokens", "6", "one two three"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answer = stdout.trim_end_matches('\n');
    assert_eq!(
        pagemill_client::Tokenizer::o200k().count(answer),
        6,
        "{answer:?}"
    );
    let line = stderr.lines().last().unwrap();
    for part in ["prompt 10 (server)", "completion 6 (server)"] {
        assert!(line.contains(part), "missing `{part}` in: {line}");
    }
}

#[test]
fn chat_json_has_the_whole_record() {
    let dir = tempdir("chat-json");
    let out = pagemill(&dir)
        .args([
            "chat",
            "--format",
            "json",
            "--endpoint",
            "sim",
            "--max-tokens",
            "3",
            "hello",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let content = v["exchange"]["content"].as_str().unwrap();
    assert_eq!(pagemill_client::Tokenizer::o200k().count(content), 3);
    assert_eq!(v["exchange"]["usage"]["completion"]["tokens"], 3);
    assert_eq!(v["exchange"]["usage"]["completion"]["source"], "server");
    assert!(v["ttft_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(v["exchange"]["timeline"]["connection"]["reused"], false);
    // The built-in simulator is priced like a real model, and says so.
    assert!(v["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(v["prices_from"]["from"], "simulated");
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_uses_the_configured_endpoint_prices_and_hides_the_key() {
    let key = "sk-it-0123456789abcdefghijklmnopqrstuv";
    let server = Script::new(vec![
        script::completion("priced", Some(script::usage_openai(1_000, 10, Some(500)))),
        script::error(
            401,
            "invalid_request_error",
            &format!("Incorrect API key provided: {key}"),
        ),
    ])
    .start()
    .await
    .unwrap();
    let dir = tempdir("chat-config");
    std::fs::write(
        dir.join("pagemill.toml"),
        format!(
            "[[endpoint]]\nname = \"scripted\"\nbase_url = \"{}\"\nmodel = \"sim-model\"\n\
             api_key_env = \"IT_KEY\"\nprices = {{ input = 1.0, cached_input = 0.5, output = 4.0 }}\n",
            server.base_url()
        ),
    )
    .unwrap();
    let run = |dir: std::path::PathBuf| {
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            pagemill(&dir)
                .env("IT_KEY", key)
                .args(["chat", "--no-stream", "q"])
                .output()
                .unwrap()
        })
    };
    let ok = run(dir.clone()).await.unwrap();
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "priced");
    // 500 × $1 + 500 × $0.5 + 10 × $4 per 1M = $0.00079
    assert!(stderr.contains("cost $0.000790"), "{stderr}");
    assert!(stderr.contains("cached 500 (server)"), "{stderr}");

    let bad = run(dir.clone()).await.unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert_eq!(bad.status.code(), Some(4), "the endpoint refused");
    assert!(all.contains("permanent"), "{all}");
    assert!(!all.contains("0123456789abcdef"), "key leaked: {all}");

    // A missing key is a clear error with a hint, before anything is sent.
    let missing = pagemill(&dir).args(["chat", "q"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        missing.status.code(),
        Some(4),
        "the endpoint cannot be used"
    );
    assert!(stderr.contains("environment variable `IT_KEY`"), "{stderr}");
    assert!(stderr.contains("hint: export IT_KEY="), "{stderr}");
}
