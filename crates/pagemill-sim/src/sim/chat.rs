//! The life of one chat request: admitted by the rate limiter (or refused), a fault drawn, a
//! slot waited for (with keep-alive comments on a stream), time to first token paid (base +
//! jitter + uncached prompt tokens at the prefill rate), the answer decoded at a per-stream
//! rate that slows when streams share the aggregate capacity, written on absolute deadlines.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use pagemill_client::wire::{ChatRequest, Message};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::State;
use super::dialects::{self, Counts};
use super::framing::{Dialect, Framer, LATE_END, emit, event_bytes, merge, reasoning_bytes};
use crate::content;
use crate::faults::{self, Fault};
use crate::profile::{CacheDialect, FramingQuirks, Profile, ReasoningStyle};
use crate::ratelimit::Admission;
use crate::script;
use crate::server::{Reply, Sink};

/// A request the simulator will answer: what it asked, and what it drew.
struct Admitted {
    chat: ChatRequest,
    rng: SmallRng,
    prompt_ids: Vec<u32>,
    prompt_tokens: u64,
    /// The leading messages a cache may hold: `None` for the whole prompt (automatic prefix
    /// caching), else up to a breakpoint (Anthropic; 0 without one).
    cache_upto: Option<usize>,
    max_tokens: u32,
    /// Rate-limit headers for the response.
    headers: Vec<(String, String)>,
    fault: Option<Fault>,
    quirks: FramingQuirks,
}

/// How a request is turned away before any answer.
enum Refusal {
    /// With this response.
    Reply(Reply),
    /// By breaking the connection before headers.
    Reset,
}

impl State {
    /// Answers one chat (or legacy completion) request.
    pub(super) async fn chat(&self, body: &[u8], mut sink: Sink, dialect: Dialect) {
        if dialect == Dialect::Legacy
            && let Some(array) = super::array::PromptArray::parse(body)
        {
            return self.prompt_array(array, sink).await;
        }
        let mut a = match self.admit(body, &mut sink, dialect).await {
            Ok(a) => a,
            Err(Refusal::Reply(reply)) if dialect == Dialect::Anthropic => {
                return dialects::anthropic_reply(reply).play(sink).await;
            }
            Err(Refusal::Reply(reply)) => return reply.play(sink).await,
            Err(Refusal::Reset) => return sink.reset(),
        };
        if dialect == Dialect::Anthropic {
            a.headers = dialects::anthropic_headers(std::mem::take(&mut a.headers));
        }
        let streaming = a.chat.stream;
        if streaming {
            a.headers
                .push(("content-type".into(), "text/event-stream".into()));
            a.headers.push(("cache-control".into(), "no-cache".into()));
            sink.head(200, &a.headers);
        }
        let queued_at = Instant::now();
        let Some(slot) = self.wait_for_slot(&mut sink, streaming).await else {
            return;
        };
        sink.entry_mut().queued_ns = queued_at.elapsed().as_nanos() as u64;
        let (cache, ttft) = self.prefill(&mut sink, &mut a);
        let answer = self.answer(&a.chat, a.max_tokens, a.quirks, dialect, &mut a.rng);
        sink.entry_mut().completion_tokens = answer.tokens;
        if let Some(kind) = answer.sloppy {
            let f = match &sink.entry_mut().fault {
                Some(f) => format!("{f}+sloppy_{kind}"),
                None => format!("sloppy_{kind}"),
            };
            sink.set_fault(&f);
        }
        let usage = self.usage(
            dialect,
            Counts {
                prompt: a.prompt_tokens,
                cache,
                completion: answer.tokens,
                reasoning: answer.reported_reasoning,
            },
        );
        let first_due = Instant::now() + ttft;
        if !streaming {
            let done = first_due + self.decode_time(answer.tokens);
            if done > Instant::now() {
                tokio::time::sleep_until(done).await;
            }
            drop(slot);
            return self
                .send_whole(sink, &a.headers, &answer, usage, dialect, a.fault)
                .await;
        }
        if !self.keep_alive_until(&mut sink, first_due).await {
            return;
        }
        if first_due > Instant::now() {
            tokio::time::sleep_until(first_due).await;
        }
        let stream = Stream {
            chat: &a.chat,
            answer: &answer,
            usage,
            dialect,
            fault: a.fault,
            framer: Framer { quirks: a.quirks },
            first_due,
        };
        self.stream(sink, stream, slot).await;
    }

