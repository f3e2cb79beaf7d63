//! Legacy `POST /v1/completions`: a prompt, or a prompt array, used as given (no chat
//! template), under one `response_format` for them all. Each prompt is its own engine job, so
//! the engine's slots decode them side by side as vLLM decodes a prompt array's sequences; the
//! answers come back by index, with one usage for them all, streamed (choices interleaved as
//! they come) or whole.

use pagemill_sim::{Received, Sink};
use serde_json::{Value, json};
use tokio::sync::mpsc::unbounded_channel;

use crate::engine::{Engine, Event, Job};
use crate::server::{error_body, event, rand_seed, reply_json, sse_headers};

/// Answer tokens a prompt when a request sets no `max_tokens` (OpenAI's default here).
const DEFAULT_MAX_TOKENS: u32 = 16;

/// Most prompts one request may carry.
const MAX_PROMPTS: usize = 256;

/// The prompts of a request's `prompt`: a string, or an array of strings.
fn prompts(body: &Value) -> Result<Vec<String>, String> {
    let prompts = match &body["prompt"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|p| p.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or("prompt: an array of strings is expected (token ids are not taken)")?,
        _ => return Err("prompt: a string or an array of strings is required".into()),
    };
    match prompts.len() {
        0 => Err("prompt: the array is empty".into()),
        n if n > MAX_PROMPTS => Err(format!("prompt: {n} prompts, {MAX_PROMPTS} at most")),
        _ => Ok(prompts),
    }
}

/// Answers a completions request.
pub(crate) async fn completions(engine: &Engine, req: &Received, mut sink: Sink) {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let prompts = match prompts(&body) {
        Ok(p) => p,
        Err(e) => {
            return reply_json(&mut sink, 400, &error_body("invalid_request_error", &e)).await;
        }
    };
    // One `response_format` for every prompt, as vLLM takes it on completions.
    let grammar = match crate::server::grammar_for(body.get("response_format")) {
        Ok(g) => g,
        Err(e) => {
            return reply_json(&mut sink, 400, &error_body("invalid_request_error", &e)).await;
        }
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let stop: Vec<String> = match &body["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let (tx, mut rx) = unbounded_channel::<(usize, Event)>();
    for (i, prompt) in prompts.iter().enumerate() {
        let (job_tx, mut job_rx) = unbounded_channel();
        engine.submit(Job {
            messages: vec![(String::new(), prompt.clone())],
            raw: true,
            max_tokens: body["max_tokens"]
                .as_u64()
                .map_or(DEFAULT_MAX_TOKENS, |m| u32::try_from(m).unwrap_or(u32::MAX))
                .max(1),
            temperature: body["temperature"].as_f64().map_or(1.0, |t| t as f32),
            top_p: body["top_p"].as_f64().map_or(1.0, |p| p as f32),
            seed: body["seed"]
                .as_u64()
                .map_or_else(|| rand_seed(req.received_ns), |s| s as u32),
            stop: stop.clone(),
            grammar: grammar.clone(),
            ignore_eos: body["ignore_eos"].as_bool().unwrap_or(false),
            events: job_tx,
        });
        // One channel for all the answers; a client that leaves drops it, which ends these
        // and so cancels the jobs.
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(ev) = job_rx.recv().await {
                if tx.send((i, ev)).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let id = format!("cmpl-local-{}", req.index);
    let model = engine.info().id.clone();
    let chunk = |i: usize, text: &str, finish: Option<&str>| {
        json!({"id": id, "object": "text_completion", "model": model,
               "choices": [{"index": i, "text": text, "finish_reason": finish}]})
    };
    let k = prompts.len();
    let (mut texts, mut finish) = (vec![String::new(); k], vec!["stop"; k]);
    let (mut prompt_tokens, mut cached, mut completion) = (0u64, 0u64, 0u64);
    let mut headed = false;
    while let Some((i, ev)) = rx.recv().await {
        match ev {
            Event::Started {
                prompt_tokens: p,
                cached_tokens: c,
            } => {
                prompt_tokens += u64::from(p);
                cached += u64::from(c);
                if stream && !headed {
                    sink.head(200, &sse_headers());
                    headed = true;
                }
            }
            Event::Text(t) if stream => {
                if !sink.send(event(&chunk(i, &t, None)), None, 1).await {
                    return;
                }
            }
            Event::Text(t) => texts[i].push_str(&t),
            Event::Done {
                finish_reason,
                completion_tokens,
                ..
            } => {
                finish[i] = finish_reason;
                completion += u64::from(completion_tokens);
                if stream
                    && !sink
                        .send(event(&chunk(i, "", Some(finish_reason))), None, 0)
                        .await
                {
                    return;
                }
            }
            Event::Failed { status, message } => {
                if headed {
                    sink.send(event(&error_body("server_error", &message)), None, 0)
                        .await;
                } else {
                    reply_json(&mut sink, status, &error_body("server_error", &message)).await;
                }
                return;
            }
        }
    }
    let e = sink.entry_mut();
    e.prompt_tokens = prompt_tokens;
    e.cached_tokens = cached;
    e.completion_tokens = completion;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                       "total_tokens": prompt_tokens + completion,
                       "prompt_tokens_details": {"cached_tokens": cached}});
    if stream {
        if include_usage {
            let u = json!({"id": id, "object": "text_completion", "model": model,
                           "choices": [], "usage": usage});
            sink.queue(&event(&u), None, 0);
        }
        sink.queue(b"data: [DONE]\n\n", None, 0);
        sink.flush().await;
    } else {
        let choices: Vec<Value> = texts
            .iter()
            .zip(&finish)
            .enumerate()
            .map(|(i, (t, f))| json!({"index": i, "text": t, "finish_reason": f}))
            .collect();
        let body = json!({"id": id, "object": "text_completion", "model": model,
                          "choices": choices, "usage": usage});
        reply_json(&mut sink, 200, &body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_a_string_or_strings() {
        assert_eq!(prompts(&json!({"prompt": "a"})).unwrap(), ["a"]);
        assert_eq!(prompts(&json!({"prompt": ["a", "b"]})).unwrap(), ["a", "b"]);
        assert!(prompts(&json!({"prompt": [1, 2]})).is_err());
        assert!(prompts(&json!({"prompt": []})).is_err());
        assert!(prompts(&json!({})).is_err());
        let many: Vec<String> = (0..=MAX_PROMPTS).map(|i| i.to_string()).collect();
        assert!(prompts(&json!({ "prompt": many })).is_err());
    }
}
