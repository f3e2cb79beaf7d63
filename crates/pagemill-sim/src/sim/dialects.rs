//! The simulator's Anthropic Messages API and OpenAI Responses API: requests read into the
//! chat request the latency model answers, and answers written as each API writes them —
//! events, usage, errors and rate-limit headers in that API's own words.
//!
//! Anthropic caches only up to a `cache_control` breakpoint, all or nothing: the prefix up to
//! the last breakpoint is read from cache when it is there whole, else written (and reported as
//! `cache_creation_input_tokens`, which Anthropic prices above input). A request without a
//! breakpoint caches nothing, as on the real API.

use pagemill_client::wire::{ChatRequest, Message, ReasoningEffort};
use serde::Deserialize;
use serde_json::{Value, json};

use super::framing::Dialect;
use crate::cache::CacheOutcome;
use crate::server::{Part, Reply};

/// Token counts of one answer, for its usage in any dialect.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub(crate) prompt: u64,
    pub(crate) cache: CacheOutcome,
    pub(crate) completion: u64,
    /// Reasoning tokens reported apart (part of `completion`); 0 when the server does not say.
    pub(crate) reasoning: u64,
}

/// The text of a message's `content`: a string, or the `text` of its blocks.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn has_breakpoint(content: &Value) -> bool {
    match content {
        Value::Array(blocks) => blocks.iter().any(|b| b.get("cache_control").is_some()),
        Value::Object(o) => o.contains_key("cache_control"),
        _ => false,
    }
}

/// A Messages API request: the chat request it stands for, and how many of its leading
/// messages end at the last `cache_control` breakpoint (`None`: no breakpoint).
pub(crate) fn parse_anthropic(body: &[u8]) -> Result<(ChatRequest, Option<usize>), String> {
    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        model: String,
        max_tokens: Option<u32>,
        #[serde(default)]
        system: Value,
        #[serde(default)]
        messages: Vec<InMessage>,
        #[serde(default)]
        stream: bool,
        #[serde(default)]
        output_format: Option<Value>,
        #[serde(default)]
        thinking: Option<Value>,
        #[serde(default)]
        temperature: Option<f32>,
    }
    #[derive(Deserialize)]
    struct InMessage {
        role: String,
        #[serde(default)]
        content: Value,
    }
    let r: In =
        serde_json::from_slice(body).map_err(|e| format!("invalid Messages API request: {e}"))?;
    let Some(max_tokens) = r.max_tokens else {
        return Err("max_tokens: Field required".into());
    };
    if r.messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    let thinking = r
        .thinking
        .as_ref()
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("enabled"));
    if thinking.is_some() && r.temperature.is_some_and(|t| t != 1.0) {
        return Err("temperature may only be set to 1 when thinking is enabled".into());
    }
    let mut messages = Vec::new();
    let mut upto = None;
    let system = text_of(&r.system);
    if !system.is_empty() {
        messages.push(Message::system(system));
        if has_breakpoint(&r.system) {
            upto = Some(1);
        }
    }
    for m in &r.messages {
        messages.push(Message {
            role: m.role.clone(),
            content: text_of(&m.content),
        });
        if has_breakpoint(&m.content) {
            upto = Some(messages.len());
        }
    }
    let response_format = r.output_format.and_then(|f| {
        let schema = f.get("schema")?.clone();
        Some(json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}))
    });
    // Thinking is paid out of max_tokens: the answer gets what the budget leaves.
    let budget = thinking
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .map_or(0, |b| b as u32);
    let chat = ChatRequest {
        model: r.model,
        messages,
        max_tokens: Some(max_tokens.saturating_sub(budget).max(1)),
        stream: r.stream,
        response_format,
        reasoning_effort: thinking.map(|_| ReasoningEffort::Medium),
        ..ChatRequest::default()
    };
    Ok((chat, upto))
}

/// A Responses API request as the chat request it stands for.
pub(crate) fn parse_responses(body: &[u8]) -> Result<ChatRequest, String> {
    #[derive(Deserialize)]
    struct In {
        #[serde(default)]
        model: String,
        #[serde(default)]
        input: Value,
        #[serde(default)]
        instructions: Option<String>,
        #[serde(default)]
        max_output_tokens: Option<u32>,
        #[serde(default)]
        stream: bool,
        #[serde(default)]
        text: Option<Value>,
        #[serde(default)]
        reasoning: Option<Value>,
    }
    let r: In =
        serde_json::from_slice(body).map_err(|e| format!("invalid Responses API request: {e}"))?;
    let mut messages = Vec::new();
    if let Some(i) = r.instructions.filter(|i| !i.is_empty()) {
        messages.push(Message::system(i));
    }
    match &r.input {
        Value::String(s) => messages.push(Message::user(s.clone())),
        Value::Array(items) => {
            for item in items {
                let role = item.get("role").and_then(Value::as_str).unwrap_or("user");
                let content = item.get("content").map(text_of).unwrap_or_default();
                messages.push(Message {
                    role: role.to_owned(),
                    content,
                });
            }
        }
        _ => return Err("input: a string or a list of items is required".into()),
    }
    let response_format = r.text.as_ref().and_then(|t| t.get("format")).and_then(|f| {
        match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => Some(json!({"type": "json_schema", "json_schema": {
                "name": f.get("name").cloned().unwrap_or(json!("answer")),
                "schema": f.get("schema").cloned().unwrap_or(json!({}))}})),
            Some("json_object") => Some(json!({"type": "json_object"})),
            _ => None,
        }
    });
    let reasoning_effort = r
        .reasoning
        .as_ref()
        .and_then(|v| v.get("effort"))
        .and_then(Value::as_str)
        .and_then(|e| e.parse().ok());
    Ok(ChatRequest {
        model: r.model,
        messages,
        max_tokens: r.max_output_tokens,
        stream: r.stream,
        response_format,
        reasoning_effort,
        ..ChatRequest::default()
    })
}

