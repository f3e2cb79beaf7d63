//! How the simulator writes a stream: each event's JSON straight into bytes, framed as SSE
//! with the response's framing quirks (CRLF, no space, multi-line data, split UTF-8), sent
//! now or queued for one burst write.

use std::time::Duration;

use bytes::Bytes;

use crate::profile::FramingQuirks;
use crate::server::Sink;

/// The API a request came in: chat completions, legacy completions, Anthropic's Messages API
/// or OpenAI's Responses API (see [`super::dialects`] for the last two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Chat,
    Legacy,
    Anthropic,
    Responses,
}

impl Dialect {
    pub(crate) fn object(self) -> &'static str {
        match self {
            Dialect::Chat => "chat.completion",
            Dialect::Legacy => "text_completion",
            Dialect::Anthropic => "message",
            Dialect::Responses => "response",
        }
    }

    pub(crate) fn chunk_object(self) -> &'static str {
        match self {
            Dialect::Chat => "chat.completion.chunk",
            Dialect::Legacy | Dialect::Anthropic | Dialect::Responses => "text_completion",
        }
    }
}

/// One stream event's JSON, written straight into bytes: this runs for every token the
/// simulator sends, and building a `serde_json::Value` tree per token cost a third of its CPU.
pub(crate) fn event_bytes(
    dialect: Dialect,
    model: &str,
    content: Option<&str>,
    finish: Option<&str>,
    role: bool,
) -> Vec<u8> {
    chunk_bytes(dialect, model, content, finish, role, "content")
}

/// A chat chunk carrying reasoning (in `reasoning_content`, as DeepSeek, vLLM and SGLang send
/// it).
pub(crate) fn reasoning_bytes(model: &str, text: &str) -> Vec<u8> {
    chunk_bytes(
        Dialect::Chat,
        model,
        Some(text),
        None,
        false,
        "reasoning_content",
    )
}

fn chunk_bytes(
    dialect: Dialect,
    model: &str,
    content: Option<&str>,
    finish: Option<&str>,
    role: bool,
    field: &str,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(144 + model.len() + content.map_or(0, str::len));
    out.extend_from_slice(b"{\"id\":\"chatcmpl-sim\",\"object\":\"");
    out.extend_from_slice(dialect.chunk_object().as_bytes());
    out.extend_from_slice(b"\",\"model\":");
    push_json_str(&mut out, model);
    out.extend_from_slice(b",\"choices\":[{\"index\":0,");
    match dialect {
        Dialect::Chat | Dialect::Anthropic | Dialect::Responses => {
            out.extend_from_slice(b"\"delta\":{");
            if role {
                out.extend_from_slice(b"\"role\":\"assistant\"");
            }
            if let Some(c) = content {
                if role {
                    out.push(b',');
                }
                out.push(b'"');
                out.extend_from_slice(field.as_bytes());
                out.extend_from_slice(b"\":");
                push_json_str(&mut out, c);
            }
            out.push(b'}');
        }
        Dialect::Legacy => {
            out.extend_from_slice(b"\"text\":");
            push_json_str(&mut out, content.unwrap_or(""));
        }
    }
    out.extend_from_slice(b",\"finish_reason\":");
    match finish {
        Some(f) => push_json_str(&mut out, f),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}]}");
    out
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Turns events into bytes with the response's framing quirks.
pub(crate) struct Framer {
    pub(crate) quirks: FramingQuirks,
}

impl Framer {
    pub(crate) fn frame(&self, event: &[u8]) -> Bytes {
        if self.quirks == FramingQuirks::default() {
            let mut out = Vec::with_capacity(event.len() + 8);
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(event);
            out.extend_from_slice(b"\n\n");
            return Bytes::from(out);
        }
        let data = String::from_utf8_lossy(event);
        if self.quirks.multiline_data {
            // Break after the opening brace: the joined lines are still the same JSON.
            self.frame_raw(&data.replacen('{', "{\n", 1))
        } else {
            self.frame_raw(&data)
        }
    }

    /// An event with a name (`event: NAME` before its data), as Anthropic's and the Responses
    /// API's streams send them.
    pub(crate) fn frame_named(&self, name: &str, event: &[u8]) -> Bytes {
        let nl = if self.quirks.crlf { "\r\n" } else { "\n" };
        let field = if self.quirks.no_space {
            "event:"
        } else {
            "event: "
        };
        let mut out = format!("{field}{name}{nl}").into_bytes();
        out.extend_from_slice(&self.frame(event));
        Bytes::from(out)
    }

    pub(crate) fn frame_raw(&self, data: &str) -> Bytes {
        let nl = if self.quirks.crlf { "\r\n" } else { "\n" };
        let field = if self.quirks.no_space {
            "data:"
        } else {
            "data: "
        };
        let mut out = String::with_capacity(data.len() + 16);
        for line in data.split('\n') {
            out.push_str(field);
            out.push_str(line);
            out.push_str(nl);
        }
        out.push_str(nl);
        Bytes::from(out)
    }

    /// Sends framed bytes, split inside their first multibyte character when asked to.
    pub(crate) async fn send_framed(
        &self,
        sink: &mut Sink,
        bytes: Bytes,
        due: Option<u64>,
        tokens: u32,
    ) -> bool {
        if let (true, Some(pos)) = (
            self.quirks.split_utf8,
            bytes.iter().position(|b| *b >= 0xC0),
        ) {
            let (a, b) = (bytes.slice(..pos + 1), bytes.slice(pos + 1..));
            return sink.send(a, due, 0).await && sink.send(b, due, tokens).await;
        }
        sink.send(bytes, due, tokens).await
    }
}

/// How long after `[DONE]` a `late_end` stream ends its body.
pub(crate) const LATE_END: Duration = Duration::from_millis(30);

/// Both sets of quirks at once.
pub(crate) fn merge(a: FramingQuirks, b: FramingQuirks) -> FramingQuirks {
    FramingQuirks {
        crlf: a.crlf || b.crlf,
        no_space: a.no_space || b.no_space,
        multiline_data: a.multiline_data || b.multiline_data,
        split_utf8: a.split_utf8 || b.split_utf8,
        late_end: a.late_end || b.late_end,
        close_after_stream: a.close_after_stream || b.close_after_stream,
    }
}

/// Sends now, or queues for one burst write.
pub(crate) async fn emit(
    sink: &mut Sink,
    burst: bool,
    bytes: Bytes,
    due: Option<u64>,
    tokens: u32,
) -> bool {
    if burst {
        sink.queue(&bytes, due, tokens);
        true
    } else {
        sink.send(bytes, due, tokens).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn hand_written_events_are_the_json_they_claim() {
        let v = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).unwrap();
        assert_eq!(
            v(event_bytes(
                Dialect::Chat,
                "m\"x",
                Some("a \"quoted\"\n piece é"),
                None,
                false
            )),
            json!({"id": "chatcmpl-sim", "object": "chat.completion.chunk", "model": "m\"x",
                   "choices": [{"index": 0, "delta": {"content": "a \"quoted\"\n piece é"}, "finish_reason": null}]})
        );
        assert_eq!(
            v(event_bytes(Dialect::Chat, "m", Some(""), None, true))["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(
            v(event_bytes(Dialect::Chat, "m", None, Some("stop"), false))["choices"][0],
            json!({"index": 0, "delta": {}, "finish_reason": "stop"})
        );
        assert_eq!(
            v(event_bytes(Dialect::Legacy, "m", Some("t"), None, false))["choices"][0],
            json!({"index": 0, "text": "t", "finish_reason": null})
        );
    }
}
