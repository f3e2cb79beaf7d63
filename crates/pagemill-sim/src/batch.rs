//! Batch APIs. OpenAI's: upload a JSONL file of requests (`POST /v1/files`, multipart or raw),
//! submit it (`POST /v1/batches`), poll it (`GET /v1/batches/{id}`), download the output and
//! error files (`GET /v1/files/{id}/content`). Anthropic's Message Batches: submit the requests
//! themselves (`POST /v1/messages/batches`), poll (`GET /v1/messages/batches/{id}`), read the
//! results (`GET /v1/messages/batches/{id}/results`, one JSONL line a request). A batch
//! completes after the profile's delay; each line fails with the profile's failure rate, so
//! partial results can be tested.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pagemill_client::wire::ChatRequest;
use rand::Rng;
use serde_json::{Value, json};

use crate::profile::Profile;
use crate::script;
use crate::server::{Received, Reply};

/// What the batch API needs of the simulator that serves it (the simulator implements it, so
/// this module does not reach into the simulator's state).
pub(crate) trait Completer {
    /// The profile: batch delay and failure rate, default `max_tokens`.
    fn profile(&self) -> &Profile;
    /// A seeded random source for one line.
    fn rng(&self, salt: u64) -> rand::rngs::SmallRng;
    /// A whole, non-streamed answer to `chat`: a chat completion, or a Messages API message.
    fn completion_body(
        &self,
        chat: &ChatRequest,
        max_tokens: u32,
        anthropic: bool,
        rng: &mut rand::rngs::SmallRng,
    ) -> Value;
}

struct Batch {
    id: String,
    input_file_id: String,
    endpoint: String,
    created: Instant,
    created_at: u64,
    /// Output and error file ids once the batch has completed.
    done: Option<(Option<String>, Option<String>, u64, u64)>,
    total: u64,
    /// A Message Batch (Anthropic's): results in its shape, in the output file.
    anthropic: bool,
}

/// Most bytes of uploaded and generated files one simulator keeps; an upload beyond it is
/// refused, as a provider refuses one over its storage quota.
pub(crate) const MAX_STORED_BYTES: usize = 512 << 20;

