//! One pooled keep-alive HTTP client per endpoint (HTTP/1.1, or HTTP/2 when configured), or a
//! fresh connection per request for A/B comparisons.
//!
//! hyper directly rather than reqwest: we need to know, per request, whether its connection was
//! reused and how long a new one took to open. The connector here wraps hyper-rustls's, stamps
//! every new connection with an id and its connect time (TCP + TLS), and hyper hands that stamp
//! back in each response's extensions.
//!
//! Some servers close a kept-alive connection right after a response without saying so
//! (llama.cpp's llama-server after every streamed response: its HTTP library ends the chunked
//! body and then drops the socket, with no `Connection: close`). The pool hands that connection
//! to the next request before the close is seen, and the request fails before any answer. The
//! stream wrapper here watches for exactly that — the peer closing a connection that had
//! answered before, while a new request on it waits — and once it is seen more often than a
//! reused connection succeeds, the transport stops reusing connections (requests go
//! through a client without a pool and carry `Connection: close`), says so once, and
//! reports it ([`Transport::reuse_abandoned`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::clock::mono_ns;
use crate::endpoint::{Endpoint, TransportConfig};
use crate::error::{ClientError, ErrorClass, FailureKind, RequestError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the connection a request used was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Per-transport connection number.
    pub id: u64,
    /// The connection had carried an earlier request.
    pub reused: bool,
    /// Time to open it (TCP and TLS), in nanoseconds; `None` when reused.
    pub connect_ns: Option<u64>,
    /// When the request's last bytes were written to the socket (HTTP/1.1; on a multiplexed
    /// HTTP/2 connection, the latest write of any stream).
    pub written_ns: Option<u64>,
}

/// Stamp carried by every connection and copied into its responses.
#[derive(Debug, Clone)]
struct ConnStamp(Arc<StampInner>);

#[derive(Debug)]
struct StampInner {
    id: u64,
    connect_ns: u64,
    uses: AtomicU64,
    /// When bytes were last written to the connection (the request's last byte, on HTTP/1.1).
    last_write_ns: AtomicU64,
    /// A request was written and its response headers have not arrived.
    awaiting: AtomicBool,
    /// When the latest bytes read from the connection arrived: the kernel's receive time
    /// where the socket gives one (plain TCP on Linux), else when the read returned.
    rx_ns: AtomicU64,
    reuse: Arc<Reuse>,
}

/// What one transport has seen of connection reuse (see the module docs).
#[derive(Debug, Default)]
struct Reuse {
    /// Requests answered on a reused connection.
    reused_ok: AtomicU64,
    /// Reused connections the peer closed under a waiting request.
    closed_under_request: AtomicU64,
    /// Stop reusing: the server closes what it keeps alive.
    abandoned: AtomicBool,
    /// Kept-alive connections the server closed while no request waited on them.
    closed_idle: AtomicU64,
    endpoint: String,
    /// HTTP/2 may be spoken: connections are multiplexed and this does not apply.
    http2: bool,
}

impl Reuse {
    /// Closes seen before reuse is given up, at the least (one can be a race with an idle
    /// timeout; a server that always closes shows it on every reuse).
    const MIN_CLOSES: u64 = 2;

    fn closed_under_request(&self) {
        if self.http2 {
            return;
        }
        let closed = self.closed_under_request.fetch_add(1, Ordering::Relaxed) + 1;
        let ok = self.reused_ok.load(Ordering::Relaxed);
        if closed >= Self::MIN_CLOSES
            && closed > ok
            && !self.abandoned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                endpoint = %self.endpoint,
                closed,
                reused_ok = ok,
                "the server closes connections it had kept alive as soon as they are reused \
                 (llama-server does this after every streamed response); opening a new \
                 connection for each request from now on \
                 (set transport.fresh_connections = true to start that way)"
            );
        }
    }
}

/// A bound on the connections a pool keeps open at once (see [`Transport::limit_connections`]).
///
/// hyper's pool races a new connection against a connection coming back: a request sent the
/// moment its worker's last response ended usually finds its connection not yet returned (a
/// task of hyper's returns it), and the pool opens another beside it. A benchmark of `n`
/// workers then measures `n` plus a few connections, differently on every run. With a bound,
/// the new connection waits for a free place, and the returning one wins the race.
#[derive(Debug, Default)]
struct ConnCap {
    /// At most this many open (0: no bound).
    limit: AtomicUsize,
    open: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl ConnCap {
    /// Takes a place, waiting for one while the bound is reached.
    async fn take(self: &Arc<Self>) -> CapPlace {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let taken = self
                .open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                    let limit = self.limit.load(Ordering::Acquire);
                    (limit == 0 || open < limit).then_some(open + 1)
                })
                .is_ok();
            if taken {
                return CapPlace(self.clone());
            }
            freed.await;
        }
    }
}

