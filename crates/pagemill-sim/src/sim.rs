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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pagemill_client::clock::mono_ns;
use pagemill_client::wire::{ChatRequest, Message};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::SimError;
use crate::batch::BatchStore;
use crate::cache::PrefixCache;
use crate::content;
use crate::faults::{self, Fault};
use crate::profile::{CacheDialect, FramingQuirks, Profile};
use crate::ratelimit::{Admission, RateLimiter};
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

    fn mono_of(&self, t: Instant) -> u64 {
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
                return self.chat(req, sink, Dialect::Chat).await;
            }
            ("POST", p) if p.ends_with("/completions") => {
                return self.chat(req, sink, Dialect::Legacy).await;
            }
            (_, p) if p.contains("/files") || p.contains("/batches") => {
                self.batches.route(&self, &req)
            }
            _ => script::error(
                404,
                "not_found",
                &format!("no route for {} {}", req.method, req.path),
            ),
        };
        reply.play(sink).await;
    }

    async fn chat(&self, req: Received, mut sink: Sink, dialect: Dialect) {
        let chat = match parse_request(&req.body, dialect) {
            Ok(c) => c,
            Err(e) => {
                return script::error(400, "invalid_request_error", &e)
                    .play(sink)
                    .await;
            }
        };
        let index = self.chat_index.fetch_add(1, Ordering::Relaxed);
        let mut rng = self.rng(index);
        let (prompt_ids, prompt_tokens) = content::prompt_tokens(&chat.messages);
        let max_tokens = chat
            .max_tokens
            .or_else(|| {
                chat.extra
                    .get("max_completion_tokens")
                    .and_then(Value::as_u64)
                    .map(|m| m as u32)
            })
            .unwrap_or(self.profile.content.default_max_tokens)
            .max(1);
        sink.entry_mut().prompt_tokens = prompt_tokens;

        let limit_headers = match self.limiter.admit(prompt_tokens + u64::from(max_tokens)) {
            Admission::Allowed(h) => {
                sink.entry_mut().rate_tokens = prompt_tokens + u64::from(max_tokens);
                h
            }
            Admission::Throttled(_, headers) => {
                let mut reply = script::error(
                    429,
                    "rate_limit_exceeded",
                    "Rate limit reached; retry after the time in Retry-After",
                )
                .fault("throttled");
                reply.headers.extend(headers);
                return reply.play(sink).await;
            }
            Admission::NoQuota => {
                return script::error(429, "insufficient_quota", "You exceeded your current quota")
                    .fault("insufficient_quota")
                    .play(sink)
                    .await;
            }
        };

        let fault = faults::pick(&self.profile.faults, index, &mut rng);
        if let Some(f) = fault {
            sink.set_fault(&f.name());
        }
        match fault {
            Some(Fault::Status(s)) => {
                let mut reply = script::error(
                    s,
                    "server_error",
                    "The server had an error while processing your request",
                );
                reply.fault = Some(format!("status_{s}"));
                reply.headers.extend(limit_headers);
                return reply.play(sink).await;
            }
            Some(Fault::Throttled) => {
                // A burst refused, not a window spent: `Retry-After` alone (no exhausted
                // `x-ratelimit-*` headers that would teach the client a lower limit).
                let wait = self.profile.faults.retry_after_ms as f64 / 1000.0;
                let mut reply = script::error(
                    429,
                    "rate_limit_exceeded",
                    "Rate limit reached for requests",
                )
                .header("retry-after", format!("{wait}"));
                reply.fault = Some("status_429".into());
                return reply.play(sink).await;
            }
            Some(Fault::ResetBeforeHeaders) => return sink.reset(),
            Some(Fault::SlowHeaders) => {
                tokio::time::sleep(Duration::from_millis(self.profile.faults.slow_headers_ms))
                    .await;
            }
            _ => {}
        }
        let mut quirks = self.profile.framing;
        if let Some(Fault::Framing(q)) = fault {
            quirks = merge(quirks, q);
        }

        let mut headers = limit_headers;
        let streaming = chat.stream;
        if streaming {
            headers.push(("content-type".into(), "text/event-stream".into()));
            headers.push(("cache-control".into(), "no-cache".into()));
            sink.head(200, &headers);
        }

        // Queue for a slot, keeping the stream alive meanwhile.
        let queued_at = Instant::now();
        let slot = {
            let acquire = self.slots.clone().acquire_owned();
            tokio::pin!(acquire);
            loop {
                let tick = self.keepalive_tick(streaming);
                tokio::select! {
                    permit = &mut acquire => break permit.ok(),
                    () = tick => {
                        if !sink.send(Bytes::from_static(b": keep-alive\n\n"), None, 0).await {
                            return;
                        }
                    }
                }
            }
        };
        sink.entry_mut().queued_ns = queued_at.elapsed().as_nanos() as u64;

        // Prefill: cached tokens are free.
        let cache = self.cache.lookup_and_insert(&prompt_ids);
        sink.entry_mut().cached_tokens = cache.cached;
        let lat = &self.profile.latency;
        let uncached = prompt_tokens.saturating_sub(cache.cached);
        let prefill = if lat.prefill_tokens_per_sec > 0.0 {
            uncached as f64 / lat.prefill_tokens_per_sec
        } else {
            0.0
        };
        let jitter = if lat.ttft_jitter_ms > 0.0 {
            rng.random::<f64>() * lat.ttft_jitter_ms
        } else {
            0.0
        };
        let ttft = Profile::ms(lat.ttft_base_ms + jitter) + Duration::from_secs_f64(prefill);

        // The answer.
        let answer = self.answer(&chat, max_tokens, quirks, &mut rng);
        sink.entry_mut().completion_tokens = answer.tokens;
        if let Some(kind) = answer.sloppy {
            let f = match &sink.entry_mut().fault {
                Some(f) => format!("{f}+sloppy_{kind}"),
                None => format!("sloppy_{kind}"),
            };
            sink.set_fault(&f);
        }
        let usage = self.usage(prompt_tokens, cache, answer.tokens);

        let first_due = Instant::now() + ttft;
        if !streaming {
            let done = first_due + self.decode_time(answer.tokens);
            if done > Instant::now() {
                tokio::time::sleep_until(done).await;
            }
            drop(slot);
            return self
                .send_whole(sink, &headers, &answer, usage, dialect, fault)
                .await;
        }
        let keepalive_until = async {
            while Instant::now() + Duration::from_millis(lat.keepalive_ms.max(1)) < first_due
                && lat.keepalive_ms > 0
            {
                tokio::time::sleep(Duration::from_millis(lat.keepalive_ms)).await;
                if !sink
                    .send(Bytes::from_static(b": keep-alive\n\n"), None, 0)
                    .await
                {
                    return false;
                }
            }
            true
        };
        if !keepalive_until.await {
            return;
        }
        if first_due > Instant::now() {
            tokio::time::sleep_until(first_due).await;
        }

        let framer = Framer { quirks };
        let _streaming = ActiveStream::new(&self.active_streams);
        // With no pacing at all, the whole answer goes out in one write.
        let burst = lat.decode_tokens_per_sec <= 0.0
            && lat.aggregate_tokens_per_sec <= 0.0
            && !quirks.split_utf8;
        let model = self.profile.model.as_str();
        let role = event_bytes(dialect, model, Some(""), None, true);
        let first_due_ns = Some(self.mono_of(first_due));
        if !emit(&mut sink, burst, framer.frame(&role), first_due_ns, 0).await {
            return;
        }
        let half = answer.pieces.len() / 2;
        let mut due = first_due;
        for (i, (piece, tokens)) in answer.pieces.iter().enumerate() {
            if i == half {
                match fault {
                    Some(Fault::ResetMidStream) => return sink.reset_after_sent().await,
                    Some(Fault::Truncated) => {
                        sink.flush().await;
                        return;
                    }
                    Some(Fault::MalformedChunk) => {
                        let broken = Bytes::from_static(
                            b"data: {\"choices\":[{\"delta\":{\"content\":\"\n\n",
                        );
                        if !emit(&mut sink, burst, broken, None, 0).await {
                            return;
                        }
                    }
                    _ => {}
                }
            }
            if i > 0 {
                let gap = self.token_interval() * *tokens;
                if !gap.is_zero() {
                    due += gap;
                    tokio::time::sleep_until(due).await;
                }
            }
            let event = event_bytes(dialect, model, Some(piece), None, false);
            let due_ns = Some(self.mono_of(due));
            // A stream behind its schedule catches up as a real server does: the events already
            // overdue go out together (up to 16 KiB), instead of one write each.
            let next_due = due + self.token_interval() * *tokens;
            let catching_up = !quirks.split_utf8
                && i + 1 < answer.pieces.len()
                && next_due <= Instant::now()
                && sink.queued() < 16 * 1024;
            let sent = if burst || catching_up {
                emit(&mut sink, true, framer.frame(&event), due_ns, *tokens).await
            } else {
                framer.send(&mut sink, &event, due_ns, *tokens).await
            };
            if !sent {
                return;
            }
        }
        drop(slot);
        let finish = event_bytes(dialect, model, None, Some(answer.finish_reason), false);
        if !emit(&mut sink, burst, framer.frame(&finish), None, 0).await {
            return;
        }
        if chat.stream_options.is_some_and(|o| o.include_usage) {
            let chunk = json!({"id": "chatcmpl-sim", "object": dialect.chunk_object(),
                               "model": self.profile.model, "choices": [], "usage": usage});
            let bytes = framer.frame(chunk.to_string().as_bytes());
            if !emit(&mut sink, burst, bytes, None, 0).await {
                return;
            }
        }
        if quirks.close_after_stream {
            sink.close_connection_after_body();
        }
        sink.send(framer.frame_raw("[DONE]"), None, 0).await;
        if quirks.late_end {
            // The body's end (the chunked terminator) goes out in a later write, as
            // llama-server's does: a client that stops at `[DONE]` loses the connection.
            tokio::time::sleep(LATE_END).await;
        }
    }

    fn keepalive_tick(
        &self,
        streaming: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let ms = self.profile.latency.keepalive_ms;
        if streaming && ms > 0 {
            Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
        } else {
            Box::pin(std::future::pending())
        }
    }

    /// Time between tokens now: the per-stream rate, or the stream's share of the aggregate
    /// capacity, whichever is slower.
    fn token_interval(&self) -> Duration {
        let lat = &self.profile.latency;
        let single = if lat.decode_tokens_per_sec > 0.0 {
            1.0 / lat.decode_tokens_per_sec
        } else {
            0.0
        };
        let shared = if lat.aggregate_tokens_per_sec > 0.0 {
            self.active_streams.load(Ordering::Relaxed).max(1) as f64 / lat.aggregate_tokens_per_sec
        } else {
            0.0
        };
        Duration::from_secs_f64(single.max(shared))
    }

    fn decode_time(&self, tokens: u64) -> Duration {
        self.token_interval() * u32::try_from(tokens.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    fn answer(
        &self,
        chat: &ChatRequest,
        max_tokens: u32,
        quirks: FramingQuirks,
        rng: &mut SmallRng,
    ) -> Answer {
        let per_chunk = self.profile.latency.tokens_per_chunk.max(1) as usize;
        let wants_json = chat
            .response_format
            .as_ref()
            .and_then(|f| f.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "json_object" || t == "json_schema");
        if wants_json {
            let format = chat.response_format.clone().unwrap_or(Value::Null);
            let usual = content::packed_answer(&format, &chat.messages, self.profile.seed);
            let gold = self
                .gold
                .as_ref()
                .and_then(|g| g.answer(&format, &chat.messages, usual.clone()));
            let value = gold.or(usual).unwrap_or_else(|| {
                // The same prompt gets the same answer (as at temperature 0), whatever
                // else the server has seen.
                let mut h = DefaultHasher::new();
                for m in &chat.messages {
                    (&m.role, &m.content).hash(&mut h);
                }
                let mut same = self.rng(h.finish());
                content::json_answer(&format, &content::source_words(&chat.messages), &mut same)
            });
            let (text, sloppy) = if rng.random_bool(self.profile.content.sloppy.clamp(0.0, 1.0)) {
                let (t, kind) = content::sloppy(&value, rng);
                (t, Some(kind))
            } else {
                (value.to_string(), None)
            };
            let mut pieces = content::token_pieces(&text, per_chunk);
            let total: u64 = pieces.iter().map(|p| u64::from(p.1)).sum();
            let finish = if total > u64::from(max_tokens) {
                truncate_tokens(&mut pieces, max_tokens);
                "length"
            } else {
                "stop"
            };
            return Answer::new(pieces, finish, sloppy);
        }
        let mut n = max_tokens;
        let mut finish = "length";
        if let (false, Some([lo, hi])) = (
            chat.ignore_eos.unwrap_or(false),
            self.profile.content.natural_tokens,
        ) {
            let natural = rng.random_range(lo.min(hi)..=hi.max(lo)).max(1);
            if natural < n {
                n = natural;
                finish = "stop";
            }
        }
        let pieces: Vec<(String, u32)> = if quirks.split_utf8 {
            multibyte_pieces(n as usize)
        } else {
            content::plain_text(n as usize, rng)
                .into_iter()
                .map(|w| (w, 1))
                .collect()
        };
        if per_chunk == 1 {
            return Answer::new(pieces, finish, None);
        }
        let grouped = pieces
            .chunks(per_chunk)
            .map(|g| {
                (
                    g.iter().map(|p| p.0.as_str()).collect::<String>(),
                    g.iter().map(|p| p.1).sum(),
                )
            })
            .collect();
        Answer::new(grouped, finish, None)
    }

    fn usage(&self, prompt: u64, cache: crate::cache::CacheOutcome, completion: u64) -> Value {
        let total = prompt + completion;
        match self.profile.cache.dialect {
            CacheDialect::Openai => {
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
                                           "prompt_tokens_details": {"cached_tokens": cache.cached}})
            }
            CacheDialect::Deepseek => {
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total,
                                             "prompt_cache_hit_tokens": cache.cached,
                                             "prompt_cache_miss_tokens": prompt - cache.cached})
            }
            CacheDialect::Anthropic => {
                json!({"input_tokens": prompt.saturating_sub(cache.cached + cache.written),
                                              "output_tokens": completion,
                                              "cache_read_input_tokens": cache.cached,
                                              "cache_creation_input_tokens": cache.written.min(prompt - cache.cached)})
            }
            CacheDialect::None => {
                json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total})
            }
        }
    }

    /// A whole non-streamed chat completion for `chat` (used by the batch API).
    pub(crate) fn completion_body(
        &self,
        chat: &ChatRequest,
        max_tokens: u32,
        quirks: FramingQuirks,
        rng: &mut SmallRng,
    ) -> Value {
        let (ids, prompt) = content::prompt_tokens(&chat.messages);
        let cache = self.cache.lookup_and_insert(&ids);
        let answer = self.answer(chat, max_tokens, quirks, rng);
        let usage = self.usage(prompt, cache, answer.tokens);
        self.body_json(Dialect::Chat, &answer, usage)
    }

    fn body_json(&self, dialect: Dialect, answer: &Answer, usage: Value) -> Value {
        let text: String = answer.pieces.iter().map(|p| p.0.as_str()).collect();
        let choice = match dialect {
            Dialect::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": answer.finish_reason})
            }
            Dialect::Legacy => {
                json!({"index": 0, "text": text, "finish_reason": answer.finish_reason})
            }
        };
        json!({"id": "chatcmpl-sim", "object": dialect.object(), "model": self.profile.model,
               "choices": [choice], "usage": usage})
    }

    async fn send_whole(
        &self,
        mut sink: Sink,
        headers: &[(String, String)],
        answer: &Answer,
        usage: Value,
        dialect: Dialect,
        fault: Option<Fault>,
    ) {
        let body = self.body_json(dialect, answer, usage).to_string();
        let mut headers = headers.to_vec();
        headers.push(("content-type".into(), "application/json".into()));
        sink.head(200, &headers);
        let half = body.len() / 2;
        match fault {
            Some(Fault::ResetMidStream) => {
                sink.queue(&body.as_bytes()[..floor(&body, half)], None, 0);
                sink.reset_after_sent().await;
            }
            Some(Fault::Truncated | Fault::MalformedChunk) => {
                sink.send(Bytes::from(body[..floor(&body, half)].to_owned()), None, 0)
                    .await;
            }
            _ => {
                sink.send(Bytes::from(body), None, answer.tokens as u32)
                    .await;
            }
        }
    }
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Sends now, or queues for one burst write.
async fn emit(sink: &mut Sink, burst: bool, bytes: Bytes, due: Option<u64>, tokens: u32) -> bool {
    if burst {
        sink.queue(&bytes, due, tokens);
        true
    } else {
        sink.send(bytes, due, tokens).await
    }
}

