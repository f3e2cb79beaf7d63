//! What an endpoint really supports, checked with tiny requests (`pagemill doctor`): reachable,
//! model listed, streaming, usage in streams, the cached-token field, and which parameters
//! (`response_format` json_object / json_schema, `stream_options`, `ignore_eos`, `seed`) it
//! accepts.
//!
//! Parameter probes send one non-streaming request each (8 tokens at most). A 4xx other than
//! 429 means the parameter was rejected; a 429 or 5xx means the probe could not tell.

use serde::Serialize;
use serde_json::json;

use crate::clock::{human, mono_ns};
use crate::{ChatRequest, Client, Endpoint, ErrorClass, Exchange};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Works.
    Ok,
    /// Works partly, or the feature is absent (not fatal).
    Warn,
    /// Does not work.
    Fail,
    /// Could not be checked (an earlier check failed, or the probe was inconclusive).
    Skipped,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Its outcome.
    pub status: Status,
    /// What was seen.
    pub detail: String,
}

/// Everything checked on one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointChecks {
    /// Endpoint name.
    pub endpoint: String,
    /// Base URL.
    pub base_url: String,
    /// Model.
    pub model: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl EndpointChecks {
    /// The status of the check named `name`, if it ran.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.status)
    }

    /// True when any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            status,
            detail: detail.into(),
        });
    }
}

/// Every check on one endpoint.
pub async fn check(endpoint: Endpoint) -> EndpointChecks {
    let mut report = EndpointChecks {
        endpoint: endpoint.name.clone(),
        base_url: endpoint.base_url.clone(),
        model: endpoint.model.clone(),
        checks: Vec::new(),
    };
    let client = match Client::new(endpoint) {
        Ok(c) => c,
        Err(e) => {
            report.push("configuration", Status::Fail, e.to_string());
            return report;
        }
    };

    let d = client.dialect();
    let mut said = format!("{} API, key as {:?}, provider {}", d.api, d.auth, d.name);
    if !d.notes.is_empty() {
        said.push_str(": ");
        said.push_str(&d.notes);
    }
    report.push("dialect", Status::Ok, said);
    let Some(owner) = models(&client, &mut report).await else {
        return report;
    };
    let (streamed, stream_options) = streaming(&client, &mut report).await;
    cache_field(&client, &streamed, &mut report).await;
    parameters(&client, &mut report).await;
    report.push("param stream_options", stream_options.0, stream_options.1);
    let (status, detail) = per_request_schemas(client.endpoint(), owner.as_deref());
    report.push("per-request schemas", status, detail);
    report
}

/// Reachable, and the model listed: `None` when unreachable (nothing more can be checked),
/// else the model's `owned_by`, if the list gives it.
async fn models(client: &Client, report: &mut EndpointChecks) -> Option<Option<String>> {
    let owner: Option<String>;
    let start = mono_ns();
    match client.get_json("models").await {
        Err(e) => {
            report.push("reachable", Status::Fail, e.message);
            return None;
        }
        Ok((status, body)) => {
            let took = human(crate::clock::between(start, mono_ns()));
            report.push(
                "reachable",
                Status::Ok,
                format!("GET /models: HTTP {status} in {took}"),
            );
            let ids: Vec<&str> = body["data"]
                .as_array()
                .map(|a| a.iter().filter_map(|m| m["id"].as_str()).collect())
                .unwrap_or_default();
            let model = &client.endpoint().model;
            owner = body["data"]
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .find(|m| m["id"].as_str() == Some(model))
                        .or(a.first())
                })
                .and_then(|m| m["owned_by"].as_str())
                .map(str::to_owned);
            if !(200..300).contains(&status) {
                report.push(
                    "model listed",
                    Status::Skipped,
                    format!("/models answered HTTP {status}"),
                );
            } else if ids.iter().any(|id| id == model) {
                report.push(
                    "model listed",
                    Status::Ok,
                    format!("`{model}` among {} models", ids.len()),
                );
            } else {
                let shown: Vec<&str> = ids.iter().take(5).copied().collect();
                report.push(
                    "model listed",
                    Status::Warn,
                    format!("`{model}` not in the list ({})", shown.join(", ")),
                );
            }
        }
    }

    Some(owner)
}

