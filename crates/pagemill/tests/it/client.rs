//! The client against scripted servers: one dialect or one fault per test, checked against
//! the server's own log (its ground truth).

use std::time::Duration;

use pagemill_client::{
    ChatRequest, Client, Count, Endpoint, ErrorClass, FailureKind, Money, Prices, Source,
};
use pagemill_sim::script::{self, Framing};
use pagemill_sim::{Reply, Script, ServerHandle};

const KEY: &str = "sk-test-abcdefghijklmnopqrstuvwxyz0123456789";

fn endpoint(server: &ServerHandle) -> Endpoint {
    let mut ep = Endpoint::new("scripted", server.base_url(), "sim-model");
    ep.retry.base_delay_ms = 1;
    ep.retry.max_delay_ms = 5;
    ep
}

fn client(server: &ServerHandle) -> Client {
    Client::new(endpoint(server)).unwrap()
}

fn streaming(prompt: &str) -> ChatRequest {
    let mut r = ChatRequest::user(prompt);
    r.stream = true;
    r
}

fn chat_requests(server: &ServerHandle) -> usize {
    server
        .log()
        .iter()
        .filter(|e| e.path().ends_with("/chat/completions"))
        .count()
}

#[tokio::test]
async fn openai_stream_with_cached_tokens_and_cost() {
    let server = Script::new(vec![script::stream(
        &["Hel", "lo", " world"],
        Some(script::usage_openai(2_000, 3, Some(1_536))),
        Duration::from_millis(5),
        Framing::default(),
    )])
    .start()
    .await
    .unwrap();
    let mut ep = endpoint(&server);
    ep.prices = Prices {
        input: Some(1.0),
        cached_input: Some(0.25),
        output: Some(2.0),
        ..Prices::default()
    };
    let client = Client::new(ep).unwrap();
    let ex = client
        .send(&streaming("hi"), pagemill_client::clock::mono_ns())
        .await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.content, "Hello world");
    assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
    assert_eq!(ex.usage.prompt, Some(Count::server(2_000)));
    assert_eq!(ex.usage.cached_prompt, Some(Count::server(1_536)));
    assert_eq!(ex.usage.completion, Some(Count::server(3)));
    // 464 × $1 + 1536 × $0.25 + 3 × $2 per 1M = $0.000854
    assert_eq!(ex.cost.unwrap().total, Money(854_000_000));
    // Three content reads, each stamped, in order, after the headers.
    let tl = &ex.timeline;
    assert_eq!(tl.chunks.len(), 3);
    assert!(tl.scheduled <= tl.sent);
    assert!(tl.sent <= tl.headers.unwrap());
    assert!(tl.headers.unwrap() <= tl.first_byte.unwrap());
    assert!(tl.first_byte.unwrap() <= tl.first_event.unwrap());
    assert!(tl.first_event.unwrap() <= tl.first_content.unwrap());
    assert_eq!(tl.first_content, tl.first_answer);
    assert!(tl.chunks.windows(2).all(|w| w[0].at < w[1].at));
    assert!(tl.chunks.last().unwrap().at <= tl.done.unwrap());
    // The request asked for usage in the stream.
    let body = &server.log()[0].body;
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["model"], "sim-model");
}

#[tokio::test]
async fn chunk_receive_times_never_precede_the_servers_send_times() {
    let server = Script::new(vec![script::stream(
        &["a", "b", "c", "d"],
        None,
        Duration::from_millis(10),
        Framing::default(),
    )])
    .start()
    .await
    .unwrap();
    let ex = client(&server)
        .send(&streaming("hi"), pagemill_client::clock::mono_ns())
        .await;
    assert!(ex.is_ok());
    let log = server.log();
    // Writes: role chunk, 4 content chunks, finish, [DONE]; content writes are 1..=4.
    let sent: Vec<u64> = log[0].chunks.iter().map(|c| c.sent_ns).collect();
    assert_eq!(sent.len(), 7);
    assert_eq!(ex.timeline.chunks.len(), 4);
    for (chunk, sent_at) in ex.timeline.chunks.iter().zip(&sent[1..5]) {
        // Same clock on both sides: a byte cannot arrive before it was sent.
        assert!(
            chunk.at >= *sent_at,
            "received {} before sent {}",
            chunk.at,
            sent_at
        );
    }
    assert!(ex.timeline.sent <= log[0].received_ns);
    // The server knows when the request reached its socket, apart from when it read it.
    let arrived = log[0].arrived_ns.expect("the simulator stamps arrivals");
    assert!(ex.timeline.sent <= arrived && arrived <= log[0].received_ns);
}