/// Files and batches of one simulator.
#[derive(Default)]
pub(crate) struct BatchStore {
    files: Mutex<HashMap<String, (String, Vec<u8>)>>,
    batches: Mutex<HashMap<String, Batch>>,
    next: AtomicU64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl BatchStore {
    fn id(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn route(&self, state: &impl Completer, req: &Received) -> Reply {
        let path = req.path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match (req.method.as_str(), segments.as_slice()) {
            ("POST", [.., "messages", "batches"]) => self.create_messages(req),
            ("GET", [.., "messages", "batches", id]) => self.poll(state, id),
            ("GET", [.., "messages", "batches", id, "results"]) => self.results(id),
            ("POST", [.., "files"]) => self.upload(req),
            ("GET", [.., "files", id]) => self.file_meta(id),
            ("GET", [.., "files", id, "content"]) => self.file_content(id),
            ("POST", [.., "batches"]) => self.create(req),
            ("GET", [.., "batches", id]) => self.poll(state, id),
            _ => script::error(
                404,
                "not_found",
                &format!("no route for {} {}", req.method, req.path),
            ),
        }
    }

    fn upload(&self, req: &Received) -> Reply {
        self.upload_within(req, MAX_STORED_BYTES)
    }

    fn upload_within(&self, req: &Received, limit: usize) -> Reply {
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (name, bytes) = match multipart_file(content_type, &req.body) {
            Some(found) => found,
            None if content_type.starts_with("multipart/") => {
                return script::error(
                    400,
                    "invalid_request_error",
                    "multipart body has no `file` part",
                );
            }
            None => ("upload.jsonl".to_owned(), req.body.to_vec()),
        };
        let id = self.id("file-");
        let len = bytes.len();
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let stored: usize = files.values().map(|(_, b)| b.len()).sum();
        if stored + len > limit {
            return script::error(
                400,
                "storage_limit_exceeded",
                &format!(
                    "file storage is full: {stored} of {limit} bytes used, this file is {len}"
                ),
            );
        }
        files.insert(id.clone(), (name.clone(), bytes));
        drop(files);
        Reply::json(
            200,
            &json!({"id": id, "object": "file", "bytes": len, "created_at": now_secs(),
                                 "filename": name, "purpose": "batch"}),
        )
    }

    fn file_meta(&self, id: &str) -> Reply {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.get(id) {
            Some((name, bytes)) => Reply::json(
                200,
                &json!({"id": id, "object": "file", "bytes": bytes.len(),
                                                            "filename": name, "purpose": "batch"}),
            ),
            None => script::error(404, "not_found", &format!("no file `{id}`")),
        }
    }

    fn file_content(&self, id: &str) -> Reply {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.get(id) {
            Some((_, bytes)) => Reply::status(200)
                .header("content-type", "application/jsonl")
                .bytes(bytes.clone()),
            None => script::error(404, "not_found", &format!("no file `{id}`")),
        }
    }

    fn create(&self, req: &Received) -> Reply {
        let body = req.json();
        let Some(input) = body["input_file_id"].as_str() else {
            return script::error(400, "invalid_request_error", "`input_file_id` is required");
        };
        let total = match self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(input)
        {
            Some((_, bytes)) => bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count() as u64,
            None => return script::error(404, "not_found", &format!("no file `{input}`")),
        };
        let batch = Batch {
            id: self.id("batch_"),
            input_file_id: input.to_owned(),
            endpoint: body["endpoint"]
                .as_str()
                .unwrap_or("/v1/chat/completions")
                .to_owned(),
            created: Instant::now(),
            created_at: now_secs(),
            done: None,
            total,
            anthropic: false,
        };
        let reply = Reply::json(200, &batch_json(&batch, "validating"));
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(batch.id.clone(), batch);
        reply
    }

    fn poll(&self, state: &impl Completer, id: &str) -> Reply {
        let mut batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let Some(batch) = batches.get_mut(id) else {
            return script::error(404, "not_found", &format!("no batch `{id}`"));
        };
        let delay = Duration::from_millis(state.profile().batch.completion_delay_ms);
        if batch.done.is_none() && batch.created.elapsed() >= delay {
            batch.done = Some(self.run(state, batch));
        }
        if batch.anthropic {
            return Reply::json(200, &message_batch_json(batch));
        }
        let status = if batch.done.is_some() {
            "completed"
        } else {
            "in_progress"
        };
        Reply::json(200, &batch_json(batch, status))
    }

    /// `POST /v1/messages/batches`: the requests, each a Messages API body, kept as a file of
    /// chat requests.
    fn create_messages(&self, req: &Received) -> Reply {
        let body = req.json();
        let Some(requests) = body["requests"].as_array().filter(|r| !r.is_empty()) else {
            return anthropic_error(400, "requests: at least one request is required");
        };
        let mut lines = String::new();
        for r in requests {
            let custom_id = r["custom_id"].as_str().unwrap_or("");
            let valid = !custom_id.is_empty()
                && custom_id.len() <= 64
                && custom_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                return anthropic_error(400, &format!("custom_id `{custom_id}` is invalid"));
            }
            let params = r["params"].to_string();
            let chat = match crate::sim::parse_anthropic(params.as_bytes()) {
                Ok((chat, _)) => serde_json::to_value(chat).unwrap_or(Value::Null),
                Err(e) => return anthropic_error(400, &format!("{custom_id}: {e}")),
            };
            lines.push_str(&json!({"custom_id": custom_id, "body": chat}).to_string());
            lines.push('\n');
        }
        let file = self.id("file-");
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(file.clone(), ("requests.jsonl".into(), lines.into_bytes()));
        let batch = Batch {
            id: self.id("msgbatch_"),
            input_file_id: file,
            endpoint: "/v1/messages".into(),
            created: Instant::now(),
            created_at: now_secs(),
            done: None,
            total: requests.len() as u64,
            anthropic: true,
        };
        let reply = Reply::json(200, &message_batch_json(&batch));
        self.batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(batch.id.clone(), batch);
        reply
    }

    /// `GET /v1/messages/batches/{id}/results`, once the batch has ended.
    fn results(&self, id: &str) -> Reply {
        let batches = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let file = match batches.get(id) {
            Some(b) if b.anthropic => match &b.done {
                Some((file, ..)) => file.clone(),
                None => return anthropic_error(400, &format!("batch `{id}` has not ended")),
            },
            _ => return anthropic_error(404, &format!("no message batch `{id}`")),
        };
        drop(batches);
        match file {
            Some(f) => self.file_content(&f),
            None => Reply::status(200).header("content-type", "application/x-jsonl"),
        }
    }

    /// Answers every line; returns output and error file ids and the completed/failed counts.
    fn run(
        &self,
        state: &impl Completer,
        batch: &Batch,
    ) -> (Option<String>, Option<String>, u64, u64) {
        let input = self
            .files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&batch.input_file_id)
            .map(|f| f.1.clone())
            .unwrap_or_default();
        let (mut out, mut err) = (String::new(), String::new());
        let (mut ok, mut failed) = (0, 0);
        for (i, line) in input
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            // Each line of each batch draws afresh (seeded by batch and line), so a line
            // that failed can succeed when resubmitted.
            let salt = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (&batch.id, i).hash(&mut h);
                h.finish()
            };
            let mut rng = state.rng(salt);
            let parsed: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
            let custom_id = parsed["custom_id"].as_str().unwrap_or("").to_owned();
            let request: Option<ChatRequest> = serde_json::from_value(parsed["body"].clone()).ok();
            let entry = json!({"id": format!("batch_req_{}", i + 1), "custom_id": custom_id});
            let fail = rng.random_bool(state.profile().batch.failure_rate.clamp(0.0, 1.0));
            if batch.anthropic {
                // Every result in the one results file, succeeded or errored.
                let result = match request {
                    Some(chat) if !fail => {
                        let max = chat.max_tokens.unwrap_or(1).max(1);
                        ok += 1;
                        let message = state.completion_body(&chat, max, true, &mut rng);
                        json!({"type": "succeeded", "message": message})
                    }
                    _ => {
                        failed += 1;
                        json!({"type": "errored", "error": {"type": "error",
                               "error": {"type": "api_error", "message": "simulated failure"}}})
                    }
                };
                out.push_str(&json!({"custom_id": custom_id, "result": result}).to_string());
                out.push('\n');
                continue;
            }
            match request {
                Some(chat) if !fail => {
                    let max = chat
                        .max_tokens
                        .unwrap_or(state.profile().content.default_max_tokens)
                        .max(1);
                    let body = state.completion_body(&chat, max, false, &mut rng);
                    let mut e = entry;
                    e["response"] = json!({"status_code": 200, "request_id": format!("req_{}", i + 1), "body": body});
                    e["error"] = Value::Null;
                    out.push_str(&e.to_string());
                    out.push('\n');
                    ok += 1;
                }
                other => {
                    let message = if other.is_none() {
                        "line is not a chat completion request"
                    } else {
                        "simulated failure"
                    };
                    let mut e = entry;
                    e["response"] = json!({"status_code": 500, "request_id": format!("req_{}", i + 1),
                                           "body": {"error": {"message": message, "type": "server_error"}}});
                    e["error"] = Value::Null;
                    err.push_str(&e.to_string());
                    err.push('\n');
                    failed += 1;
                }
            }
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let mut store = |text: String, name: &str| {
            (!text.is_empty()).then(|| {
                let id = self.id("file-");
                files.insert(
                    id.clone(),
                    (format!("{}_{name}.jsonl", batch.id), text.into_bytes()),
                );
                id
            })
        };
        (store(out, "output"), store(err, "error"), ok, failed)
    }
}