/// Streaming with `include_usage`, else without `stream_options`: streaming, usage in the
/// stream. Returns the streamed exchange, and whether `stream_options` was accepted.
async fn streaming(client: &Client, report: &mut EndpointChecks) -> (Exchange, (Status, String)) {
    let mut stream_req = probe_request();
    stream_req.stream = true;
    let mut streamed = client.send(&stream_req, mono_ns()).await;
    let chat = client.dialect().api == crate::Api::Chat;
    let mut stream_options = if chat {
        (Status::Ok, "accepted".to_owned())
    } else {
        (
            Status::Skipped,
            format!("not part of the {} API", client.dialect().api),
        )
    };
    if chat && rejected(&streamed) {
        stream_options = (Status::Warn, rejection(&streamed));
        let mut body = client.body(&stream_req);
        if let Some(map) = body.as_object_mut() {
            map.remove("stream_options");
        }
        streamed = client
            .post(client.dialect().api.path(), &body, true, mono_ns())
            .await;
    }
    match &streamed.error {
        None => {
            report.push(
                "streaming",
                Status::Ok,
                format!(
                    "{} events, ttft {}",
                    streamed.events,
                    streamed
                        .timeline
                        .ttft()
                        .map_or_else(|| "n/a".to_owned(), human)
                ),
            );
            match &streamed.raw_usage {
                Some(_) => report.push("usage in stream", Status::Ok, "final usage chunk sent"),
                None => report.push(
                    "usage in stream",
                    Status::Warn,
                    "no usage in the stream: tokens will be counted by pagemill's tokenizer",
                ),
            }
        }
        Some(e) => {
            report.push("streaming", Status::Fail, e.to_string());
            report.push("usage in stream", Status::Skipped, "streaming failed");
        }
    }

    (streamed, stream_options)
}

/// The cached-token field: from the stream's usage, else from a non-streaming answer.
async fn cache_field(client: &Client, streamed: &Exchange, report: &mut EndpointChecks) {
    let plain = client.send(&probe_request(), mono_ns()).await;
    let usage = streamed.raw_usage.as_ref().or(plain.raw_usage.as_ref());
    match usage.map(cache_dialect) {
        Some(Some(dialect)) => report.push("cached-token field", Status::Ok, dialect),
        Some(None) => report.push(
            "cached-token field",
            Status::Warn,
            "absent: cache hits cannot be measured or priced (cost is an upper bound)",
        ),
        None => report.push("cached-token field", Status::Skipped, "no usage reported"),
    }
}

/// Which request parameters the endpoint accepts.
async fn parameters(client: &Client, report: &mut EndpointChecks) {
    let mut json_object = probe_request();
    json_object.response_format = Some(json!({"type": "json_object"}));
    json_object.messages[0].content = "Reply with the JSON object {\"ok\": true}.".into();
    let mut json_schema = json_object.clone();
    json_schema.response_format = Some(json!({
        "type": "json_schema",
        "json_schema": {"name": "probe", "strict": true, "schema": {
            "type": "object", "properties": {"ok": {"type": "boolean"}},
            "required": ["ok"], "additionalProperties": false}}
    }));
    let mut ignore_eos = probe_request();
    ignore_eos.ignore_eos = Some(true);
    let mut seed = probe_request();
    seed.seed = Some(42);
    let api = client.dialect().api;
    for (name, req, in_api) in [
        (
            "param response_format json_object",
            json_object,
            api != crate::Api::Anthropic,
        ),
        ("param response_format json_schema", json_schema, true),
        ("param ignore_eos", ignore_eos, api == crate::Api::Chat),
        ("param seed", seed, api == crate::Api::Chat),
    ] {
        let (status, detail) = if in_api {
            param_status(client, &req).await
        } else {
            (Status::Skipped, format!("not part of the {api} API"))
        };
        report.push(name, status, detail);
    }
}