/// One open connection's place under a [`ConnCap`], given back when it closes.
struct CapPlace(Arc<ConnCap>);

impl Drop for CapPlace {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

/// The hyper-rustls connector, timed.
#[derive(Clone)]
struct TimedConnector {
    inner: HttpsConnector<HttpConnector>,
    next_id: Arc<AtomicU64>,
    reuse: Arc<Reuse>,
    cap: Arc<ConnCap>,
}

impl tower_service::Service<Uri> for TimedConnector {
    type Response = TimedStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TimedStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut connector = self.inner.clone();
        let (next_id, reuse, cap) = (self.next_id.clone(), self.reuse.clone(), self.cap.clone());
        Box::pin(async move {
            let place = cap.take().await;
            let start = mono_ns();
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            let inner = connector.call(uri).await?;
            let control = kernel_stamps(&inner);
            let stamp = ConnStamp(Arc::new(StampInner {
                id,
                connect_ns: mono_ns().saturating_sub(start),
                uses: AtomicU64::new(0),
                last_write_ns: AtomicU64::new(0),
                awaiting: AtomicBool::new(false),
                rx_ns: AtomicU64::new(0),
                reuse,
            }));
            Ok(TimedStream {
                inner,
                stamp,
                scratch: vec![0; READ_CHUNK].into_boxed_slice(),
                control,
                _place: place,
            })
        })
    }
}

/// A connection that reports its stamp to hyper.
struct TimedStream {
    inner: MaybeHttpsStream<TokioIo<TcpStream>>,
    stamp: ConnStamp,
    /// What each read lands in first (see `poll_read`).
    scratch: Box<[u8]>,
    /// Where the kernel's receive time of each read lands, when it stamps this connection's
    /// segments (see [`kernel_stamps`]).
    control: Option<Box<[u8]>>,
    _place: CapPlace,
}

/// Asks the kernel to stamp each segment a plain TCP connection receives (Linux), and returns
/// the buffer its stamps are read into; `None` for TLS, which rustls reads with plain `read`
/// calls (its reads are timed when they return), and where there are no such stamps.
fn kernel_stamps(stream: &MaybeHttpsStream<TokioIo<TcpStream>>) -> Option<Box<[u8]>> {
    match stream {
        MaybeHttpsStream::Http(io) => crate::rxtime::enable(io.inner()),
        MaybeHttpsStream::Https(_) => None,
    }
}

/// Bytes read from a connection at a time (hyper asks for 8 KiB and more).
const READ_CHUNK: usize = 16 * 1024;

impl Connection for TimedStream {
    fn connected(&self) -> Connected {
        self.inner.connected().extra(self.stamp.clone())
    }
}

impl hyper::rt::Read for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Read through our own buffer, to see how much came (the cursor cannot be asked after
        // it is lent, and filling it directly needs `unsafe`); one copy of what is read.
        let this = self.get_mut();
        let want = buf.remaining().min(this.scratch.len());
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        let (res, n, arrived) = this.read(cx, want);
        buf.put_slice(&this.scratch[..n]);
        let closed = match &res {
            Poll::Ready(Ok(())) => n == 0,
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        };
        let s = &this.stamp.0;
        if n > 0 {
            // Never before an earlier read's time (a read the kernel did not stamp was timed
            // when it returned); a kernel time is never after now (`rxtime`).
            s.rx_ns
                .fetch_max(arrived.unwrap_or_else(mono_ns), Ordering::Relaxed);
        }
        if closed && s.awaiting.swap(false, Ordering::Relaxed) && s.uses.load(Ordering::Relaxed) > 0
        {
            s.reuse.closed_under_request();
        } else if closed && s.uses.load(Ordering::Relaxed) > 0 {
            // Closed while idle in the pool (an idle timeout, a request limit): hyper drops it
            // and the next request opens another, nothing lost.
            s.reuse.closed_idle.fetch_add(1, Ordering::Relaxed);
        }
        res
    }
}

impl hyper::rt::Write for TimedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.stamp_write(&res);
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.stamp_write(&res);
        res
    }
}

