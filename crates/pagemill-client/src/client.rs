//! [`Client`]: one endpoint's transport, limiter, tokenizer and prices behind two calls —
//! [`Client::send`] for exactly one HTTP attempt (what a benchmark wants) and [`Client::chat`]
//! for a paced, retried request (what a pipeline wants).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method};
use http_body_util::Full;
use serde_json::Value;

use crate::clock::mono_ns;
use crate::dialect::Dialect;
use crate::endpoint::Endpoint;
use crate::error::{ClientError, ErrorClass, FailureKind, RequestError};
use crate::limits::Limiter;
use crate::retry::{Outcome, RetryState};
use crate::runaway::LoopGuard;
use crate::stream::{Exchange, Timeline, read_response};
use crate::transport::Transport;
use crate::usage::Tokenizer;
use crate::wire::ChatRequest;

/// Header naming a request for matching with a server's log.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-pagemill-request-id");

/// Largest JSON body [`Client::get_json`] reads: a model list is a few MB at most.
pub const MAX_JSON_BYTES: usize = 64 << 20;

/// Largest file the batch API's downloads read (an output file of 50,000 answers is ~100 MB).
pub const MAX_FILE_BYTES: usize = 1 << 30;

/// A byte count as people say it (`64 MiB`, `1 KiB`, `300 bytes`).
fn bytes_text(n: usize) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// `url` with the dialect's query parameters (Azure's `api-version`) added.
fn with_query(url: &str, dialect: &Dialect) -> String {
    let mut url = url.to_owned();
    for (k, v) in &dialect.query {
        let already = url
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.split('=').next() == Some(k)));
        if !already {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&percent(k));
            url.push('=');
            url.push_str(&percent(v));
        }
    }
    url
}

/// A query component with everything but unreserved characters percent-encoded.
fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A client for one endpoint. Cheap to clone; clones share the pool and the limiter.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Arc<Endpoint>,
    dialect: Arc<Dialect>,
    transport: Transport,
    limiter: Arc<Limiter>,
    tokenizer: Tokenizer,
    headers: HeaderMap,
}

