//! The simulator through pagemill's client, checked against the simulator's own ground truth.
//! Timing assertions use the simulator's *schedule* (due times it logs) and causality (nothing
//! is received before it was sent), never wall-clock tolerances.

use std::time::Duration;

use pagemill_client::{
    ChatRequest, Client, Count, Endpoint, ErrorClass, FailureKind, Message, Tokenizer,
};
use pagemill_sim::profile::{CacheDialect, Profile};
use pagemill_sim::{Sim, SimHandle};
use serde_json::json;

async fn start(profile: Profile) -> (SimHandle, Client) {
    let sim = Sim::start(profile).await.unwrap();
    let mut ep = Endpoint::new("sim", sim.base_url(), "sim-model");
    ep.retry.max_attempts = 1;
    ep.transport.ca_pem = sim.ca_pem().map(str::to_owned);
    let client = Client::new(ep).unwrap();
    (sim, client)
}

fn stream(prompt: &str, max_tokens: u32) -> ChatRequest {
    let mut r = ChatRequest::user(prompt);
    r.stream = true;
    r.max_tokens = Some(max_tokens);
    r
}

fn quiet() -> Profile {
    let mut p = Profile::instant();
    p.cache.min_prefix_tokens = 0;
    p
}

#[tokio::test]
async fn plain_answers_have_exactly_the_requested_tokens() {
    let (_sim, c) = start(quiet()).await;
    for n in [1, 7, 64] {
        let ex = c.send(&stream("hello", n), 0).await;
        assert!(ex.is_ok(), "{:?}", ex.error);
        assert_eq!(ex.usage.completion, Some(Count::server(u64::from(n))));
        assert_eq!(
            Tokenizer::o200k().count(&ex.content),
            u64::from(n),
            "{:?}",
            ex.content
        );
        assert_eq!(ex.content_events as u64, u64::from(n));
        assert_eq!(ex.finish_reason.as_deref(), Some("length"));
    }
    // The simulator's prompt count is the client's tokenizer count.
    let req = stream("Acme Corp hired Jane Doe in Paris on 3 May 2021.", 4);
    let ex = c.send(&req, 0).await;
    assert_eq!(
        ex.usage.prompt.unwrap().tokens,
        Tokenizer::o200k().count_messages(&req.messages)
    );
}

/// The `wire` preset writes every event on its own (21 writes a 16-token stream, counted with
/// strace in issue 19's note) and loses nothing doing so: every token, the usage, `[DONE]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_preset_streams_every_event_and_its_usage() {
    let wire = Profile::preset("wire").unwrap();
    assert!(wire.latency.write_each_event && !Profile::instant().latency.write_each_event);
    let (_sim, c) = start(wire).await;
    for _ in 0..20 {
        let mut r = stream("hello", 16);
        r.stream_options = Some(pagemill_client::wire::StreamOptions {
            include_usage: true,
        });
        let ex = c.send(&r, 0).await;
        assert!(ex.is_ok(), "{:?}", ex.error);
        assert_eq!(ex.content_events, 16);
        assert_eq!(ex.usage.completion, Some(Count::server(16)));
        assert!(ex.notes.is_empty(), "{:?}", ex.notes);
    }
}

#[tokio::test]
async fn several_tokens_per_chunk_are_counted_from_usage_not_chunks() {
    let mut p = quiet();
    p.latency.tokens_per_chunk = 4;
    let (sim, c) = start(p).await;
    let ex = c.send(&stream("x", 10), 0).await;
    assert_eq!(ex.usage.completion, Some(Count::server(10)));
    assert_eq!(ex.content_events, 3, "4 + 4 + 2");
    let tokens: Vec<u32> = sim.log()[0]
        .chunks
        .iter()
        .map(|c| c.tokens)
        .filter(|t| *t > 0)
        .collect();
    assert_eq!(tokens, [4, 4, 2]);
}

