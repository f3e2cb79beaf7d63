//! Reading a response into an [`Exchange`]: the answer, its usage and a [`Timeline`] whose
//! timestamps are taken when bytes arrive, before any parsing.
//!
//! A stream counts as complete on `[DONE]`, or on a clean end after a finish reason (some
//! servers never send `[DONE]`). A stream that ends with neither is *truncated*; a chunk that is
//! not JSON is *malformed*; both are failures that say whether content had already arrived, so
//! a caller never re-sends (and re-pays for) a half-delivered answer without deciding to.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use crate::clock::mono_ns;
use crate::dialect::{Api, Dialect};
use crate::error::{ErrorClass, FailureKind, RequestError, classify_status};
use crate::limits::RateLimitInfo;
use crate::pricing::Cost;
use crate::runaway::LoopGuard;
use crate::sse::{SseItem, SseParser};
use crate::transport::{Arrival, ConnectionInfo, error_chain};
use crate::usage::Usage;
use crate::wire::{ChatResponse, Delta, ErrorBody, FastChunk, RawUsage};

/// The longest non-streaming or error body read (64 MiB).
const MAX_BODY_BYTES: usize = 64 << 20;

/// When each step of one request happened, in `CLOCK_MONOTONIC` nanoseconds
/// (see [`crate::clock`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    /// When the request was meant to go out (its place in a schedule).
    pub scheduled: u64,
    /// When it was handed to the transport.
    pub sent: u64,
    /// Response headers received.
    pub headers: Option<u64>,
    /// First body bytes received.
    pub first_byte: Option<u64>,
    /// First complete SSE event (streams only; comments do not count).
    pub first_event: Option<u64>,
    /// First content token, reasoning or answer.
    pub first_content: Option<u64>,
    /// First answer token, after any reasoning.
    pub first_answer: Option<u64>,
    /// Every read that carried content.
    pub chunks: Vec<ChunkMark>,
    /// Every `:` comment (keep-alives) received.
    pub comments: Vec<u64>,
    /// End of the response (or of the failure).
    pub done: Option<u64>,
    /// The connection used.
    pub connection: Option<ConnectionInfo>,
}

/// One content-bearing read of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMark {
    /// When its bytes arrived.
    pub at: u64,
    /// It carried answer text (else only reasoning).
    pub answer: bool,
    /// Content events it carried (several when writes arrive together).
    pub events: u32,
}

impl Timeline {
    /// A timeline for a request scheduled at `scheduled`.
    pub fn new(scheduled: u64) -> Self {
        Self {
            scheduled,
            ..Self::default()
        }
    }

    /// Time to first answer token, from the scheduled send time.
    pub fn ttft(&self) -> Option<Duration> {
        self.since_scheduled(self.first_answer.or(self.first_content))
    }

    /// Time from the scheduled send time to `t`.
    pub fn since_scheduled(&self, t: Option<u64>) -> Option<Duration> {
        t.map(|t| crate::clock::between(self.scheduled, t))
    }

    /// End-to-end latency, from the scheduled send time.
    pub fn total(&self) -> Option<Duration> {
        self.since_scheduled(self.done)
    }
}

/// The text of an optional field, unless empty.
fn nonempty<'a>(s: &'a Option<std::borrow::Cow<'_, str>>) -> Option<&'a str> {
    s.as_deref().filter(|t| !t.is_empty())
}

/// A choice's contribution to an answer, whatever the dialect.
pub(crate) struct Piece<'a> {
    pub(crate) reasoning: Option<&'a str>,
    pub(crate) answer: Option<&'a str>,
    pub(crate) finish: Option<&'a str>,
}

impl<'a> Piece<'a> {
    pub(crate) fn answer(t: &'a str) -> Self {
        Self {
            reasoning: None,
            answer: Some(t),
            finish: None,
        }
    }

    pub(crate) fn reasoning(t: &'a str) -> Self {
        Self {
            reasoning: Some(t),
            answer: None,
            finish: None,
        }
    }

    pub(crate) fn finish(f: &'a str) -> Self {
        Self {
            reasoning: None,
            answer: None,
            finish: Some(f),
        }
    }
}

