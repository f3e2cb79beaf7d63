//! The engine behind the same OpenAI-compatible HTTP surface as every other endpoint, so the
//! pipeline and the benchmark need no special case: `GET /v1/models`, `POST /v1/completions`
//! (a raw prompt or a prompt array, see `completions`), `POST /v1/chat/completions`
//! (streaming with `stream_options.include_usage`, or whole), usage with
//! `prompt_tokens_details.cached_tokens`, and `response_format` json_object / json_schema
//! enforced by a grammar during decoding.
//!
//! The HTTP layer is the simulator's loopback server (`pagemill_sim::serve_with`): it already
//! streams from a live handler and keeps a ground-truth log of every write.

use std::sync::Arc;

use bytes::Bytes;
use pagemill_client::ChatRequest;
use pagemill_sim::{Received, ServerHandle, ServerOptions, Sink, serve_with};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::engine::{Engine, Event, Job};

/// Answer tokens when a request sets no `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 1024;

/// Serves `engine` with `options` (address, log).
pub async fn serve(engine: Engine, options: ServerOptions) -> std::io::Result<ServerHandle> {
    let engine = Arc::new(engine);
    serve_with(options, move |req, sink| {
        let engine = Arc::clone(&engine);
        Box::pin(async move { route(&engine, req, sink).await })
    })
    .await
}

async fn route(engine: &Engine, req: Received, mut sink: Sink) {
    let path = req.path.trim_end_matches('/');
    match (req.method.as_str(), path) {
        ("GET", "/v1/models" | "/models") => {
            let id = &engine.info().id;
            let body = json!({"object": "list", "data": [{"id": id, "object": "model", "owned_by": "pagemill-local"}]});
            reply_json(&mut sink, 200, &body).await;
        }
        ("GET", "/health") => reply_json(&mut sink, 200, &json!({"status": "ok"})).await,
        ("POST", "/v1/chat/completions" | "/chat/completions") => chat(engine, &req, sink).await,
        ("POST", "/v1/completions" | "/completions") => {
            crate::completions::completions(engine, &req, sink).await;
        }
        _ => {
            let e = error_body(
                "not_found",
                &format!("no route for {} {}", req.method, req.path),
            );
            reply_json(&mut sink, 404, &e).await;
        }
    }
}

pub(crate) fn error_body(kind: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "code": Value::Null}})
}

pub(crate) async fn reply_json(sink: &mut Sink, status: u16, body: &Value) {
    sink.head(
        status,
        &[("content-type".into(), "application/json".into())],
    );
    sink.send(Bytes::from(body.to_string()), None, 0).await;
}

/// What `response_format` asks for, as a grammar.
pub(crate) fn grammar_for(format: Option<&Value>) -> Result<Option<String>, String> {
    let Some(f) = format else { return Ok(None) };
    match f.get("type").and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => llama_cpp_2::json_schema_to_grammar(&schema_text(&any_object()))
            .map(Some)
            .map_err(|e| e.to_string()),
        Some("json_schema") => {
            let schema = f
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or("response_format json_schema needs json_schema.schema")?;
            llama_cpp_2::json_schema_to_grammar(&schema_text(schema))
                .map(Some)
                .map_err(|e| format!("json_schema cannot be turned into a grammar: {e}"))
        }
        Some(other) => Err(format!("response_format type `{other}` is not supported")),
    }
}

/// What `json_object` allows: an object of at most two levels whose strings and arrays are
/// bounded, so a small model that starts repeating itself is walked to a close instead of
/// writing until `max_tokens` (an unbounded "any JSON" grammar lets it wander forever).
fn any_object() -> Value {
    let scalar = json!({"anyOf": [
        {"type": "string", "maxLength": 400}, {"type": "number"}, {"type": "boolean"}, {"type": "null"}
    ]});
    let leaf = json!({"anyOf": [
        scalar.clone(),
        {"type": "array", "maxItems": 16, "items": scalar.clone()},
        {"type": "object", "additionalProperties": scalar.clone()}
    ]});
    let value = json!({"anyOf": [
        leaf.clone(),
        {"type": "array", "maxItems": 16, "items": leaf.clone()},
        {"type": "object", "additionalProperties": leaf}
    ]});
    json!({"type": "object", "additionalProperties": value})
}