#[tokio::test]
async fn eos_comes_naturally_unless_ignored() {
    let mut p = quiet();
    p.content.natural_tokens = Some([3, 6]);
    let (_sim, c) = start(p).await;
    let natural = c.send(&stream("x", 50), 0).await;
    let n = natural.usage.completion.unwrap().tokens;
    assert!((3..=6).contains(&n), "{n}");
    assert_eq!(natural.finish_reason.as_deref(), Some("stop"));
    let mut req = stream("x", 50);
    req.ignore_eos = Some(true);
    let forced = c.send(&req, 0).await;
    assert_eq!(forced.usage.completion.unwrap().tokens, 50);
    assert_eq!(forced.finish_reason.as_deref(), Some("length"));
}

#[tokio::test]
async fn decode_follows_the_schedule_and_nothing_arrives_before_it_is_sent() {
    let mut p = Profile::fast_local();
    p.latency.ttft_base_ms = 30.0;
    p.latency.decode_tokens_per_sec = 100.0; // 10 ms a token
    p.latency.aggregate_tokens_per_sec = 0.0;
    p.latency.prefill_tokens_per_sec = 0.0;
    let (sim, c) = start(p).await;
    let ex = c
        .send(&stream("hi", 8), pagemill_client::clock::mono_ns())
        .await;
    assert!(ex.is_ok());
    let entry = &sim.log()[0];
    let due: Vec<u64> = entry
        .chunks
        .iter()
        .filter(|c| c.tokens > 0)
        .map(|c| c.due_ns.unwrap())
        .collect();
    assert_eq!(due.len(), 8);
    for w in due.windows(2) {
        assert_eq!(
            w[1] - w[0],
            10_000_000,
            "the schedule spaces tokens 10 ms apart"
        );
    }
    // TTFT: first token due 30 ms after the request was read, plus the handling time (which
    // is microseconds, bounded loosely here so a loaded CI machine cannot fail it).
    let ttft_due = entry.chunks[0].due_ns.unwrap() - entry.received_ns;
    assert!((30_000_000..45_000_000).contains(&ttft_due), "{ttft_due}");
    // Causality on one clock: every content read happened after the matching send.
    let sent: Vec<u64> = entry
        .chunks
        .iter()
        .filter(|c| c.tokens > 0)
        .map(|c| c.sent_ns)
        .collect();
    for (mark, sent) in ex.timeline.chunks.iter().zip(&sent) {
        assert!(mark.at >= *sent);
    }
    for (c, d) in entry.chunks.iter().filter(|c| c.tokens > 0).zip(&due) {
        assert!(c.sent_ns >= *d, "never sent before its time");
    }
}

#[tokio::test]
async fn concurrent_streams_share_the_aggregate_capacity() {
    let mut p = Profile::fast_local();
    p.latency.ttft_base_ms = 100.0;
    p.latency.decode_tokens_per_sec = 1_000.0; // 1 ms a token alone
    p.latency.aggregate_tokens_per_sec = 400.0; // 4 streams: 10 ms a token each
    p.latency.prefill_tokens_per_sec = 0.0;
    let (sim, c) = start(p).await;
    let req = stream("hi", 12);
    let (a, b, d, e) = tokio::join!(
        c.send(&req, 0),
        c.send(&req, 0),
        c.send(&req, 0),
        c.send(&req, 0)
    );
    assert!(a.is_ok() && b.is_ok() && d.is_ok() && e.is_ok());
    for entry in sim.log() {
        let due: Vec<u64> = entry
            .chunks
            .iter()
            .filter(|c| c.tokens > 0)
            .map(|c| c.due_ns.unwrap())
            .collect();
        let mut gaps: Vec<u64> = due.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_unstable();
        // Most gaps were scheduled while all four streams decoded.
        assert_eq!(gaps[gaps.len() / 2], 10_000_000, "{gaps:?}");
    }
}