fn batch_json(b: &Batch, status: &str) -> Value {
    let (output, error, completed, failed) = b.done.clone().unwrap_or((None, None, 0, 0));
    json!({
        "id": b.id, "object": "batch", "endpoint": b.endpoint, "input_file_id": b.input_file_id,
        "completion_window": "24h", "status": status, "output_file_id": output, "error_file_id": error,
        "created_at": b.created_at,
        "request_counts": {"total": b.total, "completed": completed, "failed": failed},
    })
}

/// A message batch as Anthropic's API reports it.
fn message_batch_json(b: &Batch) -> Value {
    let (_, _, succeeded, errored) = b.done.clone().unwrap_or((None, None, 0, 0));
    let ended = b.done.is_some();
    let processing = if ended { 0 } else { b.total };
    json!({
        "id": b.id, "type": "message_batch",
        "processing_status": if ended { "ended" } else { "in_progress" },
        "request_counts": {"processing": processing, "succeeded": succeeded, "errored": errored,
                           "canceled": 0, "expired": 0},
        "results_url": ended.then(|| format!("/v1/messages/batches/{}/results", b.id)),
        "created_at": humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_secs(b.created_at)).to_string(),
    })
}

fn anthropic_error(status: u16, message: &str) -> Reply {
    let kind = if status == 404 {
        "not_found_error"
    } else {
        "invalid_request_error"
    };
    Reply::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// The `file` part of a `multipart/form-data` body: its filename and bytes.
fn multipart_file(content_type: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .map(str::trim)
        .find_map(|p| p.strip_prefix("boundary="))?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        let head_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        let content = &rest[head_end + 4..];
        let end = find(content, delimiter.as_bytes()).unwrap_or(content.len());
        let part = content[..end]
            .strip_suffix(b"\r\n")
            .unwrap_or(&content[..end]);
        if head.contains("name=\"file\"") {
            let filename = head
                .split("filename=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap_or("upload.jsonl")
                .to_owned();
            return Some((filename, part.to_vec()));
        }
        rest = &content[end..];
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_give_up_their_file_part() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n--XyZ--\r\n";
        let (name, bytes) = multipart_file("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(name, "in.jsonl");
        assert_eq!(bytes, b"{\"a\":1}\n{\"b\":2}\n");
        assert!(multipart_file("multipart/form-data; boundary=Other", body).is_none());
        assert!(multipart_file("application/jsonl", body).is_none());
    }

    #[test]
    fn uploads_stop_at_the_storage_limit() {
        let store = BatchStore::default();
        let upload = |n: usize| Received {
            index: 0,
            method: http::Method::POST,
            path: "/v1/files".into(),
            query: None,
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::from(vec![b'x'; n]),
            received_ns: 0,
        };
        assert_eq!(store.upload_within(&upload(600), 1000).status, 200);
        let refused = store.upload_within(&upload(600), 1000);
        assert_eq!(refused.status, 400);
        assert_eq!(
            store.files.lock().unwrap().len(),
            1,
            "nothing kept of the refused file"
        );
    }
}