/// The usage object of an answer in `dialect` (chat's own comes from the profile's cache
/// dialect, see `State::usage`).
pub(crate) fn usage(dialect: Dialect, c: Counts) -> Value {
    match dialect {
        Dialect::Anthropic => json!({
            "input_tokens": c.prompt.saturating_sub(c.cache.cached + c.cache.written),
            "cache_creation_input_tokens": c.cache.written,
            "cache_read_input_tokens": c.cache.cached,
            "output_tokens": c.completion,
        }),
        _ => json!({
            "input_tokens": c.prompt,
            "input_tokens_details": {"cached_tokens": c.cache.cached},
            "output_tokens": c.completion,
            "output_tokens_details": {"reasoning_tokens": c.reasoning},
            "total_tokens": c.prompt + c.completion,
        }),
    }
}

/// An Anthropic stop reason for a chat finish reason.
fn stop_reason(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        _ => "end_turn",
    }
}

/// An event of a named-event stream: its name and its JSON.
pub(crate) type Named = (&'static str, Vec<u8>);

fn named(name: &'static str, v: &Value) -> Named {
    (name, v.to_string().into_bytes())
}

/// The events before the first piece.
pub(crate) fn start(dialect: Dialect, model: &str, usage: &Value) -> Vec<Named> {
    match dialect {
        Dialect::Anthropic => {
            // The input counts come first; output_tokens here is the API's placeholder.
            let mut u = usage.clone();
            u["output_tokens"] = json!(1);
            vec![named(
                "message_start",
                &json!({"type": "message_start", "message": {"id": "msg_sim", "type": "message",
                    "role": "assistant", "model": model, "content": [], "stop_reason": null,
                    "usage": u}}),
            )]
        }
        _ => vec![named(
            "response.created",
            &json!({"type": "response.created", "response": {"id": "resp_sim",
                "object": "response", "model": model, "status": "in_progress", "output": []}}),
        )],
    }
}

/// The events that open a content block (Anthropic), or an output item (Responses).
pub(crate) fn open_block(dialect: Dialect, index: usize, reasoning: bool) -> Vec<Named> {
    match dialect {
        Dialect::Anthropic => {
            let block = if reasoning {
                json!({"type": "thinking", "thinking": ""})
            } else {
                json!({"type": "text", "text": ""})
            };
            vec![named(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index, "content_block": block}),
            )]
        }
        _ => {
            let item = if reasoning {
                json!({"type": "reasoning", "summary": []})
            } else {
                json!({"type": "message", "role": "assistant", "content": []})
            };
            vec![named(
                "response.output_item.added",
                &json!({"type": "response.output_item.added", "output_index": index, "item": item}),
            )]
        }
    }
}

/// The events that close a content block or output item.
pub(crate) fn close_block(dialect: Dialect, index: usize) -> Vec<Named> {
    match dialect {
        Dialect::Anthropic => vec![named(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        )],
        _ => vec![named(
            "response.output_item.done",
            &json!({"type": "response.output_item.done", "output_index": index}),
        )],
    }
}

/// One piece of the answer (or of its reasoning).
pub(crate) fn piece(dialect: Dialect, index: usize, text: &str, reasoning: bool) -> Named {
    match (dialect, reasoning) {
        (Dialect::Anthropic, true) => named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "thinking_delta", "thinking": text}}),
        ),
        (Dialect::Anthropic, false) => named(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "text_delta", "text": text}}),
        ),
        (_, true) => named(
            "response.reasoning_summary_text.delta",
            &json!({"type": "response.reasoning_summary_text.delta", "output_index": index,
                    "summary_index": 0, "delta": text}),
        ),
        (_, false) => named(
            "response.output_text.delta",
            &json!({"type": "response.output_text.delta", "output_index": index,
                    "content_index": 0, "delta": text}),
        ),
    }
}