#[tokio::test]
async fn requests_above_max_concurrency_queue_with_keepalives() {
    let mut p = Profile::fast_local();
    p.latency.max_concurrency = 1;
    p.latency.ttft_base_ms = 60.0;
    p.latency.keepalive_ms = 10;
    p.latency.prefill_tokens_per_sec = 0.0;
    let (sim, c) = start(p).await;
    let req = stream("hi", 3);
    let (a, b) = tokio::join!(c.send(&req, 0), c.send(&req, 0));
    assert!(a.is_ok() && b.is_ok());
    let log = sim.log();
    let (first, second) = if log[0].queued_ns < log[1].queued_ns {
        (&log[0], &log[1])
    } else {
        (&log[1], &log[0])
    };
    assert!(second.queued_ns > 0);
    let second_first_token = second.chunks.iter().find(|c| c.tokens > 0).unwrap().sent_ns;
    assert!(
        second_first_token >= first.done_ns.unwrap(),
        "one slot: served one after the other"
    );
    // The waiting stream got keep-alive comments, and the client saw them.
    let waited = if a.timeline.comments.len() > b.timeline.comments.len() {
        &a
    } else {
        &b
    };
    assert!(
        waited.timeline.comments.len() >= 3,
        "{:?}",
        waited.timeline.comments.len()
    );
}

fn long_system_prompt() -> String {
    (0..400)
        .map(|i| format!("rule {i} says extract entities carefully."))
        .collect::<Vec<_>>()
        .join(" ")
}

fn with_system(doc: &str) -> ChatRequest {
    let mut r = ChatRequest {
        messages: vec![Message::system(long_system_prompt()), Message::user(doc)],
        max_tokens: Some(4),
        stream: true,
        ..ChatRequest::default()
    };
    r.temperature = Some(0.0);
    r
}

#[tokio::test]
async fn a_shared_prefix_is_served_from_cache_and_speeds_up_ttft() {
    let mut p = Profile::hosted();
    p.latency.ttft_base_ms = 10.0;
    p.latency.ttft_jitter_ms = 0.0;
    p.latency.prefill_tokens_per_sec = 10_000.0;
    p.latency.decode_tokens_per_sec = 0.0;
    let (sim, c) = start(p).await;
    let first = c.send(&with_system("Document one about Acme."), 0).await;
    let second = c.send(&with_system("Document two about Initech."), 0).await;
    let prompt = first.usage.prompt.unwrap().tokens;
    assert!(prompt > 3_000, "{prompt}");
    assert_eq!(first.usage.cached_prompt, Some(Count::server(0)));
    let cached = second.usage.cached_prompt.unwrap().tokens;
    assert!(
        cached >= 1_024 && cached % 128 == 0 && cached > prompt - 200,
        "{cached} of {prompt}"
    );
    // TTFT on the simulator's schedule: the cached request skipped ~cached/10,000 s of prefill.
    let ttft = |e: &pagemill_sim::LogEntry| e.chunks[0].due_ns.unwrap() - e.received_ns;
    let log = sim.log();
    let saved = ttft(&log[0]) as f64 - ttft(&log[1]) as f64;
    let expected = cached as f64 / 10_000.0 * 1e9;
    assert!(
        (saved - expected).abs() < 10e6,
        "saved {saved} ns, expected {expected}"
    );
}

#[tokio::test]
async fn cached_tokens_are_reported_in_each_dialect() {
    for (dialect, expect_cached) in [
        (CacheDialect::Openai, true),
        (CacheDialect::Deepseek, true),
        (CacheDialect::Anthropic, true),
        (CacheDialect::None, false),
    ] {
        let mut p = quiet();
        p.cache.dialect = dialect;
        let (_sim, c) = start(p).await;
        let _ = c.send(&with_system("one"), 0).await;
        let ex = c.send(&with_system("two"), 0).await;
        assert!(ex.is_ok());
        match ex.usage.cached_prompt {
            Some(cached) => {
                assert!(expect_cached, "{dialect:?}");
                assert!(cached.tokens > 3_000, "{dialect:?}: {cached:?}");
                // Every dialect normalizes to the same prompt total.
                assert_eq!(
                    ex.usage.prompt.unwrap().tokens,
                    Tokenizer::o200k().count_messages(&with_system("two").messages)
                );
            }
            None => assert!(!expect_cached, "{dialect:?} should report cached tokens"),
        }
    }
}

