//! Request and response bodies of OpenAI-compatible chat completions, tolerant of what real
//! providers send.
//!
//! Responses accept `choices: null` or `[]`, `finish_reason: ""`, a missing `object`, `id` or
//! `usage`, token counts sent as floats or strings, `reasoning_content` / `reasoning` deltas and
//! any unknown field. Nothing here indexes into a provider's data, so no byte sequence can make
//! it panic; bytes that are not JSON at all are the caller's [`serde_json::Error`].

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// A chat completions request. Endpoint-level body parameters are merged in by the client
/// (request fields win).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatRequest {
    /// Model name as the endpoint knows it; the client fills it from the endpoint when empty.
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Upper bound on generated tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sampling seed, where the endpoint accepts one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// `{"include_usage": true}` asks for a final usage chunk when streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// `json_object` or `json_schema` structured output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Keep generating past end-of-sequence (vLLM, SGLang, the simulator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// Routing hint for provider prompt caches (OpenAI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// How hard a reasoning model thinks; each API is sent it in its own way (see
    /// [`crate::api`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Any other body parameter.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Client side, never sent: stop reading a stream whose answer loops (see
    /// [`crate::runaway`]); the exchange then says so in [`crate::Exchange::cancelled`].
    #[serde(skip)]
    pub cancel_loops: bool,
    /// Client side: send these prompts instead of `messages`, all in one legacy
    /// `/v1/completions` request (a prompt array, which vLLM and others answer as one sequence
    /// each); the answers come back in [`crate::Exchange::choices`].
    #[serde(skip)]
    pub prompts: Vec<String>,
}

impl ChatRequest {
    /// A request with one user message.
    pub fn user(prompt: impl Into<String>) -> Self {
        Self {
            messages: vec![Message::user(prompt)],
            ..Self::default()
        }
    }
}

/// How hard a reasoning model thinks before it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    /// No reasoning, where the model allows it.
    None,
    /// The least the model does.
    Minimal,
    /// Little.
    Low,
    /// The usual default.
    Medium,
    /// Much.
    High,
}

impl ReasoningEffort {
    /// Its name in requests.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Minimal => "minimal",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// The thinking budget Anthropic's Messages API is given for it (`None`: no thinking);
    /// Anthropic takes a token budget, not a level, and 1,024 at the least.
    pub fn thinking_budget(self) -> Option<u32> {
        match self {
            Self::None => None,
            Self::Minimal => Some(1_024),
            Self::Low => Some(2_048),
            Self::Medium => Some(8_192),
            Self::High => Some(24_576),
        }
    }
}

impl std::fmt::Display for ReasoningEffort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ReasoningEffort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" => Ok(Self::None),
            "minimal" => Ok(Self::Minimal),
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            other => Err(format!(
                "reasoning effort `{other}`: expected none, minimal, low, medium or high"
            )),
        }
    }
}

/// `stream_options` of a streaming request.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamOptions {
    /// Send a last chunk with the request's usage.
    pub include_usage: bool,
}

/// One message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// The text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self {
            role: "system".into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }

    /// An assistant message (an earlier answer, e.g. before a re-ask).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// A chat completion, or one chunk of a streamed one: both share this shape (`message` in the
/// first, `delta` in the second).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ChatResponse {
    /// Provider's id of the completion.
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    /// `chat.completion` or `chat.completion.chunk`, when sent.
    #[serde(default, deserialize_with = "lenient_string")]
    pub object: Option<String>,
    /// The model that answered.
    #[serde(default, deserialize_with = "lenient_string")]
    pub model: Option<String>,
    /// Choices; `null` and a missing field read as empty.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<Choice>,
    /// Token usage in the provider's dialect; see [`crate::Usage`].
    #[serde(default)]
    pub usage: Option<RawUsage>,
    /// An error sent inside a 200 response or mid-stream.
    #[serde(default)]
    pub error: Option<ApiError>,
}

