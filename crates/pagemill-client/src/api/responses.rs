//! OpenAI's Responses API (`POST /v1/responses`).
//!
//! A request: the messages as `input` items (a system message stays one, so the stable prefix
//! is the same bytes as in chat completions and the prompt cache sees it), `max_output_tokens`,
//! a JSON schema as `text.format`, a reasoning effort as `reasoning.effort`, and `store: false`
//! — pagemill keeps its own record and asks the provider not to keep one.
//!
//! An answer: a stream of typed events — `response.output_text.delta` (answer),
//! `response.reasoning_text.delta` / `response.reasoning_summary_text.delta` (reasoning),
//! `response.completed` / `response.incomplete` (the end, with usage: `input_tokens` with
//! `input_tokens_details.cached_tokens` inside it, `output_tokens` with
//! `output_tokens_details.reasoning_tokens` inside it), `response.failed` and `error` — or one
//! response whose `output` is a list of items.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{finish_reason, json_schema};
use crate::error::{FailureKind, RequestError, classify_status};
use crate::stream::{Exchange, Piece};
use crate::wire::{ChatRequest, RawUsage};

/// The Responses API body of a request.
pub fn request(req: &ChatRequest) -> Map<String, Value> {
    let input: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("input".into(), Value::Array(input));
    body.insert("store".into(), json!(false));
    if req.stream {
        body.insert("stream".into(), json!(true));
    }
    if let Some(n) = req.max_tokens {
        body.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(e) = req.reasoning_effort {
        body.insert("reasoning".into(), json!({"effort": e.name()}));
    }
    if let Some(k) = &req.prompt_cache_key {
        body.insert("prompt_cache_key".into(), json!(k));
    }
    if let Some(format) = &req.response_format {
        let text = match json_schema(format) {
            Some((schema, name, strict)) => {
                json!({"format": {"type": "json_schema", "name": name, "strict": strict, "schema": schema}})
            }
            None => {
                json!({"format": {"type": format.get("type").cloned().unwrap_or(json!("text"))}})
            }
        };
        body.insert("text".into(), text);
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
    #[serde(default, borrow)]
    delta: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// A response object (the whole answer, or the one the stream's last event carries).
#[derive(Debug, Default, Deserialize)]
struct Response {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    output: Vec<Item>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    #[serde(default)]
    error: Option<ApiError>,
}

#[derive(Debug, Default, Deserialize)]
struct Incomplete {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// An output item: a `message` (its `output_text` and `refusal` parts) or `reasoning` (its
/// `reasoning_text` content, else its summary).
#[derive(Debug, Default, Deserialize)]
struct Item {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    content: Vec<Part>,
    #[serde(default)]
    summary: Vec<Part>,
}

#[derive(Debug, Default, Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

fn code_text(code: Option<Value>) -> Option<String> {
    match code? {
        Value::String(s) => Some(s),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn failure(ex: &Exchange, code: Option<String>, message: Option<String>) -> RequestError {
    let message = message.unwrap_or_else(|| "the response failed".into());
    let status = match code.as_deref() {
        Some("rate_limit_exceeded") => 429,
        Some("invalid_prompt" | "invalid_request_error") => 400,
        _ => 500,
    };
    let class = classify_status(status, None, code.as_deref(), &message);
    let shown = match &code {
        Some(c) => format!("{c}: {message}"),
        None => message,
    };
    let mut err = RequestError::new(FailureKind::ErrorInBody, class, shown);
    err.status = ex.status;
    err
}

/// The finish reason of a finished response.
fn finish_of(r: &Response) -> &str {
    match r.status.as_deref() {
        Some("incomplete") => finish_reason(
            r.incomplete_details
                .as_ref()
                .and_then(|d| d.reason.as_deref())
                .unwrap_or("length"),
        ),
        _ => "stop",
    }
}

/// Folds one stream event into `ex`; true at the response's end.
pub(crate) fn absorb_event(ex: &mut Exchange, data: &str, at: u64) -> Result<bool, RequestError> {
    let ev: Event<'_> = serde_json::from_str(data).map_err(|e| {
        super::malformed(
            "Responses API",
            &format!("stream event {}", ex.events),
            &e,
            data,
        )
    })?;
    let delta = ev.delta.as_deref().filter(|d| !d.is_empty());
    match ev.kind {
        "response.output_text.delta" | "response.refusal.delta" => {
            ex.absorb_pieces(None, None, delta.map(Piece::answer).into_iter(), None, at);
        }
        "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
            ex.absorb_pieces(
                None,
                None,
                delta.map(Piece::reasoning).into_iter(),
                None,
                at,
            );
        }
        "response.created" | "response.in_progress" => {
            let r = ev.response.unwrap_or_default();
            ex.absorb_pieces(
                r.model.as_deref(),
                r.id.as_deref(),
                std::iter::empty(),
                None,
                at,
            );
        }
        "response.completed" | "response.incomplete" => {
            let mut r = ev.response.unwrap_or_default();
            let usage = r.usage.take();
            let finish = Piece::finish(finish_of(&r));
            ex.absorb_pieces(
                r.model.as_deref(),
                r.id.as_deref(),
                std::iter::once(finish),
                usage,
                at,
            );
            return Ok(true);
        }
        "response.failed" => {
            let e = ev.response.and_then(|r| r.error).unwrap_or_default();
            return Err(failure(ex, code_text(e.code), e.message));
        }
        "error" => return Err(failure(ex, code_text(ev.code), ev.message)),
        // Item and part boundaries, done events with the text again, and events added later.
        _ => {}
    }
    Ok(false)
}

/// Reads a whole (non-streaming) answer into `ex`.
pub(crate) fn absorb_body(ex: &mut Exchange, bytes: &[u8], at: u64) -> Result<(), RequestError> {
    let r: Response = serde_json::from_slice(bytes).map_err(|e| {
        super::malformed(
            "Responses API",
            "the response body",
            &e,
            &String::from_utf8_lossy(bytes),
        )
    })?;
    if r.status.as_deref() == Some("failed") || r.error.is_some() {
        let e = r.error.unwrap_or_default();
        return Err(failure(ex, code_text(e.code), e.message));
    }
    let finish = finish_of(&r).to_owned();
    let pieces = r.output.iter().flat_map(|item| {
        let reasoning = item.kind == "reasoning";
        let parts = if reasoning && item.content.is_empty() {
            &item.summary
        } else {
            &item.content
        };
        parts.iter().filter_map(move |p| {
            let text = p.text.as_deref().or(p.refusal.as_deref())?;
            Some(if reasoning {
                Piece::reasoning(text)
            } else {
                Piece::answer(text)
            })
        })
    });
    let pieces = pieces.chain(std::iter::once(Piece::finish(&finish)));
    ex.absorb_pieces(r.model.as_deref(), r.id.as_deref(), pieces, r.usage, at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorClass;
    use crate::wire::{Message, ReasoningEffort};

    #[test]
    fn a_request_carries_input_format_and_effort() {
        let req = ChatRequest {
            model: "gpt-5-mini".into(),
            messages: vec![Message::system("rules"), Message::user("doc")],
            max_tokens: Some(300),
            response_format: Some(json!({"type": "json_schema",
                "json_schema": {"name": "entities", "strict": true, "schema": {"type": "object"}}})),
            reasoning_effort: Some(ReasoningEffort::Minimal),
            ..ChatRequest::default()
        };
        let b = Value::Object(request(&req));
        assert_eq!(b["input"][0], json!({"role": "system", "content": "rules"}));
        assert_eq!(b["max_output_tokens"], 300);
        assert_eq!(
            b["text"]["format"],
            json!({"type": "json_schema", "name": "entities", "strict": true, "schema": {"type": "object"}})
        );
        assert_eq!(b["reasoning"], json!({"effort": "minimal"}));
        assert_eq!(b["store"], false);
    }

    #[test]
    fn a_stream_is_read_from_its_events() {
        let mut ex = Exchange::default();
        let events = [
            r#"{"type":"response.created","response":{"id":"resp_1","model":"gpt-5-mini","status":"in_progress","output":[]}}"#,
            r#"{"type":"response.reasoning_summary_text.delta","delta":"plan"}"#,
            r#"{"type":"response.output_item.added","item":{"type":"message"}}"#,
            r#"{"type":"response.output_text.delta","delta":"Hel"}"#,
            r#"{"type":"response.output_text.delta","delta":"lo"}"#,
            r#"{"type":"response.output_text.done","text":"Hello"}"#,
        ];
        for (i, e) in events.iter().enumerate() {
            assert!(!absorb_event(&mut ex, e, i as u64 + 1).unwrap());
        }
        let last = r#"{"type":"response.completed","response":{"id":"resp_1","status":"completed",
            "usage":{"input_tokens":2000,"input_tokens_details":{"cached_tokens":1920},
            "output_tokens":40,"output_tokens_details":{"reasoning_tokens":30},"total_tokens":2040}}}"#;
        assert!(absorb_event(&mut ex, last, 9).unwrap());
        assert_eq!(
            (ex.reasoning.as_str(), ex.content.as_str()),
            ("plan", "Hello")
        );
        assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
        assert_eq!(ex.usage.cached_prompt.unwrap().tokens, 1920);
        assert_eq!(ex.usage.prompt.unwrap().tokens, 2000);
        assert_eq!(ex.usage.reasoning.unwrap().tokens, 30);
        assert_eq!(ex.timeline.first_content, Some(2));
        assert_eq!(ex.timeline.first_answer, Some(4));
    }

    #[test]
    fn incomplete_failed_and_error_events() {
        let mut ex = Exchange::default();
        let inc = r#"{"type":"response.incomplete","response":{"status":"incomplete",
            "incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":1,"output_tokens":2,
            "input_tokens_details":{"cached_tokens":0}}}}"#;
        assert!(absorb_event(&mut ex, inc, 1).unwrap());
        assert_eq!(ex.finish_reason.as_deref(), Some("length"));
        let failed = r#"{"type":"response.failed","response":{"status":"failed",
            "error":{"code":"server_error","message":"boom"}}}"#;
        let e = absorb_event(&mut ex, failed, 2).unwrap_err();
        assert_eq!(e.class, ErrorClass::Transient);
        assert!(e.message.contains("server_error: boom"));
        let e = absorb_event(
            &mut ex,
            r#"{"type":"error","code":"rate_limit_exceeded","message":"slow"}"#,
            3,
        )
        .unwrap_err();
        assert_eq!(e.class, ErrorClass::Throttled);
    }

    #[test]
    fn a_whole_response_reads_its_output_items() {
        let mut ex = Exchange::default();
        absorb_body(
            &mut ex,
            br#"{"id":"r","object":"response","status":"completed","model":"m","output":[
                {"type":"reasoning","summary":[{"type":"summary_text","text":"why"}]},
                {"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]}],
                "usage":{"input_tokens":5,"output_tokens":3,"input_tokens_details":{"cached_tokens":0},
                "output_tokens_details":{"reasoning_tokens":1}}}"#,
            1,
        )
        .unwrap();
        assert_eq!((ex.reasoning.as_str(), ex.content.as_str()), ("why", "ok"));
        assert_eq!(ex.usage.reasoning.unwrap().tokens, 1);
    }
}