#[tokio::test]
async fn deepseek_and_anthropic_usage_dialects() {
    let server = Script::new(vec![
        script::completion("x", Some(script::usage_deepseek(100, 5, 64))),
        script::completion("y", Some(script::usage_anthropic(50, 20, 1_000, 200))),
    ])
    .start()
    .await
    .unwrap();
    let c = client(&server);
    let ds = c.send(&ChatRequest::user("q"), 0).await;
    assert_eq!(ds.usage.prompt, Some(Count::server(100)));
    assert_eq!(ds.usage.cached_prompt, Some(Count::server(64)));
    let an = c.send(&ChatRequest::user("q"), 0).await;
    assert_eq!(an.usage.prompt, Some(Count::server(1_250)));
    assert_eq!(an.usage.cached_prompt, Some(Count::server(1_000)));
    assert_eq!(an.usage.cache_write, Some(Count::server(200)));
    assert_eq!(an.content, "y");
}

#[tokio::test]
async fn stream_without_usage_is_counted_by_the_tokenizer_and_says_so() {
    let server = Script::new(vec![script::stream(
        &["hello", " world"],
        None,
        Duration::ZERO,
        Framing::default(),
    )])
    .start()
    .await
    .unwrap();
    let ex = client(&server).send(&streaming("Hello there"), 0).await;
    assert!(ex.is_ok());
    assert_eq!(ex.raw_usage, None);
    assert_eq!(ex.usage.prompt.unwrap().source, Source::Tokenizer);
    assert_eq!(ex.usage.completion, Some(Count::tokenizer(2)));
    assert_eq!(ex.usage.cached_prompt, None, "unreported, never 0");
}

#[tokio::test]
async fn reasoning_comes_before_the_first_answer_token() {
    let events = vec![
        script::chunk(None, Some("Let me think"), None).to_string(),
        script::chunk(None, Some(" more"), None).to_string(),
        script::chunk(Some("42"), None, Some("stop")).to_string(),
        "[DONE]".to_owned(),
    ];
    let server = Script::new(vec![script::stream_events(
        &events,
        Duration::from_millis(5),
        Framing::default(),
    )])
    .start()
    .await
    .unwrap();
    let ex = client(&server).send(&streaming("q"), 0).await;
    assert_eq!(ex.reasoning, "Let me think more");
    assert_eq!(ex.content, "42");
    let tl = &ex.timeline;
    assert!(tl.first_content.unwrap() < tl.first_answer.unwrap());
    assert_eq!(tl.chunks.iter().filter(|c| c.answer).count(), 1);
}

#[tokio::test]
async fn crlf_framing_no_space_keepalives_and_null_choices() {
    let events = vec![
        r#"{"choices":null,"prompt_filter_results":[]}"#.to_owned(),
        script::chunk(Some("ok"), None, Some("")).to_string(),
        script::chunk(None, None, Some("stop")).to_string(),
        "[DONE]".to_owned(),
    ];
    let framing = Framing {
        crlf: true,
        no_space: true,
    };
    let mut reply = Reply::event_stream()
        .bytes(": keep-alive\r\n\r\n")
        .delay(Duration::from_millis(2));
    reply
        .parts
        .extend(script::stream_events(&events, Duration::ZERO, framing).parts);
    let server = Script::new(vec![reply]).start().await.unwrap();
    let ex = client(&server).send(&streaming("q"), 0).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.content, "ok");
    assert_eq!(ex.timeline.comments.len(), 1);
    assert!(ex.timeline.comments[0] < ex.timeline.first_event.unwrap());
    assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
}

