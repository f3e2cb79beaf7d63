//! The HTTP server under every simulated provider: it accepts connections on a loopback port,
//! hands each request to a handler with a [`Sink`], and records what really went out — the
//! ground truth that pagemill's own measurements are checked against.
//!
//! A handler either describes its answer as a [`Reply`] (status, headers, body parts, delays,
//! resets: faults as data) or drives the [`Sink`] itself, as the simulator's latency model does
//! when the pace of a stream depends on what else is running.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, channel::Channel};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pagemill_client::clock::mono_ns;
use pagemill_client::rxtime::StampedTcp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The largest request body read (64 MiB; batch input files can be big).
const MAX_REQUEST_BYTES: usize = 64 << 20;

mod log;
mod net;
mod reply;

pub use log::{ChunkLog, Log, LogEntry};
pub use reply::{Part, Received, Reply};

/// The handler's end of one response: send headers, write body parts (each stamped in the
/// log), or break the connection. Dropping it ends the response; dropping it before
/// [`Sink::head`] resets the connection before headers.
pub struct Sink {
    head: Option<oneshot::Sender<http::Response<SimBody>>>,
    body: Option<http_body_util::channel::Sender<Bytes, ResetError>>,
    /// Writes queued to go out together (see [`Sink::queue`]).
    pending: Vec<u8>,
    entry: LogEntry,
    log: Arc<Log>,
    /// Asks the connection's task to close the connection once this response is done.
    closer: mpsc::UnboundedSender<oneshot::Receiver<()>>,
    /// Dropped when the body has ended, for that task.
    body_ended: Option<oneshot::Sender<()>>,
    /// Let the connection write each frame before the next is made (see
    /// [`Sink::write_each`]).
    write_each: bool,
    /// The connection it answers on, told when the answer ends (idle timeouts).
    conn: Option<Arc<net::ConnState>>,
    /// Shared with the body once the head is sent: when hyper took each frame.
    outbox: Option<Arc<Mutex<Outbox>>>,
    /// Frames handed to the body so far.
    frames: usize,
    /// The frame each logged chunk goes out in.
    chunk_frames: Vec<usize>,
}

/// A response body that notes when hyper takes each frame to write it, so the log says when
/// a chunk left, not when it was handed over: on a busy simulator those were milliseconds
/// apart, most for a response's first chunk, which waits behind the head.
pub struct SimBody {
    inner: Channel<Bytes, ResetError>,
    outbox: Arc<Mutex<Outbox>>,
    log: Arc<Log>,
}

/// What a response's [`Sink`] and its [`SimBody`] share.
#[derive(Default)]
struct Outbox {
    /// When hyper took each data frame, in order.
    taken: Vec<u64>,
    /// The response's log entry, finished by the sink, with each chunk's frame: pushed to the
    /// log once the body is done too (its last frames may still wait in the channel).
    entry: Option<(LogEntry, Vec<usize>)>,
    /// hyper has dropped the body.
    body_done: bool,
}

impl Outbox {
    /// Times each chunk by when hyper took its frame (where it did).
    fn settle(&self, entry: &mut LogEntry, frames: &[usize]) {
        for (chunk, frame) in entry.chunks.iter_mut().zip(frames) {
            if let Some(&taken) = self.taken.get(*frame) {
                chunk.sent_ns = chunk.sent_ns.max(taken);
            }
        }
        if let (Some(done), Some(&last)) = (entry.done_ns.as_mut(), self.taken.last()) {
            *done = (*done).max(last);
        }
    }
}

