//! Errors: [`ClientError`] for what stops the client from working at all (configuration, keys),
//! and [`RequestError`] for one failed request — data to record and count, never an abort.
//!
//! Every failed request falls in one [`ErrorClass`], which decides what a retry policy does.
//! Messages never contain an API key: the client never puts one in a message, and provider
//! bodies are echoed only after [`redact`] has removed anything shaped like a key.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What stops a client from sending anything.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The configuration file could not be read or parsed.
    #[error("configuration `{origin}`: {message}")]
    Config {
        /// Path or other origin of the configuration.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// The endpoint names a key variable that is not set.
    #[error(
        "endpoint `{endpoint}` needs an API key in the environment variable `{var}`, which is not set"
    )]
    MissingApiKey {
        /// Endpoint name.
        endpoint: String,
        /// Variable name.
        var: String,
    },
    /// No endpoint of that name.
    #[error("no endpoint named `{name}` (known: {})", known.join(", "))]
    UnknownEndpoint {
        /// The name asked for.
        name: String,
        /// The names configured.
        known: Vec<String>,
    },
    /// No endpoint configured at all.
    #[error("no endpoint is configured")]
    NoEndpoint,
    /// The base URL is not a valid URL.
    #[error("endpoint `{endpoint}`: invalid URL `{url}`: {reason}")]
    InvalidUrl {
        /// Endpoint name.
        endpoint: String,
        /// The URL.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A header name or value from the configuration is invalid.
    #[error("endpoint `{endpoint}`: invalid header `{name}`")]
    InvalidHeader {
        /// Endpoint name.
        endpoint: String,
        /// Header name.
        name: String,
    },
    /// TLS roots could not be set up.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// How a failed request should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Likely to succeed if sent again: 5xx, resets, timeouts, broken streams.
    Transient,
    /// Rate-limited (429 other than quota): wait as told, then send again.
    Throttled,
    /// Will fail again: auth, bad request, not found, exhausted quota.
    Permanent,
    /// The prompt (plus `max_tokens`) does not fit the model's context: shrink it instead.
    ContextTooLong,
}

impl ErrorClass {
    /// Whether sending the same request again can help.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Throttled)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled => "throttled",
            ErrorClass::Permanent => "permanent",
            ErrorClass::ContextTooLong => "context_too_long",
        })
    }
}

/// What went wrong, mechanically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// TCP or TLS connection could not be made.
    Connect,
    /// The connection closed before response headers.
    ResetBeforeHeaders,
    /// A bound on time was reached.
    Timeout,
    /// A non-2xx status.
    Status,
    /// The connection broke while the body was being read.
    ResetMidStream,
    /// The stream ended without `[DONE]` or a finish reason.
    Truncated,
    /// A chunk or body was not the JSON it should be.
    Malformed,
    /// The provider sent an error object inside the stream or a 2xx body.
    ErrorInBody,
    /// A line or body exceeded the client's size limits.
    TooLarge,
}

/// One failed request.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{kind:?} ({class}){}: {message}", status.map(|s| format!(" HTTP {s}")).unwrap_or_default())]
pub struct RequestError {
    /// What a retry policy should do.
    pub class: ErrorClass,
    /// What happened.
    pub kind: FailureKind,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Provider's or transport's message, with anything key-shaped removed.
    pub message: String,
    /// How long the server asked us to wait (`Retry-After`, `x-ratelimit-reset-*`).
    pub retry_after: Option<Duration>,
    /// Content had already arrived when it failed: sending again bills those tokens again.
    pub delivered_content: bool,
}

impl RequestError {
    /// A failure of `kind` and `class`; the message is redacted of anything key-like.
    pub fn new(kind: FailureKind, class: ErrorClass, message: impl Into<String>) -> Self {
        Self {
            class,
            kind,
            status: None,
            message: redact(&message.into()),
            retry_after: None,
            delivered_content: false,
        }
    }
}