    /// Parses the request, admits it through the rate limiter and draws its fault; a refusal
    /// says how to turn it away.
    async fn admit(
        &self,
        body: &[u8],
        sink: &mut Sink,
        dialect: Dialect,
    ) -> Result<Admitted, Refusal> {
        let (chat, cache_upto) = parse_request(body, dialect)
            .map_err(|e| Refusal::Reply(script::error(400, "invalid_request_error", &e)))?;
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

        let headers = match self.limiter.admit(prompt_tokens + u64::from(max_tokens)) {
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
                return Err(Refusal::Reply(reply));
            }
            Admission::NoQuota => {
                return Err(Refusal::Reply(
                    script::error(429, "insufficient_quota", "You exceeded your current quota")
                        .fault("insufficient_quota"),
                ));
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
                reply.headers.extend(headers);
                return Err(Refusal::Reply(reply));
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
                return Err(Refusal::Reply(reply));
            }
            Some(Fault::ResetBeforeHeaders) => return Err(Refusal::Reset),
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
        Ok(Admitted {
            chat,
            rng,
            prompt_ids,
            prompt_tokens,
            cache_upto,
            max_tokens,
            headers,
            fault,
            quirks,
        })
    }

    /// Queues for a decoding slot, keeping a stream alive meanwhile; `None` when the client
    /// went away.
    async fn wait_for_slot(
        &self,
        sink: &mut Sink,
        streaming: bool,
    ) -> Option<OwnedSemaphorePermit> {
        let acquire = self.slots.clone().acquire_owned();
        tokio::pin!(acquire);
        loop {
            let tick = self.keepalive_tick(streaming);
            tokio::select! {
                permit = &mut acquire => return permit.ok(),
                () = tick => {
                    if !sink.send(Bytes::from_static(b": keep-alive\n\n"), None, 0).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Looks the prompt up in the prefix cache and returns the time to first token: base +
    /// jitter + uncached prompt tokens at the prefill rate (cached tokens are free).
    fn prefill(&self, sink: &mut Sink, a: &mut Admitted) -> (crate::cache::CacheOutcome, Duration) {
        let cache = match a.cache_upto {
            None => self.cache.lookup_and_insert(&a.prompt_ids),
            Some(upto) => self.breakpoint_cache(&a.chat.messages, upto),
        };
        sink.entry_mut().cached_tokens = cache.cached;
        let ttft = self.ttft(a.prompt_tokens.saturating_sub(cache.cached), &mut a.rng);
        (cache, ttft)
    }

    /// Time to first token: base + jitter + `uncached` prompt tokens at the prefill rate.
    pub(super) fn ttft(&self, uncached: u64, rng: &mut SmallRng) -> Duration {
        let lat = &self.profile.latency;
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
        Profile::ms(lat.ttft_base_ms + jitter) + Duration::from_secs_f64(prefill)
    }

    /// Anthropic's caching: the prefix up to the breakpoint is read whole when every block of it
    /// is cached, else written whole; a prefix under the minimum is neither.
    fn breakpoint_cache(&self, messages: &[Message], upto: usize) -> crate::cache::CacheOutcome {
        let (ids, _) = content::prompt_tokens(&messages[..upto.min(messages.len())]);
        let prefix = ids.len() as u64;
        if upto == 0 || prefix < self.profile.cache.min_prefix_tokens as u64 {
            return crate::cache::CacheOutcome::default();
        }
        let found = self.cache.lookup_and_insert(&ids);
        let block = self.profile.cache.block_tokens.max(1) as u64;
        if found.cached > 0 && found.cached >= prefix / block * block {
            crate::cache::CacheOutcome {
                cached: prefix,
                written: 0,
            }
        } else {
            crate::cache::CacheOutcome {
                cached: 0,
                written: prefix,
            }
        }
    }

    /// Keep-alive comments until the first token is due; false when the client went away.
    async fn keep_alive_until(&self, sink: &mut Sink, first_due: Instant) -> bool {
        let every = self.profile.latency.keepalive_ms;
        while every > 0 && Instant::now() + Duration::from_millis(every) < first_due {
            tokio::time::sleep(Duration::from_millis(every)).await;
            if !sink
                .send(Bytes::from_static(b": keep-alive\n\n"), None, 0)
                .await
            {
                return false;
            }
        }
        true
    }

    /// Writes the answer as a stream: the role event, each piece on its deadline (a fault
    /// halfway), the finish event, usage when asked, `[DONE]`.
    async fn stream(&self, mut sink: Sink, s: Stream<'_>, slot: OwnedSemaphorePermit) {
        let _streaming = ActiveStream::new(&self.active_streams);
        let lat = &self.profile.latency;
        let quirks = s.framer.quirks;
        // With no pacing at all, the whole answer goes out in one write.
        let burst = lat.decode_tokens_per_sec <= 0.0
            && lat.aggregate_tokens_per_sec <= 0.0
            && !quirks.split_utf8
            && !lat.write_each_event;
        if lat.write_each_event {
            sink.write_each();
        }
        let model = self.profile.model.as_str();
        let first_due_ns = Some(self.mono_of(s.first_due));
        let opening = match s.dialect {
            Dialect::Chat | Dialect::Legacy => {
                s.framer
                    .frame(&event_bytes(s.dialect, model, Some(""), None, true))
            }
            Dialect::Anthropic | Dialect::Responses => {
                named_bytes(&s.framer, dialects::start(s.dialect, model, &s.usage))
            }
        };
        if !emit(&mut sink, burst, opening, first_due_ns, 0).await {
            return;
        }
        match self.pieces(&mut sink, &s, burst).await {
            Ended::Complete => {}
            Ended::Stopped => return,
            Ended::Reset => return sink.reset_after_sent().await,
        }
        drop(slot);
        if matches!(s.dialect, Dialect::Anthropic | Dialect::Responses) {
            let block = usize::from(s.answer.reasoning > 0 && !s.answer.pieces.is_empty());
            let mut events = dialects::close_block(s.dialect, block);
            events.extend(dialects::end(
                s.dialect,
                model,
                s.answer.finish_reason,
                &s.usage,
            ));
            if quirks.close_after_stream {
                sink.close_connection_after_body();
            }
            sink.send(named_bytes(&s.framer, events), None, 0).await;
            return;
        }
        let finish = event_bytes(s.dialect, model, None, Some(s.answer.finish_reason), false);
        if !emit(&mut sink, burst, s.framer.frame(&finish), None, 0).await {
            return;
        }
        if s.chat.stream_options.is_some_and(|o| o.include_usage) {
            let chunk = json!({"id": "chatcmpl-sim", "object": s.dialect.chunk_object(),
                               "model": self.profile.model, "choices": [], "usage": s.usage});
            let bytes = s.framer.frame(chunk.to_string().as_bytes());
            if !emit(&mut sink, burst, bytes, None, 0).await {
                return;
            }
        }
        if quirks.close_after_stream {
            sink.close_connection_after_body();
        }
        sink.send(s.framer.frame_raw("[DONE]"), None, 0).await;
        if quirks.late_end {
            // The body's end (the chunked terminator) goes out in a later write, as
            // llama-server's does: a client that stops at `[DONE]` loses the connection.
            tokio::time::sleep(LATE_END).await;
        }
    }

    /// The answer's pieces, each on its deadline, with the stream's fault halfway.
    async fn pieces(&self, sink: &mut Sink, s: &Stream<'_>, burst: bool) -> Ended {
        let split_utf8 = s.framer.quirks.split_utf8;
        let half = s.answer.pieces.len() / 2;
        let mut due = s.first_due;
        for (i, (piece, tokens)) in s.answer.pieces.iter().enumerate() {
            if i == half {
                match s.fault {
                    Some(Fault::ResetMidStream) => return Ended::Reset,
                    Some(Fault::Truncated) => {
                        sink.flush().await;
                        return Ended::Stopped;
                    }
                    Some(Fault::MalformedChunk) => {
                        let broken = Bytes::from_static(
                            b"data: {\"choices\":[{\"delta\":{\"content\":\"\n\n",
                        );
                        if !emit(sink, burst, broken, None, 0).await {
                            return Ended::Stopped;
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
            let event = self.piece_bytes(s, i, piece);
            let due_ns = Some(self.mono_of(due));
            // A stream behind its schedule catches up as a real server does: the events already
            // overdue go out together (up to 16 KiB), instead of one write each.
            let next_due = due + self.token_interval() * *tokens;
            let catching_up = !split_utf8
                && !self.profile.latency.write_each_event
                && i + 1 < s.answer.pieces.len()
                && next_due <= Instant::now()
                && sink.queued() < 16 * 1024;
            let sent = if burst || catching_up {
                emit(sink, true, event, due_ns, *tokens).await
            } else {
                s.framer.send_framed(sink, event, due_ns, *tokens).await
            };
            if !sent {
                return Ended::Stopped;
            }
        }
        Ended::Complete
    }

    /// The framed event(s) of piece `i`: reasoning first (in the dialect's reasoning field),
    /// then the answer; in the Messages and Responses APIs, blocks opened and closed around
    /// each kind.
    fn piece_bytes(&self, s: &Stream<'_>, i: usize, piece: &str) -> Bytes {
        let model = self.profile.model.as_str();
        let reasoning = i < s.answer.reasoning;
        match s.dialect {
            Dialect::Chat if reasoning => s.framer.frame(&reasoning_bytes(model, piece)),
            Dialect::Chat | Dialect::Legacy => {
                s.framer
                    .frame(&event_bytes(s.dialect, model, Some(piece), None, false))
            }
            Dialect::Anthropic | Dialect::Responses => {
                let block = usize::from(s.answer.reasoning > 0 && !reasoning);
                let mut events = Vec::new();
                if i == s.answer.reasoning && i > 0 {
                    events.extend(dialects::close_block(s.dialect, 0));
                }
                if i == 0 || i == s.answer.reasoning {
                    events.extend(dialects::open_block(s.dialect, block, reasoning));
                }
                events.push(dialects::piece(s.dialect, block, piece, reasoning));
                named_bytes(&s.framer, events)
            }
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
    pub(super) fn token_interval(&self) -> Duration {
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

    pub(super) fn decode_time(&self, tokens: u64) -> Duration {
        self.token_interval() * u32::try_from(tokens.saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The answer, after any reasoning the profile has its model do (a reasoning model, or
    /// any model asked for a reasoning effort other than `none` when the profile reasons).
    fn answer(
        &self,
        chat: &ChatRequest,
        max_tokens: u32,
        quirks: FramingQuirks,
        dialect: Dialect,
        rng: &mut SmallRng,
    ) -> Answer {
        let mut answer = self.answer_text(chat, max_tokens, quirks, rng);
        let off = chat.reasoning_effort == Some(pagemill_client::wire::ReasoningEffort::None);
        let Some([lo, hi]) = self.profile.content.reasoning_tokens.filter(|_| !off) else {
            return answer;
        };
        let n = rng.random_range(lo.min(hi)..=hi.max(lo)).max(1) as usize;
        let words: Vec<(String, u32)> = content::plain_text(n, rng)
            .into_iter()
            .map(|w| (w, 1))
            .collect();
        let tags = self.profile.content.reasoning_style == ReasoningStyle::ThinkTags
            && matches!(dialect, Dialect::Chat | Dialect::Legacy);
        let thought: Vec<(String, u32)> = if tags {
            // In the answer text, as a server without a reasoning parser sends it.
            let open = ("<think>".to_owned(), content::count("<think>") as u32);
            let close = (
                "</think>\n\n".to_owned(),
                content::count("</think>\n\n") as u32,
            );
            std::iter::once(open)
                .chain(words)
                .chain(std::iter::once(close))
                .collect()
        } else {
            words
        };
        let tokens: u64 = thought.iter().map(|p| u64::from(p.1)).sum();
        answer.tokens += tokens;
        if !tags {
            answer.reasoning = thought.len();
            // Anthropic counts thinking in output_tokens without saying how much of it.
            if dialect != Dialect::Anthropic {
                answer.reported_reasoning = tokens;
            }
        }
        answer.pieces.splice(0..0, thought);
        answer
    }

    pub(super) fn answer_text(
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

    fn usage(&self, dialect: Dialect, c: Counts) -> Value {
        if matches!(dialect, Dialect::Anthropic | Dialect::Responses) {
            return dialects::usage(dialect, c);
        }
        let mut usage = self.chat_usage(c.prompt, c.cache, c.completion);
        if c.reasoning > 0 {
            usage["completion_tokens_details"] = json!({"reasoning_tokens": c.reasoning});
        }
        usage
    }

    fn chat_usage(&self, prompt: u64, cache: crate::cache::CacheOutcome, completion: u64) -> Value {
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

    fn body_json(&self, dialect: Dialect, answer: &Answer, usage: Value) -> Value {
        let (thought, said) = answer
            .pieces
            .split_at(answer.reasoning.min(answer.pieces.len()));
        let reasoning: String = thought.iter().map(|p| p.0.as_str()).collect();
        let text: String = said.iter().map(|p| p.0.as_str()).collect();
        let model = self.profile.model.as_str();
        let choice = match dialect {
            Dialect::Chat if !reasoning.is_empty() => {
                json!({"index": 0, "message": {"role": "assistant", "content": text,
                       "reasoning_content": reasoning}, "finish_reason": answer.finish_reason})
            }
            Dialect::Chat => {
                json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": answer.finish_reason})
            }
            Dialect::Legacy => {
                json!({"index": 0, "text": format!("{reasoning}{text}"), "finish_reason": answer.finish_reason})
            }
            Dialect::Anthropic | Dialect::Responses => {
                return dialects::whole(
                    dialect,
                    model,
                    &reasoning,
                    &text,
                    answer.finish_reason,
                    usage,
                );
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

impl crate::batch::Completer for State {
    fn profile(&self) -> &Profile {
        &self.profile
    }

    fn rng(&self, salt: u64) -> SmallRng {
        State::rng(self, salt)
    }

    fn completion_body(
        &self,
        chat: &ChatRequest,
        max_tokens: u32,
        anthropic: bool,
        rng: &mut SmallRng,
    ) -> Value {
        let dialect = if anthropic {
            Dialect::Anthropic
        } else {
            Dialect::Chat
        };
        let (ids, prompt) = content::prompt_tokens(&chat.messages);
        let cache = self.cache.lookup_and_insert(&ids);
        let answer = self.answer(chat, max_tokens, FramingQuirks::default(), dialect, rng);
        let counts = Counts {
            prompt,
            cache,
            completion: answer.tokens,
            reasoning: answer.reported_reasoning,
        };
        let usage = self.usage(dialect, counts);
        self.body_json(dialect, &answer, usage)
    }
}

/// Named events framed together, as one write.
fn named_bytes(framer: &Framer, events: Vec<dialects::Named>) -> Bytes {
    let mut out = Vec::new();
    for (name, data) in events {
        out.extend_from_slice(&framer.frame_named(name, &data));
    }
    Bytes::from(out)
}

/// How the pieces of a stream ended.
enum Ended {
    /// All sent.
    Complete,
    /// Cut short (a truncation fault, a broken chunk the client refused, or the client left).
    Stopped,
    /// The connection is to be reset after what was sent (a fault).
    Reset,
}

/// What a stream writes.
struct Stream<'a> {
    chat: &'a ChatRequest,
    answer: &'a Answer,
    usage: Value,
    dialect: Dialect,
    fault: Option<Fault>,
    framer: Framer,
    first_due: Instant,
}

fn floor(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Keeps the count of decoding streams while alive.
pub(super) struct ActiveStream<'a>(&'a AtomicUsize);

impl<'a> ActiveStream<'a> {
    pub(super) fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) struct Answer {
    pub(super) pieces: Vec<(String, u32)>,
    /// Every token, reasoning included.
    pub(super) tokens: u64,
    /// The leading pieces that are reasoning (sent in the dialect's reasoning field).
    reasoning: usize,
    /// Reasoning tokens the usage reports apart.
    reported_reasoning: u64,
    pub(super) finish_reason: &'static str,
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
            reasoning: 0,
            reported_reasoning: 0,
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
    #[serde(default)]
    response_format: Option<Value>,
}

/// A request in `dialect` as a chat request, and how much of it a cache may hold (see
/// [`Admitted::cache_upto`]).
fn parse_request(body: &[u8], dialect: Dialect) -> Result<(ChatRequest, Option<usize>), String> {
    match dialect {
        Dialect::Anthropic => {
            dialects::parse_anthropic(body).map(|(chat, upto)| (chat, Some(upto.unwrap_or(0))))
        }
        Dialect::Responses => dialects::parse_responses(body).map(|chat| (chat, None)),
        Dialect::Chat | Dialect::Legacy => parse_openai(body, dialect).map(|chat| (chat, None)),
    }
}

fn parse_openai(body: &[u8], dialect: Dialect) -> Result<ChatRequest, String> {
    match dialect {
        Dialect::Chat | Dialect::Anthropic | Dialect::Responses => serde_json::from_slice(body)
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
                messages: content::prompt_messages(&prompt),
                response_format: r.response_format,
                max_tokens: r.max_tokens,
                stream: r.stream,
                stream_options: r.stream_options,
                ignore_eos: r.ignore_eos,
                ..ChatRequest::default()
            })
        }
    }
}