fn lock(outbox: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    outbox
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl hyper::body::Body for SimBody {
    type Data = Bytes;
    type Error = ResetError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, ResetError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && frame.is_data()
        {
            lock(&self.outbox).taken.push(mono_ns());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SimBody {
    fn drop(&mut self) {
        let mut outbox = lock(&self.outbox);
        outbox.body_done = true;
        if let Some((mut entry, frames)) = outbox.entry.take() {
            outbox.settle(&mut entry, &frames);
            self.log.push(entry);
        }
    }
}

impl Sink {
    /// Sends the status and headers.
    pub fn head(&mut self, status: u16, headers: &[(String, String)]) {
        let Some(tx) = self.head.take() else { return };
        let (body_tx, inner) = Channel::<Bytes, ResetError>::new(8);
        let outbox = Arc::new(Mutex::new(Outbox::default()));
        let mut res = http::Response::new(SimBody {
            inner,
            outbox: outbox.clone(),
            log: self.log.clone(),
        });
        *res.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        for (k, v) in headers {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                res.headers_mut().append(k, v);
            }
        }
        self.entry.status = status;
        self.entry.headers_ns = Some(mono_ns());
        if tx.send(res).is_ok() {
            self.body = Some(body_tx);
            self.outbox = Some(outbox);
        }
    }

    /// Writes bytes; `due_ns` is when the schedule wanted them, `tokens` the content tokens they
    /// carry. Anything queued goes out with them, in one write. False when the client has gone.
    pub async fn send(&mut self, bytes: Bytes, due_ns: Option<u64>, tokens: u32) -> bool {
        if self.pending.is_empty() {
            self.log_chunk(due_ns, tokens);
            return self.write(bytes).await;
        }
        self.queue(&bytes, due_ns, tokens);
        self.flush().await
    }

    /// Queues bytes to go out with the next [`Sink::send`] or [`Sink::flush`], as one write.
    /// Logged now: a stream with no pauses between events goes out in one burst, as a server
    /// flushing a whole batch would.
    pub fn queue(&mut self, bytes: &[u8], due_ns: Option<u64>, tokens: u32) {
        self.log_chunk(due_ns, tokens);
        self.pending.extend_from_slice(bytes);
    }

    /// Bytes queued and not yet sent.
    pub fn queued(&self) -> usize {
        self.pending.len()
    }

    /// Sends what is queued. False when the client has gone.
    pub async fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return self.body.is_some();
        }
        let bytes = Bytes::from(std::mem::take(&mut self.pending));
        self.write(bytes).await
    }

    fn log_chunk(&mut self, due_ns: Option<u64>, tokens: u32) {
        // It goes out with the next frame written.
        self.chunk_frames.push(self.frames);
        self.entry.chunks.push(ChunkLog {
            sent_ns: mono_ns(),
            due_ns,
            tokens,
        });
    }

    async fn write(&mut self, bytes: Bytes) -> bool {
        let Some(tx) = &mut self.body else {
            return false;
        };
        if tx.send(Frame::data(bytes)).await.is_err() {
            self.body = None;
            return false;
        }
        self.frames += 1;
        if self.write_each {
            // The connection's task, woken by the frame, writes it to the socket before this
            // one makes the next: one write an event, as a server flushing each token does.
            tokio::task::yield_now().await;
        }
        true
    }

    /// From now on, each send reaches the socket as its own write before the next is made
    /// (a real server's one write a token), rather than frames piling up in the body channel
    /// for hyper to write together.
    pub fn write_each(&mut self) {
        self.write_each = true;
    }

    /// Breaks the connection before headers.
    pub fn reset(mut self) {
        self.head = None;
        if let Some(tx) = self.body.take() {
            tx.abort(ResetError);
        }
    }

    /// Breaks the connection mid-body, after what was sent has reached the connection: hyper
    /// drops a response whose body fails before its head is written, which would turn a
    /// mid-stream reset into a reset before headers.
    pub async fn reset_after_sent(mut self) {
        self.wait_written().await;
        if self.body.is_some() {
            // Taken from the channel is not yet written to the socket: give hyper's write a
            // moment before the connection breaks.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.reset();
    }

    /// Closes the connection a moment after this response's body has ended, though its head
    /// did not say `Connection: close`: what llama-server (cpp-httplib) does after every
    /// streamed response. A client that reuses the connection at once loses that request.
    pub fn close_connection_after_body(&mut self) {
        let (ended, body_ended) = oneshot::channel();
        if self.closer.send(body_ended).is_ok() {
            self.body_ended = Some(ended);
        }
    }

    /// Waits (200 ms at most) until hyper has taken every queued frame, so the head and what
    /// was sent are on their way to the socket.
    async fn wait_written(&mut self) {
        self.flush().await;
        if let Some(tx) = &mut self.body {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
            while tx.capacity() < tx.max_capacity() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    }

    /// Records a fault in the log entry.
    pub fn set_fault(&mut self, fault: &str) {
        self.entry.fault = Some(fault.to_owned());
    }

    /// The server's log (to serve it, or compute statistics over it).
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    /// The log entry being built, for token counts and queue time.
    pub fn entry_mut(&mut self) -> &mut LogEntry {
        &mut self.entry
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.body = None;
        self.body_ended = None;
        if let Some(conn) = self.conn.take() {
            conn.done();
        }
        let mut entry = std::mem::take(&mut self.entry);
        entry.done_ns = Some(mono_ns());
        let frames = std::mem::take(&mut self.chunk_frames);
        // Logged once hyper is done with the body too, so each chunk has its time on the way
        // out (a body hyper never took, or already dropped, has nothing more to say).
        if let Some(outbox) = &self.outbox {
            let mut outbox = lock(outbox);
            if !outbox.body_done {
                outbox.entry = Some((entry, frames));
                return;
            }
            outbox.settle(&mut entry, &frames);
        }
        self.log.push(entry);
    }
}

/// How long after a body's end [`Sink::close_connection_after_body`] closes the connection.
const CLOSE_AFTER_BODY: Duration = Duration::from_millis(5);

/// A request handler: gets the request and the sink to answer through.
pub type Handler = dyn Fn(Received, Sink) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync;

/// Settings of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen (use port 0 for any free port).
    pub addr: SocketAddr,
    /// Log entries kept in memory.
    pub log_capacity: usize,
    /// Also write every log entry to this JSONL file.
    pub log_file: Option<std::path::PathBuf>,
    /// Keep each request's body in its log entry (tests of what a client sent); off by
    /// default, since long prompts times many entries is a lot of memory.
    pub keep_bodies: bool,
    /// Every request must carry the key (the ground-truth routes too), in the header of its
    /// API: `Authorization: Bearer <key>`, `x-api-key` (Messages API) or `api-key` (Azure
    /// deployments); others get a 401.
    pub api_key: Option<pagemill_client::ApiKey>,
    /// The network modelled between clients and this server: round trips, TLS, connection
    /// limits (none by default: loopback as it is).
    pub network: crate::profile::Network,
    /// Seed of the network's jitter.
    pub seed: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log_capacity: 100_000,
            log_file: None,
            keep_bodies: false,
            api_key: None,
            network: crate::profile::Network::default(),
            seed: 0,
        }
    }
}