/// Sorts an HTTP error response into its class.
///
/// Why each class:
/// - 429 is rate limiting, except OpenAI's `insufficient_quota` (also sent as 429), which stays
///   until someone pays: permanent.
/// - 408, 409, 425, 5xx and Cloudflare's 52x are transient; Anthropic's 529 "overloaded" too.
/// - 413 and 400s whose message says the context or prompt is too long (OpenAI's
///   `context_length_exceeded`, vLLM's "maximum context length", Anthropic's "prompt is too
///   long") cannot succeed unchanged, but can succeed smaller: their own class.
/// - Everything else 4xx (auth, not found, invalid request) is permanent.
pub fn classify_status(
    status: u16,
    kind: Option<&str>,
    code: Option<&str>,
    message: &str,
) -> ErrorClass {
    let is = |s: Option<&str>, what: &str| s.is_some_and(|s| s.eq_ignore_ascii_case(what));
    if is(kind, "insufficient_quota") || is(code, "insufficient_quota") {
        return ErrorClass::Permanent;
    }
    if is(code, "context_length_exceeded") || status == 413 || looks_like_context_error(message) {
        return ErrorClass::ContextTooLong;
    }
    match status {
        429 => ErrorClass::Throttled,
        408 | 409 | 425 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

fn looks_like_context_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "maximum context length",
        "context length",
        "context_length_exceeded",
        "prompt is too long",
        "input is too long",
        "too many tokens",
        "exceeds the context window",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Removes every secret this process holds, by value ([`crate::secrets`]), then anything that
/// still looks like an API key (`sk-…`, `Bearer …`, long opaque tokens), so provider messages
/// that echo a key — some do on 401 — never reach logs, the ledger, results or reports.
pub fn redact(message: &str) -> String {
    let message = crate::secrets::scrub(message);
    let mut out = String::with_capacity(message.len());
    let mut redact_next = false;
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let core = word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_');
        let keyish = core.starts_with("sk-")
            || core.starts_with("sk_")
            || (core.len() >= 32
                && core
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && core.chars().any(|c| c.is_ascii_digit())
                && core.chars().any(|c| c.is_ascii_alphabetic()));
        if (redact_next || keyish) && !core.is_empty() {
            out.push_str(&word.replace(core, "<redacted>"));
        } else {
            out.push_str(word);
        }
        redact_next = core.eq_ignore_ascii_case("bearer");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_classes() {
        assert_eq!(
            classify_status(429, Some("rate_limit_exceeded"), None, ""),
            ErrorClass::Throttled
        );
        assert_eq!(
            classify_status(429, Some("insufficient_quota"), None, ""),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_status(429, None, Some("insufficient_quota"), ""),
            ErrorClass::Permanent
        );
        for s in [500, 502, 503, 504, 529, 408] {
            assert_eq!(
                classify_status(s, None, None, ""),
                ErrorClass::Transient,
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(
                classify_status(s, None, None, "bad"),
                ErrorClass::Permanent,
                "{s}"
            );
        }
        assert_eq!(
            classify_status(
                400,
                None,
                None,
                "This model's maximum context length is 8192 tokens"
            ),
            ErrorClass::ContextTooLong
        );
        assert_eq!(
            classify_status(400, None, Some("context_length_exceeded"), ""),
            ErrorClass::ContextTooLong
        );
        assert_eq!(
            classify_status(413, None, None, ""),
            ErrorClass::ContextTooLong
        );
    }

    #[test]
    fn keys_in_provider_messages_are_redacted() {
        let m = redact("Incorrect API key provided: sk-proj-abc123XYZ. You can find your key");
        assert!(!m.contains("abc123"), "{m}");
        assert!(m.contains("Incorrect API key provided: <redacted>."), "{m}");
        let m = redact("header was Bearer abc.def");
        assert_eq!(m, "header was Bearer <redacted>");
        let m = redact("token 0123456789abcdef0123456789abcdef0123 rejected");
        assert_eq!(m, "token <redacted> rejected");
        assert_eq!(redact("plain words stay"), "plain words stay");
    }

    #[test]
    fn only_transient_and_throttled_retry() {
        assert!(ErrorClass::Transient.is_retryable());
        assert!(ErrorClass::Throttled.is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
        assert!(!ErrorClass::ContextTooLong.is_retryable());
    }
}