/// One choice of a completion or chunk.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Choice {
    /// Index of the choice.
    #[serde(default, deserialize_with = "lenient_count")]
    pub index: Option<u64>,
    /// The whole message (non-streaming).
    #[serde(default)]
    pub message: Option<Delta>,
    /// The part of the message in this chunk (streaming).
    #[serde(default)]
    pub delta: Option<Delta>,
    /// Legacy `/v1/completions` text.
    #[serde(default, deserialize_with = "lenient_string")]
    pub text: Option<String>,
    /// Why generation stopped; `""` reads as not stopped.
    #[serde(default, deserialize_with = "nonempty_string")]
    pub finish_reason: Option<String>,
}

/// Message content of a choice: the answer and any reasoning.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Delta {
    /// Role, usually only in the first chunk.
    #[serde(default, deserialize_with = "lenient_string")]
    pub role: Option<String>,
    /// Answer text.
    #[serde(default, deserialize_with = "lenient_string")]
    pub content: Option<String>,
    /// Reasoning text (DeepSeek, vLLM, SGLang).
    #[serde(default, deserialize_with = "lenient_string")]
    pub reasoning_content: Option<String>,
    /// Reasoning text (OpenRouter, Ollama and others).
    #[serde(default, deserialize_with = "lenient_string")]
    pub reasoning: Option<String>,
    /// Refusal text (OpenAI).
    #[serde(default, deserialize_with = "lenient_string")]
    pub refusal: Option<String>,
}