/// The header a request's API carries its key in: `x-api-key` for Anthropic's Messages API,
/// `api-key` for Azure OpenAI's deployments, `Authorization: Bearer` for the rest.
fn key_header(path: &str, query: Option<&str>) -> &'static str {
    if path.ends_with("/messages") || path.contains("/messages/") {
        "x-api-key: <key>"
    } else if path.starts_with("/openai/") || query.is_some_and(|q| q.contains("api-version=")) {
        "api-key: <key>"
    } else {
        "Authorization: Bearer <key>"
    }
}

/// The key a request carries, in the header of its API (see [`key_header`]).
fn given_key(received: &Received) -> &[u8] {
    let header = |name: &str| received.headers.get(name).map(|v| v.as_bytes());
    match key_header(&received.path, received.query.as_deref()) {
        "x-api-key: <key>" => header("x-api-key"),
        "api-key: <key>" => header("api-key"),
        _ => header("authorization").and_then(|v| v.strip_prefix(b"Bearer ")),
    }
    .unwrap_or(b"")
}

/// Whether `given` is `want`, in time that does not depend on where they differ (only on the
/// length of `given`), so a key cannot be guessed byte by byte from response times.
fn same_secret(given: &[u8], want: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != want.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ want.get(i).copied().unwrap_or(0);
    }
    diff == 0
}

struct Shared {
    api_key: Option<pagemill_client::ApiKey>,
    keep_bodies: bool,
    handler: Box<Handler>,
    log: Arc<Log>,
    next: AtomicU64,
    net: net::Net,
}

/// A running server; stops accepting when dropped or shut down.
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
        self.shared.log.flush();
    }
}

