//! The simulated provider: routes, the latency model, and the life of one chat request.
//!
//! A chat request is admitted by the rate limiter, may draw a fault, waits for a slot (queueing
//! above `max_concurrency`, with keep-alive comments), pays its time to first token (base +
//! jitter + uncached prompt tokens at the prefill rate — cached tokens are free), then decodes
//! at a per-stream rate that slows when concurrent streams share the aggregate capacity. Every
//! write is scheduled on absolute deadlines and logged with its due and actual send times.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use pagemill_client::clock::mono_ns;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod array;
mod chat;
mod dialects;

pub(crate) use dialects::parse_anthropic;
mod framing;

use framing::Dialect;

use crate::SimError;
use crate::batch::BatchStore;
use crate::cache::PrefixCache;
use crate::faults;
use crate::profile::Profile;
use crate::ratelimit::RateLimiter;
use crate::script;
use crate::server::{Received, Reply, ServerHandle, ServerOptions, Sink, serve_with};

/// A running simulator: its address, log and `shutdown()`.
pub type SimHandle = ServerHandle;

/// Starts simulated providers.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Serves `profile` on `127.0.0.1:0`.
    pub async fn start(profile: Profile) -> Result<SimHandle, SimError> {
        Self::start_with(profile, ServerOptions::default()).await
    }

    /// Serves `profile` on `addr`.
    pub async fn start_on(addr: SocketAddr, profile: Profile) -> Result<SimHandle, SimError> {
        let options = ServerOptions {
            addr,
            ..ServerOptions::default()
        };
        Self::start_with(profile, options).await
    }

    /// Serves `profile` with full server options (log size, JSONL log file).
    pub async fn start_with(
        profile: Profile,
        options: ServerOptions,
    ) -> Result<SimHandle, SimError> {
        faults::validate(&profile.faults)?;
        let gold = match &profile.gold {
            Some(mode) => Some(crate::gold::Gold::load(mode, profile.seed)?),
            None => None,
        };
        let options = ServerOptions {
            network: profile.network.clone(),
            seed: profile.seed,
            ..options
        };
        let mut state = State::new(profile);
        state.gold = gold;
        let state = Arc::new(state);
        Ok(serve_with(options, move |req, sink| {
            let state = state.clone();
            Box::pin(async move { state.route(req, sink).await })
        })
        .await?)
    }
}

/// Everything a simulator shares between requests.
pub(crate) struct State {
    pub(crate) profile: Profile,
    cache: PrefixCache,
    limiter: RateLimiter,
    slots: Arc<Semaphore>,
    active_streams: AtomicUsize,
    chat_index: AtomicU64,
    batches: BatchStore,
    /// Gold mode's file and record, when on.
    gold: Option<crate::gold::Gold>,
    /// `mono_ns()` and `Instant` read together, to convert deadlines to log timestamps.
    epoch: (u64, Instant),
}