/// A schema as JSON text with each object's `properties` in the order of its `required` list
/// (then the rest): llama.cpp's converter emits properties in the order it reads them, and
/// `serde_json` sorts keys, which would make a model write `{"entities": …, "id": …}` when the
/// prompt shows `{"id": …, "entities": …}` — small models then lose their way.
pub fn schema_text(schema: &Value) -> String {
    let mut out = String::new();
    write_ordered(schema, &mut out);
    out
}

fn write_ordered(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let order: Vec<&str> = map
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            out.push('{');
            for (i, (k, val)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                match (k.as_str(), val) {
                    ("properties", Value::Object(props)) => {
                        let mut keys: Vec<&String> = props.keys().collect();
                        keys.sort_by_key(|k| {
                            order.iter().position(|r| r == k).unwrap_or(usize::MAX)
                        });
                        out.push('{');
                        for (j, key) in keys.iter().enumerate() {
                            if j > 0 {
                                out.push(',');
                            }
                            out.push_str(&Value::String((*key).clone()).to_string());
                            out.push(':');
                            write_ordered(&props[*key], out);
                        }
                        out.push('}');
                    }
                    _ => write_ordered(val, out),
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ordered(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

async fn chat(engine: &Engine, req: &Received, mut sink: Sink) {
    let chat: ChatRequest = match serde_json::from_slice(&req.body) {
        Ok(c) => c,
        Err(e) => {
            let body = error_body(
                "invalid_request_error",
                &format!("the body is not a chat request: {e}"),
            );
            return reply_json(&mut sink, 400, &body).await;
        }
    };
    let rx = match submit(engine, &chat, req) {
        Ok(rx) => rx,
        Err(e) => {
            return reply_json(&mut sink, 400, &error_body("invalid_request_error", &e)).await;
        }
    };
    let mut answer = Answer {
        id: format!("chatcmpl-local-{}", req.index),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: engine.info().id.clone(),
        stream: chat.stream,
        usage: (0, 0, 0),
        text: String::new(),
        finish: "stop",
        headed: false,
    };
    if answer.relay(rx, &mut sink).await {
        let include_usage = chat
            .stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage);
        answer.end(include_usage, sink).await;
    }
}

/// Hands the request to the engine (its schema as a grammar); the receiver hears the answer.
fn submit(
    engine: &Engine,
    chat: &ChatRequest,
    req: &Received,
) -> Result<UnboundedReceiver<Event>, String> {
    let grammar = grammar_for(chat.response_format.as_ref())?;
    let (tx, rx) = unbounded_channel();
    engine.submit(Job {
        messages: chat
            .messages
            .iter()
            .map(|m| (m.role.clone(), m.content.clone()))
            .collect(),
        raw: false,
        max_tokens: chat.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS).max(1),
        temperature: chat.temperature.unwrap_or(0.8),
        top_p: chat.top_p.unwrap_or(0.95),
        seed: chat
            .seed
            .map_or_else(|| rand_seed(req.received_ns), |s| s as u32),
        stop: chat.stop.clone(),
        grammar,
        ignore_eos: chat.ignore_eos.unwrap_or(false),
        events: tx,
    });
    Ok(rx)
}

/// One answer on its way out: streamed chunk by chunk, or gathered for one body.
struct Answer {
    id: String,
    created: u64,
    model: String,
    stream: bool,
    /// Prompt, cached and completion tokens.
    usage: (u32, u32, u32),
    text: String,
    finish: &'static str,
    /// The stream's head has gone out.
    headed: bool,
}

impl Answer {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
               "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    }

    /// Relays the engine's events until the answer is done; false when the response has ended
    /// already (the client left, or the engine failed and said so).
    async fn relay(&mut self, mut rx: UnboundedReceiver<Event>, sink: &mut Sink) -> bool {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Started {
                    prompt_tokens,
                    cached_tokens,
                } => {
                    self.usage.0 = prompt_tokens;
                    self.usage.1 = cached_tokens;
                    let e = sink.entry_mut();
                    e.prompt_tokens = u64::from(prompt_tokens);
                    e.cached_tokens = u64::from(cached_tokens);
                    if self.stream {
                        sink.head(200, &sse_headers());
                        self.headed = true;
                        let first = self.chunk(json!({"role": "assistant", "content": ""}), None);
                        if !sink.send(event(&first), None, 0).await {
                            return false; // the client left: dropping rx cancels the job
                        }
                    }
                }
                Event::Text(t) => {
                    if self.stream {
                        let c = self.chunk(json!({"content": t}), None);
                        if !sink.send(event(&c), None, 1).await {
                            return false;
                        }
                    } else {
                        self.text.push_str(&t);
                    }
                }
                Event::Done {
                    finish_reason,
                    completion_tokens,
                    ..
                } => {
                    self.usage.2 = completion_tokens;
                    self.finish = finish_reason;
                    sink.entry_mut().completion_tokens = u64::from(completion_tokens);
                    return true;
                }
                Event::Failed { status, message } => {
                    if self.headed {
                        let e = error_body("server_error", &message);
                        sink.send(event(&e), None, 0).await;
                        return false;
                    }
                    let kind = if status == 400 {
                        "invalid_request_error"
                    } else {
                        "server_error"
                    };
                    reply_json(sink, status, &error_body(kind, &message)).await;
                    return false;
                }
            }
        }
        true
    }

    /// The end: the finish chunk, usage when asked and `[DONE]`; or the whole body.
    async fn end(self, include_usage: bool, mut sink: Sink) {
        let usage_json = json!({
            "prompt_tokens": self.usage.0, "completion_tokens": self.usage.2,
            "total_tokens": self.usage.0 + self.usage.2,
            "prompt_tokens_details": {"cached_tokens": self.usage.1}
        });
        if self.stream {
            if !self.headed {
                sink.head(200, &sse_headers());
            }
            let last = self.chunk(json!({}), Some(self.finish));
            sink.queue(&event(&last), None, 0);
            if include_usage {
                let u = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                               "model": self.model, "choices": [], "usage": usage_json});
                sink.queue(&event(&u), None, 0);
            }
            sink.queue(b"data: [DONE]\n\n", None, 0);
            sink.flush().await;
        } else {
            let body = json!({
                "id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text},
                             "finish_reason": self.finish}],
                "usage": usage_json
            });
            reply_json(&mut sink, 200, &body).await;
        }
    }
}