/// Keeps the count of decoding streams while alive.
struct ActiveStream<'a>(&'a AtomicUsize);

impl<'a> ActiveStream<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Answer {
    pieces: Vec<(String, u32)>,
    tokens: u64,
    finish_reason: &'static str,
    sloppy: Option<&'static str>,
}

impl Answer {
    fn new(
        pieces: Vec<(String, u32)>,
        finish_reason: &'static str,
        sloppy: Option<&'static str>,
    ) -> Self {
        let tokens = pieces.iter().map(|p| u64::from(p.1)).sum();
        Self {
            pieces,
            tokens,
            finish_reason,
            sloppy,
        }
    }
}

fn truncate_tokens(pieces: &mut Vec<(String, u32)>, max: u32) {
    let mut total = 0;
    let keep = pieces
        .iter()
        .take_while(|p| {
            total += p.1;
            total <= max
        })
        .count();
    pieces.truncate(keep.max(1));
}

/// Pieces of one token each, full of multibyte characters.
fn multibyte_pieces(n: usize) -> Vec<(String, u32)> {
    const WORDS: &[&str] = &[
        "café", " naïve", " Zürich", " déjà", " vu", " 日本", " ñandú",
    ];
    let mut text = String::new();
    let mut i = 0;
    while content::count(&text) < n as u64 + 4 {
        text.push_str(WORDS[i % WORDS.len()]);
        i += 1;
    }
    let mut pieces = content::token_pieces(&text, 1);
    truncate_tokens(&mut pieces, n as u32);
    pieces
}