impl TimedStream {
    /// Reads at most `want` bytes into the scratch buffer: the outcome, the bytes read, and
    /// the kernel's time for the latest of them when it gave one.
    fn read(
        &mut self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> (Poll<std::io::Result<()>>, usize, Option<u64>) {
        if let (MaybeHttpsStream::Http(io), Some(control)) = (&self.inner, &mut self.control) {
            return match crate::rxtime::poll_recv(
                io.inner(),
                cx,
                &mut self.scratch[..want],
                control,
            ) {
                Poll::Ready(Ok((n, at))) => (Poll::Ready(Ok(())), n, at),
                Poll::Ready(Err(e)) => (Poll::Ready(Err(e)), 0, None),
                Poll::Pending => (Poll::Pending, 0, None),
            };
        }
        let mut scratch = hyper::rt::ReadBuf::new(&mut self.scratch[..want]);
        let res = hyper::rt::Read::poll_read(Pin::new(&mut self.inner), cx, scratch.unfilled());
        let n = scratch.filled().len();
        (res, n, None)
    }

    fn stamp_write(&self, res: &Poll<std::io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = res
            && *n > 0
        {
            self.stamp
                .0
                .last_write_ns
                .store(mono_ns(), Ordering::Relaxed);
            self.stamp.0.awaiting.store(true, Ordering::Relaxed);
        }
    }
}

/// When a response's latest bytes arrived, for timing its parts as they are taken.
///
/// hyper reads a connection in its own task and hands the body over a channel, so the task
/// taking a frame may run well after the read (at high concurrency, after hundreds of ready
/// tasks). This reads the connection's latest arrival instead of the clock. The read that
/// brought a frame happened before the frame was handed over, and a later read can only be
/// later, so the time is never before the frame's bytes came, and never after now: at worst
/// (the reader already fetched the next bytes) what the clock would have said.
#[derive(Debug, Clone, Default)]
pub(crate) struct Arrival(Option<ConnStamp>);

impl Arrival {
    /// The arrival clock of the connection that carried `res` (none: the clock).
    pub(crate) fn of<B>(res: &http::Response<B>) -> Self {
        Self(res.extensions().get::<ConnStamp>().cloned())
    }

    /// When the connection's latest bytes arrived (a time taken at or before their read, so
    /// never after now), or now when unknown.
    pub(crate) fn latest(&self) -> u64 {
        match self.0.as_ref().map(|s| s.0.rx_ns.load(Ordering::Relaxed)) {
            Some(rx) if rx > 0 => rx,
            _ => mono_ns(),
        }
    }
}

/// Sends requests for one endpoint.
#[derive(Clone)]
pub struct Transport {
    client: Client<TimedConnector, Full<Bytes>>,
    /// The same without a pool (see [`Transport::reuse_abandoned`]).
    fresh: Client<TimedConnector, Full<Bytes>>,
    config: TransportConfig,
    reuse: Arc<Reuse>,
    cap: Arc<ConnCap>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("config", &self.config)
            .finish()
    }
}

