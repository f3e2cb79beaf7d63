//! `pagemill run` and `pagemill quote` on the real documents of `testdata/`, against the
//! simulator: results and reasons for every page, resumption after kill -9 without paying
//! twice, faults and throttling without loss, packing, re-asks, fallback, batch mode.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use pagemill_pipeline::store::{Ledger, Store};
use pagemill_sim::{Profile, Sim};
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde_json::Value;

use crate::common::data;
use crate::common::{config, pagemill, tempdir};

/// Runs `pagemill --config CONFIG run INPUTS -o OUT ARGS --format json -q`.
pub(crate) fn run(
    dir: &Path,
    config: &Path,
    inputs: &[PathBuf],
    out: &str,
    args: &[&str],
) -> Output {
    let mut cmd = pagemill(dir);
    cmd.arg("--config").arg(config).arg("run");
    cmd.args(inputs)
        .args(["-o", out, "--format", "json", "-q"])
        .args(args);
    cmd.output().unwrap()
}

pub(crate) fn summary(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The document results in an output directory, by file name.
pub(crate) fn results(out: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "json")
                && p.file_name().is_some_and(|n| n != "run-summary.json")
        })
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

pub(crate) fn subset() -> Vec<PathBuf> {
    [
        "pdf/zoo.pdf",
        "pdf/sandwich.pdf",
        "html/ch01.en.html",
        "text/licenses",
    ]
    .map(data)
    .to_vec()
}

pub(crate) fn quick(mut p: Profile) -> Profile {
    p.latency = Profile::instant().latency;
    p.batch.completion_delay_ms = 0;
    // No modelled network either: plain loopback, no round trips.
    p.network = Profile::instant().network;
    p
}

