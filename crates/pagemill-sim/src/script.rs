//! Scripted providers: a server that answers chat requests with a fixed sequence of replies,
//! and builders for those replies in each provider dialect and with each fault.
//!
//! Tests use this to reproduce exactly one behaviour at a time (a 429 with `Retry-After`, a
//! DeepSeek usage object, a stream cut after two chunks); the simulator's profiles produce the
//! same [`Reply`] values from a latency model instead of a list.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::server::{Received, Reply, ServerHandle, serve};

/// How a stream's events are framed on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Framing {
    /// End lines with CRLF instead of LF.
    pub crlf: bool,
    /// Write `data:x` instead of `data: x`.
    pub no_space: bool,
}

impl Framing {
    /// One event with this framing.
    pub fn event(&self, data: &str) -> String {
        let nl = if self.crlf { "\r\n" } else { "\n" };
        let sep = if self.no_space { "data:" } else { "data: " };
        let mut out = String::with_capacity(data.len() + 16);
        for line in data.split('\n') {
            out.push_str(sep);
            out.push_str(line);
            out.push_str(nl);
        }
        out.push_str(nl);
        out
    }
}

/// A `chat.completion.chunk` with optional answer, reasoning and finish reason.
pub fn chunk(content: Option<&str>, reasoning: Option<&str>, finish: Option<&str>) -> Value {
    let mut delta = serde_json::Map::new();
    if let Some(c) = content {
        delta.insert("content".into(), json!(c));
    }
    if let Some(r) = reasoning {
        delta.insert("reasoning_content".into(), json!(r));
    }
    json!({
        "id": "chatcmpl-sim",
        "object": "chat.completion.chunk",
        "model": "sim-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    })
}

/// A final usage chunk (`choices: []`), as OpenAI sends with `include_usage`.
pub fn usage_chunk(usage: Value) -> Value {
    json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "model": "sim-model",
           "choices": [], "usage": usage})
}

/// OpenAI usage: `cached` inside `prompt_tokens_details` (omitted when `None`).
pub fn usage_openai(prompt: u64, completion: u64, cached: Option<u64>) -> Value {
    let mut u = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                       "total_tokens": prompt + completion});
    if let Some(c) = cached {
        u["prompt_tokens_details"] = json!({"cached_tokens": c});
    }
    u
}

/// DeepSeek usage: cache hit and miss counts.
pub fn usage_deepseek(prompt: u64, completion: u64, hit: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion,
           "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt - hit})
}

/// Anthropic-style usage: input excludes cache reads and writes.
pub fn usage_anthropic(input: u64, output: u64, read: u64, write: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output,
           "cache_read_input_tokens": read, "cache_creation_input_tokens": write})
}

/// A streamed answer: one chunk per piece, a finish chunk, an optional usage chunk, `[DONE]`.
/// Each event is written separately, `gap` apart.
pub fn stream(pieces: &[&str], usage: Option<Value>, gap: Duration, framing: Framing) -> Reply {
    let mut events: Vec<String> = vec![chunk(Some(""), None, None).to_string()];
    events.extend(
        pieces
            .iter()
            .map(|p| chunk(Some(p), None, None).to_string()),
    );
    events.push(chunk(None, None, Some("stop")).to_string());
    if let Some(u) = usage {
        events.push(usage_chunk(u).to_string());
    }
    events.push("[DONE]".into());
    stream_events(&events, gap, framing)
}

/// Raw events as a stream, each written separately, `gap` apart.
pub fn stream_events(events: &[String], gap: Duration, framing: Framing) -> Reply {
    let mut reply = Reply::event_stream();
    for (i, e) in events.iter().enumerate() {
        if i > 0 && !gap.is_zero() {
            reply = reply.delay(gap);
        }
        reply = reply.bytes(framing.event(e));
    }
    reply
}

/// A non-streamed completion.
pub fn completion(content: &str, usage: Option<Value>) -> Reply {
    let mut body = json!({
        "id": "chatcmpl-sim", "object": "chat.completion", "model": "sim-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
    });
    if let Some(u) = usage {
        body["usage"] = u;
    }
    Reply::json(200, &body)
}

/// An OpenAI-style error body.
pub fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::error(status, kind, message)
}

/// A 429 with `Retry-After` and exhausted `x-ratelimit-*` headers.
pub fn rate_limited(retry_after_secs: f64) -> Reply {
    error(
        429,
        "rate_limit_exceeded",
        "Rate limit reached for requests",
    )
    .header("retry-after", format!("{retry_after_secs}"))
    .header("x-ratelimit-limit-requests", "60")
    .header("x-ratelimit-remaining-requests", "0")
    .header("x-ratelimit-reset-requests", format!("{retry_after_secs}s"))
}

/// A server that answers `GET …/models` with `models` and chat or completion requests with
/// `replies` in order (the last one repeats once they run out); anything else gets a 404.
#[derive(Debug)]
pub struct Script {
    models: Vec<String>,
    replies: Vec<Reply>,
    next: Mutex<usize>,
}

impl Script {
    /// A script serving one model name and these chat replies.
    pub fn new(replies: Vec<Reply>) -> Self {
        Self {
            models: vec!["sim-model".into()],
            replies,
            next: Mutex::new(0),
        }
    }

    /// Changes the model list.
    pub fn with_models(mut self, models: &[&str]) -> Self {
        self.models = models.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    /// The reply to one request.
    pub fn reply(&self, req: &Received) -> Reply {
        if req.path.ends_with("/models") {
            return models_reply(&self.models);
        }
        if !(req.path.ends_with("/chat/completions") || req.path.ends_with("/completions")) {
            return error(404, "not_found", "no such route");
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let i = (*next).min(self.replies.len().saturating_sub(1));
        *next += 1;
        self.replies
            .get(i)
            .cloned()
            .unwrap_or_else(|| error(500, "server_error", "empty script"))
    }

    /// Serves the script on `127.0.0.1:0`.
    pub async fn start(self) -> std::io::Result<ServerHandle> {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        serve(addr, move |req| self.reply(req)).await
    }
}

/// `GET /v1/models` body.
pub fn models_reply(models: &[String]) -> Reply {
    let data: Vec<Value> = models
        .iter()
        .map(|m| json!({"id": m, "object": "model", "owned_by": "pagemill-sim"}))
        .collect();
    Reply::json(200, &json!({"object": "list", "data": data}))
}
