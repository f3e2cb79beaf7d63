//! Batch APIs, billed at a discount ([`crate::Prices::batch_cost`]). OpenAI's: upload a JSONL
//! file of requests, submit it, poll it, read the output and error files. Anthropic's Message
//! Batches: submit the requests themselves, poll, read one results file. [`Client::submit_batch`],
//! [`Client::get_batch`] and [`Client::batch_outcome`] speak whichever the endpoint's dialect
//! has; a Responses API endpoint's batches go as chat completions, which OpenAI's batch API
//! takes with the same key. Every answer comes back as a [`ChatResponse`], whatever its API.

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, MAX_FILE_BYTES, MAX_JSON_BYTES};
use crate::dialect::Api;
use crate::error::{ErrorClass, FailureKind, RequestError, classify_status};
use crate::wire::{ChatRequest, ChatResponse, ErrorBody};

/// A batch as the provider reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchObject {
    /// Batch id.
    pub id: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`, `cancelled`…
    #[serde(default)]
    pub status: String,
    /// Output file (successful lines), once completed.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Error file (failed lines), once completed.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Line counts.
    #[serde(default)]
    pub request_counts: RequestCounts,
}

impl BatchObject {
    /// True once the batch will not change any more.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "expired" | "cancelled"
        )
    }
}

/// Line counts of a batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Lines submitted.
    #[serde(default)]
    pub total: u64,
    /// Lines answered.
    #[serde(default)]
    pub completed: u64,
    /// Lines failed.
    #[serde(default)]
    pub failed: u64,
}

/// One line of an output or error file.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    /// The caller's id for the line.
    pub custom_id: String,
    /// The answer, or why there is none.
    pub result: Result<ChatResponse, RequestError>,
}

/// One line of a batch input file.
pub fn input_line(custom_id: &str, body: &Value) -> String {
    serde_json::json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})
        .to_string()
}

fn fail(message: String) -> RequestError {
    RequestError::new(FailureKind::Malformed, ErrorClass::Transient, message)
}

fn check(status: u16, body: &Bytes) -> Result<(), RequestError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let e = ErrorBody::parse(body).error;
    let message = e
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status}"));
    let class = classify_status(status, e.kind.as_deref(), e.code.as_deref(), &message);
    let mut err = RequestError::new(FailureKind::Status, class, message);
    err.status = Some(status);
    Err(err)
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes, what: &str) -> Result<T, RequestError> {
    serde_json::from_slice(body)
        .map_err(|e| fail(format!("{what} is not what the batch API returns: {e}")))
}

/// A message batch as Anthropic reports it, in [`BatchObject`]'s terms: `ended` is
/// `completed`, its results are its one output file.
fn from_message_batch(v: &Value) -> Result<BatchObject, RequestError> {
    let id = v["id"]
        .as_str()
        .ok_or_else(|| fail("the message batch has no `id`".into()))?;
    let status = match v["processing_status"].as_str().unwrap_or("") {
        "ended" => "completed",
        "canceling" => "cancelling",
        other => other,
    };
    let n = |k: &str| v["request_counts"][k].as_u64().unwrap_or(0);
    let done = n("succeeded");
    let failed = n("errored") + n("canceled") + n("expired");
    Ok(BatchObject {
        id: id.to_owned(),
        status: status.to_owned(),
        // Read from the endpoint's own host, whatever `results_url` names: the key goes nowhere
        // else.
        output_file_id: (status == "completed").then(|| format!("messages/batches/{id}/results")),
        error_file_id: None,
        request_counts: RequestCounts {
            total: done + failed + n("processing"),
            completed: done,
            failed,
        },
    })
}

/// A Messages API message as the chat completion it stands for.
pub fn message_as_chat(message: &Value) -> Result<ChatResponse, RequestError> {
    let blocks = message["content"].as_array().cloned().unwrap_or_default();
    let text_of = |kind: &str, field: &str| -> String {
        blocks
            .iter()
            .filter(|b| b["type"] == kind)
            .filter_map(|b| b[field].as_str())
            .collect()
    };
    let finish = message["stop_reason"]
        .as_str()
        .map(crate::api::finish_reason);
    let chat = serde_json::json!({
        "id": message["id"], "model": message["model"],
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant",
                     "content": text_of("text", "text"),
                     "reasoning_content": text_of("thinking", "thinking")}}],
        "usage": message["usage"],
    });
    serde_json::from_value(chat).map_err(|e| fail(format!("a message is not readable: {e}")))
}

impl Client {
    /// Submits `requests` (each with its own id) as one batch in the endpoint's batch API.
    pub async fn submit_batch(
        &self,
        requests: &[(String, ChatRequest)],
    ) -> Result<BatchObject, RequestError> {
        if self.dialect().api == Api::Anthropic {
            let lines: Vec<Value> = requests
                .iter()
                .map(|(id, req)| {
                    let mut req = req.clone();
                    req.stream = false;
                    serde_json::json!({"custom_id": id, "params": self.body(&req)})
                })
                .collect();
            let body = serde_json::json!({"requests": lines});
            let (status, res) = self
                .request_bytes(
                    Method::POST,
                    "messages/batches",
                    Some("application/json"),
                    Bytes::from(body.to_string()),
                    MAX_JSON_BYTES,
                )
                .await?;
            check(status, &res)?;
            return from_message_batch(&parse(&res, "the message batch")?);
        }
        let mut jsonl = String::new();
        for (id, req) in requests {
            jsonl.push_str(&self.batch_line(id, req));
            jsonl.push('\n');
        }
        let file = self
            .upload_batch_file("pagemill-batch.jsonl", jsonl.as_bytes())
            .await?;
        self.create_batch(&file).await
    }

    /// Every line's answer or failure, once `batch` has finished.
    pub async fn batch_outcome(
        &self,
        batch: &BatchObject,
    ) -> Result<Vec<BatchResult>, RequestError> {
        let mut out = Vec::new();
        for file in [&batch.output_file_id, &batch.error_file_id]
            .into_iter()
            .flatten()
        {
            out.extend(self.batch_results(file).await?);
        }
        Ok(out)
    }

    /// Uploads a JSONL file for a batch (multipart, `purpose=batch`); returns its file id.
    pub async fn upload_batch_file(
        &self,
        filename: &str,
        jsonl: &[u8],
    ) -> Result<String, RequestError> {
        let boundary = "pagemill-batch-boundary-7c1f";
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        let (status, res) = self
            .request_bytes(
                Method::POST,
                "files",
                Some(&ct),
                Bytes::from(body),
                MAX_JSON_BYTES,
            )
            .await?;
        check(status, &res)?;
        let v: Value = parse(&res, "the upload answer")?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| fail("the upload answer has no `id`".into()))
    }

    /// Submits an uploaded file as a batch of chat completions.
    pub async fn create_batch(&self, input_file_id: &str) -> Result<BatchObject, RequestError> {
        let body = serde_json::json!({"input_file_id": input_file_id, "endpoint": "/v1/chat/completions",
                                      "completion_window": "24h"});
        let (status, res) = self
            .request_bytes(
                Method::POST,
                "batches",
                Some("application/json"),
                Bytes::from(body.to_string()),
                MAX_JSON_BYTES,
            )
            .await?;
        check(status, &res)?;
        parse(&res, "the batch")
    }

    /// The batch's current state.
    pub async fn get_batch(&self, id: &str) -> Result<BatchObject, RequestError> {
        let anthropic = self.dialect().api == Api::Anthropic;
        let path = if anthropic {
            format!("messages/batches/{id}")
        } else {
            format!("batches/{id}")
        };
        let (status, res) = self
            .request_bytes(Method::GET, &path, None, Bytes::new(), MAX_JSON_BYTES)
            .await?;
        check(status, &res)?;
        if anthropic {
            return from_message_batch(&parse(&res, "the message batch")?);
        }
        parse(&res, "the batch")
    }

    /// The lines of an output or error file (a message batch's results), each with its answer
    /// or failure.
    pub async fn batch_results(&self, file_id: &str) -> Result<Vec<BatchResult>, RequestError> {
        let anthropic = self.dialect().api == Api::Anthropic;
        let path = if anthropic {
            file_id.to_owned()
        } else {
            format!("files/{file_id}/content")
        };
        let (status, res) = self
            .request_bytes(Method::GET, &path, None, Bytes::new(), MAX_FILE_BYTES)
            .await?;
        check(status, &res)?;
        let line = if anthropic {
            parse_message_result
        } else {
            parse_result_line
        };
        Ok(res
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(line)
            .collect())
    }

    /// A request as a batch input line of chat completions (the endpoint's model and body
    /// parameters filled in).
    pub fn batch_line(&self, custom_id: &str, req: &ChatRequest) -> String {
        let mut req = req.clone();
        req.stream = false;
        let chat = crate::Dialect {
            api: Api::Chat,
            ..self.dialect().clone()
        };
        input_line(custom_id, &crate::api::body(&chat, self.endpoint(), &req))
    }
}

/// One line of a message batch's results: `succeeded` with its message, or `errored`,
/// `canceled` or `expired`.
fn parse_message_result(line: &[u8]) -> BatchResult {
    let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let custom_id = v["custom_id"].as_str().unwrap_or("").to_owned();
    let r = &v["result"];
    let result = match r["type"].as_str() {
        Some("succeeded") => message_as_chat(&r["message"]),
        Some("errored") => {
            let e = &r["error"]["error"];
            let kind = e["type"].as_str().unwrap_or("api_error");
            let message = e["message"].as_str().unwrap_or("batch request errored");
            let status = if kind == "invalid_request_error" {
                400
            } else {
                500
            };
            let class = classify_status(status, Some(kind), None, message);
            Err(RequestError::new(
                FailureKind::ErrorInBody,
                class,
                format!("{kind}: {message}"),
            ))
        }
        Some(other @ ("canceled" | "expired")) => Err(RequestError::new(
            FailureKind::ErrorInBody,
            ErrorClass::Transient,
            format!("batch request {other}"),
        )),
        _ => Err(fail("a message batch result line is not readable".into())),
    };
    BatchResult { custom_id, result }
}

fn parse_result_line(line: &[u8]) -> BatchResult {
    let v: Value = serde_json::from_slice(line).unwrap_or(Value::Null);
    let custom_id = v["custom_id"].as_str().unwrap_or("").to_owned();
    let status = v["response"]["status_code"].as_u64().unwrap_or(0) as u16;
    let body = &v["response"]["body"];
    let result = if v["error"].is_object() {
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or("batch line failed")
            .to_owned();
        Err(RequestError::new(
            FailureKind::ErrorInBody,
            ErrorClass::Transient,
            message,
        ))
    } else if (200..300).contains(&status) {
        serde_json::from_value::<ChatResponse>(body.clone()).map_err(|e| {
            fail(format!(
                "batch line `{custom_id}` is not a chat completion: {e}"
            ))
        })
    } else {
        let bytes = Bytes::from(body.to_string());
        let mut err = check(status.max(500), &bytes)
            .err()
            .unwrap_or_else(|| fail("failed".into()));
        err.status = Some(status);
        Err(err)
    };
    BatchResult { custom_id, result }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_in_every_shape() {
        let ok = parse_result_line(br#"{"custom_id":"a","response":{"status_code":200,"body":{"choices":[{"message":{"content":"hi"}}]}},"error":null}"#);
        assert_eq!(ok.custom_id, "a");
        assert_eq!(
            ok.result.unwrap().choices[0]
                .message
                .as_ref()
                .unwrap()
                .content
                .as_deref(),
            Some("hi")
        );
        let failed = parse_result_line(br#"{"custom_id":"b","response":{"status_code":500,"body":{"error":{"message":"boom","type":"server_error"}}},"error":null}"#);
        let e = failed.result.unwrap_err();
        assert_eq!((e.status, e.class), (Some(500), ErrorClass::Transient));
        let expired = parse_result_line(br#"{"custom_id":"c","response":null,"error":{"code":"batch_expired","message":"expired"}}"#);
        assert_eq!(expired.result.unwrap_err().message, "expired");
        let garbage = parse_result_line(b"not json");
        assert!(garbage.result.is_err());
    }

    #[test]
    fn message_batch_results_in_every_shape() {
        let ok = parse_message_result(br#"{"custom_id":"7","result":{"type":"succeeded","message":{"id":"m","model":"c",
            "content":[{"type":"thinking","thinking":"t"},{"type":"text","text":"{\"a\":1}"}],"stop_reason":"max_tokens",
            "usage":{"input_tokens":5,"cache_read_input_tokens":1024,"output_tokens":3}}}}"#);
        assert_eq!(ok.custom_id, "7");
        let chat = ok.result.unwrap();
        let message = chat.choices[0].message.as_ref().unwrap();
        assert_eq!(message.content.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(message.reasoning_text(), Some("t"));
        assert_eq!(chat.choices[0].finish_reason.as_deref(), Some("length"));
        let usage = crate::Usage::from_raw(chat.usage.as_ref().unwrap());
        assert_eq!(usage.prompt.unwrap().tokens, 1029);
        let errored = parse_message_result(br#"{"custom_id":"8","result":{"type":"errored","error":{"type":"error","error":{"type":"overloaded_error","message":"busy"}}}}"#);
        assert_eq!(errored.result.unwrap_err().class, ErrorClass::Transient);
        let expired = parse_message_result(br#"{"custom_id":"9","result":{"type":"expired"}}"#);
        assert!(expired.result.unwrap_err().message.contains("expired"));
        let batch = from_message_batch(&serde_json::json!({"id": "msgbatch_1",
            "processing_status": "ended", "request_counts": {"processing": 0, "succeeded": 2,
            "errored": 1, "canceled": 0, "expired": 1},
            "results_url": "https://elsewhere.example/steal"}))
        .unwrap();
        assert!(batch.is_finished());
        assert_eq!(
            batch.output_file_id.as_deref(),
            Some("messages/batches/msgbatch_1/results")
        );
        assert_eq!(
            (batch.request_counts.completed, batch.request_counts.failed),
            (2, 2)
        );
    }
}
