//! One [`ChatRequest`] in each API's own body, and each API's answers read into an
//! [`crate::Exchange`]: [`anthropic`] (the Messages API) and [`responses`] (OpenAI's Responses
//! API). Chat completions are read in [`crate::stream`], whose fast path they need.

pub mod anthropic;
pub mod responses;

use serde_json::{Map, Value};

use crate::dialect::{Api, Dialect};
use crate::endpoint::Endpoint;
use crate::wire::{ChatRequest, StreamOptions};

/// The JSON body of `req` for `endpoint` in its dialect: the endpoint's model and reasoning
/// effort filled in when the request has none, its body parameters merged (request fields
/// win), usage asked for where the dialect wants it asked.
pub fn body(dialect: &Dialect, endpoint: &Endpoint, req: &ChatRequest) -> Value {
    let mut req = req.clone();
    if req.model.is_empty() {
        req.model.clone_from(&endpoint.model);
    }
    if req.reasoning_effort.is_none() {
        req.reasoning_effort = endpoint.reasoning_effort;
    }
    let mut body = match dialect.api {
        _ if !req.prompts.is_empty() => prompt_array(dialect, &req),
        Api::Chat => chat(dialect, req),
        Api::Anthropic => anthropic::request(&req),
        Api::Responses => responses::request(&req),
    };
    for (k, v) in &endpoint.body {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(body)
}

fn chat(dialect: &Dialect, mut req: ChatRequest) -> Map<String, Value> {
    if req.stream && req.stream_options.is_none() && dialect.asks_stream_usage() {
        req.stream_options = Some(StreamOptions {
            include_usage: true,
        });
    }
    match serde_json::to_value(&req) {
        Ok(Value::Object(map)) => map,
        // A struct of strings, numbers and maps always serializes to an object.
        _ => Map::new(),
    }
}

/// The path a request goes to: its API's, or legacy completions for a prompt array.
pub fn path(dialect: &Dialect, req: &ChatRequest) -> &'static str {
    if req.prompts.is_empty() {
        dialect.api.path()
    } else {
        "completions"
    }
}

/// A legacy completions body with the request's prompts as its prompt array (its messages
/// unsent: each prompt is already a whole conversation in the model's chat template).
fn prompt_array(dialect: &Dialect, req: &ChatRequest) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("model".into(), Value::from(req.model.clone()));
    body.insert("prompt".into(), Value::from(req.prompts.clone()));
    if let Some(n) = req.max_tokens {
        body.insert("max_tokens".into(), Value::from(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), Value::from(t));
    }
    if let Some(e) = req.ignore_eos {
        body.insert("ignore_eos".into(), Value::from(e));
    }
    if let Some(s) = req.seed {
        body.insert("seed".into(), Value::from(s));
    }
    if !req.stop.is_empty() {
        body.insert("stop".into(), Value::from(req.stop.clone()));
    }
    // vLLM, SGLang and llama.cpp's server take a completion's `response_format` as a chat's,
    // one schema for every prompt of the array.
    if let Some(f) = &req.response_format {
        body.insert("response_format".into(), f.clone());
    }
    if req.stream {
        body.insert("stream".into(), Value::from(true));
        if dialect.stream_usage == crate::dialect::StreamUsage::Requested {
            body.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
        }
    }
    body
}

/// The schema of a chat `response_format` of type `json_schema`, with its name and strictness.
pub(crate) fn json_schema(format: &Value) -> Option<(&Value, &str, bool)> {
    if format.get("type").and_then(Value::as_str) != Some("json_schema") {
        return None;
    }
    let js = format.get("json_schema")?;
    let schema = js.get("schema")?;
    let name = js.get("name").and_then(Value::as_str).unwrap_or("answer");
    let strict = js.get("strict").and_then(Value::as_bool).unwrap_or(false);
    Some((schema, name, strict))
}

/// A body or event that is not what `api` sends.
pub(crate) fn malformed(
    api: &str,
    what: &str,
    e: &serde_json::Error,
    data: &str,
) -> crate::RequestError {
    let shown: String = data.chars().take(120).collect();
    crate::RequestError::new(
        crate::FailureKind::Malformed,
        crate::ErrorClass::Transient,
        format!("{what} is not a {api} event ({e}): {shown}"),
    )
}

/// A finish reason in chat completions' words, whatever the API said.
pub(crate) fn finish_reason(api_reason: &str) -> &str {
    match api_reason {
        "end_turn" | "stop_sequence" | "completed" | "pause_turn" => "stop",
        "max_tokens" | "max_output_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        other => other,
    }
}
