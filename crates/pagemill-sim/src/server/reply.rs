//! A request as received, and a response described as data: status, headers, body parts with
//! delays between them, resets (faults as data). [`Reply::play`] drives it through a
//! [`Sink`].

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use super::Sink;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// 0-based number of the request since the server started.
    pub index: u64,
    /// HTTP method.
    pub method: http::Method,
    /// Path, without the query.
    pub path: String,
    /// Query string, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Bytes,
    /// When its body had been read, in `CLOCK_MONOTONIC` nanoseconds.
    pub received_ns: u64,
}

impl Received {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One step of a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Send these bytes as one write.
    Bytes(Bytes),
    /// Wait.
    Delay(Duration),
    /// Break the connection here (the client sees an incomplete body).
    Reset,
}

/// A response, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Wait this long before sending headers.
    pub head_delay: Duration,
    /// Close the connection instead of answering.
    pub reset_before_headers: bool,
    /// The body, step by step.
    pub parts: Vec<Part>,
    /// What fault, if any, this reply carries (for the ground-truth log).
    pub fault: Option<String>,
}

impl Reply {
    /// An empty reply with a status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            head_delay: Duration::ZERO,
            reset_before_headers: false,
            parts: Vec::new(),
            fault: None,
        }
    }

    /// An error in OpenAI's shape (`{"error": {"message", "type", "code"}}`), logged as the
    /// fault `http_<status>`.
    pub fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::json(
            status,
            &serde_json::json!({"error": {"message": message, "type": kind, "code": kind}}),
        )
        .fault(format!("http_{status}"))
    }

    /// A JSON body.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::status(status)
            .header("content-type", "application/json")
            .bytes(body.to_string())
    }

    /// A `text/event-stream` reply with no body yet.
    pub fn event_stream() -> Self {
        Self::status(200)
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
    }

    /// Closes the connection before any response.
    pub fn reset_before_headers() -> Self {
        let mut r = Self::status(0);
        r.reset_before_headers = true;
        r.fault = Some("reset_before_headers".into());
        r
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Appends bytes as one write.
    pub fn bytes(mut self, b: impl Into<Bytes>) -> Self {
        self.parts.push(Part::Bytes(b.into()));
        self
    }

    /// Appends a delay.
    pub fn delay(mut self, d: Duration) -> Self {
        self.parts.push(Part::Delay(d));
        self
    }

    /// Appends a connection reset.
    pub fn reset(mut self) -> Self {
        self.parts.push(Part::Reset);
        self
    }

    /// Delays the headers.
    pub fn head_delay(mut self, d: Duration) -> Self {
        self.head_delay = d;
        self
    }

    /// Names the fault this reply carries.
    pub fn fault(mut self, name: impl Into<String>) -> Self {
        self.fault = Some(name.into());
        self
    }

    /// Plays this reply into a sink, scheduling delays on absolute deadlines so timer overshoot
    /// does not accumulate over a stream.
    pub async fn play(self, mut sink: Sink) {
        if let Some(f) = &self.fault {
            sink.set_fault(f);
        }
        if !self.head_delay.is_zero() {
            tokio::time::sleep(self.head_delay).await;
        }
        if self.reset_before_headers {
            return sink.reset();
        }
        sink.head(self.status, &self.headers);
        let mut due = tokio::time::Instant::now();
        for part in self.parts {
            match part {
                Part::Delay(d) => {
                    due += d;
                    tokio::time::sleep_until(due).await;
                }
                Part::Reset => return sink.reset_after_sent().await,
                Part::Bytes(b) => {
                    if !sink.send(b, None, 0).await {
                        return;
                    }
                }
            }
        }
    }
}