impl ServerHandle {
    /// `http://ADDR/v1` (`https://` with TLS), the base URL to configure an endpoint with.
    pub fn base_url(&self) -> String {
        let scheme = if self.shared.net.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/v1", self.addr)
    }

    /// With TLS, the self-signed certificate clients must trust (PEM; an endpoint's
    /// `transport.ca_file`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.net.ca_pem.as_deref()
    }

    /// The log entries in memory, ordered by request number.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.log.entries()
    }

    /// The log itself (shared with the handler, e.g. to serve `/sim/log`).
    pub fn log_handle(&self) -> Arc<Log> {
        self.shared.log.clone()
    }

    /// Stops accepting connections (running responses finish on their own).
    pub fn shutdown(self) {
        drop(self);
    }
}

/// Starts a server that answers every request with a described [`Reply`].
pub async fn serve(
    addr: SocketAddr,
    reply: impl Fn(&Received) -> Reply + Send + Sync + 'static,
) -> std::io::Result<ServerHandle> {
    let options = ServerOptions {
        addr,
        keep_bodies: true,
        ..ServerOptions::default()
    };
    serve_with(options, move |req, sink| {
        let r = reply(&req);
        Box::pin(r.play(sink))
    })
    .await
}

/// Starts a server whose handler drives each response's [`Sink`] itself.
pub async fn serve_with(
    options: ServerOptions,
    handler: impl Fn(Received, Sink) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync + 'static,
) -> std::io::Result<ServerHandle> {
    let listener = net::listen(options.addr)?;
    let addr = listener.local_addr()?;
    let mut log = Log::new(options.log_capacity);
    if let Some(path) = &options.log_file {
        log = log.with_file(path)?;
    }
    let shared = Arc::new(Shared {
        api_key: options.api_key.clone(),
        keep_bodies: options.keep_bodies,
        handler: Box::new(handler),
        log: Arc::new(log),
        next: AtomicU64::new(0),
        net: net::Net::new(options.network.clone(), options.seed)?,
    });
    let accept_shared = shared.clone();
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(_) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            // Reads keep when a request's bytes came, apart from the wait to read them.
            let stream = StampedTcp::new(stream);
            let shared = accept_shared.clone();
            tokio::spawn(async move {
                let conn = shared.net.connection(stream.arrivals());
                let start = mono_ns();
                shared.net.handshakes(&conn).await;
                match &shared.net.tls {
                    Some(acceptor) => {
                        let Ok(tls) = acceptor.accept(stream).await else {
                            return;
                        };
                        conn.set_up(mono_ns().saturating_sub(start));
                        serve_connection(shared, TokioIo::new(tls), conn).await;
                    }
                    None => {
                        conn.set_up(mono_ns().saturating_sub(start));
                        serve_connection(shared, TokioIo::new(stream), conn).await;
                    }
                }
            });
        }
    });
    Ok(ServerHandle {
        addr,
        shared,
        accept,
    })
}