impl Transport {
    /// A transport with the endpoint's settings.
    pub fn new(endpoint: &Endpoint) -> Result<Self, ClientError> {
        let config = endpoint.transport.clone();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Endpoint::secs(config.connect_timeout_secs)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&config)?)
            .https_or_http();
        let https = if config.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let reuse = Arc::new(Reuse {
            endpoint: endpoint.name.clone(),
            http2: config.http2,
            ..Reuse::default()
        });
        let cap = Arc::new(ConnCap::default());
        let connector = TimedConnector {
            inner: https,
            next_id: Arc::new(AtomicU64::new(1)),
            reuse: reuse.clone(),
            cap: cap.clone(),
        };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Endpoint::secs(config.pool_idle_timeout_secs));
        if config.fresh_connections {
            b.pool_max_idle_per_host(0);
        }
        if config.http2 {
            // HTTP/2 only (ALPN offers just `h2`; plain text speaks it by prior knowledge), so
            // the pool knows before connecting that one connection carries every request:
            // offered both, it opens one connection per request in flight until the first
            // handshake has said which.
            b.http2_only(true);
        }
        let client = b.build(connector.clone());
        // Where requests go once reuse is given up: the pool above may still hold idle
        // connections the server will close under the next request. (No bound on these:
        // each closes as its response ends, a moment after the next may open.)
        b.pool_max_idle_per_host(0);
        let unbounded = TimedConnector {
            cap: Arc::new(ConnCap::default()),
            ..connector.clone()
        };
        Ok(Self {
            client,
            fresh: b.build(unbounded),
            config,
            reuse,
            cap,
        })
    }

    /// Keeps at most `n` connections open at once from now on (`None`: no bound); a request
    /// that finds none free waits for one to come back instead of opening another. For a
    /// closed loop of `n` workers that must measure exactly `n` connections (a bound below
    /// the requests in flight would queue them: leave it unset for open loops). Ignored with
    /// `fresh_connections`, where each request opens its own.
    pub fn limit_connections(&self, n: Option<usize>) {
        let n = if self.config.fresh_connections {
            0
        } else {
            n.unwrap_or(0)
        };
        self.cap.limit.store(n, Ordering::Release);
        self.cap.freed.notify_waiters();
    }

    /// The settings in force.
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The server was seen closing kept-alive connections under new requests, so each request
    /// now opens its own connection (see the module docs).
    pub fn reuse_abandoned(&self) -> bool {
        self.reuse.abandoned.load(Ordering::Relaxed)
    }

    /// Kept-alive connections the server has closed so far: while idle in the pool (its idle
    /// timeout or request limit; nothing lost) and under a request just sent on one (that
    /// request fails before headers and is left to the caller's retry: it may have reached
    /// the server, so resending it here could pay for it twice).
    pub fn server_closes(&self) -> (u64, u64) {
        (
            self.reuse.closed_idle.load(Ordering::Relaxed),
            self.reuse.closed_under_request.load(Ordering::Relaxed),
        )
    }

    /// Sends a request and waits for the response headers (bounded by the request timeout).
    pub async fn send(
        &self,
        mut req: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Option<ConnectionInfo>), RequestError> {
        let client = if self.reuse_abandoned() {
            req.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            &self.fresh
        } else {
            &self.client
        };
        let timeout = Endpoint::secs(self.config.request_timeout_secs);
        let res = match tokio::time::timeout(timeout, client.request(req)).await {
            Err(_) => {
                return Err(RequestError::new(
                    FailureKind::Timeout,
                    ErrorClass::Transient,
                    format!(
                        "no response headers within {}",
                        crate::clock::human(timeout)
                    ),
                ));
            }
            Ok(Err(e)) => return Err(map_send_error(&e)),
            Ok(Ok(res)) => res,
        };
        let conn = res.extensions().get::<ConnStamp>().map(|s| {
            s.0.awaiting.store(false, Ordering::Relaxed);
            let previous_uses = s.0.uses.fetch_add(1, Ordering::Relaxed);
            if previous_uses > 0 {
                s.0.reuse.reused_ok.fetch_add(1, Ordering::Relaxed);
            }
            let written = s.0.last_write_ns.load(Ordering::Relaxed);
            ConnectionInfo {
                id: s.0.id,
                reused: previous_uses > 0,
                connect_ns: (previous_uses == 0).then_some(s.0.connect_ns),
                written_ns: (written > 0).then_some(written),
            }
        });
        Ok((res, conn))
    }
}

/// TLS with the web's root certificates, and those of `ca_file` / `ca_pem` besides.
fn tls_config(config: &TransportConfig) -> Result<rustls::ClientConfig, ClientError> {
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ClientError::Tls(format!("reading ca_file `{}`: {e}", path.display())))?;
        extra.push((format!("ca_file `{}`", path.display()), pem));
    }
    if let Some(pem) = &config.ca_pem {
        extra.push((
            "the simulator's certificate".into(),
            pem.clone().into_bytes(),
        ));
    }
    tls_client_config(extra).map_err(ClientError::Tls)
}

/// A rustls client configuration (ring) trusting the web's root certificates and the PEM
/// certificates of `extra` (what they are, for errors; their bytes): the client's, and the
/// PostgreSQL ledger's.
pub fn tls_client_config(extra: Vec<(String, Vec<u8>)>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (what, pem) in extra {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{what}: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{what}: holds no certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn map_send_error(e: &hyper_util::client::legacy::Error) -> RequestError {
    let chain = error_chain(e);
    if e.is_connect() {
        let timed_out = chain.to_ascii_lowercase().contains("timed out");
        let kind = if timed_out {
            FailureKind::Timeout
        } else {
            FailureKind::Connect
        };
        return RequestError::new(
            kind,
            ErrorClass::Transient,
            format!("connect failed: {chain}"),
        );
    }
    RequestError::new(
        FailureKind::ResetBeforeHeaders,
        ErrorClass::Transient,
        format!("connection closed before response headers: {chain}"),
    )
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}
