//! One request's measurements, cut from the client's [`Exchange`]: every latency kind from the
//! *scheduled* send time, token counts with their source, cost, connection, failure class.

use pagemill_client::{Count, ErrorClass, Exchange, FailureKind};
use serde::Serialize;

/// Everything measured about one request.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Target (endpoint or experiment arm) number.
    pub target: usize,
    /// Request number in the run.
    pub index: u64,
    /// False during warm-up (excluded from statistics).
    pub measured: bool,
    /// When it was meant to go out (`CLOCK_MONOTONIC` ns).
    pub scheduled_ns: u64,
    /// How late the client sent it (sent − scheduled).
    pub lag_ns: u64,
    /// From handing the request to the transport to its last byte on the socket.
    pub write_lag_ns: Option<u64>,
    /// When it ended.
    pub done_ns: u64,
    /// HTTP status.
    pub status: Option<u16>,
    /// Failure class and kind.
    pub error: Option<(ErrorClass, FailureKind)>,
    /// Scheduled → response headers.
    pub ttft_headers_ns: Option<u64>,
    /// Scheduled → first body byte.
    pub ttft_first_byte_ns: Option<u64>,
    /// Scheduled → first content token (reasoning or answer).
    pub ttft_content_ns: Option<u64>,
    /// Scheduled → first answer token.
    pub ttft_answer_ns: Option<u64>,
    /// Scheduled → done.
    pub e2e_ns: Option<u64>,
    /// Gaps between consecutive content reads.
    pub chunk_gaps_ns: Vec<u64>,
    /// Receive time of every content event (kept only when asked, for ground-truth checks).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chunk_at_ns: Vec<u64>,
    /// Content events received.
    pub content_events: u32,
    /// SSE events received, content or not (role, usage, `[DONE]`, keep-alives): what the
    /// client parsed.
    #[serde(default)]
    pub events: u32,
    /// Sequences the answer held: 1, or a prompt array's prompts (decoded side by side).
    pub sequences: u32,
    /// Output tokens and their source.
    pub output_tokens: Option<Count>,
    /// Prompt tokens and their source.
    pub prompt_tokens: Option<Count>,
    /// Cached prompt tokens (`None`: unreported).
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache (Anthropic; `None`: unreported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    /// Reasoning tokens, part of the output (`None`: unreported, or no reasoning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Prompt tokens the workload meant to send.
    pub input_tokens_requested: u64,
    /// `max_tokens` asked for.
    pub output_tokens_requested: u32,
    /// Cost in picodollars (`None`: unknown).
    pub cost_pico: Option<u64>,
    /// Pages of source material.
    pub pages: f64,
    /// Connection reused.
    pub reused: Option<bool>,
    /// Connect time of a new connection.
    pub connect_ns: Option<u64>,
    /// The answer text (kept only for agreement checks).
    #[serde(skip)]
    pub content: Option<String>,
    /// The `x-pagemill-request-id` it was sent with, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl Record {
    /// Cuts a record from an exchange.
    pub fn from_exchange(
        target: usize,
        index: u64,
        measured: bool,
        ex: &Exchange,
        input_tokens: u64,
        output_tokens: u32,
        pages: f64,
    ) -> Self {
        let tl = &ex.timeline;
        let since = |t: Option<u64>| t.map(|t| t.saturating_sub(tl.scheduled));
        let chunk_gaps_ns = tl
            .chunks
            .windows(2)
            .map(|w| w[1].at.saturating_sub(w[0].at))
            .collect();
        Self {
            target,
            index,
            measured,
            scheduled_ns: tl.scheduled,
            lag_ns: tl.sent.saturating_sub(tl.scheduled),
            write_lag_ns: tl
                .connection
                .and_then(|c| c.written_ns)
                .filter(|w| *w >= tl.sent)
                .map(|w| w - tl.sent),
            done_ns: tl.done.unwrap_or(tl.sent),
            status: ex.status,
            error: ex.error.as_ref().map(|e| (e.class, e.kind)),
            ttft_headers_ns: since(tl.headers),
            ttft_first_byte_ns: since(tl.first_byte),
            ttft_content_ns: since(tl.first_content),
            ttft_answer_ns: since(tl.first_answer),
            e2e_ns: since(tl.done),
            chunk_gaps_ns,
            chunk_at_ns: Vec::new(),
            content_events: ex.content_events,
            events: ex.events,
            sequences: u32::try_from(ex.choices.len().max(1)).unwrap_or(u32::MAX),
            output_tokens: ex.usage.completion,
            prompt_tokens: ex.usage.prompt,
            cached_tokens: ex.usage.cached_prompt.map(|c| c.tokens),
            cache_write_tokens: ex.usage.cache_write.map(|c| c.tokens),
            reasoning_tokens: ex.usage.reasoning.map(|c| c.tokens),
            input_tokens_requested: input_tokens,
            output_tokens_requested: output_tokens,
            cost_pico: ex.cost.map(|c| c.total.0),
            pages,
            reused: tl.connection.map(|c| c.reused),
            connect_ns: tl.connection.and_then(|c| c.connect_ns),
            content: None,
            tag: None,
        }
    }

    /// Time per output token after the first: (last content − first content) / (tokens − 1),
    /// of one sequence (a prompt array's sequences decode side by side).
    pub fn tpot_ns(&self) -> Option<u64> {
        let tokens = self.output_tokens?.tokens / u64::from(self.sequences.max(1));
        self.ttft_content_ns?;
        let span: u64 = self.chunk_gaps_ns.iter().sum();
        (tokens > 1 && self.error.is_none()).then(|| span / (tokens - 1))
    }

    /// The record as one flat row (`bench --format jsonl|csv`), `target` naming its target.
    pub fn row(&self, target: &str) -> Row {
        let ms = |ns: Option<u64>| ns.map(|ns| ns as f64 / 1e6);
        Row {
            target: target.to_owned(),
            index: self.index,
            measured: self.measured,
            status: self.status,
            error_class: self.error.map(|(c, _)| c),
            error_kind: self.error.map(|(_, k)| k),
            lag_ms: ms(Some(self.lag_ns)).unwrap_or(0.0),
            ttft_headers_ms: ms(self.ttft_headers_ns),
            ttft_first_byte_ms: ms(self.ttft_first_byte_ns),
            ttft_content_ms: ms(self.ttft_content_ns),
            ttft_answer_ms: ms(self.ttft_answer_ns),
            tpot_ms: ms(self.tpot_ns()),
            e2e_ms: ms(self.e2e_ns),
            content_events: self.content_events,
            prompt_tokens: self.prompt_tokens.map(|c| c.tokens),
            prompt_tokens_source: self.prompt_tokens.map(|c| c.source.to_string()),
            cached_tokens: self.cached_tokens,
            cache_write_tokens: self.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens,
            output_tokens: self.output_tokens.map(|c| c.tokens),
            output_tokens_source: self.output_tokens.map(|c| c.source.to_string()),
            output_tokens_requested: self.output_tokens_requested,
            cost_usd: self.cost_pico.map(|p| p as f64 / 1e12),
            pages: self.pages,
            connection_reused: self.reused,
            connect_ms: ms(self.connect_ns),
        }
    }

    /// Tokens per content read, from usage when the server reported it.
    pub fn tokens_per_chunk(&self) -> Option<f64> {
        let tokens = self.output_tokens?.tokens;
        (self.content_events > 0).then(|| tokens as f64 / f64::from(self.content_events))
    }
}