#[tokio::test]
async fn rate_limits_send_headers_and_429s_with_retry_after() {
    let mut p = quiet();
    p.rate_limits.requests_per_minute = 2;
    let (sim, c) = start(p).await;
    let a = c.send(&stream("x", 2), 0).await;
    assert_eq!(a.rate_limit.limit_requests, Some(2));
    assert_eq!(a.rate_limit.remaining_requests, Some(1));
    let _ = c.send(&stream("x", 2), 0).await;
    let third = c.send(&stream("x", 2), 0).await;
    let err = third.error.unwrap();
    assert_eq!((err.class, err.status), (ErrorClass::Throttled, Some(429)));
    let wait = err.retry_after.unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{wait:?}"
    );
    assert_eq!(sim.log()[2].fault.as_deref(), Some("throttled"));

    let mut p = quiet();
    p.rate_limits.insufficient_quota = true;
    let (_sim, c) = start(p).await;
    let err = c.send(&stream("x", 2), 0).await.error.unwrap();
    assert_eq!(err.class, ErrorClass::Permanent);
}

#[tokio::test]
async fn tokens_per_minute_counts_prompt_and_max_tokens() {
    let mut p = quiet();
    p.rate_limits.tokens_per_minute = 100;
    let (_sim, c) = start(p).await;
    assert!(c.send(&stream("x", 60), 0).await.is_ok());
    let err = c.send(&stream("x", 60), 0).await.error.unwrap();
    assert_eq!(err.class, ErrorClass::Throttled);
}

#[tokio::test]
async fn scripted_faults_each_reach_the_client_as_their_class() {
    let mut p = quiet();
    p.faults.script = [
        "status_500",
        "status_502",
        "status_503",
        "reset_before_headers",
        "reset_mid_stream",
        "truncated",
        "malformed_chunk",
        "slow_headers",
        "ok",
    ]
    .map(String::from)
    .to_vec();
    p.faults.slow_headers_ms = 30;
    let (sim, c) = start(p).await;
    let mut kinds = Vec::new();
    for _ in 0..9 {
        let ex = c.send(&stream("hello there", 10), 0).await;
        kinds.push(ex.error.map(|e| (e.kind, e.class)));
    }
    use ErrorClass::Transient as T;
    assert_eq!(
        kinds,
        [
            Some((FailureKind::Status, T)),
            Some((FailureKind::Status, T)),
            Some((FailureKind::Status, T)),
            Some((FailureKind::ResetBeforeHeaders, T)),
            Some((FailureKind::ResetMidStream, T)),
            Some((FailureKind::Truncated, T)),
            Some((FailureKind::Malformed, T)),
            None,
            None,
        ]
    );
    let log = sim.log();
    let faults: Vec<Option<&str>> = log.iter().map(|e| e.fault.as_deref()).collect();
    assert_eq!(faults[3], Some("reset_before_headers"));
    assert_eq!(faults[7], Some("slow_headers"));
    assert!(log[7].headers_ns.unwrap() - log[7].received_ns >= 30_000_000);
}

#[tokio::test]
async fn framing_quirks_still_parse_to_the_same_answer() {
    for quirk in [
        "crlf",
        "no_space",
        "multiline_data",
        "split_utf8",
        "late_end",
    ] {
        let mut p = quiet();
        p.seed = 9;
        p.faults.script = vec![quirk.into()];
        let (sim, c) = start(p).await;
        let ex = c.send(&stream("hello", 12), 0).await;
        assert!(ex.is_ok(), "{quirk}: {:?}", ex.error);
        assert_eq!(ex.usage.completion, Some(Count::server(12)), "{quirk}");
        assert_eq!(
            Tokenizer::o200k().count(&ex.content),
            12,
            "{quirk}: {:?}",
            ex.content
        );
        assert_eq!(sim.log()[0].fault.as_deref(), Some(quirk));
        if quirk == "split_utf8" {
            assert!(!ex.content.is_ascii(), "{:?}", ex.content);
        }
    }
}

/// llama-server ends each stream's body in a later write than `[DONE]`; a client that stopped
/// reading at `[DONE]` dropped the body and its connection, so every request opened a new one.
#[tokio::test]
async fn streams_whose_body_ends_after_done_keep_their_connection() {
    let mut p = quiet();
    p.framing.late_end = true;
    let (sim, c) = start(p).await;
    let mut reused = Vec::new();
    for _ in 0..4 {
        let ex = c.send(&stream("hello", 6), 0).await;
        assert!(ex.is_ok(), "{:?}", ex.error);
        let conn = ex.timeline.connection.expect("connection info");
        reused.push(conn.reused);
        // Timelines end at `[DONE]`, not after the wait for the body's end.
        let body_end = sim.log().last().and_then(|e| e.done_ns).unwrap_or(0);
        assert!(ex.timeline.done.unwrap_or(u64::MAX) < body_end);
    }
    assert_eq!(reused, [false, true, true, true]);
}

