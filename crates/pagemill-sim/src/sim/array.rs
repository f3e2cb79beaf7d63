//! A legacy completions request with a prompt array, answered as vLLM answers one: every prompt
//! its own sequence — its own prefill (cached prefixes free), its own answer of up to
//! `max_tokens` — decoded side by side as that many streams sharing the server's capacity, in
//! one response: choices by index (interleaved, when streaming), one usage for them all, one
//! request against the requests-per-minute limit. No faults are drawn for it.

use bytes::Bytes;
use pagemill_client::wire::ChatRequest;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::State;
use super::chat::ActiveStream;
use super::framing::Framer;
use crate::content;
use crate::profile::FramingQuirks;
use crate::ratelimit::Admission;
use crate::script;
use crate::server::Sink;

/// What a prompt-array request asked.
pub(crate) struct PromptArray {
    pub(crate) prompts: Vec<String>,
    pub(crate) max_tokens: Option<u32>,
    pub(crate) stream: bool,
    pub(crate) include_usage: bool,
    pub(crate) ignore_eos: Option<bool>,
    /// One answer format for every prompt.
    pub(crate) response_format: Option<Value>,
}

impl PromptArray {
    /// The request, when its `prompt` is an array of two or more strings.
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let prompts: Vec<String> = v["prompt"]
            .as_array()?
            .iter()
            .map(|p| p.as_str().map(str::to_owned))
            .collect::<Option<_>>()?;
        (prompts.len() >= 2).then(|| Self {
            prompts,
            max_tokens: v["max_tokens"].as_u64().map(|m| m as u32),
            stream: v["stream"].as_bool().unwrap_or(false),
            include_usage: v["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            ignore_eos: v["ignore_eos"].as_bool(),
            response_format: v.get("response_format").filter(|f| f.is_object()).cloned(),
        })
    }
}

/// One choice's event.
fn event(model: &str, index: usize, text: &str, finish: Option<&str>) -> Vec<u8> {
    json!({"id": "cmpl-sim", "object": "text_completion", "model": model,
           "choices": [{"index": index, "text": text, "finish_reason": finish}]})
    .to_string()
    .into_bytes()
}

impl State {
    /// Answers a prompt array (see the module docs).
    pub(super) async fn prompt_array(&self, r: PromptArray, mut sink: Sink) {
        let k = r.prompts.len();
        let index = self
            .chat_index
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut rng = self.rng(index);
        let max_tokens = r
            .max_tokens
            .unwrap_or(self.profile.content.default_max_tokens)
            .max(1);
        let (mut prompt, mut cached) = (0, 0);
        let mut answers = Vec::with_capacity(k);
        for p in &r.prompts {
            let chat = ChatRequest {
                messages: content::prompt_messages(p),
                max_tokens: Some(max_tokens),
                ignore_eos: r.ignore_eos,
                response_format: r.response_format.clone(),
                ..ChatRequest::default()
            };
            let (ids, n) = content::prompt_tokens(&chat.messages);
            prompt += n;
            cached += self.cache.lookup_and_insert(&ids).cached;
            answers.push(self.answer_text(&chat, max_tokens, FramingQuirks::default(), &mut rng));
        }
        let entry = sink.entry_mut();
        entry.prompt_tokens = prompt;
        entry.cached_tokens = cached;
        let budget = prompt + k as u64 * u64::from(max_tokens);
        let mut headers = match self.limiter.admit(budget) {
            Admission::Allowed(h) => h,
            Admission::Throttled(_, h) => {
                let mut reply = script::error(429, "rate_limit_exceeded", "Rate limit reached")
                    .fault("throttled");
                reply.headers.extend(h);
                return reply.play(sink).await;
            }
            Admission::NoQuota => {
                return script::error(429, "insufficient_quota", "You exceeded your current quota")
                    .play(sink)
                    .await;
            }
        };
        sink.entry_mut().rate_tokens = budget;
        // One decoding slot a sequence, as a server schedules them.
        let slots = u32::try_from(k).unwrap_or(u32::MAX);
        let Ok(slot) = self.slots.clone().acquire_many_owned(slots).await else {
            return;
        };
        let first_due = Instant::now() + self.ttft(prompt.saturating_sub(cached), &mut rng);
        let completion: u64 = answers.iter().map(|a| a.tokens).sum();
        sink.entry_mut().completion_tokens = completion;
        let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                           "total_tokens": prompt + completion,
                           "prompt_tokens_details": {"cached_tokens": cached}});
        let model = self.profile.model.clone();
        let _streams: Vec<ActiveStream<'_>> = (0..k)
            .map(|_| ActiveStream::new(&self.active_streams))
            .collect();
        if !r.stream {
            let longest = answers.iter().map(|a| a.tokens).max().unwrap_or(0);
            tokio::time::sleep_until(first_due + self.decode_time(longest)).await;
            drop(slot);
            let choices: Vec<Value> = answers
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let text: String = a.pieces.iter().map(|p| p.0.as_str()).collect();
                    json!({"index": i, "text": text, "finish_reason": a.finish_reason})
                })
                .collect();
            let body = json!({"id": "cmpl-sim", "object": "text_completion", "model": model,
                              "choices": choices, "usage": usage});
            headers.push(("content-type".into(), "application/json".into()));
            sink.head(200, &headers);
            sink.send(Bytes::from(body.to_string()), None, completion as u32)
                .await;
            return;
        }
        headers.push(("content-type".into(), "text/event-stream".into()));
        sink.head(200, &headers);
        let framer = Framer {
            quirks: FramingQuirks::default(),
        };
        tokio::time::sleep_until(first_due).await;
        // Step by step, every sequence's next piece in one write: the sequences of one batch
        // advance together.
        let steps = answers.iter().map(|a| a.pieces.len()).max().unwrap_or(0);
        let mut due = first_due;
        for step in 0..steps {
            let mut write = Vec::new();
            let mut tokens = 0;
            for (i, a) in answers.iter().enumerate() {
                if let Some((text, n)) = a.pieces.get(step) {
                    write.extend_from_slice(&framer.frame(&event(&model, i, text, None)));
                    tokens += n;
                }
                if step + 1 == a.pieces.len() {
                    let last = event(&model, i, "", Some(a.finish_reason));
                    write.extend_from_slice(&framer.frame(&last));
                }
            }
            if step > 0 {
                due += self.token_interval();
                tokio::time::sleep_until(due).await;
            }
            let due_ns = Some(self.mono_of(due));
            if !sink.send(Bytes::from(write), due_ns, tokens).await {
                return;
            }
        }
        drop(slot);
        let mut end = Vec::new();
        if r.include_usage {
            let chunk = json!({"id": "cmpl-sim", "object": "text_completion", "model": model,
                               "choices": [], "usage": usage});
            end.extend_from_slice(&framer.frame(chunk.to_string().as_bytes()));
        }
        end.extend_from_slice(&framer.frame_raw("[DONE]"));
        sink.send(Bytes::from(end), None, 0).await;
    }
}