/// Chat completions or legacy completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Chat,
    Legacy,
}

impl Dialect {
    fn object(self) -> &'static str {
        match self {
            Dialect::Chat => "chat.completion",
            Dialect::Legacy => "text_completion",
        }
    }

    fn chunk_object(self) -> &'static str {
        match self {
            Dialect::Chat => "chat.completion.chunk",
            Dialect::Legacy => "text_completion",
        }
    }
}

/// One stream event's JSON, written straight into bytes: this runs for every token the
/// simulator sends, and building a `serde_json::Value` tree per token cost a third of its CPU.
fn event_bytes(
    dialect: Dialect,
    model: &str,
    content: Option<&str>,
    finish: Option<&str>,
    role: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(144 + model.len() + content.map_or(0, str::len));
    out.extend_from_slice(b"{\"id\":\"chatcmpl-sim\",\"object\":\"");
    out.extend_from_slice(dialect.chunk_object().as_bytes());
    out.extend_from_slice(b"\",\"model\":");
    push_json_str(&mut out, model);
    out.extend_from_slice(b",\"choices\":[{\"index\":0,");
    match dialect {
        Dialect::Chat => {
            out.extend_from_slice(b"\"delta\":{");
            if role {
                out.extend_from_slice(b"\"role\":\"assistant\"");
            }
            if let Some(c) = content {
                if role {
                    out.push(b',');
                }
                out.extend_from_slice(b"\"content\":");
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
struct Framer {
    quirks: FramingQuirks,
}

impl Framer {
    fn frame(&self, event: &[u8]) -> Bytes {
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

    fn frame_raw(&self, data: &str) -> Bytes {
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

    /// Sends an event, split inside its first multibyte character when asked to.
    async fn send(&self, sink: &mut Sink, event: &[u8], due: Option<u64>, tokens: u32) -> bool {
        let bytes = self.frame(event);
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
const LATE_END: Duration = Duration::from_millis(30);

fn merge(a: FramingQuirks, b: FramingQuirks) -> FramingQuirks {
    FramingQuirks {
        crlf: a.crlf || b.crlf,
        no_space: a.no_space || b.no_space,
        multiline_data: a.multiline_data || b.multiline_data,
        split_utf8: a.split_utf8 || b.split_utf8,
        late_end: a.late_end || b.late_end,
        close_after_stream: a.close_after_stream || b.close_after_stream,
    }
}

/// A legacy `/v1/completions` request.
#[derive(Debug, Deserialize)]
struct LegacyRequest {
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<pagemill_client::wire::StreamOptions>,
    #[serde(default)]
    ignore_eos: Option<bool>,
}

fn parse_request(body: &[u8], dialect: Dialect) -> Result<ChatRequest, String> {
    match dialect {
        Dialect::Chat => serde_json::from_slice(body)
            .map_err(|e| format!("invalid chat completion request: {e}")),
        Dialect::Legacy => {
            let r: LegacyRequest = serde_json::from_slice(body)
                .map_err(|e| format!("invalid completion request: {e}"))?;
            let prompt = match r.prompt {
                Value::String(s) => s,
                Value::Array(a) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            Ok(ChatRequest {
                messages: vec![Message::user(prompt)],
                max_tokens: r.max_tokens,
                stream: r.stream,
                stream_options: r.stream_options,
                ignore_eos: r.ignore_eos,
                ..ChatRequest::default()
            })
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