/// llama-server closes the connection after every streamed body, though the head said nothing:
/// the pool hands the closed connection to the next request, which fails before any answer.
/// The client learns it and stops reusing connections, so only the first reuses are lost.
#[tokio::test]
async fn a_server_that_closes_after_each_stream_costs_two_resets_not_one_per_request() {
    let mut p = quiet();
    p.framing.close_after_stream = true;
    // Headers only with the first token, as llama-server sends them: the close comes while
    // the next request waits for them.
    p.faults.script = vec!["slow_headers".into(); 10];
    p.faults.slow_headers_ms = 30;
    let (sim, c) = start(p).await;
    let mut outcomes = Vec::new();
    for _ in 0..10 {
        let ex = c.send(&stream("hello", 6), 0).await;
        outcomes.push(match &ex.error {
            None => "ok",
            Some(e) if e.kind == FailureKind::ResetBeforeHeaders => "reset",
            Some(e) => panic!("{e:?}"),
        });
    }
    let resets = outcomes.iter().filter(|o| **o == "reset").count();
    assert!(resets <= 2, "{outcomes:?}");
    assert!(outcomes[6..].iter().all(|o| *o == "ok"), "{outcomes:?}");
    // The race is the server's to lose: the close was seen before each reuse, or learned.
    assert!(resets == 0 || c.reuse_abandoned(), "{outcomes:?}");
    // Without the learning, every reuse fails: ok, reset, ok, reset, … (5 of 10 lost).
    // Every answered request reached the server once, none twice; a reset one was written to
    // a connection the server was closing, which it may have read before closing or not.
    let logged = sim.log().len();
    assert!(
        (10 - resets..=10).contains(&logged),
        "{logged} requests logged for {outcomes:?}"
    );
}

/// Servers that keep their connections alive keep them in use: nothing is learned from an
/// idle close or a reused connection's success.
#[tokio::test]
async fn kept_alive_connections_stay_in_use_on_a_well_behaved_server() {
    let (_sim, c) = start(quiet()).await;
    for _ in 0..6 {
        let ex = c.send(&stream("hello", 6), 0).await;
        assert!(ex.is_ok(), "{:?}", ex.error);
    }
    assert!(!c.reuse_abandoned());
}