#[tokio::test]
async fn throttled_429_honours_retry_after_then_succeeds() {
    let server = Script::new(vec![
        script::rate_limited(0.05),
        script::completion("done", Some(script::usage_openai(5, 1, None))),
    ])
    .start()
    .await
    .unwrap();
    let out = client(&server).chat(&ChatRequest::user("q")).await;
    assert_eq!(out.result().unwrap().content, "done");
    assert_eq!(out.retried.len(), 1);
    let first = out.retried[0].error.as_ref().unwrap();
    assert_eq!(first.class, ErrorClass::Throttled);
    assert_eq!(first.status, Some(429));
    assert_eq!(first.retry_after, Some(Duration::from_millis(50)));
    assert_eq!(out.retried[0].rate_limit.remaining_requests, Some(0));
    // The second attempt waited at least what the server asked.
    let gap = out.last.timeline.sent - out.retried[0].timeline.done.unwrap();
    assert!(gap >= 50_000_000, "waited only {gap} ns");
    assert_eq!(chat_requests(&server), 2);
}

#[tokio::test]
async fn transient_503s_and_resets_before_headers_are_retried() {
    let server = Script::new(vec![
        script::error(503, "server_error", "overloaded"),
        Reply::reset_before_headers(),
        script::completion("third time", None),
    ])
    .start()
    .await
    .unwrap();
    let out = client(&server).chat(&ChatRequest::user("q")).await;
    assert_eq!(out.result().unwrap().content, "third time");
    let kinds: Vec<_> = out
        .retried
        .iter()
        .map(|e| e.error.as_ref().unwrap().kind)
        .collect();
    assert_eq!(
        kinds,
        [FailureKind::Status, FailureKind::ResetBeforeHeaders]
    );
    assert!(
        out.retried
            .iter()
            .all(|e| e.error.as_ref().unwrap().class == ErrorClass::Transient)
    );
    assert_eq!(chat_requests(&server), 3);
}

#[tokio::test]
async fn a_stream_reset_after_content_is_not_silently_resent() {
    let broken = Reply::event_stream()
        .bytes(Framing::default().event(&script::chunk(Some("partial"), None, None).to_string()))
        .delay(Duration::from_millis(2))
        .reset()
        .fault("reset_mid_stream");
    let server = Script::new(vec![broken, script::completion("whole", None)])
        .start()
        .await
        .unwrap();
    let c = client(&server);
    let out = c.chat(&streaming("q")).await;
    let err = out.result().unwrap_err();
    assert_eq!(err.kind, FailureKind::ResetMidStream);
    assert!(err.delivered_content);
    assert_eq!(out.last.content, "partial", "what arrived is kept");
    assert_eq!(chat_requests(&server), 1, "not re-sent");
    // The caller may decide to re-send.
    let out = c.chat_with(&streaming("q"), true).await;
    assert_eq!(out.result().unwrap().content, "whole");
}