impl Client {
    /// A client for `endpoint`; fails on a missing key or invalid headers.
    pub fn new(endpoint: Endpoint) -> Result<Self, ClientError> {
        endpoint.require_key()?;
        let dialect = Dialect::of(&endpoint);
        with_query(&endpoint.url(dialect.api.path()), &dialect)
            .parse::<http::Uri>()
            .map_err(|e| ClientError::InvalidUrl {
                endpoint: endpoint.name.clone(),
                url: endpoint.base_url.clone(),
                reason: e.to_string(),
            })?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let dialect_headers = dialect.headers.iter();
        for (name, value) in dialect_headers.chain(&endpoint.headers) {
            let invalid = || ClientError::InvalidHeader {
                endpoint: endpoint.name.clone(),
                name: name.clone(),
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut v = HeaderValue::from_str(value).map_err(|_| invalid())?;
            if crate::endpoint::is_secret_header(name) {
                v.set_sensitive(true);
                crate::secrets::register(value);
            }
            headers.insert(n, v);
        }
        if let Some(key) = &endpoint.api_key {
            crate::secrets::register(key.expose());
            let (name, value) = dialect.auth.header(key.expose());
            let mut v = HeaderValue::from_str(&value).map_err(|_| ClientError::InvalidHeader {
                endpoint: endpoint.name.clone(),
                name: name.into(),
            })?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), v);
        }
        let tokenizer = endpoint.tokenizer()?;
        Ok(Self {
            dialect: Arc::new(dialect),
            transport: Transport::new(&endpoint)?,
            limiter: Arc::new(Limiter::new(&endpoint.limits)),
            endpoint: Arc::new(endpoint),
            tokenizer,
            headers,
        })
    }

    /// The same client with a connection pool of its own; the limiter stays shared. For a
    /// worker on a runtime of its own: a connection is driven by the runtime that opened it,
    /// so a shared pool would hand one runtime's connections to another. (Building the
    /// transport again cannot fail where it once succeeded; if it did, the pool is shared.)
    pub fn with_own_pool(&self) -> Self {
        Self {
            transport: Transport::new(&self.endpoint).unwrap_or_else(|_| self.transport.clone()),
            ..self.clone()
        }
    }

    /// Kept-alive connections the server closed: while idle, and under a request (see
    /// [`Transport::server_closes`]).
    pub fn server_closes(&self) -> (u64, u64) {
        self.transport.server_closes()
    }

    /// Keeps at most `n` connections open at once (see [`Transport::limit_connections`]).
    pub fn limit_connections(&self, n: Option<usize>) {
        self.transport.limit_connections(n);
    }

    /// The endpoint this client sends to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How the endpoint is spoken to (see [`crate::dialect`]).
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// The URL of a path under the base URL, with the dialect's query parameters.
    pub fn url(&self, path: &str) -> String {
        with_query(&self.endpoint.url(path), &self.dialect)
    }

    /// The server closes connections it kept alive, so each request opens a new one (see
    /// [`crate::transport`]).
    pub fn reuse_abandoned(&self) -> bool {
        self.transport.reuse_abandoned()
    }

    /// The tokenizer used when the server reports no usage.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The endpoint's limiter (shared by every clone).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The JSON body sent for `req` in the endpoint's API: the endpoint's model and body
    /// parameters filled in, usage asked for where the dialect wants it asked (see
    /// [`crate::api::body`]).
    pub fn body(&self, req: &ChatRequest) -> Value {
        crate::api::body(&self.dialect, &self.endpoint, req)
    }

    /// Sends exactly one attempt of `req` (no pacing, no retry). `scheduled` is when the
    /// request was meant to go (see [`crate::clock::mono_ns`]); pass `mono_ns()` when unsure.
    pub async fn send(&self, req: &ChatRequest, scheduled: u64) -> Exchange {
        self.send_tagged(req, scheduled, None).await
    }

    /// Like [`Client::send`], with an `x-pagemill-request-id` header naming the request, so a
    /// server's log (the simulator's) can be matched with the client's records.
    pub async fn send_tagged(
        &self,
        req: &ChatRequest,
        scheduled: u64,
        tag: Option<&str>,
    ) -> Exchange {
        let body = self.body(req);
        let guard = (req.stream && req.cancel_loops).then(|| LoopGuard::new(&req.messages));
        let mut ex = self
            .post_guarded(
                crate::api::path(&self.dialect, req),
                &body,
                req.stream,
                scheduled,
                tag,
                guard,
            )
            .await;
        if ex.is_ok() || ex.error.as_ref().is_some_and(|e| e.delivered_content) {
            ex.usage.fill_from_tokenizer(
                &self.tokenizer,
                &req.messages,
                &ex.content,
                &ex.reasoning,
            );
        }
        ex.cost = self.endpoint.prices.cost(&ex.usage);
        ex
    }

    /// POSTs any JSON body to a path under the base URL and reads the answer in the endpoint's
    /// API (used by `doctor` to probe parameters).
    pub async fn post(&self, path: &str, body: &Value, stream: bool, scheduled: u64) -> Exchange {
        self.post_tagged(path, body, stream, scheduled, None).await
    }

    /// [`Client::post`] with an optional request-id header (see [`Client::send_tagged`]).
    pub async fn post_tagged(
        &self,
        path: &str,
        body: &Value,
        stream: bool,
        scheduled: u64,
        tag: Option<&str>,
    ) -> Exchange {
        self.post_guarded(path, body, stream, scheduled, tag, None)
            .await
    }

    async fn post_guarded(
        &self,
        path: &str,
        body: &Value,
        stream: bool,
        scheduled: u64,
        tag: Option<&str>,
        guard: Option<LoopGuard>,
    ) -> Exchange {
        let mut ex = Exchange {
            endpoint: self.endpoint.name.clone(),
            streamed: stream,
            timeline: Timeline::new(scheduled),
            ..Exchange::default()
        };
        let bytes = match serde_json::to_vec(body) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                ex.error = Some(RequestError::new(
                    FailureKind::Malformed,
                    ErrorClass::Permanent,
                    e.to_string(),
                ));
                return ex;
            }
        };
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .uri(self.url(path));
        if let Some(h) = builder.headers_mut() {
            h.clone_from(&self.headers);
            let accept = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            h.insert(ACCEPT, HeaderValue::from_static(accept));
            if let Some(v) = tag.and_then(|t| HeaderValue::from_str(t).ok()) {
                h.insert(REQUEST_ID, v);
            }
        }
        let request = match builder.body(Full::new(bytes)) {
            Ok(r) => r,
            Err(e) => {
                ex.error = Some(RequestError::new(
                    FailureKind::Connect,
                    ErrorClass::Permanent,
                    e.to_string(),
                ));
                return ex;
            }
        };
        let cfg = self.transport.config();
        let deadline = tokio::time::Instant::now()
            + Endpoint::secs(cfg.request_timeout_secs).min(Duration::from_secs(86_400 * 365));
        ex.timeline.sent = mono_ns();
        match self.transport.send(request).await {
            Err(mut e) => {
                e.status = None;
                ex.timeline.done = Some(mono_ns());
                ex.error = Some(e);
            }
            Ok((res, conn)) => {
                ex.timeline.headers = Some(crate::transport::Arrival::of(&res).latest());
                ex.timeline.connection = conn;
                read_response(
                    &mut ex,
                    res,
                    &self.dialect,
                    Endpoint::secs(cfg.idle_timeout_secs),
                    deadline,
                    guard,
                )
                .await;
            }
        }
        ex
    }

    /// GETs a path under the base URL and parses the body as JSON: `(status, body)` (`Null`
    /// when the body is not JSON). Bodies over [`MAX_JSON_BYTES`] are refused.
    pub async fn get_json(&self, path: &str) -> Result<(u16, Value), RequestError> {
        self.get_json_limited(path, MAX_JSON_BYTES).await
    }

    /// [`Client::get_json`] with a body limit of `limit` bytes (a simulator's whole log can be
    /// larger than a model list).
    pub async fn get_json_limited(
        &self,
        path: &str,
        limit: usize,
    ) -> Result<(u16, Value), RequestError> {
        let (status, body) = self
            .request_bytes(Method::GET, path, None, Bytes::new(), limit)
            .await?;
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Any request under the base URL with the endpoint's headers: `(status, body)`. A body over
    /// `limit` bytes is an error naming the limit, read no further.
    pub async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
        limit: usize,
    ) -> Result<(u16, Bytes), RequestError> {
        let bad = |e: String| RequestError::new(FailureKind::Connect, ErrorClass::Permanent, e);
        let mut builder = http::Request::builder().method(method).uri(self.url(path));
        if let Some(h) = builder.headers_mut() {
            h.clone_from(&self.headers);
            h.remove(CONTENT_TYPE);
            if let Some(ct) = content_type {
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_str(ct).map_err(|e| bad(e.to_string()))?,
                );
            }
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| bad(e.to_string()))?;
        let (res, _) = self.transport.send(request).await?;
        let status = res.status().as_u16();
        let idle = Endpoint::secs(self.transport.config().idle_timeout_secs);
        let limited = http_body_util::Limited::new(res.into_body(), limit);
        let body = tokio::time::timeout(idle, http_body_util::BodyExt::collect(limited))
            .await
            .map_err(|_| {
                RequestError::new(
                    FailureKind::Timeout,
                    ErrorClass::Transient,
                    "body timed out",
                )
            })?
            .map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    let mut err = RequestError::new(
                        FailureKind::TooLarge,
                        ErrorClass::Permanent,
                        format!(
                            "the response to {path} is over {}, the most pagemill reads of it",
                            bytes_text(limit)
                        ),
                    );
                    err.status = Some(status);
                    err
                } else {
                    RequestError::new(
                        FailureKind::ResetMidStream,
                        ErrorClass::Transient,
                        e.to_string(),
                    )
                }
            })?
            .to_bytes();
        Ok((status, body))
    }

    /// Sends `req` paced by the endpoint's limits, retrying transient and throttled failures
    /// under its retry policy. A failure after content arrived is not re-sent.
    pub async fn chat(&self, req: &ChatRequest) -> Outcome {
        self.chat_with(req, false).await
    }

    /// Like [`Client::chat`]; with `resend_after_content`, a stream that broke after delivering
    /// content is sent again too (its tokens may be billed twice).
    pub async fn chat_with(&self, req: &ChatRequest, resend_after_content: bool) -> Outcome {
        self.chat_tagged(req, resend_after_content, None).await
    }

    /// Like [`Client::chat_with`], every attempt tagged with `x-pagemill-request-id` (see
    /// [`Client::send_tagged`]).
    pub async fn chat_tagged(
        &self,
        req: &ChatRequest,
        resend_after_content: bool,
        tag: Option<&str>,
    ) -> Outcome {
        let mut retry = RetryState::new(&self.endpoint.retry, resend_after_content);
        let estimate = self.estimate_tokens(req);
        let mut retried = Vec::new();
        loop {
            let permit = self.limiter.acquire(estimate).await;
            let scheduled = mono_ns();
            let ex = self.send_tagged(req, scheduled, tag).await;
            drop(permit);
            self.limiter.observe(&ex.rate_limit);
            let Some(err) = &ex.error else {
                return Outcome { last: ex, retried };
            };
            let took = ex.timeline.total().unwrap_or_default();
            match retry.next_delay(err, took) {
                None => return Outcome { last: ex, retried },
                Some(delay) => {
                    tracing::debug!(endpoint = %self.endpoint.name, error = %err, ?delay, "retrying");
                    if err.class == ErrorClass::Throttled {
                        self.limiter.pause(delay);
                    }
                    retried.push(ex);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Tokens a request may use (prompt + max completion), for the tokens/min limiter.
    fn estimate_tokens(&self, req: &ChatRequest) -> u64 {
        if self.endpoint.limits.tokens_per_minute.is_none() {
            return 0;
        }
        let answers = u64::from(req.max_tokens.unwrap_or(256));
        if !req.prompts.is_empty() {
            // A prompt array: every prompt is read, and each may be answered up to max_tokens.
            let prompts: u64 = req.prompts.iter().map(|p| self.tokenizer.count(p)).sum();
            return prompts + answers * req.prompts.len() as u64;
        }
        self.tokenizer.count_messages(&req.messages) + answers
    }
}