/// One HTTP attempt and everything learned from it: a record, whether it succeeded or not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// Endpoint name.
    pub endpoint: String,
    /// Model named in the response.
    pub model: Option<String>,
    /// Provider's response id.
    pub response_id: Option<String>,
    /// The request streamed.
    pub streamed: bool,
    /// HTTP status, when headers arrived.
    pub status: Option<u16>,
    /// Timestamps.
    pub timeline: Timeline,
    /// Answer text.
    pub content: String,
    /// Reasoning text, if the model sent any.
    pub reasoning: String,
    /// Every choice's text by index, when the answer had more than one (a prompt array);
    /// empty otherwise (`content` is choice 0's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Finish reason of each choice by index, beside [`Exchange::choices`] (a prompt array's);
    /// empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choice_finish: Vec<Option<String>>,
    /// Finish reason of the first choice.
    pub finish_reason: Option<String>,
    /// Token usage, normalized, with sources.
    pub usage: Usage,
    /// The raw usage object, as the server sent it.
    pub raw_usage: Option<RawUsage>,
    /// SSE events received (streams).
    pub events: u32,
    /// Events that carried content.
    pub content_events: u32,
    /// What the rate-limit headers said.
    pub rate_limit: RateLimitInfo,
    /// Cost under the endpoint's prices; `None` when unknown.
    pub cost: Option<Cost>,
    /// Oddities that did not fail the request (e.g. no `[DONE]`).
    pub notes: Vec<String>,
    /// Why the client stopped reading the stream before its end (a runaway answer): the
    /// content is what came until then.
    pub cancelled: Option<String>,
    /// Why it failed, if it did.
    pub error: Option<RequestError>,
    /// Where a leading `<think>` block of the answer stands, while reading.
    #[serde(skip)]
    pub think: ThinkSplit,
}

/// A choice's index as kept: a server's is bounded by the prompts it was sent, so a wild one
/// (past 65,536) is not.
fn choice_index(index: u64) -> Option<usize> {
    usize::try_from(index).ok().filter(|&i| i <= 1 << 16)
}

/// Models that reason in their answer text (`<think>…</think>` first, as DeepSeek-R1 and Qwen
/// reasoning models do behind servers without a reasoning parser) have that block moved to
/// the reasoning, so answers and their JSON parse as if it had come apart. Only a block that
/// opens the answer counts: a `<think>` later in an answer is the answer's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThinkSplit {
    state: Think,
    /// Text of an open block not yet known to be reasoning (it may end in part of `</think>`).
    held: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Think {
    /// Nothing but whitespace yet: held, in case it is the start of `<think>`.
    #[default]
    Start,
    /// Inside the block; the text held could be the start of `</think>`.
    Inside,
    /// The block has closed; the whitespace after it is skipped.
    Closed,
    /// Answer text passes through.
    After,
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";

/// The longest end of `s` that begins `tag` (bytes held back until the next piece says).
fn partial_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len().min(s.len() + 1))
        .rev()
        .find(|&n| s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}

impl Exchange {
    /// True when the request produced a complete answer.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// Decode speed excluding time to first token: the tokens after the first, over the time
    /// from the first content read to the last. `None` without a stream of at least two reads.
    pub fn decode_tokens_per_sec(&self) -> Option<f64> {
        let tokens = self.usage.completion?.tokens;
        let first = self.timeline.first_content?;
        let last = self.timeline.chunks.last()?.at;
        let span = crate::clock::between(first, last).as_secs_f64();
        (tokens > 1 && span > 0.0).then(|| (tokens - 1) as f64 / span)
    }

    /// Completion tokens over the whole latency, from the scheduled send time.
    pub fn e2e_tokens_per_sec(&self) -> Option<f64> {
        let tokens = self.usage.completion?.tokens;
        let total = self.timeline.total()?.as_secs_f64();
        (total > 0.0).then(|| tokens as f64 / total)
    }

    fn fail(&mut self, mut err: RequestError) {
        err.delivered_content = !self.content.is_empty() || !self.reasoning.is_empty();
        if err.status.is_none() {
            err.status = self.status;
        }
        self.timeline.done = Some(mono_ns());
        self.error = Some(err);
    }