#[tokio::test]
async fn truncated_and_malformed_streams_are_failures_not_answers() {
    let truncated = Reply::event_stream()
        .bytes(Framing::default().event(&script::chunk(Some("half"), None, None).to_string()));
    let malformed = Reply::event_stream()
        .bytes(Framing::default().event(&script::chunk(Some("a"), None, None).to_string()))
        .bytes("data: {\"choices\":[{\"delta\":{\"content\":\"b\"\n\n")
        .bytes(Framing::default().event("[DONE]"));
    let in_stream_error = script::stream_events(
        &[r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#.to_owned()],
        Duration::ZERO,
        Framing::default(),
    );
    let server = Script::new(vec![truncated, malformed, in_stream_error])
        .start()
        .await
        .unwrap();
    let c = client(&server);
    let t = c.send(&streaming("q"), 0).await;
    assert_eq!(t.error.as_ref().unwrap().kind, FailureKind::Truncated);
    assert_eq!(t.content, "half");
    let m = c.send(&streaming("q"), 0).await;
    assert_eq!(m.error.as_ref().unwrap().kind, FailureKind::Malformed);
    assert!(m.error.as_ref().unwrap().message.contains("not JSON"));
    let e = c.send(&streaming("q"), 0).await;
    let err = e.error.unwrap();
    assert_eq!(err.kind, FailureKind::ErrorInBody);
    assert_eq!(err.message, "upstream overloaded");
}

#[tokio::test]
async fn permanent_errors_are_not_retried_and_never_show_the_key() {
    let echo = format!("Incorrect API key provided: {KEY}. Check your key.");
    let server = Script::new(vec![
        script::error(401, "invalid_request_error", &echo),
        script::error(429, "insufficient_quota", "You exceeded your current quota"),
        script::error(
            400,
            "invalid_request_error",
            "This model's maximum context length is 8192 tokens",
        ),
    ])
    .start()
    .await
    .unwrap();
    let mut ep = endpoint(&server);
    ep.api_key = Some(pagemill_client::ApiKey::new(KEY));
    ep.api_key_env = Some("TEST_KEY".into());
    let c = Client::new(ep).unwrap();
    let out = c.chat(&ChatRequest::user("q")).await;
    let err = out.result().unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(out.retried.is_empty());
    let shown = format!(
        "{err} {err:?} {:?} {}",
        out.last,
        serde_json::to_string(&out.last).unwrap()
    );
    assert!(!shown.contains("abcdefghijklmnop"), "{shown}");
    // The key went to the server, in the header only.
    let auth = server.log().len();
    assert_eq!(auth, 1);
    let quota = c.chat(&ChatRequest::user("q")).await;
    assert_eq!(quota.result().unwrap_err().class, ErrorClass::Permanent);
    assert!(quota.retried.is_empty());
    let ctx = c.chat(&ChatRequest::user("q")).await;
    assert_eq!(ctx.result().unwrap_err().class, ErrorClass::ContextTooLong);
    assert_eq!(chat_requests(&server), 3);
}

#[tokio::test]
async fn authorization_and_configured_headers_and_body_reach_the_server() {
    use std::sync::{Arc, Mutex};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let server = pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), move |req| {
        seen2
            .lock()
            .unwrap()
            .push((req.headers.clone(), req.json()));
        script::completion("ok", None)
    })
    .await
    .unwrap();
    let mut ep = endpoint(&server);
    ep.api_key = Some(pagemill_client::ApiKey::new(KEY));
    ep.headers.insert("X-Org".into(), "acme".into());
    ep.body.insert("temperature".into(), serde_json::json!(0.5));
    ep.body.insert("top_k".into(), serde_json::json!(20));
    let c = Client::new(ep).unwrap();
    let mut req = ChatRequest::user("q");
    req.temperature = Some(0.0);
    assert!(c.send(&req, 0).await.is_ok());
    let (headers, body) = seen.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], format!("Bearer {KEY}").as_str());
    assert_eq!(headers["x-org"], "acme");
    assert_eq!(body["temperature"], 0.0, "request fields win");
    assert_eq!(body["top_k"], 20, "endpoint body parameters are merged");
}