#[tokio::test]
async fn json_answers_follow_the_schema_and_quote_the_prompt() {
    let (_sim, c) = start(quiet()).await;
    let schema = json!({
        "type": "object",
        "properties": {"entities": {"type": "array", "minItems": 1, "maxItems": 4, "items": {
            "type": "object", "properties": {"text": {"type": "string"}, "type": {"enum": ["person", "org"]}},
            "required": ["text", "type"], "additionalProperties": false}}},
        "required": ["entities"], "additionalProperties": false
    });
    let doc = "Acme Corp hired Jane Doe in Paris last spring.";
    let mut req = ChatRequest::user(doc);
    req.max_tokens = Some(500);
    req.response_format =
        Some(json!({"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}));
    for stream in [false, true] {
        req.stream = stream;
        let ex = c.send(&req, 0).await;
        let v: serde_json::Value = serde_json::from_str(&ex.content).unwrap();
        let ents = v["entities"].as_array().unwrap();
        assert!((1..=4).contains(&ents.len()));
        for e in ents {
            assert!(doc.contains(e["text"].as_str().unwrap()));
        }
        assert_eq!(
            ex.usage.completion.unwrap().tokens,
            Tokenizer::o200k().count(&ex.content)
        );
    }
    let mut obj = ChatRequest::user(doc);
    obj.response_format = Some(json!({"type": "json_object"}));
    obj.max_tokens = Some(200);
    let ex = c.send(&obj, 0).await;
    assert!(
        serde_json::from_str::<serde_json::Value>(&ex.content)
            .unwrap()
            .is_object()
    );
}

#[tokio::test]
async fn sloppy_mode_spoils_json_answers_and_says_how() {
    let mut p = quiet();
    p.content.sloppy = 1.0;
    let (sim, c) = start(p).await;
    let mut req = ChatRequest::user("Acme and Initech and Globex");
    req.response_format = Some(json!({"type": "json_object"}));
    req.max_tokens = Some(200);
    for _ in 0..8 {
        let ex = c.send(&req, 0).await;
        assert!(ex.is_ok());
    }
    for e in sim.log() {
        assert!(
            e.fault.as_deref().unwrap().starts_with("sloppy_"),
            "{:?}",
            e.fault
        );
    }
}

#[tokio::test]
async fn legacy_completions_stream_and_not() {
    let (_sim, c) = start(quiet()).await;
    let body = json!({"model": "sim-model", "prompt": "Once upon a time", "max_tokens": 5});
    let whole = c.post("completions", &body, false, 0).await;
    assert!(whole.is_ok(), "{:?}", whole.error);
    assert_eq!(Tokenizer::o200k().count(&whole.content), 5);
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let ex = c.post("completions", &streamed, true, 0).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(Tokenizer::o200k().count(&ex.content), 5);
}

#[tokio::test]
async fn the_same_seed_repeats_a_run_exactly() {
    let run = |seed| async move {
        let mut p = Profile::hosted();
        p.seed = seed;
        p.latency.ttft_base_ms = 0.0;
        p.latency.ttft_jitter_ms = 5.0;
        p.latency.decode_tokens_per_sec = 0.0;
        p.faults.status_503 = 0.3;
        let (sim, c) = start(p).await;
        let mut out = Vec::new();
        for i in 0..10 {
            let ex = c.send(&stream(&format!("request {i}"), 6), 0).await;
            out.push((ex.content, ex.error.map(|e| e.status)));
        }
        let ttfts: Vec<u64> = sim
            .log()
            .iter()
            .filter_map(|e| Some(e.chunks.first()?.due_ns? - e.received_ns))
            .collect();
        (out, ttfts.len())
    };
    let (a, na) = run(1).await;
    let (b, nb) = run(1).await;
    let (c, _) = run(2).await;
    assert_eq!(a, b);
    assert_eq!(na, nb);
    assert_ne!(a, c);
    assert!(a.iter().any(|(_, e)| e.is_some()), "some 503s at p = 0.3");
}

#[tokio::test]
async fn the_batch_flow_returns_partial_results() {
    let mut p = quiet();
    p.batch.completion_delay_ms = 50;
    p.batch.failure_rate = 0.3;
    let (_sim, c) = start(p).await;
    let mut jsonl = String::new();
    for i in 0..20 {
        let mut r = ChatRequest::user(format!("document {i}"));
        r.max_tokens = Some(3);
        jsonl.push_str(&c.batch_line(&format!("unit-{i}"), &r));
        jsonl.push('\n');
    }
    let file = c
        .upload_batch_file("in.jsonl", jsonl.as_bytes())
        .await
        .unwrap();
    let batch = c.create_batch(&file).await.unwrap();
    assert_eq!(batch.request_counts.total, 20);
    assert!(!batch.is_finished());
    let done = loop {
        let b = c.get_batch(&batch.id).await.unwrap();
        if b.is_finished() {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done.status, "completed");
    let counts = done.request_counts;
    assert_eq!(counts.completed + counts.failed, 20);
    assert!(counts.failed > 0 && counts.completed > 0, "{counts:?}");
    let ok = c
        .batch_results(done.output_file_id.as_deref().unwrap())
        .await
        .unwrap();
    let failed = c
        .batch_results(done.error_file_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(ok.len() as u64, counts.completed);
    assert_eq!(failed.len() as u64, counts.failed);
    assert!(ok.iter().all(|r| r.result.is_ok()));
    assert!(
        failed
            .iter()
            .all(|r| r.result.as_ref().unwrap_err().class == ErrorClass::Transient)
    );
    let mut ids: Vec<String> = ok
        .iter()
        .chain(&failed)
        .map(|r| r.custom_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "every line answered or failed, once");
}

#[tokio::test]
async fn the_log_is_served_as_json_and_jsonl_with_stats() {
    let (_sim, c) = start(quiet()).await;
    for _ in 0..3 {
        let _ = c.send(&stream("x", 2), 0).await;
    }
    let base = c.endpoint().base_url.trim_end_matches("/v1").to_owned();
    let mut ep = Endpoint::new("root", base, "m");
    ep.retry.max_attempts = 1;
    let root = Client::new(ep).unwrap();
    let (status, log) = root.get_json("sim/log").await.unwrap();
    assert_eq!(status, 200);
    let entries = log.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["route"], "POST /v1/chat/completions");
    assert_eq!(entries[0]["completion_tokens"], 2);
    let (_, jsonl) = root
        .request_bytes(
            http::Method::GET,
            "sim/log?format=jsonl",
            None,
            bytes::Bytes::new(),
            pagemill_client::client::MAX_FILE_BYTES,
        )
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&jsonl).lines().count() >= 4,
        "includes the first log request"
    );
    let (_, stats) = root.get_json("sim/stats").await.unwrap();
    assert!(stats["requests"].as_u64().unwrap() >= 3);
    assert!(stats["drift_us"]["p99"].is_number());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sim_command_serves_a_preset_and_writes_its_log() {
    use std::io::BufRead;
    let dir = crate::common::tempdir("sim-cli");
    let log = dir.join("truth.jsonl");
    let mut child = crate::common::pagemill(&dir)
        .args([
            "sim",
            "--profile",
            "instant",
            "--port",
            "0",
            "--seed",
            "3",
            "--log",
        ])
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Read the first line, then keep draining stdout like a terminal would.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        tx.send(line).unwrap();
        std::io::copy(&mut reader, &mut std::io::sink()).ok();
    });
    let first = tokio::task::spawn_blocking(move || rx.recv().unwrap())
        .await
        .unwrap();
    assert!(first.contains("profile `instant` (seed 3)"), "{first}");
    let url = first.split_whitespace().last().unwrap().to_owned();
    let mut ep = Endpoint::new("cli", url, "sim-model");
    ep.retry.max_attempts = 1;
    let c = Client::new(ep).unwrap();
    let ex = c.send(&stream("hello", 5), 0).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.usage.completion, Some(Count::server(5)));
    // The record is written when the response ends, which may be just after the client read
    // it: wait for it (bounded), then kill -9 — a flushed record survives.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .count()
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no log record written"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["completion_tokens"], 5);
    assert_eq!(lines[0]["route"], "POST /v1/chat/completions");
}