impl State {
    fn new(profile: Profile) -> Self {
        let slots = profile
            .latency
            .max_concurrency
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            cache: PrefixCache::new(&profile.cache),
            limiter: RateLimiter::new(&profile.rate_limits),
            slots: Arc::new(Semaphore::new(slots)),
            active_streams: AtomicUsize::new(0),
            chat_index: AtomicU64::new(0),
            batches: BatchStore::default(),
            gold: None,
            epoch: (mono_ns(), Instant::now()),
            profile,
        }
    }

    pub(crate) fn mono_of(&self, t: Instant) -> u64 {
        self.epoch.0 + t.saturating_duration_since(self.epoch.1).as_nanos() as u64
    }

    /// A request's own random source: the same seed and request number give the same draws.
    pub(crate) fn rng(&self, salt: u64) -> SmallRng {
        let mut h = DefaultHasher::new();
        (self.profile.seed, salt).hash(&mut h);
        SmallRng::seed_from_u64(h.finish())
    }

    async fn route(self: Arc<Self>, req: Received, sink: Sink) {
        let path = req.path.trim_end_matches('/');
        if let Some(refusal) = dialect_refusal(&req, path) {
            return refusal.play(sink).await;
        }
        let reply = match (req.method.as_str(), path) {
            ("GET", p) if p.ends_with("/models") => {
                script::models_reply(std::slice::from_ref(&self.profile.model))
            }
            ("GET", "/sim/log") => return sim_log(&req, sink),
            ("GET", "/sim/stats") => Reply::json(200, &stats(&sink.log().entries())),
            ("GET", "/sim/gold") => match &self.gold {
                Some(g) => Reply::json(200, &json!(g.truth())),
                None => script::error(
                    404,
                    "not_found",
                    "gold mode is off (no [gold] in the profile)",
                ),
            },
            ("POST", p) if p.ends_with("/chat/completions") => {
                return self.chat(&req.body, sink, Dialect::Chat).await;
            }
            ("POST", p) if p.ends_with("/messages") => {
                return self.chat(&req.body, sink, Dialect::Anthropic).await;
            }
            ("POST", p) if p.ends_with("/responses") => {
                return self.chat(&req.body, sink, Dialect::Responses).await;
            }
            ("POST", p) if p.ends_with("/completions") => {
                return self.chat(&req.body, sink, Dialect::Legacy).await;
            }
            (_, p) if p.contains("/files") || p.contains("/batches") => {
                self.batches.route(&*self, &req)
            }
            _ => script::error(
                404,
                "not_found",
                &format!("no route for {} {}", req.method, req.path),
            ),
        };
        reply.play(sink).await;
    }
}

/// What the real APIs refuse before reading a request: a Messages API request without
/// `anthropic-version`, an Azure deployment's without `?api-version=`.
fn dialect_refusal(req: &Received, path: &str) -> Option<Reply> {
    if req.method == http::Method::POST
        && path.ends_with("/messages")
        && !req.headers.contains_key("anthropic-version")
    {
        let body = json!({"type": "error", "error": {"type": "invalid_request_error",
                          "message": "anthropic-version: header is required"}});
        return Some(Reply::json(400, &body));
    }
    let versioned = req
        .query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("api-version=")));
    if path.starts_with("/openai/deployments/") && !versioned {
        return Some(script::error(
            404,
            "404",
            "Resource not found (an Azure OpenAI deployment URL needs ?api-version=)",
        ));
    }
    None
}

/// `GET /sim/log`: the entries in memory as a JSON array, or JSONL with `?format=jsonl`.
fn sim_log(req: &Received, sink: Sink) {
    let entries = sink.log().entries();
    let jsonl = req
        .query
        .as_deref()
        .is_some_and(|q| q.contains("format=jsonl"));
    let reply = if jsonl {
        let mut text = String::new();
        for e in &entries {
            if let Ok(line) = serde_json::to_string(e) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        Reply::status(200)
            .header("content-type", "application/x-ndjson")
            .bytes(text)
    } else {
        Reply::json(200, &json!(entries))
    };
    tokio::spawn(reply.play(sink));
}

/// `GET /sim/stats`: request counts and how far chunk sends drifted from their schedule.
pub fn stats(entries: &[crate::server::LogEntry]) -> Value {
    let mut drift: Vec<u64> = entries
        .iter()
        .flat_map(|e| e.chunks.iter())
        .filter_map(|c| c.due_ns.map(|d| c.sent_ns.saturating_sub(d)))
        .collect();
    drift.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if drift.is_empty() {
            return None;
        }
        let i = ((drift.len() as f64 - 1.0) * p).round() as usize;
        Some(drift[i] as f64 / 1e3)
    };
    let faults = entries.iter().filter(|e| e.fault.is_some()).count();
    json!({
        "requests": entries.len(),
        "faults": faults,
        "scheduled_chunks": drift.len(),
        "drift_us": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    })
}