/// Servers that compile a grammar for each request's schema cheaply (llama.cpp, vLLM, SGLang,
/// pagemill's own engine), told by `owned_by` in `/models`: there, narrowing each pipeline request's
/// schema to its own items and candidates costs nothing and keeps small models on track.
const GRAMMAR_SERVERS: [&str; 4] = ["llamacpp", "vllm", "sglang", "pagemill-local"];

/// The "per-request schemas" check: whether the endpoint should narrow schemas, and does.
pub fn per_request_schemas(ep: &Endpoint, owner: Option<&str>) -> (Status, String) {
    let capable = owner.is_some_and(|o| GRAMMAR_SERVERS.contains(&o));
    match (capable, ep.per_request_schema) {
        (true, true) => (
            Status::Ok,
            format!(
                "on ({} compiles a grammar per request)",
                owner.unwrap_or("?")
            ),
        ),
        (true, false) => (
            Status::Warn,
            format!(
                "off, though {} compiles a grammar per request: set `per_request_schema = true` (and `prompt_profile = \"small\"` for a model under ~1B parameters)",
                owner.unwrap_or("?")
            ),
        ),
        (false, true) => (
            Status::Ok,
            format!(
                "on (server `{}`: if it compiles schemas slowly or bills for them, turn it off)",
                owner.unwrap_or("unknown")
            ),
        ),
        (false, false) => (
            Status::Ok,
            format!(
                "off (server `{}` not known to compile schemas per request cheaply)",
                owner.unwrap_or("unknown")
            ),
        ),
    }
}

fn probe_request() -> ChatRequest {
    let mut req = ChatRequest::user("Reply with the word OK.");
    req.max_tokens = Some(8);
    req.temperature = Some(0.0);
    req
}

fn rejected(ex: &Exchange) -> bool {
    ex.error.as_ref().is_some_and(|e| {
        e.status
            .is_some_and(|s| (400..500).contains(&s) && s != 429)
            && matches!(e.class, ErrorClass::Permanent | ErrorClass::ContextTooLong)
    })
}

fn rejection(ex: &Exchange) -> String {
    match &ex.error {
        Some(e) => format!(
            "rejected (HTTP {}): {}",
            e.status.unwrap_or(0),
            e.message.chars().take(80).collect::<String>()
        ),
        None => "accepted".into(),
    }
}

async fn param_status(client: &Client, req: &ChatRequest) -> (Status, String) {
    let ex = client.send(req, mono_ns()).await;
    match &ex.error {
        None => (Status::Ok, "accepted".into()),
        Some(_) if rejected(&ex) => (Status::Warn, rejection(&ex)),
        Some(e) => (Status::Skipped, format!("inconclusive: {e}")),
    }
}

/// Which dialect reports cached tokens in this usage object, if any.
fn cache_dialect(u: &crate::wire::RawUsage) -> Option<String> {
    if u.prompt_tokens_details
        .as_ref()
        .is_some_and(|d| d.cached_tokens.is_some())
    {
        Some("prompt_tokens_details.cached_tokens (OpenAI)".into())
    } else if u.prompt_cache_hit_tokens.is_some() {
        Some("prompt_cache_hit_tokens (DeepSeek)".into())
    } else if u
        .input_tokens_details
        .as_ref()
        .is_some_and(|d| d.cached_tokens.is_some())
    {
        Some("input_tokens_details.cached_tokens (Responses API)".into())
    } else if u.cache_read_input_tokens.is_some() {
        Some("cache_read_input_tokens (Anthropic-style)".into())
    } else {
        None
    }
}

/// Every endpoint checked at once, in their order.
pub async fn check_all(endpoints: Vec<Endpoint>) -> Vec<EndpointChecks> {
    let handles: Vec<_> = endpoints
        .into_iter()
        .map(|e| tokio::spawn(check(e)))
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}
