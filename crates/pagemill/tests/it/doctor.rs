//! `pagemill doctor` against a server that refuses some parameters and reports no usage.

use pagemill_client::Endpoint;
use pagemill_client::probe::{Status, check as check_endpoint};
use pagemill_sim::script::{self, Framing};
use pagemill_sim::serve;

use crate::common::{pagemill, tempdir, write_config};

/// A picky server: no json_schema, no ignore_eos, no stream_options, no usage anywhere.
async fn picky() -> pagemill_sim::ServerHandle {
    serve("127.0.0.1:0".parse().unwrap(), |req| {
        if req.path.ends_with("/models") {
            return script::models_reply(&["other-model".into()]);
        }
        let body = req.json();
        let refuse = |what: &str| {
            script::error(
                400,
                "invalid_request_error",
                &format!("unsupported parameter: {what}"),
            )
        };
        if body["response_format"]["type"] == "json_schema" {
            return refuse("response_format.json_schema");
        }
        if body.get("ignore_eos").is_some() {
            return refuse("ignore_eos");
        }
        if body.get("stream_options").is_some() {
            return refuse("stream_options");
        }
        if body["stream"] == true {
            return script::stream(&["OK"], None, std::time::Duration::ZERO, Framing::default());
        }
        script::completion("OK", None)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn doctor_reports_what_a_picky_endpoint_refuses() {
    let server = picky().await;
    let report = check_endpoint(Endpoint::new("picky", server.base_url(), "sim-model")).await;
    let s = |name| report.status_of(name).unwrap();
    assert_eq!(s("reachable"), Status::Ok);
    assert_eq!(s("model listed"), Status::Warn);
    assert_eq!(s("streaming"), Status::Ok, "works without stream_options");
    assert_eq!(s("usage in stream"), Status::Warn);
    assert_eq!(s("cached-token field"), Status::Skipped);
    assert_eq!(s("param response_format json_object"), Status::Ok);
    assert_eq!(s("param response_format json_schema"), Status::Warn);
    assert_eq!(s("param ignore_eos"), Status::Warn);
    assert_eq!(s("param seed"), Status::Ok);
    assert_eq!(s("param stream_options"), Status::Warn);
    let detail = &report
        .checks
        .iter()
        .find(|c| c.name == "param ignore_eos")
        .unwrap()
        .detail;
    assert!(
        detail.contains("HTTP 400") && detail.contains("ignore_eos"),
        "{detail}"
    );
}

#[tokio::test]
async fn doctor_fails_an_unreachable_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = check_endpoint(Endpoint::new(
        "down",
        format!("http://127.0.0.1:{port}/v1"),
        "m",
    ))
    .await;
    assert_eq!(report.status_of("reachable"), Some(Status::Fail));
    // What the endpoint speaks, then nothing past the failure.
    assert_eq!(report.checks.len(), 2);
    assert_eq!(report.checks[0].name, "dialect");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_cli_json_and_table_over_two_endpoints() {
    let server = picky().await;
    let dir = tempdir("doctor");
    write_config(&dir, "picky", &server.base_url(), "");
    let d = dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        pagemill(&d)
            .args(["doctor", "--format", "json", "-e", "picky", "-e", "sim"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["picky", "sim"]);
    let sim_checks = v["endpoints"][1]["checks"].as_array().unwrap();
    assert!(
        sim_checks.iter().all(|c| c["status"] == "ok"),
        "{sim_checks:?}"
    );

    let d = dir.clone();
    let table =
        tokio::task::spawn_blocking(move || pagemill(&d).args(["doctor"]).output().unwrap())
            .await
            .unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("param ignore_eos") && text.contains("warn: rejected (HTTP 400)"),
        "{text}"
    );
}

#[test]
fn per_request_schemas_are_advised_for_servers_that_compile_grammars() {
    use pagemill_client::probe::{Status, per_request_schemas};
    let mut ep = pagemill_client::Endpoint::new("llama", "http://127.0.0.1:1/v1", "m");
    let (status, detail) = per_request_schemas(&ep, Some("llamacpp"));
    assert_eq!(status, Status::Warn);
    assert!(detail.contains("per_request_schema = true"), "{detail}");
    ep.per_request_schema = true;
    assert_eq!(per_request_schemas(&ep, Some("vllm")).0, Status::Ok);
    ep.per_request_schema = false;
    let (status, detail) = per_request_schemas(&ep, Some("openai"));
    assert_eq!(status, Status::Ok);
    assert!(detail.starts_with("off"), "{detail}");
}
