//! The simulated provider: answers chat completions with text of exactly the requested length,
//! paced by a profile's time to first token and time per token, with OpenAI-style usage.
//!
//! This is the simulator's first cut, enough for `pagemill chat` and `doctor` to run with no
//! network and no key; the latency model, cache emulation, rate limits and faults of issue 3
//! grow here from the same [`Reply`] machinery.

use std::net::SocketAddr;
use std::time::Duration;

use pagemill_client::wire::ChatRequest;
use serde_json::{Value, json};

use crate::script::{self, Framing, models_reply};
use crate::server::{Received, Reply, ServerHandle, serve};

/// Model name the simulator lists and answers as.
pub const MODEL: &str = "sim-model";

/// How a simulated provider behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Preset name.
    pub name: String,
    /// Time to first token.
    pub ttft: Duration,
    /// Time between tokens.
    pub per_token: Duration,
    /// Tokens per streamed chunk.
    pub tokens_per_chunk: usize,
    /// Answer length when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
}

impl Profile {
    /// A fast local server: 20 ms to first token, 5 ms a token.
    pub fn fast_local() -> Self {
        Self {
            name: "fast-local".into(),
            ttft: Duration::from_millis(20),
            per_token: Duration::from_millis(5),
            tokens_per_chunk: 1,
            default_max_tokens: 32,
        }
    }

    /// No delays at all (tests).
    pub fn instant() -> Self {
        Self {
            name: "instant".into(),
            ttft: Duration::ZERO,
            per_token: Duration::ZERO,
            ..Self::fast_local()
        }
    }

    /// A preset by name.
    pub fn by_name(name: &str) -> Option<Self> {
        match name {
            "fast-local" => Some(Self::fast_local()),
            "instant" => Some(Self::instant()),
            _ => None,
        }
    }
}

/// Starts simulated providers.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Serves `profile` on `127.0.0.1:0`.
    pub async fn start(profile: Profile) -> std::io::Result<ServerHandle> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), profile).await
    }

    /// Serves `profile` on `addr`.
    pub async fn start_on(addr: SocketAddr, profile: Profile) -> std::io::Result<ServerHandle> {
        serve(addr, move |req| answer(&profile, req)).await
    }
}

/// Words the answers are made of when the prompt has none.
const FILLER: &[&str] = &[
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog",
];

fn answer(profile: &Profile, req: &Received) -> Reply {
    if req.path.ends_with("/models") {
        return models_reply(&[MODEL.to_owned()]);
    }
    if !req.path.ends_with("/chat/completions") {
        return script::error(404, "not_found", "no such route");
    }
    let Ok(chat) = serde_json::from_slice::<ChatRequest>(&req.body) else {
        return script::error(
            400,
            "invalid_request_error",
            "body is not a chat completion request",
        );
    };
    let prompt_words: Vec<&str> = chat
        .messages
        .iter()
        .flat_map(|m| m.content.split_whitespace())
        .collect();
    // One word per token: the simulator's tokenizer.
    let prompt_tokens = prompt_words.len() as u64 + 3 * chat.messages.len() as u64 + 3;
    let n = chat.max_tokens.unwrap_or(profile.default_max_tokens).max(1) as usize;
    let source: &[&str] = if prompt_words.is_empty() {
        FILLER
    } else {
        &prompt_words
    };
    let mut tokens: Vec<String> = (0..n)
        .map(|i| {
            let w = source.get(i % source.len()).copied().unwrap_or("x");
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect();
    if wants_json(&chat) {
        // A JSON object whose text is the same words, so the answer parses.
        let text: String = tokens.concat();
        tokens = vec![json!({ "text": text }).to_string()];
    }
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prompt_tokens + n as u64,
        "prompt_tokens_details": {"cached_tokens": 0},
    });
    if !chat.stream {
        let pause = profile.ttft + profile.per_token * n as u32;
        return script::completion(&tokens.concat(), Some(usage)).head_delay(pause);
    }
    let include_usage = chat.stream_options.is_some_and(|o| o.include_usage);
    let framing = Framing::default();
    let mut reply = Reply::event_stream()
        .bytes(framing.event(&script::chunk(Some(""), None, None).to_string()))
        .delay(profile.ttft);
    let per_chunk = profile.tokens_per_chunk.max(1);
    for (i, group) in tokens.chunks(per_chunk).enumerate() {
        if i > 0 {
            reply = reply.delay(profile.per_token * group.len() as u32);
        }
        let piece = group.concat();
        reply = reply.bytes(framing.event(&script::chunk(Some(&piece), None, None).to_string()));
    }
    reply = reply.bytes(framing.event(&script::chunk(None, None, Some("length")).to_string()));
    if include_usage {
        reply = reply.bytes(framing.event(&script::usage_chunk(usage).to_string()));
    }
    reply.bytes(framing.event("[DONE]"))
}

fn wants_json(chat: &ChatRequest) -> bool {
    chat.response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "json_object" || t == "json_schema")
}