/// `pagemill sim` with TLS writes its certificate where asked and names it; a client whose
/// endpoint trusts it through `ca_file` talks to it over HTTPS.
#[test]
fn the_sim_command_serves_tls_that_a_configured_client_trusts() {
    use std::io::BufRead as _;
    let dir = crate::common::tempdir("sim-tls");
    let ca = dir.join("ca.pem");
    let mut child = crate::common::pagemill(&dir)
        .args(["sim", "--profile", "hosted", "--port", "0", "--ca-out"])
        .arg(&ca)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut told) = (String::new(), String::new());
    stdout.read_line(&mut url).unwrap();
    stdout.read_line(&mut told).unwrap();
    let url = url.rsplit(' ').next().unwrap().trim().to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert!(told.contains(&ca.display().to_string()), "{told}");
    assert!(
        std::fs::read_to_string(&ca)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    let extra = format!(
        "transport = {{ ca_file = {:?} }}\n",
        ca.display().to_string()
    );
    crate::common::write_config(&dir, "tls", &url, &extra);
    let out = crate::common::pagemill(&dir)
        .args(["chat", "-e", "tls", "--max-tokens", "4", "hello"])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // TCP + TLS 1.3 at 40 ms a round trip: the connect time says so.
    let said = String::from_utf8_lossy(&out.stderr);
    let connect_ms: f64 = said
        .split("new connection (")
        .nth(1)
        .and_then(|r| r.split(" ms)").next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(connect_ms >= 80.0, "{said}");
}