    /// Folds one parsed chunk or response into the exchange.
    /// Folds a chunk read by the fast path (see [`FastChunk`]).
    fn absorb_fast(&mut self, r: FastChunk<'_>, at: u64) {
        // Choices after the first: only a prompt array's answers have them.
        for c in r.choices.iter().flatten() {
            let index = c.index.unwrap_or(0);
            if index == 0 {
                continue;
            }
            let text =
                nonempty(&c.text).or_else(|| c.delta.as_ref().and_then(|d| nonempty(&d.content)));
            if let Some(t) = text {
                self.other_choice(index, t, at);
            }
            if let Some(f) = nonempty(&c.finish_reason) {
                self.other_finish(index, f);
            }
        }
        let pieces = r
            .choices
            .iter()
            .flatten()
            .filter(|c| c.index.unwrap_or(0) == 0)
            .flat_map(|c| {
                let parts = [c.delta.as_ref(), c.message.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(move |d| Piece {
                        reasoning: nonempty(&d.reasoning_content).or(nonempty(&d.reasoning)),
                        answer: nonempty(&d.content).or(nonempty(&d.refusal)),
                        finish: None,
                    });
                let text = nonempty(&c.text).map(Piece::answer);
                let finish = nonempty(&c.finish_reason).map(Piece::finish);
                parts.chain(text).chain(finish)
            });
        self.absorb_pieces(r.model.as_deref(), r.id.as_deref(), pieces, r.usage, at);
    }

    /// The dialect-free part of absorbing a chunk: text, finish reason, timeline marks. A
    /// usage is merged over what came before (Anthropic sends its counts in two parts).
    pub(crate) fn absorb_pieces<'a>(
        &mut self,
        model: Option<&str>,
        id: Option<&str>,
        pieces: impl Iterator<Item = Piece<'a>>,
        usage: Option<RawUsage>,
        at: u64,
    ) {
        if let Some(u) = usage {
            let raw = self.raw_usage.get_or_insert_with(RawUsage::default);
            raw.merge(u);
            self.usage = Usage::from_raw(raw);
        }
        if self.model.is_none() {
            self.model = model.map(str::to_owned);
        }
        if self.response_id.is_none() {
            self.response_id = id.map(str::to_owned);
        }
        let (mut answer, mut any) = (false, false);
        for p in pieces {
            if let Some(t) = p.reasoning.filter(|t| !t.is_empty()) {
                self.reasoning.push_str(t);
                any = true;
            }
            if let Some(t) = p.answer.filter(|t| !t.is_empty()) {
                let (thought, said) = self.split_think(t);
                any |= thought;
                answer |= said;
            }
            if let Some(f) = p.finish.filter(|f| !f.is_empty()) {
                self.finish_reason = Some(f.to_owned());
            }
        }
        if answer || any {
            self.content_events += 1;
            let tl = &mut self.timeline;
            tl.first_content.get_or_insert(at);
            if answer {
                tl.first_answer.get_or_insert(at);
            }
            // One mark per read: several events in one read arrived together.
            match tl.chunks.last_mut() {
                Some(last) if last.at == at => {
                    last.answer |= answer;
                    last.events += 1;
                }
                _ => tl.chunks.push(ChunkMark {
                    at,
                    answer,
                    events: 1,
                }),
            }
        }
    }

    /// The finish reason of a choice other than the first.
    fn other_finish(&mut self, index: u64, reason: &str) {
        let Some(i) = choice_index(index) else {
            return;
        };
        if self.choice_finish.len() <= i {
            self.choice_finish.resize(i + 1, None);
        }
        self.choice_finish[i] = Some(reason.to_owned());
    }

    /// Choice `i`'s text and finish reason: the first choice's are `content` and
    /// `finish_reason`; a choice the answer never had is empty.
    pub fn choice(&self, i: usize) -> (&str, Option<&str>) {
        if i == 0 {
            return (&self.content, self.finish_reason.as_deref());
        }
        (
            self.choices.get(i).map_or("", String::as_str),
            self.choice_finish.get(i).and_then(Option::as_deref),
        )
    }