/// One request as a flat row: times in milliseconds from its scheduled send, tokens with who
/// counted them, cost in dollars. Empty cells are figures the request did not reach (no
/// answer token on a failure) or the server did not report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Target (endpoint or experiment arm).
    pub target: String,
    /// Request number in its run.
    pub index: u64,
    /// False for warm-up requests.
    pub measured: bool,
    /// HTTP status.
    pub status: Option<u16>,
    /// Failure class (`throttled`, `transient`, …), empty on success.
    pub error_class: Option<ErrorClass>,
    /// Failure kind (`status`, `timeout`, …).
    pub error_kind: Option<FailureKind>,
    /// How late the client sent it.
    pub lag_ms: f64,
    /// To response headers.
    pub ttft_headers_ms: Option<f64>,
    /// To the first body byte.
    pub ttft_first_byte_ms: Option<f64>,
    /// To the first content token (reasoning or answer).
    pub ttft_content_ms: Option<f64>,
    /// To the first answer token.
    pub ttft_answer_ms: Option<f64>,
    /// Time per output token after the first.
    pub tpot_ms: Option<f64>,
    /// To the end.
    pub e2e_ms: Option<f64>,
    /// Content events received.
    pub content_events: u32,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// `server` or `tokenizer`.
    pub prompt_tokens_source: Option<String>,
    /// Cached prompt tokens (empty: unreported).
    pub cached_tokens: Option<u64>,
    /// Prompt tokens written to the provider's cache.
    pub cache_write_tokens: Option<u64>,
    /// Reasoning tokens, part of the output.
    pub reasoning_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// `server` or `tokenizer`.
    pub output_tokens_source: Option<String>,
    /// `max_tokens` asked for.
    pub output_tokens_requested: u32,
    /// Cost (empty: no prices).
    pub cost_usd: Option<f64>,
    /// Pages of source material.
    pub pages: f64,
    /// Whether the connection was reused.
    pub connection_reused: Option<bool>,
    /// Connect time of a new connection.
    pub connect_ms: Option<f64>,
}