#[tokio::test]
async fn pooled_connections_are_reused_and_fresh_mode_is_not() {
    let server = Script::new(vec![script::completion("ok", None)])
        .start()
        .await
        .unwrap();
    let pooled = client(&server);
    let a = pooled
        .send(&ChatRequest::user("q"), 0)
        .await
        .timeline
        .connection
        .unwrap();
    let b = pooled
        .send(&ChatRequest::user("q"), 0)
        .await
        .timeline
        .connection
        .unwrap();
    assert!(!a.reused && a.connect_ns.is_some());
    assert!(b.reused && b.connect_ns.is_none());
    assert_eq!(a.id, b.id);

    let mut ep = endpoint(&server);
    ep.transport.fresh_connections = true;
    let fresh = Client::new(ep).unwrap();
    let a = fresh
        .send(&ChatRequest::user("q"), 0)
        .await
        .timeline
        .connection
        .unwrap();
    let b = fresh
        .send(&ChatRequest::user("q"), 0)
        .await
        .timeline
        .connection
        .unwrap();
    assert!(!a.reused && !b.reused);
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn http2_prior_knowledge_multiplexes_on_one_connection() {
    let server = Script::new(vec![script::stream(
        &["x"],
        None,
        Duration::ZERO,
        Framing::default(),
    )])
    .start()
    .await
    .unwrap();
    let mut ep = endpoint(&server);
    ep.transport.http2 = true;
    let c = Client::new(ep).unwrap();
    let req = streaming("q");
    let (a, b) = tokio::join!(c.send(&req, 0), c.send(&req, 0));
    assert!(a.is_ok() && b.is_ok(), "{:?} {:?}", a.error, b.error);
    let (ca, cb) = (
        a.timeline.connection.unwrap(),
        b.timeline.connection.unwrap(),
    );
    assert_eq!(ca.id, cb.id, "both streams on one HTTP/2 connection");
    assert!(ca.reused != cb.reused);
}

#[tokio::test]
async fn a_stalled_stream_times_out() {
    let stalled = Reply::event_stream()
        .bytes(Framing::default().event(&script::chunk(Some("a"), None, None).to_string()))
        .delay(Duration::from_secs(30));
    let server = Script::new(vec![stalled]).start().await.unwrap();
    let mut ep = endpoint(&server);
    ep.transport.idle_timeout_secs = 0.2;
    let ex = Client::new(ep).unwrap().send(&streaming("q"), 0).await;
    let err = ex.error.unwrap();
    assert_eq!(err.kind, FailureKind::Timeout);
    assert!(err.delivered_content);
}

#[tokio::test]
async fn nothing_listening_is_a_transient_connect_failure() {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ep = Endpoint::new("down", format!("http://127.0.0.1:{port}/v1"), "m");
    ep.retry.max_attempts = 1;
    let ex = Client::new(ep)
        .unwrap()
        .send(&ChatRequest::user("q"), 0)
        .await;
    let err = ex.error.unwrap();
    assert_eq!(err.kind, FailureKind::Connect);
    assert_eq!(err.class, ErrorClass::Transient);
}

/// A stream's events are timed by when their bytes reached the machine, not by when the
/// client got round to reading them: here the client's only thread is busy while an event
/// arrives (as at high concurrency, when a connection waits behind hundreds of ready tasks),
/// and the event's time must still be its arrival. A server on its own thread, so it writes
/// while the client cannot read.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn an_event_that_arrives_while_the_client_is_busy_is_timed_by_its_arrival() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, mpsc};

    use pagemill_client::clock::mono_ns;

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (go, go_rx) = mpsc::channel::<()>();
    let written = Arc::new(AtomicU64::new(0));
    let written_at = written.clone();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        sock.set_nodelay(true).unwrap();
        // The request: its head, then as many body bytes as it says.
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        let body_len = loop {
            let n = sock.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
            if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                break end + 4 + len;
            }
        };
        while req.len() < body_len {
            let n = sock.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
        }
        let frame = |data: String| format!("{:x}\r\n{data}\r\n", data.len());
        let event = |content: Option<&str>, finish: Option<&str>| {
            frame(format!(
                "data: {}\n\n",
                script::chunk(content, None, finish)
            ))
        };
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                    transfer-encoding: chunked\r\n\r\n";
        sock.write_all(format!("{head}{}", event(Some("a"), None)).as_bytes())
            .unwrap();
        go_rx.recv().unwrap();
        let at = mono_ns();
        sock.write_all(event(Some("b"), None).as_bytes()).unwrap();
        written_at.store(at, Ordering::SeqCst);
        go_rx.recv().unwrap();
        let done = frame("data: [DONE]\n\n".into());
        sock.write_all(format!("{}{done}0\r\n\r\n", event(None, Some("stop"))).as_bytes())
            .unwrap();
        // Hold the connection until the client has read it all.
        let _ = sock.read(&mut buf);
    });
    let client = Client::new(Endpoint::new(
        "busy",
        format!("http://127.0.0.1:{port}/v1"),
        "m",
    ))
    .unwrap();
    let request = tokio::spawn(async move { client.send(&streaming("q"), mono_ns()).await });
    // Let the request go out and its first event come back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Now keep the runtime's only thread busy while the server writes the second event, and a
    // while after it has.
    go.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while written.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    std::thread::sleep(Duration::from_millis(20));
    let busy_until = mono_ns();
    // Free, the client reads the second event on its own before the rest is written (one read
    // of both would be timed by the later bytes' arrival).
    tokio::time::sleep(Duration::from_millis(50)).await;
    go.send(()).unwrap();
    let ex = request.await.unwrap();
    server.join().unwrap();
    assert!(ex.is_ok(), "{:?}", ex.error);
    let sent_b = written.load(Ordering::SeqCst);
    assert!(sent_b > 0, "the server never wrote the second event");
    assert_eq!(ex.timeline.chunks.len(), 2);
    let b = ex.timeline.chunks[1].at;
    assert!(b >= sent_b, "received {b} before it was sent at {sent_b}");
    // Read no earlier than `busy_until`; arrived while the client was busy.
    assert!(
        b < busy_until,
        "timed {:.1} ms after it arrived: when it was read, not when it came",
        (b - sent_b) as f64 / 1e6
    );
}
