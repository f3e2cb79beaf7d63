//! The network between a client and the server: round trips and slow start, modelled by
//! sleeping; TLS, real (rustls, with a certificate made at start); connection limits like
//! providers' (see [`Network`]). Loopback has none of these, so without them connection reuse
//! shows no effect and a client's connect figures have nothing to be checked against.
//!
//! Where the time goes: a new connection waits out its handshakes (one round trip for TCP,
//! one or two more for TLS) before the server reads from it. With TLS the client's connect
//! waits for the server's handshake messages, so it sees them in its connect time; on plain
//! TCP the kernel has already completed the connection, so the client sees them in its first
//! request's time to first token. Every request then waits one round trip (its flight there
//! and its answer's flight back), and a connection's first also waits out slow start, before
//! the server stamps it received. The log records each part ([`super::LogEntry`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pagemill_client::clock::mono_ns;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::profile::{Network, Profile, TlsVersion};

/// Connections the kernel completes and queues before the server accepts them (capped by
/// `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// A listening socket with room for a burst of new connections: a benchmark opens `c` at
/// once, and where the accept queue overflows (128 places, as `TcpListener::bind` gives,
/// overflowed 25 times at c = 256) the dropped handshakes are retried by the client a second
/// later — a second it would measure as connect time.
pub(super) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The network a server models, and its TLS.
pub(super) struct Net {
    pub(super) settings: Network,
    pub(super) tls: Option<TlsAcceptor>,
    /// The certificate clients must trust (PEM), when TLS is on.
    pub(super) ca_pem: Option<String>,
    seed: u64,
    next_connection: AtomicU64,
}

impl Net {
    /// The network of `settings`; makes a self-signed certificate for `localhost` and
    /// `127.0.0.1` when TLS is on.
    pub(super) fn new(settings: Network, seed: u64) -> std::io::Result<Self> {
        let (tls, ca_pem) = match settings.tls {
            TlsVersion::None => (None, None),
            version => {
                let (acceptor, pem) = tls_acceptor(version, settings.http2)?;
                (Some(acceptor), Some(pem))
            }
        };
        Ok(Self {
            settings,
            tls,
            ca_pem,
            seed,
            next_connection: AtomicU64::new(1),
        })
    }

    /// State for a newly accepted connection.
    pub(super) fn connection(&self, arrivals: Arc<AtomicU64>) -> Arc<ConnState> {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        Arc::new(ConnState {
            id,
            requests: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            last_done_ns: AtomicU64::new(mono_ns()),
            setup_ns: AtomicU64::new(0),
            plain: self.tls.is_none(),
            arrivals,
            rng: Mutex::new(SmallRng::seed_from_u64(
                self.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )),
        })
    }

    /// One round trip, with its jitter.
    fn round_trip(&self, conn: &ConnState) -> Duration {
        let s = &self.settings;
        let jitter = if s.rtt_jitter_ms > 0.0 {
            let mut rng = conn
                .rng
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            rng.random_range(0.0..s.rtt_jitter_ms)
        } else {
            0.0
        };
        Profile::ms(s.rtt_ms + jitter)
    }

    /// Waits out a new connection's handshakes (TCP's round trip and TLS's).
    pub(super) async fn handshakes(&self, conn: &ConnState) {
        if self.settings.rtt_ms <= 0.0 {
            return;
        }
        let mut wait = Duration::ZERO;
        for _ in 0..self.settings.handshake_round_trips() {
            wait += self.round_trip(conn);
        }
        tokio::time::sleep(wait).await;
    }

    /// Waits out a request's flight (and, on a connection's first, slow start); returns its
    /// number on the connection and the network time it spent before being read.
    pub(super) async fn before_read(&self, conn: &ConnState) -> (u64, u64) {
        let n = conn.requests.fetch_add(1, Ordering::Relaxed) + 1;
        conn.active.fetch_add(1, Ordering::Relaxed);
        let mut wait = if self.settings.rtt_ms > 0.0 {
            self.round_trip(conn)
        } else {
            Duration::ZERO
        };
        let mut spent = 0;
        if n == 1 {
            wait += Profile::ms(self.settings.slow_start_ms);
            if conn.plain {
                spent += conn.setup_ns.load(Ordering::Relaxed);
            }
        }
        if !wait.is_zero() {
            let start = mono_ns();
            tokio::time::sleep(wait).await;
            spent += mono_ns().saturating_sub(start);
        }
        (n, spent)
    }

    /// The answer to request `n` on a connection closes it (`max_requests_per_connection`).
    pub(super) fn last_on_connection(&self, n: u64) -> bool {
        let max = self.settings.max_requests_per_connection;
        max > 0 && n >= max
    }

    /// Completes once `conn` has been idle for the idle timeout (never, without one).
    pub(super) async fn idle(&self, conn: &ConnState) {
        let timeout = Duration::from_millis(self.settings.idle_timeout_ms);
        if timeout.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let since = conn.last_done_ns.load(Ordering::Relaxed);
            let idle_for = Duration::from_nanos(mono_ns().saturating_sub(since));
            let busy = conn.active.load(Ordering::Relaxed) > 0;
            if !busy && idle_for >= timeout {
                return;
            }
            // Busy: look again a timeout later; idle: when the timeout would run out.
            let wait = if busy {
                timeout
            } else {
                timeout.saturating_sub(idle_for)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }
}

/// What the server knows of one connection.
pub(super) struct ConnState {
    pub(super) id: u64,
    requests: AtomicU64,
    /// Requests being answered.
    active: AtomicUsize,
    /// When the last answer ended (or the connection opened).
    last_done_ns: AtomicU64,
    /// What its handshakes took on the server's side.
    setup_ns: AtomicU64,
    /// Plain TCP: the client did not wait for the handshakes in its connect.
    plain: bool,
    /// When the latest bytes read from it arrived (see [`pagemill_client::rxtime::StampedTcp`]).
    arrivals: Arc<AtomicU64>,
    rng: Mutex<SmallRng>,
}

impl ConnState {
    /// The handshakes are done: they took `ns`.
    pub(super) fn set_up(&self, ns: u64) {
        self.setup_ns.store(ns, Ordering::Relaxed);
        self.last_done_ns.store(mono_ns(), Ordering::Relaxed);
    }

    /// What its handshakes took, where the client's connect waited for them (TLS); on plain
    /// TCP the first request waited instead (see [`Net::before_read`]).
    pub(super) fn connect_setup_ns(&self) -> Option<u64> {
        (!self.plain).then(|| self.setup_ns.load(Ordering::Relaxed))
    }

    /// When the latest bytes read from it arrived (0: none yet).
    pub(super) fn arrived_ns(&self) -> u64 {
        self.arrivals.load(Ordering::Relaxed)
    }

    /// An answer ended.
    pub(super) fn done(&self) {
        self.last_done_ns.store(mono_ns(), Ordering::Relaxed);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TLS acceptor with a fresh self-signed certificate, and that certificate as PEM.
fn tls_acceptor(version: TlsVersion, http2: bool) -> std::io::Result<(TlsAcceptor, String)> {
    let err = |e: &dyn std::fmt::Display| std::io::Error::other(format!("TLS set-up: {e}"));
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certified = rcgen::generate_simple_self_signed(names).map_err(|e| err(&e))?;
    let pem = certified.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        TlsVersion::Tls12 => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| err(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| err(&e))?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((TlsAcceptor::from(Arc::new(config)), pem))
}
