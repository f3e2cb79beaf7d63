//! Costs known out of the box: the price table, where each price comes from, `prices import`.

use serde_json::Value;

use crate::common::{data, pagemill, repo, tempdir};

fn json(out: std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_first_run_on_sim_shows_costs_and_says_they_are_simulated() {
    let dir = tempdir("prices-sim");
    let s = json(
        pagemill(&dir)
            .args(["run"])
            .arg(repo("examples/docs"))
            .args(["-e", "sim", "-q", "--format", "json"])
            .output()
            .unwrap(),
    );
    let cost = s["cost_usd"].as_f64().expect("a cost, not unknown");
    assert!(cost > 0.0, "{s}");
    assert_eq!(s["prices_from"]["sim"]["from"], "simulated");
    assert_eq!(s["prices_from"]["sim"]["like"], "gpt-4o-mini");
    // The report says where the run's prices came from too.
    let r = json(
        pagemill(&dir)
            .args(["report", "pagemill-out/ledger.sqlite", "--format", "json"])
            .output()
            .unwrap(),
    );
    let from = r["runs"]["runs"][0]["prices_from"][0].as_str().unwrap();
    assert!(
        from.starts_with("sim: simulated: priced like gpt-4o-mini"),
        "{from}"
    );
    // The quote says the same, before anything runs.
    let q = json(
        pagemill(&dir)
            .args(["quote"])
            .arg(repo("examples/docs"))
            .args(["-e", "sim", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert!(q[0]["cost_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(q[0]["prices_from"]["from"], "simulated");
}

#[test]
fn a_table_model_is_priced_configuration_wins_and_a_custom_server_stays_unknown() {
    let dir = tempdir("prices-config");
    std::fs::write(
        dir.join("pagemill.toml"),
        "[[endpoint]]\nname = \"mini\"\nbase_url = \"https://api.openai.com/v1\"\nmodel = \"gpt-4o-mini-2024-07-18\"\n\n\
         [[endpoint]]\nname = \"mine\"\nbase_url = \"https://api.openai.com/v1\"\nmodel = \"gpt-4o\"\nprices = { input = 1.0, output = 2.0 }\n\n\
         [[endpoint]]\nname = \"vllm\"\nbase_url = \"http://10.1.2.3:8000/v1\"\nmodel = \"gpt-4o-mini\"\n",
    )
    .unwrap();
    let v = json(
        pagemill(&dir)
            .args(["prices", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(v[0]["prices_from"]["from"], "table");
    assert_eq!(v[0]["prices_from"]["model"], "gpt-4o-mini");
    assert_eq!(v[0]["prices"]["input"], 0.15);
    assert_eq!(v[1]["prices_from"]["from"], "config");
    assert_eq!(v[1]["prices"]["input"], 1.0);
    assert_eq!(v[2]["prices_from"]["from"], "unknown");
    assert_eq!(
        v[2]["prices"]["input"],
        Value::Null,
        "unknown stays unknown, never 0"
    );
    let text = pagemill(&dir).args(["prices"]).output().unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("price table: gpt-4o-mini at openai, as of"),
        "{text}"
    );
    assert!(text.contains("$0.075"), "cached input, exact: {text}");
}

#[test]
fn prices_lists_a_models_entries_and_refuses_an_unknown_one() {
    let dir = tempdir("prices-lookup");
    let out = pagemill(&dir).args(["prices", "claude"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("claude-3-5-haiku") && text.contains("$3.75"),
        "{text}"
    );
    let out = pagemill(&dir)
        .args(["prices", "no-such-model"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prices import"));
}

#[test]
fn an_imported_litellm_file_is_consulted_before_the_shipped_table() {
    let dir = tempdir("prices-import");
    let out = pagemill(&dir)
        .args(["prices", "import"])
        .arg(data("prices/litellm-sample.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imported 3 chat model(s)"), "{err}");
    // pagemill() points XDG_CONFIG_HOME at `.no-user-config` under the directory.
    let table = dir.join(".no-user-config/pagemill/prices.toml");
    assert!(table.is_file());
    std::fs::write(
        dir.join("pagemill.toml"),
        "[[endpoint]]\nname = \"mini\"\nbase_url = \"https://api.openai.com/v1\"\nmodel = \"gpt-4o-mini\"\n",
    )
    .unwrap();
    let v = json(
        pagemill(&dir)
            .args(["prices", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        v[0]["prices"]["input"], 0.2,
        "the imported price, not pagemill's 0.15"
    );
    assert_eq!(v[0]["prices_from"]["imported"], true);
    let groq = json(
        pagemill(&dir)
            .args(["prices", "llama-3.1-8b-instant", "--format", "json"])
            .output()
            .unwrap(),
    );
    assert!(
        groq.as_array()
            .unwrap()
            .iter()
            .any(|e| e["provider"] == "groq" && e["model"] == "llama-3.1-8b-instant"),
        "the routing prefix is the provider: {groq}"
    );
}