/// The events after the last piece: the stop reason and usage, and the stream's end.
pub(crate) fn end(dialect: Dialect, model: &str, finish: &str, usage: &Value) -> Vec<Named> {
    match dialect {
        Dialect::Anthropic => vec![
            named(
                "message_delta",
                &json!({"type": "message_delta",
                        "delta": {"stop_reason": stop_reason(finish), "stop_sequence": null},
                        "usage": {"output_tokens": usage["output_tokens"]}}),
            ),
            named("message_stop", &json!({"type": "message_stop"})),
        ],
        _ => {
            let (name, status, details) = if finish == "length" {
                (
                    "response.incomplete",
                    "incomplete",
                    json!({"reason": "max_output_tokens"}),
                )
            } else {
                ("response.completed", "completed", Value::Null)
            };
            vec![named(
                name,
                &json!({"type": name, "response": {"id": "resp_sim", "object": "response",
                    "model": model, "status": status, "incomplete_details": details,
                    "usage": usage}}),
            )]
        }
    }
}

/// A whole (non-streaming) answer.
pub(crate) fn whole(
    dialect: Dialect,
    model: &str,
    reasoning: &str,
    text: &str,
    finish: &str,
    usage: Value,
) -> Value {
    match dialect {
        Dialect::Anthropic => {
            let mut content = Vec::new();
            if !reasoning.is_empty() {
                content
                    .push(json!({"type": "thinking", "thinking": reasoning, "signature": "sim"}));
            }
            content.push(json!({"type": "text", "text": text}));
            json!({"id": "msg_sim", "type": "message", "role": "assistant", "model": model,
                   "content": content, "stop_reason": stop_reason(finish),
                   "stop_sequence": null, "usage": usage})
        }
        _ => {
            let mut output = Vec::new();
            if !reasoning.is_empty() {
                output.push(json!({"type": "reasoning", "summary": [
                    {"type": "summary_text", "text": reasoning}]}));
            }
            output.push(
                json!({"type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}),
            );
            let (status, details) = if finish == "length" {
                ("incomplete", json!({"reason": "max_output_tokens"}))
            } else {
                ("completed", Value::Null)
            };
            json!({"id": "resp_sim", "object": "response", "model": model, "status": status,
                   "incomplete_details": details, "output": output, "usage": usage})
        }
    }
}

/// Anthropic's error type for a status.
fn anthropic_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// A refusal written as Anthropic writes it: `{"type":"error","error":{…}}` and its headers in
/// `anthropic-ratelimit-*` words.
pub(crate) fn anthropic_reply(mut reply: Reply) -> Reply {
    let message = reply
        .parts
        .iter()
        .find_map(|p| match p {
            Part::Bytes(b) => serde_json::from_slice::<Value>(b).ok(),
            _ => None,
        })
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
    if let Some(message) = message {
        let body = json!({"type": "error", "error": {"type": anthropic_kind(reply.status),
                          "message": message}});
        reply.parts = vec![Part::Bytes(body.to_string().into())];
    }
    reply.headers = anthropic_headers(std::mem::take(&mut reply.headers));
    reply
}

/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` in Anthropic's words:
/// `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, resets as RFC 3339 times.
pub(crate) fn anthropic_headers(headers: Vec<(String, String)>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .map(|(k, v)| {
            let Some(rest) = k.strip_prefix("x-ratelimit-") else {
                return (k, v);
            };
            let Some((field, what)) = rest.split_once('-') else {
                return (k, v);
            };
            let v = if field == "reset" {
                let secs: f64 = v.trim_end_matches('s').parse().unwrap_or(0.0);
                let at = std::time::SystemTime::now()
                    + std::time::Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or_default();
                humantime::format_rfc3339_millis(at).to_string()
            } else {
                v
            };
            (format!("anthropic-ratelimit-{what}-{field}"), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_messages_request_reads_its_breakpoint_and_budget() {
        let body = json!({"model": "m", "max_tokens": 2548,
            "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "doc"}],
            "thinking": {"type": "enabled", "budget_tokens": 2048}});
        let (chat, upto) = parse_anthropic(body.to_string().as_bytes()).unwrap();
        assert_eq!(upto, Some(1));
        assert_eq!(chat.messages[0], Message::system("rules"));
        assert_eq!(chat.max_tokens, Some(500));
        let no_max = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        assert!(parse_anthropic(no_max.to_string().as_bytes()).is_err());
    }

    #[test]
    fn rate_limit_headers_are_renamed_with_times() {
        let h = anthropic_headers(vec![
            ("x-ratelimit-limit-requests".into(), "60".into()),
            ("x-ratelimit-reset-tokens".into(), "1.500s".into()),
            ("retry-after".into(), "2".into()),
        ]);
        assert_eq!(
            h[0],
            ("anthropic-ratelimit-requests-limit".into(), "60".into())
        );
        assert_eq!(h[1].0, "anthropic-ratelimit-tokens-reset");
        assert!(humantime::parse_rfc3339(&h[1].1).is_ok(), "{}", h[1].1);
        assert_eq!(h[2].0, "retry-after");
    }
}
