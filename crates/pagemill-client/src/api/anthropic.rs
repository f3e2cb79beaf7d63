//! Anthropic's Messages API (`POST /v1/messages`).
//!
//! A request: `system` as text blocks, the last one marked `cache_control: ephemeral` — the
//! system prompt is the byte-stable prefix pagemill's pipeline keeps, and Anthropic caches only
//! up to such a breakpoint (a prompt under the model's minimum is simply not cached, at no
//! charge); `max_tokens` always (the API requires it); a reasoning effort as a `thinking`
//! budget, added to `max_tokens` since thinking counts against it (temperature and top-p are
//! then left out: the API refuses them with thinking); a JSON schema as `output_format`.
//!
//! An answer: a stream of named events — `message_start` (the input counts, cache reads and
//! writes), `content_block_delta` (`text_delta` answer, `thinking_delta` reasoning),
//! `message_delta` (stop reason, output count), `message_stop` (the end), `ping`, `error` — or
//! one message whose `content` is a list of blocks.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{finish_reason, json_schema};
use crate::error::{FailureKind, RequestError, classify_status};
use crate::stream::{Exchange, Piece};
use crate::wire::{ChatRequest, RawUsage};

/// `max_tokens` when a request sets none (the API requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4_096;

/// The Messages API body of a request.
pub fn request(req: &ChatRequest) -> Map<String, Value> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system" || m.role == "developer")
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = req
        .messages
        .iter()
        .filter(|m| m.role != "system" && m.role != "developer")
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let budget = req.reasoning_effort.and_then(|e| e.thinking_budget());
    let answer_max = req.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert(
        "max_tokens".into(),
        json!(answer_max.saturating_add(budget.unwrap_or(0))),
    );
    if !system.is_empty() {
        let last = system.len() - 1;
        let blocks: Vec<Value> = system
            .iter()
            .enumerate()
            .map(|(i, text)| {
                if i == last {
                    json!({"type": "text", "text": text, "cache_control": {"type": "ephemeral"}})
                } else {
                    json!({"type": "text", "text": text})
                }
            })
            .collect();
        body.insert("system".into(), Value::Array(blocks));
    }
    body.insert("messages".into(), Value::Array(messages));
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    match budget {
        Some(b) => {
            body.insert(
                "thinking".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
        None => {
            if let Some(t) = req.temperature {
                body.insert("temperature".into(), json!(t));
            }
            if let Some(p) = req.top_p {
                body.insert("top_p".into(), json!(p));
            }
        }
    }
    if !req.stop.is_empty() {
        body.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some((schema, _, _)) = req.response_format.as_ref().and_then(json_schema) {
        body.insert(
            "output_format".into(),
            json!({"type": "json_schema", "schema": schema}),
        );
    }
    for (k, v) in &req.extra {
        body.entry(k.clone()).or_insert_with(|| v.clone());
    }
    body
}

#[derive(Debug, Default, Deserialize)]
struct Event<'a> {
    #[serde(default, rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    content_block: Option<Block>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<ApiError>,
}

/// A whole message (a non-streaming answer, or `message_start`'s).
#[derive(Debug, Default, Deserialize)]
struct Message {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
}

/// A content block: `text` or `thinking` (others, such as `tool_use`, carry no text).
#[derive(Debug, Default, Deserialize)]
struct Block {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Delta {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The status an error type stands for (what the API answers it with when not streaming).
fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn error(ex: &Exchange, e: ApiError) -> RequestError {
    let kind = e.kind.unwrap_or_else(|| "api_error".into());
    let message = e.message.unwrap_or_else(|| kind.clone());
    let class = classify_status(status_of(&kind), Some(&kind), None, &message);
    let mut err = RequestError::new(
        FailureKind::ErrorInBody,
        class,
        format!("{kind}: {message}"),
    );
    err.status = ex.status;
    err
}

fn blocks<'a>(content: &'a [Block]) -> impl Iterator<Item = Piece<'a>> {
    content.iter().filter_map(|b| match b.kind.as_str() {
        "thinking" => b.thinking.as_deref().map(Piece::reasoning),
        "text" => b.text.as_deref().map(Piece::answer),
        _ => None,
    })
}

/// Folds one stream event into `ex`; true at `message_stop`, the stream's end.
pub(crate) fn absorb_event(ex: &mut Exchange, data: &str, at: u64) -> Result<bool, RequestError> {
    let ev: Event<'_> = serde_json::from_str(data).map_err(|e| {
        super::malformed(
            "Messages API",
            &format!("stream event {}", ex.events),
            &e,
            data,
        )
    })?;
    match ev.kind {
        "message_start" => {
            let m = ev.message.unwrap_or_default();
            let pieces = blocks(&m.content);
            ex.absorb_pieces(m.model.as_deref(), m.id.as_deref(), pieces, m.usage, at);
        }
        "content_block_start" => {
            if let Some(b) = ev.content_block {
                ex.absorb_pieces(None, None, blocks(std::slice::from_ref(&b)), None, at);
            }
        }
        "content_block_delta" => {
            let d = ev.delta.unwrap_or_default();
            let piece = match d.kind.as_deref() {
                Some("thinking_delta") => d.thinking.as_deref().map(Piece::reasoning),
                Some("text_delta") | None => d.text.as_deref().map(Piece::answer),
                // signature_delta, input_json_delta, citations_delta: no text of ours.
                Some(_) => None,
            };
            ex.absorb_pieces(None, None, piece.into_iter(), None, at);
        }
        "message_delta" => {
            let d = ev.delta.unwrap_or_default();
            let finish = d.stop_reason.as_deref().map(finish_reason);
            ex.absorb_pieces(
                None,
                None,
                finish.map(Piece::finish).into_iter(),
                ev.usage,
                at,
            );
        }
        "message_stop" => return Ok(true),
        "error" => return Err(error(ex, ev.error.unwrap_or_default())),
        // ping, content_block_stop, and events added later.
        _ => {}
    }
    Ok(false)
}

