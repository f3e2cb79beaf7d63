//! The HTTP server under every simulated provider: it accepts connections on a loopback port,
//! hands each request to a handler, and plays the [`Reply`] the handler describes — delays,
//! bytes exactly as given, and connection resets before headers or mid-body.
//!
//! Replies are descriptions rather than code so that faults are data: a test, a profile or a
//! script says *what* goes wrong and this module makes it happen on the wire.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, channel::Channel};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pagemill_client::clock::mono_ns;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// 0-based number of the request since the server started.
    pub index: u64,
    /// HTTP method.
    pub method: http::Method,
    /// Path, without the query.
    pub path: String,
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
}

/// What the server did with one request: the ground truth tests compare against.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Request number.
    pub index: u64,
    /// Path.
    pub path: String,
    /// When the request was read.
    pub received_ns: u64,
    /// When headers went out (`None` on a reset before headers).
    pub headers_ns: Option<u64>,
    /// When each body write went out.
    pub sent_ns: Vec<u64>,
    /// Status sent (0 when none).
    pub status: u16,
    /// Fault injected, if any.
    pub fault: Option<String>,
    /// The request body, as JSON where it was JSON.
    #[serde(skip)]
    pub body: serde_json::Value,
}

type HandlerFn = dyn Fn(&Received) -> Reply + Send + Sync;

struct Shared {
    handler: Box<HandlerFn>,
    log: Mutex<Vec<LogEntry>>,
    next: std::sync::atomic::AtomicU64,
}

/// A running server; stops accepting when dropped.
pub struct ServerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ServerHandle {
    /// `http://ADDR/v1`, the base URL to configure an endpoint with.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Everything received so far, in order of arrival.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops accepting connections.
    pub fn shutdown(self) {
        drop(self);
    }
}

/// Starts a server on `addr` (use port 0) that answers every request with `handler`.
pub async fn serve(
    addr: SocketAddr,
    handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
) -> std::io::Result<ServerHandle> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        handler: Box::new(handler),
        log: Mutex::new(Vec::new()),
        next: std::sync::atomic::AtomicU64::new(0),
    });
    let accept_shared = shared.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let shared = accept_shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(ServerHandle {
        addr,
        shared,
        accept,
    })
}

#[derive(Debug)]
struct ResetError;

impl std::fmt::Display for ResetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ResetError {}

async fn handle(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
) -> Result<http::Response<Channel<Bytes, ResetError>>, ResetError> {
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let received = Received {
        index: shared
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        method: head.method,
        path: head.uri.path().to_owned(),
        headers: head.headers,
        body,
        received_ns: mono_ns(),
    };
    let reply = (shared.handler)(&received);
    let slot = {
        let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
        log.push(LogEntry {
            index: received.index,
            path: received.path.clone(),
            received_ns: received.received_ns,
            headers_ns: None,
            sent_ns: Vec::new(),
            status: 0,
            fault: reply.fault.clone(),
            body: received.json(),
        });
        log.len() - 1
    };
    if !reply.head_delay.is_zero() {
        tokio::time::sleep(reply.head_delay).await;
    }
    if reply.reset_before_headers {
        return Err(ResetError);
    }
    let (mut tx, body) = Channel::<Bytes, ResetError>::new(4);
    let mut res = http::Response::new(body);
    *res.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in &reply.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            res.headers_mut().append(k, v);
        }
    }
    {
        let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = log.get_mut(slot) {
            e.headers_ns = Some(mono_ns());
            e.status = reply.status;
        }
    }
    tokio::spawn(async move {
        // Delays add up on one schedule, so timer overshoot does not accumulate over a stream.
        let mut due = tokio::time::Instant::now();
        for part in reply.parts {
            match part {
                Part::Delay(d) => {
                    due += d;
                    tokio::time::sleep_until(due).await;
                }
                Part::Reset => {
                    tx.abort(ResetError);
                    return;
                }
                Part::Bytes(b) => {
                    if tx.send(Frame::data(b)).await.is_err() {
                        return;
                    }
                    let now = mono_ns();
                    let mut log = shared.log.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(e) = log.get_mut(slot) {
                        e.sent_ns.push(now);
                    }
                }
            }
        }
    });
    Ok(res)
}