/// Serves one connection (plain or TLS) until it ends, is asked to close after a body, or
/// has been idle for the network's idle timeout.
async fn serve_connection<I>(shared: Arc<Shared>, io: I, conn: Arc<net::ConnState>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (closer, mut close_asked) = mpsc::unbounded_channel();
    let service_shared = shared.clone();
    let service_conn = conn.clone();
    let service = hyper::service::service_fn(move |req| {
        handle(
            service_shared.clone(),
            req,
            closer.clone(),
            service_conn.clone(),
        )
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let idle = shared.net.idle(&conn);
    tokio::pin!(idle);
    let body_ended = tokio::select! {
        _ = served.as_mut() => return,
        // Dropping the connection closes its socket, as a load balancer closes an idle one.
        () = &mut idle => return,
        Some(ended) = close_asked.recv() => ended,
    };
    let close_soon = async {
        let _ = body_ended.await;
        tokio::time::sleep(CLOSE_AFTER_BODY).await;
    };
    tokio::select! {
        _ = served.as_mut() => {}
        // Dropping the connection closes its socket, whatever it was doing.
        () = close_soon => {}
    }
}

/// The error that breaks a connection on purpose.
#[derive(Debug)]
pub struct ResetError;

impl std::fmt::Display for ResetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ResetError {}

async fn handle(
    shared: Arc<Shared>,
    req: http::Request<Incoming>,
    closer: mpsc::UnboundedSender<oneshot::Receiver<()>>,
    conn: Arc<net::ConnState>,
) -> Result<http::Response<SimBody>, ResetError> {
    let (head, body) = req.into_parts();
    // A body over the cap is answered 413 by the server itself, never handed on empty.
    let (body, too_large) = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
    {
        Ok(b) => (b.to_bytes(), false),
        Err(e) => (
            Bytes::new(),
            e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some(),
        ),
    };
    let (on_connection, network_ns) = shared.net.before_read(&conn).await;
    let received = Received {
        index: shared.next.fetch_add(1, Ordering::Relaxed),
        method: head.method,
        path: head.uri.path().to_owned(),
        query: head.uri.query().map(str::to_owned),
        headers: head.headers,
        body,
        received_ns: mono_ns(),
    };
    let arrived_ns = conn.arrived_ns().min(received.received_ns);
    let (tx, rx) = oneshot::channel();
    let sink = Sink {
        head: Some(tx),
        body: None,
        pending: Vec::new(),
        write_each: false,
        entry: LogEntry {
            index: received.index,
            route: format!("{} {}", received.method, received.path),
            request_id: received
                .headers
                .get("x-pagemill-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            received_ns: received.received_ns,
            body: if shared.keep_bodies {
                received.json()
            } else {
                serde_json::Value::Null
            },
            connection: conn.id,
            connection_request: on_connection,
            connection_setup_ns: if on_connection == 1 {
                conn.connect_setup_ns()
            } else {
                None
            },
            network_ns,
            arrived_ns: (arrived_ns > 0).then_some(arrived_ns),
            ..LogEntry::default()
        },
        log: shared.log.clone(),
        closer,
        body_ended: None,
        conn: Some(conn),
        outbox: None,
        frames: 0,
        chunk_frames: Vec::new(),
    };
    let authorized = shared
        .api_key
        .as_ref()
        .is_none_or(|key| same_secret(given_key(&received), key.expose().as_bytes()));
    if !authorized {
        let reply = Reply::error(
            401,
            "invalid_api_key",
            &format!(
                "Incorrect API key provided: this server wants `{}` with the key it was started with.",
                key_header(&received.path, received.query.as_deref())
            ),
        );
        tokio::spawn(reply.play(sink));
    } else if too_large {
        let reply = Reply::error(
            413,
            "request_too_large",
            &format!(
                "request body over {} MiB, the most this server reads",
                MAX_REQUEST_BYTES >> 20
            ),
        );
        tokio::spawn(reply.play(sink));
    } else {
        tokio::spawn((shared.handler)(received, sink));
    }
    // No head before the sink is dropped means: break the connection before headers.
    let mut res = rx.await.map_err(|_| ResetError)?;
    if shared.net.last_on_connection(on_connection) {
        res.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        assert!(same_secret(b"key-123456", b"key-123456"));
        assert!(!same_secret(b"key-123457", b"key-123456"));
        assert!(!same_secret(b"key-12345", b"key-123456"));
        assert!(!same_secret(b"key-1234567", b"key-123456"));
        assert!(!same_secret(b"", b"key-123456"));
    }

    #[tokio::test]
    async fn a_burst_of_connections_is_queued_before_any_is_accepted() {
        // Nothing accepts: every handshake must complete from the accept queue alone. With
        // 128 places the rest would wait for a retransmitted SYN, a second or more.
        let listener = net::listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connects: Vec<_> = (0..300)
            .map(|_| tokio::spawn(tokio::net::TcpStream::connect(addr)))
            .collect();
        let all = async {
            let mut ok = 0;
            for c in connects {
                ok += usize::from(matches!(c.await, Ok(Ok(_))));
            }
            ok
        };
        let ok = tokio::time::timeout(Duration::from_secs(5), all)
            .await
            .expect("every connection queued");
        assert_eq!(ok, 300);
        drop(listener);
    }
}