    /// Text of a choice other than the first (a prompt array's answers), marked as it arrives.
    fn other_choice(&mut self, index: u64, text: &str, at: u64) {
        let Some(i) = choice_index(index) else {
            return;
        };
        if self.choices.len() <= i {
            self.choices.resize(i + 1, String::new());
        }
        self.choices[i].push_str(text);
        self.content_events += 1;
        let tl = &mut self.timeline;
        tl.first_content.get_or_insert(at);
        tl.first_answer.get_or_insert(at);
        match tl.chunks.last_mut() {
            Some(last) if last.at == at => {
                last.answer = true;
                last.events += 1;
            }
            _ => tl.chunks.push(ChunkMark {
                at,
                answer: true,
                events: 1,
            }),
        }
    }

    /// Adds answer text, moving a leading `<think>` block to the reasoning; says whether
    /// reasoning and whether answer text were added.
    fn split_think(&mut self, t: &str) -> (bool, bool) {
        if self.think.state == Think::After {
            self.content.push_str(t);
            return (false, true);
        }
        // Held text lives at the end of `content` (Start) or is kept aside (Inside) until it
        // is known which side it belongs to.
        let (mut thought, mut said) = (false, false);
        // Owned only where a tag was found inside held text (a state change, not per piece).
        let mut rest = std::borrow::Cow::Borrowed(t);
        loop {
            match self.think.state {
                Think::Start => {
                    self.content.push_str(&rest);
                    let trimmed = self.content.trim_start();
                    if let Some(after) = trimmed.strip_prefix(THINK_OPEN) {
                        rest = std::borrow::Cow::Owned(after.to_owned());
                        self.content.clear();
                        self.think.state = Think::Inside;
                        continue;
                    }
                    if !THINK_OPEN.starts_with(trimmed) {
                        self.think.state = Think::After;
                        said = !trimmed.is_empty();
                    }
                    return (thought, said);
                }
                Think::Inside => {
                    self.think.held.push_str(&rest);
                    if let Some(i) = self.think.held.find(THINK_CLOSE) {
                        rest = std::borrow::Cow::Owned(
                            self.think.held[i + THINK_CLOSE.len()..].to_owned(),
                        );
                        self.reasoning.push_str(&self.think.held[..i]);
                        thought |= i > 0;
                        self.think.held.clear();
                        self.think.state = Think::Closed;
                        continue;
                    }
                    let keep = partial_suffix(&self.think.held, THINK_CLOSE);
                    let upto = self.think.held.len() - keep;
                    if upto > 0 {
                        self.reasoning.push_str(&self.think.held[..upto]);
                        self.think.held.drain(..upto);
                        thought = true;
                    }
                    return (thought, said);
                }
                Think::Closed => {
                    // The whitespace between the block and the answer is neither.
                    let t = rest.trim_start();
                    if !t.is_empty() {
                        self.content.push_str(t);
                        self.think.state = Think::After;
                        said = true;
                    }
                    return (thought, said);
                }
                Think::After => {
                    self.content.push_str(&rest);
                    return (thought, true);
                }
            }
        }
    }

    /// At the end of a response: a `<think>` block never closed is all reasoning; choice 0 of
    /// several takes its place among them.
    fn settle_think(&mut self) {
        if self.think.state == Think::Inside {
            let held = std::mem::take(&mut self.think.held);
            self.reasoning.push_str(&held);
        }
        if let Some(first) = self.choices.first_mut() {
            first.clone_from(&self.content);
        }
    }