/// Reads a whole (non-streaming) answer into `ex`.
pub(crate) fn absorb_body(ex: &mut Exchange, bytes: &[u8], at: u64) -> Result<(), RequestError> {
    #[derive(Deserialize)]
    struct Whole {
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        error: Option<ApiError>,
        #[serde(flatten)]
        message: Message,
    }
    let w: Whole = serde_json::from_slice(bytes).map_err(|e| {
        super::malformed(
            "Messages API",
            "the response body",
            &e,
            &String::from_utf8_lossy(bytes),
        )
    })?;
    if w.kind.as_deref() == Some("error") || w.error.is_some() {
        return Err(error(ex, w.error.unwrap_or_default()));
    }
    let m = w.message;
    let finish = m.stop_reason.as_deref().map(finish_reason);
    let pieces = blocks(&m.content).chain(finish.map(Piece::finish));
    ex.absorb_pieces(m.model.as_deref(), m.id.as_deref(), pieces, m.usage, at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use crate::wire::{Message as Msg, ReasoningEffort};

    #[test]
    fn the_system_prompt_is_the_cache_breakpoint_and_thinking_raises_max_tokens() {
        let mut req = ChatRequest {
            model: "claude-sonnet-4".into(),
            messages: vec![Msg::system("rules"), Msg::user("doc")],
            max_tokens: Some(500),
            temperature: Some(0.0),
            stream: true,
            ..ChatRequest::default()
        };
        let b = Value::Object(request(&req));
        assert_eq!(
            b["system"],
            json!([{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(b["messages"], json!([{"role": "user", "content": "doc"}]));
        assert_eq!(b["max_tokens"], 500);
        assert_eq!(b["temperature"], 0.0);
        req.reasoning_effort = Some(ReasoningEffort::Low);
        let b = Value::Object(request(&req));
        assert_eq!(
            b["thinking"],
            json!({"type": "enabled", "budget_tokens": 2048})
        );
        assert_eq!(b["max_tokens"], 2548);
        assert!(b.get("temperature").is_none());
    }

    #[test]
    fn a_stream_is_read_from_its_events() {
        let mut ex = Exchange::default();
        let events = [
            r#"{"type":"message_start","message":{"id":"msg_1","model":"claude","content":[],
               "usage":{"input_tokens":12,"cache_read_input_tokens":1024,"cache_creation_input_tokens":0,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"x"}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}"#,
        ];
        for (i, e) in events.iter().enumerate() {
            assert!(!absorb_event(&mut ex, e, i as u64 + 1).unwrap());
        }
        assert!(absorb_event(&mut ex, r#"{"type":"message_stop"}"#, 9).unwrap());
        assert_eq!((ex.reasoning.as_str(), ex.content.as_str()), ("hmm", "Hi"));
        assert_eq!(ex.finish_reason.as_deref(), Some("length"));
        assert_eq!(ex.response_id.as_deref(), Some("msg_1"));
        assert_eq!(ex.usage.prompt.unwrap().tokens, 1036);
        assert_eq!(ex.usage.cached_prompt.unwrap().tokens, 1024);
        assert_eq!(ex.usage.completion.unwrap().tokens, 7);
        assert_eq!(ex.timeline.first_content, Some(3));
        assert_eq!(ex.timeline.first_answer, Some(6));
    }

    #[test]
    fn an_error_event_is_classified_by_its_type() {
        let mut ex = Exchange::default();
        let err = absorb_event(
            &mut ex,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            1,
        )
        .unwrap_err();
        assert_eq!(err.class, ErrorClass::Transient);
        assert!(
            err.message.contains("overloaded_error: Overloaded"),
            "{}",
            err.message
        );
        let err = absorb_body(
            &mut ex,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            1,
        )
        .unwrap_err();
        assert_eq!(err.class, ErrorClass::Throttled);
        assert!(absorb_event(&mut ex, "{not json", 1).is_err());
    }

    #[test]
    fn a_whole_message_has_its_blocks_in_order() {
        let mut ex = Exchange::default();
        absorb_body(
            &mut ex,
            br#"{"id":"m","type":"message","model":"c","content":[{"type":"thinking","thinking":"t"},
                {"type":"text","text":"{\"a\":1}"}],"stop_reason":"end_turn",
                "usage":{"input_tokens":3,"output_tokens":4}}"#,
            1,
        )
        .unwrap();
        assert_eq!(ex.content, r#"{"a":1}"#);
        assert_eq!(ex.reasoning, "t");
        assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
        assert_eq!(ex.usage.completion.unwrap().tokens, 4);
    }
}