/// Every document of `testdata/` (its README aside).
fn corpus() -> [PathBuf; 3] {
    [data("pdf"), data("html"), data("text")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_the_corpus_ends_with_a_result_or_a_reason() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-corpus");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let out = run(&dir, &cfg, &corpus(), "out", &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&out);
    assert_eq!(s["documents"], 46);
    assert_eq!(s["pages"], 415);
    assert_eq!(s["pages_pending"], 0);
    assert_eq!(s["pages_failed"], 0);
    assert_eq!(
        s["pages_done"].as_u64().unwrap() + s["pages_skipped"].as_u64().unwrap(),
        415
    );
    let validator = crate::common::schema("document-result.schema.json");
    let docs = results(&dir.join("out"));
    assert_eq!(docs.len(), 46);
    let mut grounded = 0;
    let mut pages_seen = 0;
    for (name, text) in &docs {
        let v: Value = serde_json::from_str(text).unwrap();
        if let Some(e) = validator.iter_errors(&v).next() {
            panic!("{name}: {e} at {}", e.instance_path());
        }
        assert_eq!(v["complete"], true, "{name}");
        for p in v["pages"].as_array().unwrap() {
            pages_seen += 1;
            match p["entities"].as_str().unwrap() {
                "done" => {}
                "skipped" => assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty())),
                other => panic!("{name} page {}: {other}", p["number"]),
            }
        }
        assert!(v["metadata"].is_object(), "{name}");
        for e in v["entities"].as_array().unwrap() {
            for m in e["mentions"].as_array().unwrap() {
                grounded += usize::from(m["grounding"] != "none");
            }
        }
    }
    assert_eq!(pages_seen, 415);
    // The simulator types random quotes as dates and amounts too: those are dropped.
    assert!(
        grounded > 500,
        "the simulator quotes pages, so mentions ground: {grounded}"
    );

    // The offsets point at the mention's text in the page as ingested.
    let zoo =
        pagemill_pipeline::ingest::ingest_path(&data("pdf/zoo.pdf"), &Default::default()).unwrap();
    let (_, text) = docs
        .iter()
        .find(|(n, _)| n.starts_with("zoo.pdf."))
        .unwrap();
    let v: Value = serde_json::from_str(text).unwrap();
    let mut checked = 0;
    for e in v["entities"].as_array().unwrap() {
        for m in e["mentions"].as_array().unwrap() {
            let (Some(s), Some(t)) = (m["start"].as_u64(), m["end"].as_u64()) else {
                continue;
            };
            let page = &zoo.pages[m["page"].as_u64().unwrap() as usize - 1].text;
            let slice: String = page
                .chars()
                .skip(s as usize)
                .take((t - s) as usize)
                .collect();
            assert_eq!(slice, m["text"].as_str().unwrap());
            checked += 1;
        }
    }
    assert!(checked > 20);

    // A rerun pays for nothing and writes the same results.
    let again = run(&dir, &cfg, &corpus(), "out", &[]);
    let s2 = summary(&again);
    assert_eq!(s2["requests"], 0);
    assert_eq!(
        s2["tasks"]["entities"]["already_done"],
        s["tasks"]["entities"]["units"]
    );
    assert_eq!(results(&dir.join("out")), docs);

    // The ledger holds the pages as read, for reports that show results in context.
    let ledger = Ledger::open(&dir.join("out/ledger.sqlite")).unwrap();
    assert_eq!(
        ledger.page_text(&zoo.id, 3).unwrap().as_deref(),
        Some(zoo.pages[2].text.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_at_random_moments_resumes_to_the_same_results_without_paying_twice() {
    let mut profile = Profile::instant();
    profile.latency.ttft_base_ms = 120.0;
    let reference = Sim::start(profile.clone()).await.unwrap();
    let sim = Sim::start(profile).await.unwrap();
    let dir = tempdir("run-kill");
    let ref_cfg = config(&dir, "ref.toml", "sim", &reference.base_url(), "");
    let cfg = config(&dir, "k.toml", "sim", &sim.base_url(), "");
    let inputs = subset();
    let args = ["--pack", "4", "--concurrency", "3"];
    let r = run(&dir, &ref_cfg, &inputs, "ref", &args);
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    let mut rng = SmallRng::seed_from_u64(0x6b696c6c);
    let mut kills = 0;
    for _ in 0..4 {
        let mut cmd = pagemill(&dir);
        cmd.arg("--config").arg(&cfg).arg("run");
        cmd.args(&inputs).args(["-o", "k", "-q"]).args(args);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let answered = sim.log().len();
        let mut child = cmd.spawn().unwrap();
        // Killed mid-work, whatever the machine's load: once the simulator has answered one
        // of this run's requests (its own log says so; others are then in flight at
        // concurrency 3), after a seeded wait of up to 300 ms.
        let give_up = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sim.log().len() == answered
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < give_up
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let at = rng.random_range(0..300);
        std::thread::sleep(std::time::Duration::from_millis(at));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "the runs were killed mid-way ({kills} kills)");
    let last = run(&dir, &cfg, &inputs, "k", &args);
    assert_eq!(
        last.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );

    let (got, want) = (results(&dir.join("k")), results(&dir.join("ref")));
    assert_eq!(got.len(), want.len());
    for (name, text) in &want {
        assert!(
            got.get(name) == Some(text),
            "{name} differs from the uninterrupted run's"
        );
    }

    // The ledger and the simulator's own log agree that nothing finished was asked again.
    let ledger = Ledger::open(&dir.join("k/ledger.sqlite")).unwrap();
    let requests = ledger.requests().unwrap();
    let by_id: HashMap<i64, &Vec<String>> = requests.iter().map(|r| (r.id, &r.unit_keys)).collect();
    let keys: Vec<String> = requests
        .iter()
        .flat_map(|r| r.unit_keys.iter().cloned())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let finished_by: HashMap<String, i64> = ledger
        .units(&keys)
        .unwrap()
        .into_iter()
        .filter_map(|u| Some((u.key, u.request_id?)))
        .collect();
    let sent: Vec<i64> = sim
        .log()
        .iter()
        .filter(|e| e.path().ends_with("/chat/completions"))
        .map(|e| e.request_id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert!(!sent.is_empty());
    let mut asked_again = 0;
    for id in &sent {
        let carried = by_id
            .get(id)
            .expect("every request sent was recorded first");
        for k in carried.iter() {
            if finished_by.get(k).is_some_and(|done| done < id) {
                asked_again += 1;
            }
        }
    }
    assert_eq!(asked_again, 0, "no finished unit was requested again");
    let interrupted = requests
        .iter()
        .filter(|r| r.status == "interrupted")
        .count();
    assert!(
        interrupted > 0,
        "kills left requests in flight, recorded as interrupted"
    );
}

/// Asserts a run lost nothing and every failure it met is classified; returns its summary.
fn assert_no_loss(name: &str, out: &Output, class: &str) -> Value {
    let s = summary(out);
    assert_eq!(out.status.code(), Some(0), "{name}: {s}");
    assert_eq!(s["pages_pending"], 0, "{name}");
    assert_eq!(s["pages_failed"], 0, "{name}");
    assert_eq!(s["dead_letters"], 0, "{name}");
    let errors = s["errors"].as_object().unwrap();
    assert!(
        errors.get(class).and_then(Value::as_u64).unwrap_or(0) > 0,
        "{name}: {errors:?}"
    );
    for k in errors.keys() {
        assert!(
            ["transient", "throttled", "permanent", "context_too_long"].contains(&k.as_str()),
            "{k}"
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_endpoint_loses_no_page_and_every_failure_is_classified() {
    let mut flaky = quick(Profile::flaky());
    flaky.faults.slow_headers = 0.0;
    let sim = Sim::start(flaky).await.unwrap();
    let dir = tempdir("run-flaky");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let out = run(&dir, &cfg, &subset(), "out", &["--pack", "2"]);
    let s = summary(&out);
    // About 7% of requests here fail past the client's retries (a stream cut or corrupted
    // after it began is not resent); a unit goes back in the queue 3 times, so once in a
    // while (about 1 run in 50) one is failed 4 times running and given up on, for the
    // endpoint's sake: the next run takes it again. More than that means retrying broke.
    let dead = s["dead_letters"].as_u64().unwrap();
    assert!(dead <= 3, "flaky: {s}");
    let s = if dead == 0 {
        assert_no_loss("flaky", &out, "transient")
    } else {
        let again = run(&dir, &cfg, &subset(), "out", &["--pack", "2"]);
        let s2 = summary(&again);
        assert!(s2["requests"].as_u64().unwrap() >= 1, "{s2}");
        assert_eq!(s2["dead_letters"], 0, "the next run finished them: {s2}");
        s
    };
    assert_eq!(s["pages_pending"], 0);
    for k in s["errors"].as_object().unwrap().keys() {
        assert!(["transient", "throttled"].contains(&k.as_str()), "{k}: {s}");
    }
    let faults = sim.log().iter().filter(|e| e.fault.is_some()).count();
    assert!(faults > 5, "the simulator did misbehave: {faults}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_an_endpoint_failed_past_its_retries_are_dead_lettered_and_the_next_run_finishes_them()
 {
    // Every request fails with a 503 until each unit has gone round its 4 times.
    let mut down = Profile::instant();
    down.faults.script = vec!["status_503".into(); 64];
    let down = Sim::start(down).await.unwrap();
    let dir = tempdir("run-outlasted");
    let once = |url: &str| {
        let path = dir.join("p.toml");
        std::fs::write(
            &path,
            format!(
                "[[endpoint]]\nname = \"sim\"\nbase_url = \"{url}\"\nmodel = \"sim-model\"\n\
                 [endpoint.retry]\nmax_attempts = 1\nbase_delay_ms = 1\nmax_delay_ms = 1\n"
            ),
        )
        .unwrap();
        path
    };
    let doc = [data("text/licenses/MIT.txt")];
    let args = ["--concurrency", "1"];
    let out = run(&dir, &once(&down.base_url()), &doc, "out", &args);
    assert_eq!(
        out.status.code(),
        Some(4),
        "no request succeeded: the endpoint's exit code"
    );
    let s = summary(&out);
    let units: u64 = ["entities", "summary", "metadata"]
        .iter()
        .map(|t| s["tasks"][t]["units"].as_u64().unwrap_or(0))
        .sum();
    assert!(units >= 2, "{s}");
    assert_eq!(
        s["requests"].as_u64().unwrap(),
        4 * units,
        "4 rounds each: {s}"
    );
    assert_eq!(s["pages_pending"], 0, "{s}");
    let v: Value =
        serde_json::from_str(results(&dir.join("out")).values().next().unwrap()).unwrap();
    let dead = v["dead_letters"].as_array().unwrap();
    assert_eq!(dead.len() as u64, units);
    for d in dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("503") && reason.contains("after 4 rounds of retries"),
            "{reason}"
        );
    }

    // The endpoint is back: the next run asks for exactly those units, and finishes.
    let up = Sim::start(Profile::instant()).await.unwrap();
    let out = run(&dir, &once(&up.base_url()), &doc, "out", &args);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(s["dead_letters"], 0, "{s}");
    assert_eq!(s["pages_failed"], 0, "{s}");
    let retried: u64 = ["entities", "summary", "metadata"]
        .iter()
        .map(|t| s["tasks"][t]["done"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(retried, units, "{s}");
    let v: Value =
        serde_json::from_str(results(&dir.join("out")).values().next().unwrap()).unwrap();
    assert_eq!(v["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_endpoint_loses_no_page() {
    // 300 a minute refill 5 a second: the minute spent below stays spent while the run
    // starts, even on a loaded machine (at 1,200 a minute, the 20 a second refilled while a
    // slow machine spent them left the run never throttled).
    let mut throttled = quick(Profile::throttled());
    throttled.rate_limits.requests_per_minute = 300;
    throttled.rate_limits.tokens_per_minute = 0;
    // And the run's first two requests refused with a 429 whatever the window: a machine slow
    // enough to start the run after the window refilled (a full test run on two cores did
    // once) must not leave the run unthrottled.
    throttled.faults.script = std::iter::repeat_n("ok", 300)
        .chain(["status_429", "status_429"])
        .map(str::to_owned)
        .collect();
    throttled.faults.retry_after_ms = 200;
    let sim = Sim::start(throttled).await.unwrap();
    // Spend the minute's allowance first, as another tenant of the same key would.
    let client = std::sync::Arc::new(
        pagemill_client::Client::new(pagemill_client::Endpoint::new(
            "sim",
            sim.base_url(),
            "sim-model",
        ))
        .unwrap(),
    );
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let c = std::sync::Arc::clone(&client);
        set.spawn(async move {
            let mut req = pagemill_client::ChatRequest::user("hi");
            req.max_tokens = Some(1);
            c.send(&req, pagemill_client::clock::mono_ns()).await
        });
    }
    while set.join_next().await.is_some() {}
    let dir = tempdir("run-throttled");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let inputs = [data("html/ch01.en.html"), data("text/licenses/MIT.txt")];
    let out = run(&dir, &cfg, &inputs, "out", &["--pack", "2"]);
    let s = assert_no_loss("throttled", &out, "throttled");
    assert!(s["retries"].as_u64().unwrap() > 0);
    let refused = sim.log().iter().filter(|e| e.status == 429).count();
    assert!(refused > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packing_cuts_prompt_tokens_per_page_and_quote_predicts_them_exactly() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-pack");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let inputs = [data("text/sotu")];
    let mut per_page = Vec::new();
    for k in ["1", "4", "8"] {
        let args = ["--tasks", "entities", "--pack", k];
        let out = run(&dir, &cfg, &inputs, &format!("k{k}"), &args);
        let s = summary(&out);
        let t = &s["tasks"]["entities"];
        per_page.push(t["prompt_tokens_per_page"].as_f64().unwrap());
        let mut q = pagemill(&dir);
        q.arg("--config")
            .arg(&cfg)
            .arg("quote")
            .args(&inputs)
            .args(args)
            .args(["--format", "json"]);
        let q: Value = serde_json::from_slice(&q.output().unwrap().stdout).unwrap();
        assert_eq!(
            q[0]["prompt_tokens"], t["prompt_tokens"],
            "k={k}: quote = what was sent"
        );
        assert_eq!(q[0]["requests"], t["requests"], "k={k}");
    }
    assert!(
        per_page[1] < per_page[0] && per_page[2] < per_page[1],
        "{per_page:?}"
    );
    assert!(
        per_page[2] <= 0.6 * per_page[0],
        "k=8 saves at least 40%: {per_page:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sloppy_answers_are_rerun_alone_reasked_or_dead_lettered_with_reasons() {
    let mut sloppy = Profile::instant();
    sloppy.content.sloppy = 0.35;
    let sim = Sim::start(sloppy).await.unwrap();
    let dir = tempdir("run-sloppy");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let out = run(&dir, &cfg, &subset(), "out", &["--pack", "4"]);
    let s = summary(&out);
    assert!(s["singles"].as_u64().unwrap() > 0, "{s}");
    assert!(s["reasks"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["pages_pending"], 0);
    assert!(s["tasks"]["entities"]["done"].as_u64().unwrap() > 0);

    // Answers that are never usable end in the dead-letter list, with why. (A sloppy
    // simulator is not hopeless: asked again, with the items, it sometimes answers well.)
    let hopeless = pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), |_| {
        pagemill_sim::script::completion("{\"items\": [{\"id\": \"nobody\"", None)
    })
    .await
    .unwrap();
    let cfg = config(&dir, "h.toml", "sim", &hopeless.base_url(), "");
    let out = run(
        &dir,
        &cfg,
        &[data("text/licenses/MIT.txt")],
        "hopeless",
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "dead letters make the exit code 1"
    );
    let s = summary(&out);
    assert_eq!(s["pages_failed"], s["pages"]);
    let docs = results(&dir.join("hopeless"));
    let v: Value = serde_json::from_str(docs.values().next().unwrap()).unwrap();
    let dead = v["dead_letters"].as_array().unwrap();
    assert!(!dead.is_empty());
    for d in dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains("after 2 re-asks"), "{reason}");
    }
    assert_eq!(v["complete"], false);

    // Failed for their answers, they stay dead letters on the next run (asking the same
    // model again would likely pay for the same answer) unless the user asks for them.
    let again = run(
        &dir,
        &cfg,
        &[data("text/licenses/MIT.txt")],
        "hopeless",
        &[],
    );
    let s = summary(&again);
    assert_eq!(s["requests"], 0, "{s}");
    assert_eq!(
        s["dead_letters"].as_u64().unwrap(),
        dead.len() as u64,
        "{s}"
    );
    let retried = run(
        &dir,
        &cfg,
        &[data("text/licenses/MIT.txt")],
        "hopeless",
        &["--retry-failed"],
    );
    let s = summary(&retried);
    assert!(s["requests"].as_u64().unwrap() >= dead.len() as u64, "{s}");
    assert_eq!(
        s["dead_letters"].as_u64().unwrap(),
        dead.len() as u64,
        "{s}"
    );
}

/// A server that refuses every request as unauthorized.
async fn refusing() -> pagemill_sim::ServerHandle {
    pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), |_| {
        pagemill_sim::script::error(401, "invalid_request_error", "Incorrect API key provided")
    })
    .await
    .unwrap()
}

/// A server that takes `json_object` but refuses `json_schema`, answering each item with an
/// empty entity list.
async fn no_json_schema() -> pagemill_sim::ServerHandle {
    pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), |req| {
        let body = req.json();
        if body["response_format"]["type"] == "json_schema" {
            return pagemill_sim::script::error(
                400,
                "invalid_request_error",
                "response_format json_schema is not supported by this model",
            );
        }
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let ids: Vec<Value> = user
            .split("<item id=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(|id| serde_json::json!({"id": id, "entities": []}))
            .collect();
        let answer = serde_json::json!({ "items": ids }).to_string();
        pagemill_sim::script::completion(&answer, None)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fall_back_and_refused_formats_are_downgraded() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let bad = refusing().await;
    let dir = tempdir("run-fallback");
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[endpoint]]\nname = \"primary\"\nbase_url = \"{}\"\nmodel = \"m\"\n\n\
             [[endpoint]]\nname = \"backup\"\nbase_url = \"{}\"\nmodel = \"sim-model\"\n",
            bad.base_url(),
            sim.base_url()
        ),
    )
    .unwrap();
    let input = [data("text/licenses/MIT.txt")];
    let out = run(
        &dir,
        &cfg,
        &input,
        "out",
        &["-e", "primary", "--fallback", "backup"],
    );
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s["fallbacks"].as_u64().unwrap() > 0);
    assert_eq!(s["pages_done"], s["pages"]);
    assert_eq!(
        s["errors"]["permanent"].as_u64().unwrap(),
        s["fallbacks"].as_u64().unwrap()
    );
    // Without a fallback, the same failure is a dead letter naming the cause, and no key or
    // retry storm: one request a unit.
    let out = run(&dir, &cfg, &input, "alone", &["-e", "primary"]);
    let s = summary(&out);
    assert_eq!(
        out.status.code(),
        Some(4),
        "no request succeeded: the endpoint is unusable"
    );
    assert_eq!(s["requests"], s["dead_letters"]);
    let v: Value =
        serde_json::from_str(results(&dir.join("alone")).values().next().unwrap()).unwrap();
    assert!(
        v["dead_letters"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("permanent")
    );

    let picky = no_json_schema().await;
    let cfg = config(&dir, "picky.toml", "picky", &picky.base_url(), "");
    let out = run(
        &dir,
        &cfg,
        &input,
        "picky",
        &["--tasks", "entities", "--no-stream"],
    );
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(s["pages_done"], s["pages"]);
    let formats: Vec<String> = picky
        .log()
        .iter()
        .map(|e| {
            e.body["response_format"]["type"]
                .as_str()
                .unwrap_or("none")
                .to_owned()
        })
        .collect();
    assert_eq!(formats[0], "json_schema");
    assert!(
        formats[1..].iter().all(|f| f == "json_object"),
        "{formats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_mode_takes_partial_results_and_resubmits_only_failed_lines() {
    let mut p = Profile::instant();
    p.batch.failure_rate = 0.2;
    let sim = Sim::start(p).await.unwrap();
    let dir = tempdir("run-batch");
    let cfg = config(
        &dir,
        "p.toml",
        "sim",
        &sim.base_url(),
        "prices = { input = 1.0, output = 4.0, batch_discount = 0.5 }",
    );
    let inputs = [data("html/ch01.en.html"), data("text/licenses")];
    let out = run(
        &dir,
        &cfg,
        &inputs,
        "out",
        &["--batch", "--batch-poll", "0.02", "--pack", "4"],
    );
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(
        s["batches"].as_u64().unwrap() >= 2,
        "failed lines went in a second batch: {s}"
    );
    assert_eq!(
        s["pages_done"].as_u64().unwrap() + s["pages_skipped"].as_u64().unwrap(),
        s["pages"].as_u64().unwrap()
    );
    assert!(s["errors"]["transient"].as_u64().unwrap() > 0);
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0, "batch prices apply");
    // Resubmitted lines carry only units that were not done.
    let ledger = Ledger::open(&dir.join("out/ledger.sqlite")).unwrap();
    let mut done_in: HashMap<String, i64> = HashMap::new();
    for r in ledger.requests().unwrap() {
        for k in &r.unit_keys {
            assert!(
                !done_in.contains_key(k),
                "unit sent again after it was done"
            );
        }
        if r.status == "ok" {
            for u in ledger.units(&r.unit_keys).unwrap() {
                if u.request_id == Some(r.id) {
                    done_in.insert(u.key, r.id);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_arrays_answer_as_requests_sent_alone_in_fewer_round_trips_and_add_up_to_the_bill() {
    let options = pagemill_sim::ServerOptions {
        keep_bodies: true,
        ..Default::default()
    };
    let sim = Sim::start_with(Profile::instant(), options).await.unwrap();
    let dir = tempdir("run-array");
    let cfg = config(
        &dir,
        "p.toml",
        "sim",
        &sim.base_url(),
        "prompt_template = \"chatml\"\nprices = { input = 1.0, cached_input = 0.5, output = 4.0 }",
    );
    let inputs = [
        data("html/ch01.en.html"),
        data("text/licenses/Apache-2.0.txt"),
        data("text/licenses/BSL-1.0.txt"),
    ];
    let args = ["--pack", "2", "--concurrency", "2"];
    let alone = run(&dir, &cfg, &inputs, "alone", &args);
    assert_eq!(alone.status.code(), Some(0), "{}", summary(&alone));
    let sent_alone = sim.log().len();
    let arrays = run(
        &dir,
        &cfg,
        &inputs,
        "arrays",
        &[&args[..], &["--array", "4"]].concat(),
    );
    let s = summary(&arrays);
    assert_eq!(arrays.status.code(), Some(0), "{s}");
    let log: Vec<_> = sim.log().into_iter().skip(sent_alone).collect();

    // The same answers, item for item: the simulator reads each ChatML prompt back into the
    // conversation it was written from, as a model does.
    assert_eq!(results(&dir.join("alone")), results(&dir.join("arrays")));
    let s_alone = summary(&alone);
    assert_eq!(s["requests"], s_alone["requests"], "the same conversations");

    // In fewer round trips: each array one HTTP request on legacy completions.
    let in_arrays: Vec<_> = log.iter().filter(|e| e.body["prompt"].is_array()).collect();
    assert_eq!(in_arrays.len() as u64, s["arrays"].as_u64().unwrap(), "{s}");
    assert!(!in_arrays.is_empty());
    assert!(
        log.len() < sent_alone,
        "{} round trips, {sent_alone} alone",
        log.len()
    );
    for e in &in_arrays {
        assert!(
            e.route.ends_with("/completions") && !e.route.contains("chat"),
            "{}",
            e.route
        );
        let prompts = e.body["prompt"].as_array().unwrap();
        assert!((2..=4).contains(&prompts.len()));
        for p in prompts {
            let p = p.as_str().unwrap();
            assert!(
                p.starts_with("<|im_start|>system\n") && p.ends_with("<|im_start|>assistant\n")
            );
        }
        assert_eq!(e.body["stop"], serde_json::json!(["<|im_end|>"]));
        assert!(
            e.body["response_format"]["json_schema"].is_object(),
            "one schema for all"
        );
    }

    // The ledger's shares add up to exactly what the simulator counted and so billed.
    let ledger = Ledger::open(&dir.join("arrays/ledger.sqlite")).unwrap();
    let rows = ledger.requests().unwrap();
    let sum = |f: fn(&pagemill_pipeline::store::RequestRow) -> Option<u64>| -> u64 {
        rows.iter().filter_map(f).sum()
    };
    let prompt: u64 = log.iter().map(|e| e.prompt_tokens).sum();
    let cached: u64 = log.iter().map(|e| e.cached_tokens).sum();
    let completion: u64 = log.iter().map(|e| e.completion_tokens).sum();
    assert_eq!(sum(|r| r.end.prompt_tokens), prompt);
    assert_eq!(sum(|r| r.end.cached_tokens), cached);
    assert_eq!(sum(|r| r.end.completion_tokens), completion);
    let billed = (prompt - cached) * 1_000_000 + cached * 500_000 + completion * 4_000_000;
    assert_eq!(sum(|r| r.end.cost_pico), billed, "picodollars");
    // Each conversation's share is its own, not an even split.
    let shares: HashSet<u64> = rows.iter().filter_map(|r| r.end.prompt_tokens).collect();
    assert!(shares.len() > 2, "{shares:?}");
}

/// The local model's prompt template is its GGUF's, so a conversation written out by the
/// pipeline reads to the model as the server's own chat template writes it: greedy, each
/// prompt of an array is answered exactly as the same conversation sent as a chat, under the
/// same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_model_answers_a_prompt_array_as_it_answers_chats() {
    use pagemill_client::{ChatRequest, Client, Message};
    use pagemill_pipeline::run::array::PromptTemplate;
    let settings = pagemill_local::LocalSettings {
        slots: 2,
        ctx: 2048,
        ..Default::default()
    };
    let addr = "127.0.0.1:0".parse().unwrap();
    let (_server, ep) = pagemill_local::start(&settings, addr, None, |m| eprintln!("{m}"))
        .await
        .unwrap();
    let source = ep
        .prompt_template
        .clone()
        .expect("the GGUF's chat template");
    assert!(source.contains("<|im_start|>"), "{source}");
    let template = PromptTemplate::new(&source).unwrap();
    let client = Client::new(ep).unwrap();
    let schema = serde_json::json!({"type": "json_schema", "json_schema": {"name": "a",
        "schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                   "required": ["city"], "additionalProperties": false}}});
    let chats: Vec<Vec<Message>> = ["Paris is in France.", "Lyon has two rivers."]
        .iter()
        .map(|t| {
            vec![
                Message::system("Answer with the city the text names, as JSON."),
                Message::user(*t),
            ]
        })
        .collect();
    let ask = |messages: Vec<Message>, prompts: Vec<String>| ChatRequest {
        messages,
        prompts,
        max_tokens: Some(24),
        temperature: Some(0.0),
        seed: Some(0),
        stop: template.stop().to_vec(),
        response_format: Some(schema.clone()),
        ..ChatRequest::default()
    };
    let prompts = chats.iter().map(|m| template.render(m).unwrap()).collect();
    let now = pagemill_client::clock::mono_ns;
    let array = client.send(&ask(vec![], prompts), now()).await;
    assert!(array.is_ok(), "{:?}", array.error);
    for (i, messages) in chats.into_iter().enumerate() {
        let chat = client.send(&ask(messages, vec![]), now()).await;
        assert!(chat.is_ok(), "{:?}", chat.error);
        assert_eq!(array.choice(i).0, chat.content, "prompt {i}");
        let v: Value = serde_json::from_str(array.choice(i).0).unwrap();
        assert!(v["city"].is_string(), "{v}");
    }
}

/// Providers charge `prompt + max_tokens` against a tokens-per-minute limit: once a task's
/// answers have been seen (in the ledger, or earlier in the run), requests ask for what
/// answers take (p99 × 1.2 of the full budget's share), not the full budget — with nothing cut
/// off and the same answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_budgets_are_learned_so_a_run_charges_fewer_tokens_for_the_same_answers() {
    let options = pagemill_sim::ServerOptions {
        keep_bodies: true,
        ..Default::default()
    };
    let sim = Sim::start_with(Profile::instant(), options).await.unwrap();
    let dir = tempdir("run-budgets");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let inputs = [data("text/licenses"), data("html/ch01.en.html")];
    // One request at a time: the same answers are learned in the same order on every run.
    let first = run(&dir, &cfg, &inputs, "out", &["--concurrency", "1"]);
    let s1 = summary(&first);
    assert_eq!(first.status.code(), Some(0), "{s1}");
    let results1 = results(&dir.join("out"));
    let sent = sim.log().len();
    let again = run(
        &dir,
        &cfg,
        &inputs,
        "out",
        &["--force", "--concurrency", "1"],
    );
    let s2 = summary(&again);
    assert_eq!(again.status.code(), Some(0), "{s2}");
    assert_eq!(results(&dir.join("out")), results1, "the same answers");
    assert_eq!(s2["truncated"], 0, "{s2}");
    assert_eq!(s2["requests"], s1["requests"]);
    let (m1, m2) = (
        s1["max_tokens_per_page"].as_f64().unwrap(),
        s2["max_tokens_per_page"].as_f64().unwrap(),
    );
    assert!(m2 < 0.5 * m1, "max_tokens a page: {m1} then {m2}");
    // The summary's figure is what the server was asked.
    let asked = |from: usize, to: usize| -> u64 {
        sim.log()[from..to]
            .iter()
            .filter_map(|e| e.body.get("max_tokens").and_then(Value::as_u64))
            .sum()
    };
    let pages = s2["pages_done"].as_f64().unwrap();
    let per_page = asked(sent, sim.log().len()) as f64 / pages;
    assert!((per_page - m2).abs() < 0.01 * m2, "{per_page} vs {m2}");
    assert!(asked(0, sent) > 2 * asked(sent, sim.log().len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stops_the_run_short_of_it_and_a_rerun_finishes_paying_once() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-budget-usd");
    let prices = "prices = { input = 0.15, output = 0.6 }\n";
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), prices);
    let inputs = subset();
    // A budget needs prices to count against: refused before anything is sent.
    let unpriced = config(&dir, "unpriced.toml", "sim", &sim.base_url(), "");
    let refused = run(&dir, &unpriced, &inputs, "none", &["--budget-usd", "1"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{said}");
    assert!(said.contains("--budget-usd needs the prices"), "{said}");
    assert!(sim.log().is_empty());
    // What the whole run costs (a ledger of its own).
    let whole = summary(&run(&dir, &cfg, &inputs, "whole", &[]));
    let budget = whole["cost_usd"].as_f64().unwrap() / 2.0;

    let sent = sim.log().len();
    let stopped = run(
        &dir,
        &cfg,
        &inputs,
        "out",
        &["--budget-usd", &budget.to_string()],
    );
    let s1 = summary(&stopped);
    assert_eq!(stopped.status.code(), Some(3), "{s1}");
    let why = s1["stopped"].as_str().unwrap();
    assert!(why.contains("budget reached"), "{why}");
    // Never over; short by less than the most the next request could have cost.
    let spent = s1["cost_usd"].as_f64().unwrap();
    let most: f64 = why
        .split("could cost up to $")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        spent <= budget && budget - spent < most,
        "{spent} of {budget} (next: {most})"
    );
    assert_eq!(
        sim.log().len() - sent,
        s1["requests"].as_u64().unwrap() as usize
    );

    // The rerun does only what the first left: every unit done once across the two.
    let rerun = run(&dir, &cfg, &inputs, "out", &[]);
    let s2 = summary(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{s2}");
    for task in ["entities", "summary", "metadata"] {
        let (t1, t2, all) = (
            &s1["tasks"][task],
            &s2["tasks"][task],
            &whole["tasks"][task],
        );
        assert_eq!(t2["already_done"], t1["done"], "{task}");
        let done = t1["done"].as_u64().unwrap() + t2["done"].as_u64().unwrap();
        assert_eq!(done, all["done"].as_u64().unwrap(), "{task}");
    }
    assert_eq!(
        results(&dir.join("out")).len(),
        results(&dir.join("whole")).len()
    );
}

/// `GET path` from `addr` (`HOST:PORT`), the whole response as text.
pub(crate) fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Starts `cmd` with its output piped; returns it, its stderr, and the metrics address it
/// printed there (`host:port`).
pub(crate) fn spawn_with_metrics(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let addr = metrics_addr(&mut stderr);
    (child, stderr, addr)
}

/// `HOST:PORT` of the metrics a command serves, read from its stderr (`metrics: http://…`).
fn metrics_addr(stderr: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    while !line.contains("/metrics") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "no metrics address"
        );
    }
    let url = line.split_whitespace().last().unwrap_or_default();
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned()
}

/// A metric's value in a scrape, by its name and labels as printed.
pub(crate) fn metric(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_while_the_run_works_and_stay_within_its_summary() {
    // 50 ms to first token, one request at a time: a run of seconds to scrape.
    let mut p = Profile::instant();
    p.latency.ttft_base_ms = 50.0;
    let sim = Sim::start(p).await.unwrap();
    let dir = tempdir("run-metrics");
    let cfg = config(
        &dir,
        "p.toml",
        "sim",
        &sim.base_url(),
        "prices = { input = 0.15, output = 0.6 }\nlimits = { requests_per_minute = 60000, max_concurrency = 4 }\n",
    );
    let mut cmd = pagemill(&dir);
    cmd.arg("--config")
        .arg(&cfg)
        .arg("run")
        .arg(data("text/licenses"))
        .args(["-o", "out", "--format", "json", "-q", "--concurrency", "1"])
        .args(["--metrics-addr", "127.0.0.1:0", "--budget-usd", "10"]);
    let (child, mut stderr, addr) = spawn_with_metrics(&mut cmd);
    let scrape = |path: &str| http_get(&addr, path);
    // Two scrapes while requests finish, far enough apart to see some.
    let mut scrapes = Vec::new();
    for _ in 0..2 {
        loop {
            let got = scrape("/metrics");
            assert!(got.starts_with("HTTP/1.1 200"), "{got}");
            assert!(
                got.contains("content-type: application/openmetrics-text"),
                "{got}"
            );
            let done: f64 = ["entities", "summary", "metadata"]
                .iter()
                .map(|t| metric(&got, &format!("pagemill_requests_total{{task=\"{t}\"}}")))
                .sum();
            if done > scrapes.len() as f64 * 3.0 {
                scrapes.push(got);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    assert!(scrape("/nothing").starts_with("HTTP/1.1 404"));
    let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    for task in ["entities", "summary", "metadata"] {
        let t = &s["tasks"][task];
        let series = |name: &str, extra: &str| format!("{name}{{task=\"{task}\"{extra}}}");
        let (first, second) = (&scrapes[0], &scrapes[1]);
        let planned = metric(first, &series("pagemill_units", ",state=\"planned\""));
        assert_eq!(planned, t["units"].as_f64().unwrap(), "{task}");
        for (name, extra, total) in [
            (
                "pagemill_requests_total",
                "",
                t["requests"].as_f64().unwrap(),
            ),
            (
                "pagemill_tokens_total",
                ",kind=\"prompt\"",
                t["prompt_tokens"].as_f64().unwrap(),
            ),
            (
                "pagemill_tokens_total",
                ",kind=\"completion\"",
                t["completion_tokens"].as_f64().unwrap(),
            ),
            (
                "pagemill_cost_usd_total",
                "",
                t["cost_usd"].as_f64().unwrap(),
            ),
        ] {
            let (a, b) = (
                metric(first, &series(name, extra)),
                metric(second, &series(name, extra)),
            );
            assert!(
                a <= b && b <= total + 1e-9,
                "{task} {name}{extra}: {a} then {b}, in the end {total}"
            );
        }
    }
    assert!(metric(&scrapes[1], "process_resident_memory_bytes") > 0.0);
    // Gauges: what is in flight and left, the limiter's headroom, the budget.
    for scrape in &scrapes {
        let in_flight = metric(scrape, "pagemill_in_flight_requests");
        assert!(
            (0.0..=1.0).contains(&in_flight),
            "one at a time: {in_flight}"
        );
        let planned = metric(
            scrape,
            "pagemill_units{task=\"entities\",state=\"planned\"}",
        );
        let left = metric(scrape, "pagemill_queue_units{task=\"entities\"}");
        let done = metric(scrape, "pagemill_units{task=\"entities\",state=\"done\"}");
        assert_eq!(left, planned - done, "{scrape}");
        let requests = metric(
            scrape,
            "pagemill_rate_limit_available{endpoint=\"sim\",kind=\"requests\"}",
        );
        assert!(
            requests <= 1000.0,
            "a second's allowance at most: {requests}"
        );
        let slots = metric(
            scrape,
            "pagemill_rate_limit_available{endpoint=\"sim\",kind=\"slots\"}",
        );
        assert!((3.0..=4.0).contains(&slots), "{slots}");
        assert!(metric(scrape, "pagemill_rate_limit_wait_seconds{endpoint=\"sim\"}") >= 0.0);
        assert_eq!(
            metric(scrape, "pagemill_budget_limit_usd{period=\"run\"}"),
            10.0
        );
        let spent = metric(scrape, "pagemill_budget_spent_usd{period=\"run\"}");
        assert!(spent <= s["cost_usd"].as_f64().unwrap() + 1e-9, "{spent}");
        assert_eq!(metric(scrape, "pagemill_budget_reached"), 0.0);
    }
    assert!(
        metric(&scrapes[1], "pagemill_budget_spent_usd{period=\"run\"}") > 0.0,
        "spent by the second scrape"
    );
    // The summary's p95 latency (drift compares it): every answer took 50 ms to begin.
    let p95 = s["latency_p95_ms"].as_f64().unwrap();
    assert!((50.0..5_000.0).contains(&p95), "{p95}");
    let timed = metric(&scrapes[1], "pagemill_ttft_seconds_count{endpoint=\"sim\"}");
    let all = metric(
        &scrapes[1],
        "pagemill_ttft_seconds_bucket{le=\"+Inf\",endpoint=\"sim\"}",
    );
    assert!(
        timed > 0.0 && timed == all,
        "{timed} answers timed, {all} in the buckets"
    );
    assert!(timed <= s["requests"].as_f64().unwrap());
    // The ready dashboard asks only for metrics a scrape has.
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/pagemill.json"),
    )
    .unwrap();
    let names: std::collections::BTreeSet<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pagemill_") || w.starts_with("process_"))
        .collect();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        // A series, or a metric the exporter declares (drift figures come at a run's end).
        let family = name.strip_suffix("_total").unwrap_or(name);
        assert!(
            scrapes[1].contains(&format!("\n{name}"))
                || scrapes[1].contains(&format!("# TYPE {family} ")),
            "{name} is in no scrape"
        );
    }
}

/// A `pagemill run --watch` child and the lines of its stderr.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// `HOST:PORT` of its metrics, when asked for.
    metrics: Option<String>,
    /// What it said it watches, and how.
    watching: String,
}

impl Watcher {
    fn start(dir: &Path, cfg: &Path, watched: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = pagemill(dir)
            .arg("--config")
            .arg(cfg)
            .args(["run", "--watch", "--settle", "500ms"])
            .args(["-o", "out", "-q"])
            .args(extra)
            .arg(watched)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut w = Self {
            child,
            lines,
            metrics: None,
            watching: String::new(),
        };
        loop {
            let line = w.wait_for("");
            if let Some(url) = line.strip_prefix("metrics: http://") {
                w.metrics = Some(url.trim_end_matches("/metrics").to_owned());
            }
            if line.contains("watching") {
                w.watching = line;
                return w;
            }
        }
    }

    /// A scrape of its metrics.
    fn scrape(&self) -> String {
        let addr = self
            .metrics
            .as_deref()
            .expect("started with --metrics-addr");
        http_get(addr, "/metrics")
    }

    /// Waits (a minute at most) for a line containing `what`; returns it.
    fn wait_for(&self, what: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `{what}` from the watcher"));
            if line.contains(what) {
                return line;
            }
        }
    }

    /// SIGTERM, as a service manager stops it; its exit code.
    fn stop(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap().code()
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_takes_a_file_once_whole_survives_a_restart_and_never_pays_twice() {
    let options = pagemill_sim::ServerOptions {
        keep_bodies: true,
        ..Default::default()
    };
    let sim = Sim::start_with(Profile::instant(), options).await.unwrap();
    let dir = tempdir("run-watch");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let watched = dir.join("inbox");
    std::fs::create_dir_all(&watched).unwrap();
    // Listing only every hour: inotify's events alone bring the file in.
    let w = Watcher::start(
        &dir,
        &cfg,
        &watched,
        &["--watch-interval", "1h", "--metrics-addr", "127.0.0.1:0"],
    );
    assert!(w.watching.contains("told by inotify"), "{}", w.watching);

    // Written in two pieces, the second well inside the settling time.
    let first = "Ada Lovelace wrote to Charles Babbage from London in 1843.\n";
    let second = "The Analytical Engine, which Babbage designed in Cambridge, was never built.\n";
    std::fs::write(watched.join("letter.txt"), first).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(watched.join("letter.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
    drop(f);
    let pass = w.wait_for("watch: ");
    assert!(pass.contains("1 document(s), 1 complete"), "{pass}");
    let bodies: Vec<String> = sim.log().iter().map(|e| e.body.to_string()).collect();
    assert!(!bodies.is_empty());
    for b in &bodies {
        // Every request saw the whole file, never the first piece alone.
        assert!(
            !b.contains("Ada Lovelace") || b.contains("Analytical Engine"),
            "{b}"
        );
    }
    let results = results(&dir.join("out"));
    assert!(
        results.keys().any(|k| k.starts_with("letter.txt")),
        "{results:?}"
    );
    // Between passes the metrics hold every request the server saw, no more, no less.
    let scrape = w.scrape();
    let requests: f64 = ["entities", "summary", "metadata"]
        .iter()
        .map(|t| metric(&scrape, &format!("pagemill_requests_total{{task=\"{t}\"}}")))
        .sum();
    assert_eq!(requests as usize, sim.log().len(), "{scrape}");
    let timed = metric(
        &scrape,
        "pagemill_request_duration_seconds_count{endpoint=\"sim\"}",
    );
    assert_eq!(timed as usize, sim.log().len(), "every answer timed once");
    assert_eq!(w.stop(), Some(0), "SIGTERM: a clean exit");

    // A restart takes the file again, and the ledger asks nothing twice; a new file is run.
    let sent = sim.log().len();
    let w = Watcher::start(
        &dir,
        &cfg,
        &watched,
        &[
            "--watch-poll",
            "--watch-interval",
            "100ms",
            "--watch-batch",
            "1",
        ],
    );
    assert!(w.watching.contains("listed every 100ms"), "{}", w.watching);
    let again = w.wait_for("watch: ");
    assert!(again.contains("0 request(s)"), "{again}");
    assert_eq!(sim.log().len(), sent);
    // Two new files at once, one a pass (--watch-batch 1): each pass writes its results.
    std::fs::write(
        watched.join("memo.txt"),
        "Grace Hopper led the COBOL work in 1959.\n",
    )
    .unwrap();
    std::fs::write(
        watched.join("note.txt"),
        "Katherine Johnson checked the orbit for NASA in 1962.\n",
    )
    .unwrap();
    for _ in 0..2 {
        let pass = w.wait_for("watch: ");
        assert!(pass.contains("1 document(s), 1 complete"), "{pass}");
        assert!(!pass.contains(" 0 request(s)"), "{pass}");
    }
    let written = super::run::results(&dir.join("out"));
    assert!(
        written.keys().any(|k| k.starts_with("memo.txt"))
            && written.keys().any(|k| k.starts_with("note.txt")),
        "{written:?}"
    );
    assert!(sim.log().len() > sent);
    assert_eq!(w.stop(), Some(0));

    // A day's budget spent: the watcher pauses until the next day, and still stops at once.
    std::fs::write(
        watched.join("late.txt"),
        "Alan Turing wrote from Manchester in 1950.\n",
    )
    .unwrap();
    let w = Watcher::start(
        &dir,
        &cfg,
        &watched,
        &[
            "--budget-tokens-per-day",
            "1",
            "--metrics-addr",
            "127.0.0.1:0",
        ],
    );
    w.wait_for("pausing");
    // The metrics show the pause, and until when.
    let scrape = w.scrape();
    assert_eq!(metric(&scrape, "pagemill_budget_paused"), 1.0, "{scrape}");
    assert_eq!(metric(&scrape, "pagemill_budget_reached"), 1.0);
    assert_eq!(metric(&scrape, "pagemill_budget_limit_tokens"), 1.0);
    assert!(
        metric(&scrape, "pagemill_budget_spent_tokens") > 1.0,
        "today's earlier passes"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let resume = metric(&scrape, "pagemill_budget_resume_timestamp_seconds");
    assert!(resume > now && resume <= now + 86_400.0, "{resume}");
    assert_eq!(w.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_adds_prompt_tokens_raises_a_drift_alarm_and_a_steady_run_does_not() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-drift");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let inputs = subset();
    let first = summary(&run(&dir, &cfg, &inputs, "out", &[]));
    assert!(first.get("drift").is_none(), "no history yet: {first}");
    let steady = run(&dir, &cfg, &inputs, "out", &["--force"]);
    let s = summary(&steady);
    assert!(s.get("drift").is_none(), "the same work again: {s}");
    // One item a request instead of packs: every page pays the whole system prompt.
    let unpacked = run(&dir, &cfg, &inputs, "out", &["--force", "--pack", "1"]);
    let s = summary(&unpacked);
    let drift = s["drift"].as_array().unwrap_or_else(|| panic!("{s}"));
    let figures: Vec<&str> = drift.iter().filter_map(|d| d["figure"].as_str()).collect();
    assert!(figures.contains(&"prompt_tokens_per_page"), "{drift:?}");
    assert_eq!(drift[0]["runs"], 2, "over the two runs before");
    // The report tells it beside the run.
    let report = pagemill(&dir)
        .args(["report", "--format", "text"])
        .arg(dir.join("out/ledger.sqlite"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("drift in the run of"), "{text}");
    assert!(text.contains("prompt_tokens_per_page"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_arrays_need_a_template_and_legacy_completions() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-array-refused");
    let inputs = [data("text/licenses")];
    let plain = config(&dir, "plain.toml", "sim", &sim.base_url(), "");
    let out = run(&dir, &plain, &inputs, "o1", &["--array", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("prompt arrays need its chat template") && err.contains("prompt_template"),
        "{err}"
    );
    let messages = config(
        &dir,
        "anthropic.toml",
        "sim",
        &sim.base_url(),
        "api = \"anthropic\"\nprompt_template = \"chatml\"",
    );
    let out = run(&dir, &messages, &inputs, "o2", &["--array", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no legacy completions"), "{err}");
    assert!(sim.log().is_empty(), "refused before sending anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quote_prices_each_endpoint_and_projects_a_month() {
    let dir = tempdir("quote");
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        "[[endpoint]]\nname = \"cheap\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\nprices = { input = 0.15, output = 0.6, cached_input = 0.075 }\n\n\
         [[endpoint]]\nname = \"dear\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodel = \"m\"\nprices = { input = 2.5, output = 10.0 }\n",
    )
    .unwrap();
    let mut q = pagemill(&dir);
    q.arg("--config")
        .arg(&cfg)
        .arg("quote")
        .arg(data("pdf/zoo.pdf"));
    q.args(["--pages-per-day", "10000", "--format", "json"]);
    let out = q.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (cheap, dear) = (&v[0], &v[1]);
    assert_eq!(cheap["prompt_tokens"], dear["prompt_tokens"]);
    let c = cheap["cost_usd"].as_f64().unwrap();
    let d = dear["cost_usd"].as_f64().unwrap();
    assert!(d > 10.0 * c, "{c} vs {d}");
    assert!(cheap["cost_cached_usd"].as_f64().unwrap() < c);
    let per_page = cheap["cost_per_page_usd"].as_f64().unwrap();
    let month = cheap["per_month_usd"].as_f64().unwrap();
    assert!((month - per_page * 10_000.0 * 30.0).abs() < 1e-6 * month);
    // The text view says the same, with no request made (the endpoints are unreachable).
    let mut q = pagemill(&dir);
    q.arg("--config")
        .arg(&cfg)
        .arg("quote")
        .arg(data("pdf/zoo.pdf"));
    let text = String::from_utf8(q.output().unwrap().stdout).unwrap();
    assert!(text.contains("cheap") && text.contains("dear"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_a_busy_store_is_refused_clearly() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-busy");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let _held = Ledger::open(&dir.join("out/ledger.sqlite")).unwrap();
    let out = run(&dir, &cfg, &[data("text/licenses/MIT.txt")], "out", &[]);
    assert_eq!(out.status.code(), Some(5), "a ledger in use is bad input");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another pagemill run"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_replays_a_runs_ledger_with_its_lengths_and_shared_prefixes() {
    let recorded = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-replay");
    let cfg = config(&dir, "p.toml", "sim", &recorded.base_url(), "");
    let out = run(
        &dir,
        &cfg,
        &[data("html/ch01.en.html")],
        "out",
        &["--pack", "4"],
    );
    assert_eq!(out.status.code(), Some(0));
    let ledger_path = dir.join("out/ledger.sqlite");
    let requests = Ledger::open(&ledger_path).unwrap().requests().unwrap();
    let n = requests.len();

    let replay = Sim::start(Profile::instant()).await.unwrap();
    let cfg = config(&dir, "r.toml", "sim", &replay.base_url(), "");
    let mut cmd = pagemill(&dir);
    cmd.arg("--config").arg(&cfg);
    cmd.args(["bench", "-e", "sim", "--workload", "ledger", "--ledger"])
        .arg(&ledger_path);
    cmd.args(["-c", "1", "-n", &n.to_string(), "--format", "json"]);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent = replay.log();
    assert_eq!(sent.len(), n);
    for (r, e) in requests.iter().zip(&sent) {
        assert_eq!(
            Some(e.prompt_tokens),
            r.end.prompt_tokens,
            "prompt length replayed"
        );
        assert_eq!(
            Some(e.completion_tokens),
            r.end.completion_tokens,
            "answer length replayed"
        );
    }
    // Requests of one prompt version share their prefix, so the replay sees the cache too.
    let cached: u64 = sent.iter().map(|e| e.cached_tokens).sum();
    assert!(cached > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_task_starts_with_the_same_bytes_and_carries_its_cache_key() {
    let options = pagemill_sim::ServerOptions {
        keep_bodies: true,
        ..Default::default()
    };
    let sim = Sim::start_with(Profile::instant(), options).await.unwrap();
    let dir = tempdir("run-prefix");
    let cfg = config(
        &dir,
        "p.toml",
        "sim",
        &sim.base_url(),
        "prompt_cache_key = true",
    );
    let out = run(&dir, &cfg, &[data("pdf/zoo.pdf")], "out", &["--pack", "2"]);
    assert_eq!(out.status.code(), Some(0));
    let mut by_key: HashMap<String, HashSet<String>> = HashMap::new();
    for e in sim.log() {
        let key = e.body["prompt_cache_key"].as_str().unwrap().to_owned();
        let system = e.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !system.contains("zoo"),
            "no document text in the cached prefix"
        );
        by_key.entry(key).or_default().insert(system);
    }
    assert_eq!(
        by_key.len(),
        3,
        "one cache key per task: {:?}",
        by_key.keys()
    );
    for (key, systems) in &by_key {
        assert_eq!(systems.len(), 1, "{key}: one byte-identical system prompt");
    }
    // And the simulator's prompt cache served those prefixes.
    let cached: u64 = sim.log().iter().map(|e| e.cached_tokens).sum();
    assert!(cached > 0);
}

#[test]
fn with_nothing_configured_the_pipeline_runs_on_the_embedded_model() {
    let dir = tempdir("run-local");
    std::fs::write(
        dir.join("memo.txt"),
        "On 3 March 2025 Ingrid Halvorsen of Halvorsen Marine Supplies met Malcolm Reid in Aberdeen.",
    )
    .unwrap();
    let out = pagemill(&dir)
        .args([
            "run", "memo.txt", "--tasks", "entities", "--format", "json", "-q",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("using the embedded local model"),
        "{stderr}"
    );
    let s = summary(&out);
    assert_eq!(s["endpoints"][0], "local");
    assert_eq!(s["pages"], 1);
    assert_eq!(s["pages_pending"], 0);
    assert!(s["tasks"]["entities"]["prompt_tokens"].as_u64().unwrap() > 0);
    let docs = results(&dir.join("pagemill-out"));
    let v: Value = serde_json::from_str(docs.values().next().unwrap()).unwrap();
    // A 135M model's entities are not graded here; that the page ends done or with a reason is.
    let page = &v["pages"][0];
    assert!(
        page["entities"] == "done" || page["reason"].is_string(),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_file_under_two_names_is_paid_once_and_both_get_results() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("run-twins");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let text = std::fs::read(data("text/licenses/MIT.txt")).unwrap();
    std::fs::write(dir.join("a.txt"), &text).unwrap();
    std::fs::write(dir.join("b.txt"), &text).unwrap();
    let out = run(&dir, &cfg, &[dir.join("a.txt")], "one", &[]);
    let single = summary(&out)["requests"].as_u64().unwrap();
    let out = run(
        &dir,
        &cfg,
        &[dir.join("a.txt"), dir.join("b.txt")],
        "two",
        &[],
    );
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(
        s["requests"].as_u64().unwrap(),
        single,
        "one copy's requests"
    );
    assert_eq!(s["complete_documents"], 2);
    let docs = results(&dir.join("two"));
    let bodies: Vec<Value> = docs
        .values()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["entities"], bodies[1]["entities"]);
    assert_eq!(bodies[0]["metadata"], bodies[1]["metadata"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_come_out_as_one_flat_row_per_mention() {
    let sim = Sim::start(quick(Profile::instant())).await.unwrap();
    let dir = tempdir("run-rows");
    let cfg = config(&dir, "c.toml", "sim", &sim.base_url(), "");
    let input = data("html/ch01.en.html");
    let rows = |format: &str| {
        let out = pagemill(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .arg(&input)
            .args(["-o", "out", "-q", "--tasks", "entities", "--format", format])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let jsonl: Vec<Value> = String::from_utf8(rows("jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // As many rows as the document result has mentions, each where it says it is.
    let result: Value =
        serde_json::from_str(results(&dir.join("out")).values().next().unwrap()).unwrap();
    let mentions: usize = result["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mentions"].as_array().unwrap().len())
        .sum();
    assert!(mentions > 5, "{mentions}");
    assert_eq!(jsonl.len(), mentions);
    let doc = pagemill_pipeline::ingest::ingest_path(&input, &Default::default()).unwrap();
    let mut placed = 0;
    for r in &jsonl {
        assert_eq!(r["document"], result["id"]);
        let (Some(start), Some(end)) = (r["start"].as_u64(), r["end"].as_u64()) else {
            continue;
        };
        let page = &doc.pages[r["page"].as_u64().unwrap() as usize - 1].text;
        let at: String = page
            .chars()
            .skip(start as usize)
            .take((end - start) as usize)
            .collect();
        assert_eq!(at, r["text"].as_str().unwrap(), "{r}");
        placed += 1;
    }
    assert!(placed > 0);
    // The same rows as CSV (a second run pays nothing and prints them again).
    let csv = rows("csv");
    let mut reader = csv::Reader::from_reader(&csv[..]);
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "document",
            "path",
            "page",
            "start",
            "end",
            "type",
            "text",
            "entity",
            "grounding",
            "score",
            "flag"
        ]
    );
    let csv_rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(csv_rows.len(), jsonl.len());
    assert_eq!(&csv_rows[0][6], jsonl[0]["text"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_is_quoted_as_it_would_run() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let dir = tempdir("quote-profiles");
    let url = sim.base_url();
    std::fs::write(
        dir.join("pagemill.toml"),
        format!(
            "[[endpoint]]\nname = \"big\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n\
             [[endpoint]]\nname = \"tiny\"\nbase_url = \"{url}\"\nmodel = \"m\"\nprompt_profile = \"small\"\n"
        ),
    )
    .unwrap();
    let out = pagemill(&dir)
        .args(["quote"])
        .arg(crate::common::repo("examples/docs"))
        .args(["-e", "big", "-e", "tiny", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q: Value = serde_json::from_slice(&out.stdout).unwrap();
    let units: u64 = q[1]["units"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    // The small profile sends one item a request, as a run on that endpoint would.
    assert_eq!(q[1]["requests"].as_u64().unwrap(), units);
    assert!(q[0]["requests"].as_u64().unwrap() < units, "{q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_what_is_in_flight_writes_the_results_and_a_rerun_finishes() {
    let mut profile = Profile::instant();
    profile.latency.ttft_base_ms = 150.0;
    let sim = Sim::start(profile).await.unwrap();
    let dir = tempdir("run-sigint");
    let cfg = config(&dir, "c.toml", "sim", &sim.base_url(), "");
    let inputs = subset();
    let child = pagemill(&dir)
        .arg("--config")
        .arg(&cfg)
        .arg("run")
        .args(&inputs)
        .args([
            "-o",
            "out",
            "-q",
            "--format",
            "json",
            "--pack",
            "2",
            "--concurrency",
            "2",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupted as a terminal would, once the simulator has answered one of its requests
    // (the handler is installed and work is in flight).
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while sim.log().is_empty() && std::time::Instant::now() < give_up {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stopped early: {err}");
    assert!(err.contains("stopping"), "{err}");
    let s = summary(&out);
    assert!(s["pages_pending"].as_u64().unwrap() > 0, "{s}");
    // What finished is written, and the ledger holds no unit still leased.
    assert!(dir.join("out/run-summary.json").is_file());
    assert_eq!(
        results(&dir.join("out")).len() as u64,
        s["documents"].as_u64().unwrap(),
        "every document has its result file, finished or not"
    );
    let ledger = Ledger::open(&dir.join("out/ledger.sqlite")).unwrap();
    assert_eq!(ledger.summary().unwrap().leased, 0);
    let answered = sim.log().len();
    drop(ledger);
    // A rerun does the rest, paying for none of what was done.
    let again = run(&dir, &cfg, &inputs, "out", &["--pack", "2"]);
    let s2 = summary(&again);
    assert_eq!(again.status.code(), Some(0), "{s2}");
    assert_eq!(s2["pages_pending"], 0);
    let done_before: u64 = s2["tasks"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["already_done"].as_u64().unwrap())
        .sum();
    assert!(done_before > 0, "{s2}");
    assert!(sim.log().len() > answered);
}