    fn absorb(&mut self, r: ChatResponse, at: u64) -> Result<(), RequestError> {
        if let Some(e) = r.error {
            let message = e
                .message
                .clone()
                .unwrap_or_else(|| "error in response body".into());
            let status = e
                .code
                .as_deref()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            let class = classify_status(status, e.kind.as_deref(), e.code.as_deref(), &message);
            let mut err = RequestError::new(FailureKind::ErrorInBody, class, message);
            err.status = self.status;
            return Err(err);
        }
        for c in &r.choices {
            let text = c.text.as_deref().or_else(|| {
                [c.message.as_ref(), c.delta.as_ref()]
                    .into_iter()
                    .flatten()
                    .find_map(Delta::answer_text)
            });
            if let (Some(i @ 1..), Some(t)) = (c.index, text) {
                self.other_choice(i, t, at);
            }
            if let (Some(i @ 1..), Some(f)) = (c.index, c.finish_reason.as_deref()) {
                self.other_finish(i, f);
            }
        }
        let pieces = r
            .choices
            .iter()
            .filter(|c| c.index.unwrap_or(0) == 0)
            .flat_map(|c| {
                let parts = [c.delta.as_ref(), c.message.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(|d| Piece {
                        reasoning: d.reasoning_text(),
                        answer: d.answer_text(),
                        finish: None,
                    });
                let text = c.text.as_deref().map(Piece::answer);
                let finish = c.finish_reason.as_deref().map(Piece::finish);
                parts.chain(text).chain(finish)
            });
        self.absorb_pieces(r.model.as_deref(), r.id.as_deref(), pieces, r.usage, at);
        Ok(())
    }
}

/// Reads a response body in `dialect` into `ex`, bounded by `idle` between reads and by
/// `deadline`.
pub(crate) async fn read_response(
    ex: &mut Exchange,
    res: http::Response<Incoming>,
    dialect: &Dialect,
    idle: Duration,
    deadline: tokio::time::Instant,
    guard: Option<LoopGuard>,
) {
    read_body(ex, res, dialect, idle, deadline, guard).await;
    ex.settle_think();
}

async fn read_body(
    ex: &mut Exchange,
    res: http::Response<Incoming>,
    dialect: &Dialect,
    idle: Duration,
    deadline: tokio::time::Instant,
    guard: Option<LoopGuard>,
) {
    let status = res.status();
    ex.status = Some(status.as_u16());
    ex.rate_limit = RateLimitInfo::from_headers(res.headers());
    let is_sse = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let arrival = Arrival::of(&res);
    let mut body = res.into_body();

    if !status.is_success() {
        let bytes = match read_all(ex, &mut body, &arrival, idle, deadline).await {
            Ok(b) => b,
            Err(e) => return ex.fail(e),
        };
        let parsed = ErrorBody::parse(&bytes).error;
        let message = parsed
            .message
            .clone()
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        let class = classify_status(
            status.as_u16(),
            parsed.kind.as_deref(),
            parsed.code.as_deref(),
            &message,
        );
        let mut err = RequestError::new(FailureKind::Status, class, message);
        err.retry_after = ex.rate_limit.wait_hint();
        return ex.fail(err);
    }

    if is_sse {
        read_stream(ex, &mut body, &arrival, dialect, idle, deadline, guard).await;
    } else {
        let bytes = match read_all(ex, &mut body, &arrival, idle, deadline).await {
            Ok(b) => b,
            Err(e) => return ex.fail(e),
        };
        let at = ex.timeline.first_byte.unwrap_or_else(|| arrival.latest());
        let absorbed = match dialect.api {
            Api::Chat => match serde_json::from_slice::<ChatResponse>(&bytes) {
                Ok(r) => ex.absorb(r, at),
                Err(e) => Err(RequestError::new(
                    FailureKind::Malformed,
                    ErrorClass::Transient,
                    format!("response body is not a chat completion: {e}"),
                )),
            },
            Api::Anthropic => crate::api::anthropic::absorb_body(ex, &bytes, at),
            Api::Responses => crate::api::responses::absorb_body(ex, &bytes, at),
        };
        match absorbed {
            Ok(()) => ex.timeline.done = Some(mono_ns()),
            Err(e) => ex.fail(e),
        }
    }
}

/// Waits for the next frame within the idle and overall bounds.
async fn next_data(
    body: &mut Incoming,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> Result<Option<bytes::Bytes>, RequestError> {
    loop {
        let until = deadline.min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(until, body.frame()).await {
            Err(_) => {
                return Err(RequestError::new(
                    FailureKind::Timeout,
                    ErrorClass::Transient,
                    "response body stalled past its time limit",
                ));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => {
                return Err(RequestError::new(
                    FailureKind::ResetMidStream,
                    ErrorClass::Transient,
                    format!(
                        "connection broke while reading the response: {}",
                        error_chain(&e)
                    ),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
                // Trailers carry nothing we use.
            }
        }
    }
}

async fn read_all(
    ex: &mut Exchange,
    body: &mut Incoming,
    arrival: &Arrival,
    idle: Duration,
    deadline: tokio::time::Instant,
) -> Result<Vec<u8>, RequestError> {
    let mut buf = Vec::new();
    while let Some(data) = next_data(body, idle, deadline).await? {
        ex.timeline
            .first_byte
            .get_or_insert_with(|| arrival.latest());
        if buf.len() + data.len() > MAX_BODY_BYTES {
            return Err(RequestError::new(
                FailureKind::TooLarge,
                ErrorClass::Permanent,
                format!("response body larger than {MAX_BODY_BYTES} bytes"),
            ));
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf)
}

async fn read_stream(
    ex: &mut Exchange,
    body: &mut Incoming,
    arrival: &Arrival,
    dialect: &Dialect,
    idle: Duration,
    deadline: tokio::time::Instant,
    mut guard: Option<LoopGuard>,
) {
    let mut parser = SseParser::new();
    let mut items = Vec::new();
    let mut saw_done = false;
    loop {
        let data = match next_data(body, idle, deadline).await {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => return ex.fail(e),
        };
        // When its bytes reached the connection (not when this task got to them), taken
        // before any parsing.
        let at = arrival.latest();
        ex.timeline.first_byte.get_or_insert(at);
        if let Err(e) = parser.feed(&data, &mut items) {
            return ex.fail(RequestError::new(
                FailureKind::TooLarge,
                ErrorClass::Transient,
                e.to_string(),
            ));
        }
        if let Err(e) = handle_items(ex, &mut items, dialect, at, &mut saw_done) {
            return ex.fail(e);
        }
        if saw_done {
            break;
        }
        if let Some(why) = guard.as_mut().and_then(|g| g.check(&ex.content)) {
            // Dropping the body closes the connection, which is how a server learns to stop.
            ex.notes
                .push(format!("answer loops ({why}): stream cancelled"));
            ex.cancelled = Some(why);
            ex.timeline.done = Some(at);
            return;
        }
    }
    let at = arrival.latest();
    if saw_done {
        ex.timeline.done = Some(at);
        drain(body, idle, deadline).await;
        return;
    }
    if let Err(e) = parser.finish(&mut items) {
        return ex.fail(RequestError::new(
            FailureKind::TooLarge,
            ErrorClass::Transient,
            e.to_string(),
        ));
    }
    if !items.is_empty() {
        ex.notes
            .push("stream ended without the blank line after its last event".into());
    }
    if let Err(e) = handle_items(ex, &mut items, dialect, at, &mut saw_done) {
        return ex.fail(e);
    }
    if !saw_done {
        if ex.finish_reason.is_some() {
            ex.notes.push("stream ended without [DONE]".into());
        } else {
            return ex.fail(RequestError::new(
                FailureKind::Truncated,
                ErrorClass::Transient,
                format!(
                    "stream ended after {} events without [DONE] or a finish reason",
                    ex.events
                ),
            ));
        }
    }
    ex.timeline.done = Some(at);
}

/// A usage object at one of a dialect's other places (`x_groq.usage`), read only from events
/// that name the place's first key.
fn usage_elsewhere(data: &str, paths: &[String]) -> Option<RawUsage> {
    let mut value: Option<serde_json::Value> = None;
    for path in paths {
        let first = path.split('.').next().unwrap_or(path);
        if !data.contains(&format!("\"{first}\"")) {
            continue;
        }
        let v = match &value {
            Some(v) => v,
            None => value.insert(serde_json::from_str(data).ok()?),
        };
        let found = path.split('.').try_fold(v, |v, key| v.get(key));
        if let Some(u) = found.and_then(|u| serde_json::from_value(u.clone()).ok()) {
            return Some(u);
        }
    }
    None
}

/// Most time spent reading what follows `[DONE]`.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// Most bytes read after `[DONE]`.
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads a stream's body to its end after `[DONE]`, bounded in time and bytes. Servers end
/// the HTTP body after `[DONE]`, sometimes in a later write (llama-server sends the chunked
/// terminator separately); a body dropped before its end takes its connection with it, and
/// every next request would pay for a new one.
async fn drain(body: &mut Incoming, idle: Duration, deadline: tokio::time::Instant) {
    let until = deadline.min(tokio::time::Instant::now() + DRAIN_TIME.min(idle));
    let mut read = 0;
    while read <= DRAIN_BYTES {
        match next_data(body, idle, until).await {
            Ok(Some(data)) => read += data.len(),
            Ok(None) | Err(_) => return,
        }
    }
}

fn handle_items(
    ex: &mut Exchange,
    items: &mut Vec<SseItem>,
    dialect: &Dialect,
    at: u64,
    saw_done: &mut bool,
) -> Result<(), RequestError> {
    for item in items.drain(..) {
        match item {
            SseItem::Comment(_) => ex.timeline.comments.push(at),
            SseItem::Retry(_) => {}
            SseItem::Event(ev) if dialect.api != Api::Chat => {
                ex.events += 1;
                ex.timeline.first_event.get_or_insert(at);
                let data = ev.data.trim();
                if data.is_empty() {
                    continue;
                }
                let done = match dialect.api {
                    Api::Anthropic => crate::api::anthropic::absorb_event(ex, data, at)?,
                    _ => crate::api::responses::absorb_event(ex, data, at)?,
                };
                *saw_done |= done;
            }
            SseItem::Event(ev) => {
                ex.events += 1;
                ex.timeline.first_event.get_or_insert(at);
                let data = ev.data.trim();
                if data == "[DONE]" {
                    *saw_done = true;
                    continue;
                }
                if data.is_empty() {
                    continue;
                }
                if let Ok(mut fast) = serde_json::from_str::<FastChunk<'_>>(data)
                    && fast.error.is_none()
                {
                    if fast.usage.is_none() && !dialect.usage_paths.is_empty() {
                        fast.usage = usage_elsewhere(data, &dialect.usage_paths);
                    }
                    ex.absorb_fast(fast, at);
                    continue;
                }
                let parsed: ChatResponse = serde_json::from_str(data).map_err(|e| {
                    let shown: String = data.chars().take(120).collect();
                    RequestError::new(
                        FailureKind::Malformed,
                        ErrorClass::Transient,
                        format!("stream event {} is not JSON ({e}): {shown}", ex.events),
                    )
                })?;
                ex.absorb(parsed, at)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds answer pieces as a stream would, one read each, and settles.
    fn feed(pieces: &[&str]) -> Exchange {
        let mut ex = Exchange::default();
        for (i, p) in pieces.iter().enumerate() {
            ex.absorb_pieces(
                None,
                None,
                std::iter::once(Piece::answer(p)),
                None,
                i as u64 + 1,
            );
        }
        ex.settle_think();
        ex
    }

    #[test]
    fn a_leading_think_block_is_reasoning_wherever_its_tags_are_cut() {
        let whole = "\n<think>weigh it</think>\n\n{\"a\": \"<think>\"}";
        // Every way of cutting the text in two, and one byte at a time.
        for cut in 1..whole.len() {
            let ex = feed(&[&whole[..cut], &whole[cut..]]);
            assert_eq!(ex.reasoning, "weigh it", "cut at {cut}");
            assert_eq!(ex.content, "{\"a\": \"<think>\"}", "cut at {cut}");
        }
        let bytes: Vec<String> = whole.chars().map(String::from).collect();
        let ex = feed(&bytes.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(
            (ex.reasoning.as_str(), ex.content.as_str()),
            ("weigh it", "{\"a\": \"<think>\"}")
        );
        // Reasoning ("w", the 9th read) marks the first content; the answer comes after the
        // block.
        assert_eq!(ex.timeline.first_content, Some(9));
        assert!(ex.timeline.first_answer > ex.timeline.first_content);
    }

    #[test]
    fn only_a_block_that_opens_the_answer_counts() {
        let ex = feed(&["<thin", "g> is a tag"]);
        assert_eq!(
            (ex.reasoning.as_str(), ex.content.as_str()),
            ("", "<thing> is a tag")
        );
        let ex = feed(&["Answer: <think>no</think>"]);
        assert_eq!(ex.content, "Answer: <think>no</think>");
        // A block never closed is all reasoning; a lone "<" stays the answer.
        let ex = feed(&["<think>still going"]);
        assert_eq!(
            (ex.reasoning.as_str(), ex.content.as_str()),
            ("still going", "")
        );
        assert_eq!(feed(&["<"]).content, "<");
    }
}