pub(crate) fn sse_headers() -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "text/event-stream".into()),
        ("cache-control".into(), "no-cache".into()),
    ]
}

pub(crate) fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

pub(crate) fn rand_seed(ns: u64) -> u32 {
    (ns ^ (ns >> 32)) as u32
}

/// Starts an engine and serves it on `options.addr`, in this process.
pub async fn start(
    config: crate::engine::EngineConfig,
    options: ServerOptions,
) -> Result<(Engine, ServerHandle), crate::start::LocalError> {
    use crate::start::LocalError;
    let path = config.model.clone();
    let addr = options.addr;
    let engine = tokio::task::spawn_blocking(move || Engine::start(&config))
        .await
        .map_err(|e| LocalError::Task(format!("the engine start task: {e}")))?
        .map_err(|source| LocalError::Engine { path, source })?;
    let handle = serve(engine.clone(), options)
        .await
        .map_err(|source| LocalError::Listen { addr, source })?;
    Ok((engine, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_follow_the_required_order() {
        let schema = json!({"type": "object", "required": ["id", "entities", "b"],
            "properties": {"entities": {"type": "array"}, "id": {"type": "string"}, "a": {}, "b": {"type": "object", "required": ["z", "y"], "properties": {"y": {}, "z": {}}}}});
        let text = schema_text(&schema);
        let pos = |k: &str| text.find(&format!("\"{k}\":")).unwrap();
        assert!(
            pos("id") < pos("entities") && pos("entities") < pos("b") && pos("b") < pos("a"),
            "{text}"
        );
        assert!(pos("z") < pos("y"), "nested objects too: {text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, schema, "the same schema, reordered");
    }
}