impl Delta {
    /// The reasoning text under whichever name the provider used.
    pub fn reasoning_text(&self) -> Option<&str> {
        self.reasoning_content
            .as_deref()
            .or(self.reasoning.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// The answer text, with a refusal counted as answer.
    pub fn answer_text(&self) -> Option<&str> {
        self.content
            .as_deref()
            .or(self.refusal.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// Usage as providers send it: the union of the OpenAI, DeepSeek and Anthropic-style fields.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Serialize)]
pub struct RawUsage {
    /// OpenAI: all prompt tokens, cached ones included.
    #[serde(default, deserialize_with = "lenient_count")]
    pub prompt_tokens: Option<u64>,
    /// OpenAI: generated tokens, reasoning included.
    #[serde(default, deserialize_with = "lenient_count")]
    pub completion_tokens: Option<u64>,
    /// OpenAI: prompt + completion.
    #[serde(default, deserialize_with = "lenient_count")]
    pub total_tokens: Option<u64>,
    /// OpenAI: `cached_tokens` (and `cache_write_tokens` on some routers).
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// OpenAI: `reasoning_tokens`.
    #[serde(default)]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    /// DeepSeek: prompt tokens served from cache.
    #[serde(default, deserialize_with = "lenient_count")]
    pub prompt_cache_hit_tokens: Option<u64>,
    /// DeepSeek: prompt tokens not served from cache.
    #[serde(default, deserialize_with = "lenient_count")]
    pub prompt_cache_miss_tokens: Option<u64>,
    /// Anthropic-style: uncached input tokens only.
    #[serde(default, deserialize_with = "lenient_count")]
    pub input_tokens: Option<u64>,
    /// Anthropic-style: output tokens.
    #[serde(default, deserialize_with = "lenient_count")]
    pub output_tokens: Option<u64>,
    /// Anthropic-style: input tokens read from cache (not in `input_tokens`).
    #[serde(default, deserialize_with = "lenient_count")]
    pub cache_read_input_tokens: Option<u64>,
    /// Anthropic-style: input tokens written to cache (not in `input_tokens`).
    #[serde(default, deserialize_with = "lenient_count")]
    pub cache_creation_input_tokens: Option<u64>,
    /// OpenAI Responses API: `cached_tokens`, included in `input_tokens` (unlike Anthropic's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens_details: Option<PromptTokensDetails>,
    /// OpenAI Responses API: `reasoning_tokens`, included in `output_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<CompletionTokensDetails>,
}

impl RawUsage {
    /// Takes every count `later` reports over this one's: Anthropic's stream sends the input
    /// counts at its start and the output count at its end; other streams send one whole usage.
    pub fn merge(&mut self, later: RawUsage) {
        fn take<T>(a: &mut Option<T>, b: Option<T>) {
            if b.is_some() {
                *a = b;
            }
        }
        take(&mut self.prompt_tokens, later.prompt_tokens);
        take(&mut self.completion_tokens, later.completion_tokens);
        take(&mut self.total_tokens, later.total_tokens);
        take(&mut self.prompt_tokens_details, later.prompt_tokens_details);
        take(
            &mut self.completion_tokens_details,
            later.completion_tokens_details,
        );
        take(
            &mut self.prompt_cache_hit_tokens,
            later.prompt_cache_hit_tokens,
        );
        take(
            &mut self.prompt_cache_miss_tokens,
            later.prompt_cache_miss_tokens,
        );
        take(&mut self.input_tokens, later.input_tokens);
        take(&mut self.output_tokens, later.output_tokens);
        take(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        take(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        take(&mut self.input_tokens_details, later.input_tokens_details);
        take(&mut self.output_tokens_details, later.output_tokens_details);
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from cache, included in `prompt_tokens`.
    #[serde(default, deserialize_with = "lenient_count")]
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to cache (OpenRouter and others).
    #[serde(default, deserialize_with = "lenient_count")]
    pub cache_write_tokens: Option<u64>,
}

/// `usage.completion_tokens_details`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Serialize)]
pub struct CompletionTokensDetails {
    /// Reasoning tokens, included in `completion_tokens`.
    #[serde(default, deserialize_with = "lenient_count")]
    pub reasoning_tokens: Option<u64>,
}

/// The `error` object of an error body.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ApiError {
    /// Human-readable message.
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: Option<String>,
    /// `type`, e.g. `insufficient_quota`, `rate_limit_exceeded`, `invalid_request_error`.
    #[serde(default, rename = "type", deserialize_with = "lenient_string")]
    pub kind: Option<String>,
    /// `code`, a string or a number depending on the provider.
    #[serde(default, deserialize_with = "lenient_string")]
    pub code: Option<String>,
}

/// An error body: `{"error": {...}}`, or a bare string some servers send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorBody {
    /// The parsed error object, if the body had one.
    pub error: ApiError,
}

impl ErrorBody {
    /// Reads what it can from an error response body; never fails.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Wrapper {
            #[serde(default)]
            error: Option<Value>,
            #[serde(default)]
            message: Option<Value>,
        }
        let mut error = ApiError::default();
        if let Ok(w) = serde_json::from_slice::<Wrapper>(body) {
            match w.error {
                Some(Value::String(s)) => error.message = Some(s),
                Some(v @ Value::Object(_)) => {
                    error = serde_json::from_value(v).unwrap_or_default();
                }
                _ => {}
            }
            if error.message.is_none() {
                error.message = w.message.map(value_to_string);
            }
        } else if !body.is_empty() {
            let text = String::from_utf8_lossy(body);
            error.message = Some(text.chars().take(500).collect());
        }
        Self { error }
    }
}

fn value_to_string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Strings, numbers and booleans read as a string; null and other shapes as `None`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn nonempty_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(lenient_string(d)?.filter(|s| !s.is_empty()))
}

/// A token count sent as an integer, an integral float or a string of digits; anything else
/// (negative, fractional, garbage) reads as unreported rather than failing the whole body.
fn lenient_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 9.0e15)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> ChatResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn choices_null_empty_or_missing_read_as_empty() {
        assert!(parse(r#"{"choices":null}"#).choices.is_empty());
        assert!(parse(r#"{"choices":[]}"#).choices.is_empty());
        assert!(parse(r#"{}"#).choices.is_empty());
    }

    #[test]
    fn empty_finish_reason_is_none_and_unknown_fields_are_ignored() {
        let r = parse(
            r#"{"id":"x","choices":[{"index":0,"delta":{"content":"hi","extra":[1]},
                "finish_reason":"","logprobs":null}],"service_tier":"default","created":1.5}"#,
        );
        assert_eq!(r.choices[0].finish_reason, None);
        assert_eq!(
            r.choices[0].delta.as_ref().unwrap().content.as_deref(),
            Some("hi")
        );
        assert_eq!(r.object, None);
        assert_eq!(r.usage, None);
    }

    #[test]
    fn reasoning_under_either_name() {
        let a = parse(r#"{"choices":[{"delta":{"reasoning_content":"think"}}]}"#);
        let b = parse(r#"{"choices":[{"delta":{"reasoning":"think","content":null}}]}"#);
        for r in [a, b] {
            let d = r.choices[0].delta.clone().unwrap();
            assert_eq!(d.reasoning_text(), Some("think"));
            assert_eq!(d.answer_text(), None);
        }
    }

    #[test]
    fn counts_as_floats_strings_or_garbage() {
        let r = parse(
            r#"{"usage":{"prompt_tokens":12.0,"completion_tokens":"7","total_tokens":-1,
                "prompt_tokens_details":{"cached_tokens":null}}}"#,
        );
        let u = r.usage.unwrap();
        assert_eq!(u.prompt_tokens, Some(12));
        assert_eq!(u.completion_tokens, Some(7));
        assert_eq!(u.total_tokens, None);
        assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, None);
    }

    #[test]
    fn error_bodies_in_every_shape() {
        let e = ErrorBody::parse(
            br#"{"error":{"message":"You exceeded your quota","type":"insufficient_quota","code":429}}"#,
        );
        assert_eq!(e.error.kind.as_deref(), Some("insufficient_quota"));
        assert_eq!(e.error.code.as_deref(), Some("429"));
        assert_eq!(
            ErrorBody::parse(br#"{"error":"bad"}"#)
                .error
                .message
                .as_deref(),
            Some("bad")
        );
        assert_eq!(
            ErrorBody::parse(br#"{"message":"Too Many Requests"}"#)
                .error
                .message
                .as_deref(),
            Some("Too Many Requests")
        );
        assert_eq!(
            ErrorBody::parse(b"<html>502 Bad Gateway</html>")
                .error
                .message
                .as_deref(),
            Some("<html>502 Bad Gateway</html>")
        );
        assert_eq!(ErrorBody::parse(b"").error, ApiError::default());
    }

    #[test]
    fn request_serializes_only_what_is_set() {
        let mut r = ChatRequest::user("hi");
        r.model = "m".into();
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false})
        );
    }
}

/// The common shape of a streamed chunk, borrowed from the event's text: the hot path.
/// Strictly typed, so anything unusual (a number where a string belongs, an `error` object)
/// fails here and is read again by the lenient [`ChatResponse`].
#[derive(Debug, Deserialize)]
pub(crate) struct FastChunk<'a> {
    #[serde(default, borrow)]
    pub(crate) id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) choices: Option<Vec<FastChoice<'a>>>,
    #[serde(default)]
    pub(crate) usage: Option<RawUsage>,
    #[serde(default)]
    pub(crate) error: Option<serde::de::IgnoredAny>,
}

/// A choice of a [`FastChunk`].
#[derive(Debug, Deserialize)]
pub(crate) struct FastChoice<'a> {
    #[serde(default)]
    pub(crate) index: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) delta: Option<FastDelta<'a>>,
    #[serde(default, borrow)]
    pub(crate) message: Option<FastDelta<'a>>,
    #[serde(default, borrow)]
    pub(crate) text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) finish_reason: Option<Cow<'a, str>>,
}

/// The delta of a [`FastChoice`].
#[derive(Debug, Deserialize)]
pub(crate) struct FastDelta<'a> {
    #[serde(default, borrow)]
    pub(crate) content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) reasoning_content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) reasoning: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) refusal: Option<Cow<'a, str>>,
}
