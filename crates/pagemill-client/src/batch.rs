//! The OpenAI-style batch API: upload a JSONL file of requests, submit it, poll it, read the
//! output and error files. Batch requests are typically billed at a discount
//! ([`crate::Prices::batch_cost`]).

use bytes::Bytes;
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{Client, MAX_FILE_BYTES, MAX_JSON_BYTES};
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

impl Client {
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
        let (status, res) = self
            .request_bytes(
                Method::GET,
                &format!("batches/{id}"),
                None,
                Bytes::new(),
                MAX_JSON_BYTES,
            )
            .await?;
        check(status, &res)?;
        parse(&res, "the batch")
    }

    /// The lines of an output or error file, each with its answer or failure.
    pub async fn batch_results(&self, file_id: &str) -> Result<Vec<BatchResult>, RequestError> {
        let (status, res) = self
            .request_bytes(
                Method::GET,
                &format!("files/{file_id}/content"),
                None,
                Bytes::new(),
                MAX_FILE_BYTES,
            )
            .await?;
        check(status, &res)?;
        Ok(res
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(parse_result_line)
            .collect())
    }

    /// A request as a batch input line (the endpoint's model and body parameters filled in).
    pub fn batch_line(&self, custom_id: &str, req: &ChatRequest) -> String {
        let mut req = req.clone();
        req.stream = false;
        input_line(custom_id, &self.body(&req))
    }
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
}
