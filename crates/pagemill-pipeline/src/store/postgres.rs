//! The ledger many workers share: PostgreSQL, with the semantics of the SQLite [`Ledger`]
//! (same [`Store`] trait, same shared tests) and what many processes on many machines need:
//!
//! - **Leases with an owner and a deadline on the database's clock** (machines' clocks
//!   differ): `lease` takes units that are pending, or leased by this run, or whose lease has
//!   lapsed, `FOR UPDATE SKIP LOCKED`, so two workers asking for the same units at once split
//!   them instead of waiting on each other. A heartbeat thread (its own connection) renews this
//!   run's leases every third of the lease time; a worker killed with SIGKILL stops renewing
//!   and its units go back to whoever asks after the lease time.
//! - **Idempotent commits**: a result is inserted `ON CONFLICT DO NOTHING` (the unit key is
//!   the primary key), so a worker whose lease lapsed and who finishes late cannot record a
//!   unit twice; the first result stands.
//! - **Requests recorded before they are sent**, as with SQLite; those of a run whose heartbeat
//!   stopped are marked `interrupted` by the next run that opens the ledger.
//! - **Migrations** are versioned (`pagemill_migrations`) and applied on open, inside one
//!   transaction holding an advisory lock, so workers started together migrate once. They are
//!   ours rather than refinery's: refinery would bring `url`/`idna`/ICU, `time` and `regex`
//!   for what is this one function, and would still need the lock around it.
//! - **Connections are bounded**: two per process (the ledger's, behind the run's lock on the
//!   store, and the heartbeat's); a pool would not help a store the runner already serializes.
//! - **TLS** with rustls, as `sslmode` in the URL asks (`prefer` by default: TLS where the
//!   server offers it); the certificate is checked against `PGSSLROOTCERT` when set, as libpq
//!   does (see `tls()`).
//!
//! The [`Store`] trait is synchronous; a call from async code blocks its worker thread for the
//! round trip (inside `block_in_place`, where the runtime allows it), as SQLite's calls do.
//!
//! [`Ledger`]: super::Ledger

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use std::collections::HashMap;

use postgres::{Client, Config, Row, Statement};

use super::{
    DocumentRow, History, PageRow, Replan, RequestEnd, RequestRow, RunRow, SectionRow, Store,
    StoreError, UnitBrief, UnitRow, UnitSpec, UnitStatus, retried_json, retried_parse, unix_now,
};

/// Migrations, in order: (version, what, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "the ledger", include_str!("postgres/V1__ledger.sql")),
    (
        2,
        "rate budgets",
        include_str!("postgres/V2__rate_budgets.sql"),
    ),
];

/// The advisory lock key migrations hold (the first half; the second is the schema's hash).
const MIGRATION_LOCK: i32 = 0x7061_6765; // "page"

/// Round trips to the database: one ledger's (its heartbeat's and rate budgets' included),
/// each also counted for the process.
#[derive(Debug, Default)]
struct Trips(AtomicU64);

static PROCESS_TRIPS: AtomicU64 = AtomicU64::new(0);

impl Trips {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
        PROCESS_TRIPS.fetch_add(n, Ordering::Relaxed);
    }
}

/// Round trips this process has made to PostgreSQL ledgers: what a worker reports, per unit.
pub fn process_round_trips() -> u64 {
    PROCESS_TRIPS.load(Ordering::Relaxed)
}

/// How long a lease lasts without a heartbeat, unless set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// A PostgreSQL ledger, held by one run of one process (many may share the database).
pub struct PgLedger {
    /// `None` only while dropping.
    client: Mutex<Option<Conn>>,
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// How endpoints' rate limits are shared.
    pub sharing: Sharing,
    run_id: String,
    shown: String,
    lease: Duration,
    trips: Arc<Trips>,
    heartbeat: Option<Heartbeat>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("store", &self.shown)
            .field("run_id", &self.run_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Whether `store` names a PostgreSQL ledger (`postgres://…` or `postgresql://…`).
pub fn is_postgres(store: &str) -> bool {
    store.starts_with("postgres://") || store.starts_with("postgresql://")
}

/// The name of a provider account's shared rate budget: the endpoint's scheme, host and path
/// (no user, password or query string: nothing secret goes in the database) and its model.
pub fn budget_name(base_url: &str, model: &str) -> String {
    let url = base_url.split(['?', '#']).next().unwrap_or_default();
    let url = match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_owned(),
    };
    format!("{url} {model}")
}

/// `url` with its password, if any, replaced by `***`: what errors and logs may show.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    // A password given as a query parameter is hidden too.
    let tail: String = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl PgLedger {
    /// Opens the ledger at `url` for one run, with the default lease time: connects (TLS as
    /// the URL's `sslmode` says), applies migrations, marks the requests of runs whose
    /// heartbeat stopped as interrupted, and starts this run's heartbeat.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, DEFAULT_LEASE)
    }

    /// [`PgLedger::open`] with leases of `lease` (renewed every third of it).
    pub fn open_with(url: &str, lease: Duration) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let config: Config = url.parse().map_err(|source| StoreError::Postgres {
            store: shown.clone(),
            source,
        })?;
        Self::open_config(config, shown, lease)
    }

    /// Opens with a parsed configuration (tests set `options` such as a `search_path`).
    pub fn open_config(config: Config, shown: String, lease: Duration) -> Result<Self, StoreError> {
        // All of it off the async workers, the drop of a connection that failed to migrate
        // included.
        blocking(move || Self::open_blocking(config, shown, lease))
    }

    fn open_blocking(config: Config, shown: String, lease: Duration) -> Result<Self, StoreError> {
        let err = pg_error(&shown);
        let tls = tls().map_err(|why| StoreError::NotALedger {
            path: shown.clone().into(),
            why,
        })?;
        let mut client = config.connect(tls.clone()).map_err(err)?;
        let migrated = migrate(&mut client).map_err(|e| match e {
            Migrate::Pg(source) => StoreError::Postgres {
                store: shown.clone(),
                source,
            },
            Migrate::Newer(found) => StoreError::NewerSchema {
                store: shown.clone(),
                found: i64::from(found),
                known: i64::from(MIGRATIONS.last().map_or(0, |m| m.0)),
            },
        })?;
        let run_id = format!(
            "{}-{}-{:06x}",
            unix_now(),
            std::process::id(),
            rand::random::<u32>() & 0xff_ffff
        );
        let stale = (lease * 3).as_secs_f64();
        client
            .execute(
                "UPDATE requests SET status = 'interrupted', finished_at = $1
                 WHERE status = 'sent' AND run_id IN (
                     SELECT id FROM runs WHERE finished_at IS NULL
                     AND heartbeat_at < now() - make_interval(secs => $2))",
                &[&unix_now(), &stale],
            )
            .map_err(err)?;
        let trips = Arc::new(Trips::default());
        // Connecting (startup, authentication: about 2), migrating, marking the interrupted
        // (Parse, then Bind/Execute).
        trips.add(2 + migrated + 2);
        let heartbeat = (!lease.is_zero()).then(|| {
            Heartbeat::start(
                config.clone(),
                tls.clone(),
                run_id.clone(),
                lease,
                Arc::clone(&trips),
            )
        });
        Ok(Self {
            client: Mutex::new(Some(Conn::new(client, Arc::clone(&trips)))),
            config,
            tls,
            sharing: Sharing::default(),
            run_id,
            shown,
            lease,
            trips,
            heartbeat,
        })
    }

    /// The store as errors and logs show it (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Round trips to the database so far (the heartbeat's included): the figure the
    /// scaling benchmark divides by units.
    pub fn round_trips(&self) -> u64 {
        self.trips.0.load(Ordering::Relaxed)
    }

    /// Runs `f` on the connection (which counts its round trips).
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        on(&self.client, &self.shown, f)
    }

    /// Gives back every unit this run still leases (an ended run's, so others need not wait
    /// for the lease to lapse).
    fn release_mine(&self) -> Result<(), StoreError> {
        let me = self.run_id.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE units SET status = 'pending', lease_owner = NULL, lease_until = NULL
                 WHERE status = 'leased' AND lease_owner = $1",
                &[&me],
            )
        })
        .map(|_| ())
    }
}

impl Drop for PgLedger {
    fn drop(&mut self) {
        self.heartbeat.take();
        if let Err(e) = self.release_mine() {
            tracing::warn!(store = %self.shown, "giving back this run's leases: {e}");
        }
        close(&self.client);
    }
}

/// How workers share an endpoint's rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// One token bucket row per endpoint, reserved from in one statement per request: exact
    /// whatever the number of workers, at one round trip a request.
    #[default]
    Bucket,
    /// Each worker paces alone at the limit divided by the live workers (runs whose heartbeat
    /// is recent), counted every few seconds: no round trip a request, but late to see a
    /// worker come or go.
    Divide,
    /// Each worker paces by the whole limit alone (workers with API keys of their own).
    None,
}

/// An endpoint's rate limits shared through the database (see [`Sharing`]), on a connection
/// of its own.
pub struct PgBudget {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Mutex<Option<Conn>>,
    name: String,
    rpm: f64,
    tpm: f64,
    sharing: Sharing,
    lease: Duration,
    /// Divide: the workers counted and this worker's own levels.
    divide: Mutex<Divided>,
    trips: Arc<Trips>,
}

/// [`Sharing::Divide`]'s state in one worker.
#[derive(Debug)]
struct Divided {
    /// Live workers, at least 1.
    workers: f64,
    /// When they were counted.
    counted: Option<std::time::Instant>,
    /// Requests and tokens left (negative: a debt waited out), as of `at`.
    requests: f64,
    tokens: f64,
    at: std::time::Instant,
}

/// A bucket's one second of allowance as burst (at least one whole request), as the client's
/// own buckets hold.
fn burst(per_minute: f64) -> f64 {
    (per_minute / 60.0).max(1.0)
}

impl PgBudget {
    /// A shared budget of `rpm` requests and `tpm` tokens a minute (`None`: unlimited) named
    /// `name` (the provider account's: base URL and model).
    #[allow(clippy::too_many_arguments)] // one call site, each a different part
    fn new(
        config: Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        name: String,
        rpm: Option<u32>,
        tpm: Option<u64>,
        sharing: Sharing,
        lease: Duration,
        trips: Arc<Trips>,
    ) -> Self {
        let (rpm, tpm) = (
            rpm.map_or(f64::INFINITY, f64::from),
            tpm.map_or(f64::INFINITY, |t| t as f64),
        );
        let now = std::time::Instant::now();
        Self {
            config,
            tls,
            client: Mutex::new(None),
            name,
            rpm,
            tpm,
            sharing,
            lease,
            divide: Mutex::new(Divided {
                workers: 1.0,
                counted: None,
                requests: burst(rpm),
                tokens: burst(tpm),
                at: now,
            }),
            trips,
        }
    }

    /// Runs `f` on this budget's connection, connecting first when there is none.
    fn query<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let mut guard = lock(&self.client);
        let c = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(Conn::new(
                self.config.connect(self.tls.clone())?,
                Arc::clone(&self.trips),
            )),
        };
        let r = f(c);
        if r.is_err() {
            // Reconnect next time.
            *guard = None;
        }
        r
    }

    fn reserve_in_database(&self, tokens: f64) -> Result<Duration, postgres::Error> {
        let finite = |v: f64| if v.is_finite() { v } else { 1e15 };
        let (rps, tps) = (finite(self.rpm / 60.0), finite(self.tpm / 60.0));
        let row = self.query(|c| c.query_one(
            "INSERT INTO rate_budgets (name, req_level, tok_level, at)
             VALUES ($1, $2::FLOAT8 - 1, $3::FLOAT8 - $4::FLOAT8, clock_timestamp())
             ON CONFLICT (name) DO UPDATE SET
                 req_level = LEAST($2::FLOAT8, rate_budgets.req_level
                     + EXTRACT(EPOCH FROM clock_timestamp() - rate_budgets.at)::FLOAT8 * $5::FLOAT8) - 1,
                 tok_level = LEAST($3::FLOAT8, rate_budgets.tok_level
                     + EXTRACT(EPOCH FROM clock_timestamp() - rate_budgets.at)::FLOAT8 * $6::FLOAT8) - $4::FLOAT8,
                 at = clock_timestamp()
             RETURNING req_level, tok_level",
            &[
                &self.name,
                &finite(burst(self.rpm)),
                &finite(burst(self.tpm)),
                &tokens,
                &rps,
                &tps,
            ],
        ))?;
        let (req, tok): (f64, f64) = (row.get(0), row.get(1));
        let wait = (-req / rps).max(-tok / tps).max(0.0);
        Ok(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
    }

    fn reserve_divided(&self, tokens: f64) -> Duration {
        let now = std::time::Instant::now();
        let mut d = lock(&self.divide);
        let stale = d
            .counted
            .is_none_or(|at| now.duration_since(at) > Duration::from_secs(2));
        if stale {
            let window = (self.lease.as_secs_f64() * 1.5).max(1.0);
            let counted: Result<i64, _> = self.query(|c| {
                c.query_one(
                    "SELECT COUNT(*) FROM runs WHERE finished_at IS NULL
                     AND heartbeat_at > now() - make_interval(secs => $1)",
                    &[&window],
                )
                .map(|r| r.get(0))
            });
            d.workers = counted.map_or(d.workers, |n| n.max(1) as f64);
            d.counted = Some(now);
        }
        let n = d.workers;
        let elapsed = now.duration_since(d.at).as_secs_f64();
        let (rps, tps) = (self.rpm / 60.0 / n, self.tpm / 60.0 / n);
        d.requests = (d.requests + elapsed * rps).min(burst(self.rpm / n)) - 1.0;
        d.tokens = (d.tokens + elapsed * tps).min(burst(self.tpm / n)) - tokens;
        d.at = now;
        let wait = (-d.requests / rps).max(-d.tokens / tps).max(0.0);
        Duration::try_from_secs_f64(if wait.is_finite() { wait } else { 0.0 })
            .unwrap_or(Duration::MAX)
    }
}

impl std::fmt::Debug for PgBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBudget")
            .field("name", &self.name)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .field("sharing", &self.sharing)
            .finish_non_exhaustive()
    }
}

impl pagemill_client::limits::SharedBudget for PgBudget {
    fn reserve(&self, tokens: u64) -> Duration {
        let tokens = tokens as f64;
        blocking(|| match self.sharing {
            Sharing::Divide => self.reserve_divided(tokens),
            Sharing::None => Duration::ZERO,
            Sharing::Bucket => self.reserve_in_database(tokens).unwrap_or_else(|e| {
                // The database is away: no pacing until it is back (the server's 429s, if
                // any, still pause everyone).
                tracing::warn!(budget = %self.name, "shared rate budget: {e}");
                Duration::ZERO
            }),
        })
    }
}

impl Drop for PgBudget {
    fn drop(&mut self) {
        close(&self.client);
    }
}

/// A connection with its prepared statements, counting every round trip: a statement the
/// connection has not prepared yet costs one more (Parse/Describe), once; then each execution
/// is one, as are BEGIN and COMMIT.
struct Conn {
    client: Client,
    cache: HashMap<&'static str, Statement>,
    trips: Arc<Trips>,
}

type Params<'a> = &'a [&'a (dyn postgres::types::ToSql + Sync)];

impl Conn {
    fn new(client: Client, trips: Arc<Trips>) -> Self {
        Self {
            client,
            cache: HashMap::new(),
            trips,
        }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        self.trips.add(1);
        let s = self.client.prepare(sql)?;
        self.cache.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.trips.add(1);
        self.client.execute(&st, params)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.trips.add(1);
        self.client.query(&st, params)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, postgres::Error> {
        let st = self.statement(sql)?;
        self.trips.add(1);
        self.client.query_one(&st, params)
    }

    /// Runs `f` in a transaction (BEGIN and COMMIT a round trip each), its statements
    /// prepared first.
    fn transaction<T>(
        &mut self,
        sqls: &[&'static str],
        f: impl FnOnce(
            &mut postgres::Transaction<'_>,
            &[Statement],
            &Trips,
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let statements = sqls
            .iter()
            .map(|sql| self.statement(sql))
            .collect::<Result<Vec<_>, _>>()?;
        self.trips.add(2);
        let mut tx = self.client.transaction()?;
        let out = f(&mut tx, &statements, &self.trips)?;
        tx.commit()?;
        Ok(out)
    }
}

/// Runs `f` on the connection in `slot` (off the async workers), its errors named by `shown`.
fn on<T: Send>(
    slot: &Mutex<Option<Conn>>,
    shown: &str,
    f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send,
) -> Result<T, StoreError> {
    let mut guard = lock(slot);
    let Some(conn) = guard.as_mut() else {
        return Err(StoreError::NotALedger {
            path: shown.into(),
            why: "closed".into(),
        });
    };
    blocking(|| f(conn)).map_err(pg_error(shown))
}

/// Closes the connection in `slot`: that blocks on the client's own runtime too.
fn close(slot: &Mutex<Option<Conn>>) {
    if let Some(conn) = lock(slot).take() {
        blocking(move || drop(conn));
    }
}

/// Maps PostgreSQL errors on the store shown as `shown`.
fn pg_error(shown: &str) -> impl Fn(postgres::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Postgres {
        store: shown.to_owned(),
        source,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs blocking database work from anywhere: inside a multi-threaded tokio runtime through
/// `block_in_place` (the synchronous client runs its own runtime, which may not be entered
/// from an async worker), on a scoped thread under a current-thread runtime, else directly.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
        Err(_) => f(),
    }
}

/// TLS for the connection, as libpq does it: with `PGSSLROOTCERT` set, the server's
/// certificate must chain to it (libpq's `verify-ca`/`verify-full`, here always with the host
/// name checked); without, the connection is encrypted but the certificate is not checked
/// (libpq's `prefer`/`require`, the defaults every PostgreSQL client shares, which is what a
/// server with Debian's self-signed certificate or a cloud database's private CA needs).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let Some(path) = std::env::var_os("PGSSLROOTCERT") else {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth();
        return Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config));
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let pem = std::fs::read(&path).map_err(|e| format!("reading PGSSLROOTCERT `{shown}`: {e}"))?;
    let config = pagemill_client::transport::tls_client_config(vec![(
        format!("PGSSLROOTCERT `{shown}`"),
        pem,
    )])?;
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Accepts the server's certificate unchecked (signatures over the handshake still checked):
/// libpq's `sslmode=require`.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

enum Migrate {
    Pg(postgres::Error),
    Newer(i32),
}

impl From<postgres::Error> for Migrate {
    fn from(e: postgres::Error) -> Self {
        Self::Pg(e)
    }
}

/// Applies the migrations not applied yet, in one transaction under an advisory lock (in the
/// schema the connection works in: each schema is a ledger of its own).
/// Returns the round trips it took: BEGIN, the lock (Parse, then Bind/Execute), the table, the
/// versions read (two), each migration applied (three), COMMIT.
fn migrate(client: &mut Client) -> Result<u64, Migrate> {
    let mut trips = 7;
    let mut tx = client.transaction()?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))",
        &[&MIGRATION_LOCK],
    )?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS pagemill_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM pagemill_migrations", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(&newer) = applied.iter().find(|&&v| v > known) {
        return Err(Migrate::Newer(newer));
    }
    for (version, name, sql) in MIGRATIONS {
        if !applied.contains(version) {
            trips += 3;
            tx.batch_execute(sql)?;
            tx.execute(
                "INSERT INTO pagemill_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )?;
        }
    }
    tx.commit()?;
    Ok(trips)
}

/// The thread that renews this run's leases and marks it alive, on its own connection, until
/// dropped.
struct Heartbeat {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        config: Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        run_id: String,
        lease: Duration,
        trips: Arc<Trips>,
    ) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("pagemill-heartbeat".into())
            .spawn(move || {
                let every = lease / 3;
                let secs = lease.as_secs_f64();
                let mut client: Option<Conn> = None;
                loop {
                    {
                        let (m, cv) = &*flag;
                        let stopped = lock(m);
                        let (stopped, _) = cv
                            .wait_timeout_while(stopped, every, |s| !*s)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if *stopped {
                            return;
                        }
                    }
                    if client.is_none() {
                        client = config
                            .connect(tls.clone())
                            .inspect_err(|e| tracing::warn!("heartbeat: connecting: {e}"))
                            .ok()
                            .map(|c| Conn::new(c, Arc::clone(&trips)));
                    }
                    let Some(c) = client.as_mut() else { continue };
                    let beat = c
                        .execute(
                            "UPDATE units SET lease_until = now() + make_interval(secs => $2)
                             WHERE status = 'leased' AND lease_owner = $1",
                            &[&run_id, &secs],
                        )
                        .and_then(|_| {
                            c.execute(
                                "UPDATE runs SET heartbeat_at = now() WHERE id = $1",
                                &[&run_id],
                            )
                        });
                    if let Err(e) = beat {
                        tracing::warn!("heartbeat: {e}");
                        client = None;
                    }
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *lock(m) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A count or size as the database stores it.
fn big(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn count(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

impl Store for PgLedger {
    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn shared(&self) -> bool {
        true
    }

    fn rate_budget(
        &self,
        name: &str,
        limits: &pagemill_client::endpoint::Limits,
    ) -> Option<Arc<dyn pagemill_client::limits::SharedBudget>> {
        if self.sharing == Sharing::None
            || (limits.requests_per_minute.is_none() && limits.tokens_per_minute.is_none())
        {
            return None;
        }
        Some(Arc::new(PgBudget::new(
            self.config.clone(),
            self.tls.clone(),
            name.to_owned(),
            limits.requests_per_minute,
            limits.tokens_per_minute,
            self.sharing,
            self.lease,
            Arc::clone(&self.trips),
        )))
    }

    /// Documents with units pending, leased, or dead-lettered by their endpoint (the plan of a
    /// run over them takes those again).
    fn documents_to_do(&self) -> Result<Vec<crate::ingest::Document>, StoreError> {
        let bodies: Vec<(String, Option<String>)> = self.with(|c| {
            let rows = c.query(
                "SELECT d.id, d.body FROM documents d
                 WHERE EXISTS (SELECT 1 FROM units u WHERE u.document_id = d.id
                     AND (u.status IN ('pending', 'leased') OR (u.status = 'failed' AND u.retry)))
                 ORDER BY d.added_at, d.id",
                &[],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        let mut docs = Vec::with_capacity(bodies.len());
        for (id, body) in bodies {
            match body
                .as_deref()
                .map(serde_json::from_str::<crate::ingest::Document>)
            {
                Some(Ok(doc)) => docs.push(doc),
                Some(Err(e)) => {
                    tracing::warn!(document = %id, "its stored form does not read ({e}): skipped; a run with its file plans it again");
                }
                None => tracing::warn!(document = %id, "recorded without its body: skipped"),
            }
        }
        Ok(docs)
    }

    fn record_document(
        &mut self,
        doc: &crate::ingest::Document,
        kind: &str,
    ) -> Result<(), StoreError> {
        let body = serde_json::to_string(doc).ok();
        let path = doc.path.to_string_lossy().into_owned();
        let quality = |q| {
            serde_json::to_value(q)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let numbers: Vec<i32> = doc.pages.iter().map(|p| p.number as i32).collect();
        let qualities: Vec<String> = doc.pages.iter().map(|p| quality(p.quality)).collect();
        let chars: Vec<i64> = doc.pages.iter().map(|p| big(p.chars as u64)).collect();
        let failures: Vec<Option<&str>> = doc.pages.iter().map(|p| p.failure.as_deref()).collect();
        let texts: Vec<&str> = doc.pages.iter().map(|p| p.text.as_str()).collect();
        let ids: Vec<i32> = doc.sections.iter().map(|s| s.id as i32).collect();
        let titles: Vec<&str> = doc.sections.iter().map(|s| s.title.as_str()).collect();
        let levels: Vec<i32> = doc.sections.iter().map(|s| i32::from(s.level)).collect();
        let firsts: Vec<i32> = doc.sections.iter().map(|s| s.pages.0 as i32).collect();
        let lasts: Vec<i32> = doc.sections.iter().map(|s| s.pages.1 as i32).collect();
        self.with(|c| {
            // A document another run recorded is left as it is, in one round trip.
            let known = c.query(
                "SELECT 1 FROM documents WHERE id = $1",
                &[&doc.id],
            )?;
            if !known.is_empty() {
                return Ok(());
            }
            c.transaction(
                &[
                    "INSERT INTO documents (id, path, kind, pages, added_at, body) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO NOTHING",
                    "INSERT INTO pages (document_id, number, quality, chars, failure, text)
                     SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::int8[], $5::text[], $6::text[])
                     ON CONFLICT DO NOTHING",
                    "INSERT INTO sections (document_id, id, title, level, first_page, last_page)
                     SELECT $1, * FROM UNNEST($2::int4[], $3::text[], $4::int4[], $5::int4[], $6::int4[])
                     ON CONFLICT DO NOTHING",
                ],
                |tx, st, trips| {
                    trips.add(3);
                    tx.execute(
                        &st[0],
                        &[&doc.id, &path, &kind, &(doc.pages.len() as i32), &unix_now(), &body],
                    )?;
                    tx.execute(&st[1], &[&doc.id, &numbers, &qualities, &chars, &failures, &texts])?;
                    tx.execute(&st[2], &[&doc.id, &ids, &titles, &levels, &firsts, &lasts])?;
                    Ok(())
                },
            )
        })
    }

    /// Plans units as [`super::Ledger`] does, in one transaction of set statements. Units
    /// leased (by any worker) are still to do: the runner's lease takes them when their lease
    /// lapses, and waits for them while a live worker holds them.
    fn plan(&mut self, units: &[UnitSpec], replan: Replan) -> Result<Vec<String>, StoreError> {
        let keys: Vec<String> = units.iter().map(UnitSpec::key).collect();
        let col = |f: fn(&UnitSpec) -> &String| -> Vec<&str> {
            units.iter().map(|u| f(u).as_str()).collect()
        };
        let (docs, tasks, targets, versions, models) = (
            col(|u| &u.document_id),
            col(|u| &u.task),
            col(|u| &u.target),
            col(|u| &u.prompt_version),
            col(|u| &u.model),
        );
        let todo: std::collections::HashSet<String> = self.with(|c| {
            c.transaction(
                &[
                    "INSERT INTO units (key, document_id, task, target, prompt_version, model, status, updated_at)
                     SELECT k, d, t, g, v, m, 'pending', $7
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS x(k, d, t, g, v, m)
                     ON CONFLICT (key) DO NOTHING",
                    "DELETE FROM results WHERE unit_key = ANY($1)",
                    "UPDATE units SET status = 'pending', attempts = 0, reason = NULL, retry = false,
                     lease_owner = NULL, lease_until = NULL, updated_at = $2 WHERE key = ANY($1)",
                    "UPDATE units SET status = 'pending', attempts = 0, reason = NULL, retry = false, updated_at = $2
                     WHERE key = ANY($1) AND status = 'failed' AND (retry OR $3)",
                    "SELECT key FROM units WHERE key = ANY($1) AND status IN ('pending', 'leased')",
                ],
                |tx, st, trips| {
                    if replan != Replan::Known {
                        trips.add(1);
                        tx.execute(
                            &st[0],
                            &[&keys, &docs, &tasks, &targets, &versions, &models, &unix_now()],
                        )?;
                    }
                    if replan == Replan::Force {
                        trips.add(2);
                        tx.execute(&st[1], &[&keys])?;
                        tx.execute(&st[2], &[&keys, &unix_now()])?;
                    } else {
                        trips.add(1);
                        tx.execute(
                            &st[3],
                            &[&keys, &unix_now(), &(replan == Replan::RetryFailed)],
                        )?;
                    }
                    trips.add(1);
                    let rows = tx.query(&st[4], &[&keys])?;
                    Ok(rows.iter().map(|r| r.get(0)).collect())
                },
            )
        })?;
        Ok(keys.into_iter().filter(|k| todo.contains(k)).collect())
    }

    /// Leases what of `keys` is free: pending, leased by this run, or leased by a run whose
    /// lease lapsed. Units another worker holds or finished are left out of what it returns.
    fn lease(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let (me, secs) = (self.run_id.clone(), self.lease.as_secs_f64());
        let wanted = keys.to_vec();
        let got: std::collections::HashSet<String> = self.with(move |c| {
            let rows = c.query(
                "WITH free AS (
                     SELECT key FROM units
                     WHERE key = ANY($1) AND (status = 'pending'
                         OR (status = 'leased' AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < now())))
                     FOR UPDATE SKIP LOCKED)
                 UPDATE units u SET status = 'leased', attempts = u.attempts + 1, lease_owner = $2,
                     lease_until = now() + make_interval(secs => $3), updated_at = $4
                 FROM free WHERE u.key = free.key RETURNING u.key",
                &[&wanted, &me, &secs, &unix_now()],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })?;
        Ok(keys.iter().filter(|k| got.contains(*k)).cloned().collect())
    }

    fn release(&self, keys: &[String]) -> Result<(), StoreError> {
        let (me, keys) = (self.run_id.clone(), keys.to_vec());
        self.with(move |c| {
            c.execute(
                "UPDATE units SET status = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = $3
                 WHERE key = ANY($1) AND status = 'leased' AND lease_owner = $2",
                &[&keys, &me, &unix_now()],
            )
        })
        .map(|_| ())
    }

    fn request_started(
        &self,
        endpoint: &str,
        task: &str,
        prompt_version: &str,
        prefix_tokens: u64,
        unit_keys: &[String],
    ) -> Result<i64, StoreError> {
        let keys = serde_json::to_string(unit_keys).unwrap_or_else(|_| "[]".into());
        let me = self.run_id.clone();
        self.with(move |c| {
            c.query_one(
                "INSERT INTO requests (run_id, endpoint, task, prompt_version, prefix_tokens, unit_keys, status, started_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'sent', $7) RETURNING id",
                &[&me, &endpoint, &task, &prompt_version, &big(prefix_tokens), &keys, &unix_now()],
            )
            .map(|r| r.get(0))
        })
    }

    fn request_finished(&self, id: i64, end: &RequestEnd) -> Result<(), StoreError> {
        let n = |v: Option<u64>| v.map(big);
        let retried = retried_json(end);
        self.with(move |c| {
            c.execute(
                "UPDATE requests SET status = $2, error_class = $3, error = $4, prompt_tokens = $5, cached_tokens = $6,
                 completion_tokens = $7, cost_pico = $8, timeline = $9, finished_at = $10, retries = $11,
                 retried_errors = $12 WHERE id = $1",
                &[
                    &id,
                    &if end.ok { "ok" } else { "failed" },
                    &end.error_class,
                    &end.error,
                    &n(end.prompt_tokens),
                    &n(end.cached_tokens),
                    &n(end.completion_tokens),
                    &n(end.cost_pico),
                    &end.timeline,
                    &unix_now(),
                    &(end.retries.min(i32::MAX as u32) as i32),
                    &retried,
                ],
            )
        })
        .map(|_| ())
    }

    /// Commits a unit's result and marks it done, in one transaction. The first result
    /// stands: a worker whose lease lapsed, finishing after another, records nothing.
    fn complete(
        &mut self,
        key: &str,
        result: &serde_json::Value,
        request_id: Option<i64>,
    ) -> Result<(), StoreError> {
        let text = result.to_string();
        // One statement, so one round trip and atomic: the result and the unit's state.
        self.with(move |c| {
            c.execute(
                "WITH kept AS (
                     INSERT INTO results (unit_key, result, request_id, created_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (unit_key) DO NOTHING)
                 UPDATE units SET status = 'done', reason = NULL, retry = false, lease_owner = NULL,
                     lease_until = NULL, updated_at = $4 WHERE key = $1",
                &[&key, &text, &request_id, &unix_now()],
            )
            .map(|_| ())
        })
    }

    /// Dead-letters a unit, unless it is done (a late worker's failure does not undo another's
    /// result).
    fn fail(&self, key: &str, reason: &str, retryable: bool) -> Result<(), StoreError> {
        self.with(move |c| {
            c.execute(
                "UPDATE units SET status = 'failed', reason = $2, retry = $3, lease_owner = NULL,
                 lease_until = NULL, updated_at = $4 WHERE key = $1 AND status <> 'done'",
                &[&key, &reason, &retryable, &unix_now()],
            )
        })
        .map(|_| ())
    }

    fn units(&self, keys: &[String]) -> Result<Vec<UnitRow>, StoreError> {
        let list = keys.to_vec();
        let rows: std::collections::HashMap<String, UnitRow> = self.with(move |c| {
            let rows = c.query(
                "SELECT u.key, u.status, u.attempts, u.reason, r.result, r.request_id
                 FROM units u LEFT JOIN results r ON r.unit_key = u.key WHERE u.key = ANY($1)",
                &[&list],
            )?;
            Ok(rows
                .iter()
                .map(|r| {
                    let key: String = r.get(0);
                    let row = UnitRow {
                        key: key.clone(),
                        status: UnitStatus::parse(r.get(1)),
                        attempts: r.get::<_, i32>(2).max(0) as u32,
                        reason: r.get(3),
                        result: r
                            .get::<_, Option<String>>(4)
                            .and_then(|s| serde_json::from_str(&s).ok()),
                        request_id: r.get(5),
                    };
                    (key, row)
                })
                .collect())
        })?;
        Ok(keys.iter().filter_map(|k| rows.get(k).cloned()).collect())
    }

    fn requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        self.with(|c| read_requests(c, None))
    }

    fn recent_requests(&self, n: usize) -> Result<Vec<RequestRow>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.with(move |c| read_requests(c, Some(n)))
    }

    fn spent_since(&self, since: i64) -> Result<(u64, u64), StoreError> {
        self.with(move |c| {
            let r = c.query_one(
                "SELECT COALESCE(SUM(cost_pico), 0)::BIGINT,
                        COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0)::BIGINT
                 FROM requests WHERE started_at >= $1",
                &[&since],
            )?;
            Ok((r.get::<_, i64>(0).max(0) as u64, r.get::<_, i64>(1).max(0) as u64))
        })
    }

    fn run_summaries_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let me = self.run_id.clone();
        self.with(move |c| {
            let rows = c.query(
                "SELECT summary FROM runs WHERE started_at >= $1 AND id <> $2 AND summary IS NOT NULL
                 ORDER BY started_at, id",
                &[&since, &me],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    fn run_started(&self, endpoints: &[String]) -> Result<(), StoreError> {
        let me = self.run_id.clone();
        let endpoints = serde_json::to_string(endpoints).unwrap_or_default();
        self.with(move |c| {
            c.execute(
                "INSERT INTO runs (id, started_at, endpoints) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET started_at = EXCLUDED.started_at, endpoints = EXCLUDED.endpoints",
                &[&me, &unix_now(), &endpoints],
            )
        })
        .map(|_| ())
    }

    fn run_finished(&self, summary: &str) -> Result<(), StoreError> {
        let me = self.run_id.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE runs SET finished_at = $2, summary = $3 WHERE id = $1",
                &[&me, &unix_now(), &summary],
            )
        })
        .map(|_| ())
    }
}

/// Every request recorded (the latest `latest`, when given), oldest first.
fn read_requests(c: &mut Conn, latest: Option<i64>) -> Result<Vec<RequestRow>, postgres::Error> {
    let rows = c.query(
        "SELECT * FROM (
             SELECT id, run_id, endpoint, task, prompt_version, unit_keys, status, error_class,
                    error, prompt_tokens, cached_tokens, completion_tokens, cost_pico, timeline,
                    retries, started_at, retried_errors, prefix_tokens, finished_at
             FROM requests ORDER BY id DESC LIMIT $1) latest
         ORDER BY id",
        &[&latest],
    )?;
    Ok(rows
        .iter()
        .map(|r| {
            let (retried_errors, retried_messages) =
                retried_parse(r.get::<_, Option<String>>(16).as_deref());
            let status: String = r.get(6);
            RequestRow {
                id: r.get(0),
                run_id: r.get(1),
                endpoint: r.get(2),
                task: r.get(3),
                prompt_version: r.get(4),
                prefix_tokens: count(r.get(17)),
                unit_keys: serde_json::from_str(r.get(5)).unwrap_or_default(),
                end: RequestEnd {
                    ok: status == "ok",
                    error_class: r.get(7),
                    error: r.get(8),
                    prompt_tokens: count(r.get(9)),
                    cached_tokens: count(r.get(10)),
                    completion_tokens: count(r.get(11)),
                    cost_pico: count(r.get(12)),
                    timeline: r.get(13),
                    retries: r.get::<_, i32>(14).max(0) as u32,
                    retried_errors,
                    retried_messages,
                },
                status,
                started_at: r.get(15),
                finished_at: r.get(18),
            }
        })
        .collect())
}

/// A PostgreSQL ledger opened for reading (`report`): no lease, no heartbeat, no migration.
pub struct PgView {
    /// `None` only while dropping.
    conn: Mutex<Option<Conn>>,
    shown: String,
}

impl std::fmt::Debug for PgView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgView")
            .field("store", &self.shown)
            .finish_non_exhaustive()
    }
}

impl PgView {
    /// Opens the ledger at `url` for reading; refuses a database without pagemill's tables.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let err = pg_error(&shown);
        let config: Config = url.parse().map_err(err)?;
        let tls = tls().map_err(|why| StoreError::NotALedger {
            path: shown.clone().into(),
            why,
        })?;
        let client = blocking(|| config.connect(tls)).map_err(err)?;
        let mut conn = Conn::new(client, Arc::new(Trips::default()));
        let found: Option<String> = blocking(|| {
            conn.query_one("SELECT to_regclass('pagemill_migrations')::text", &[])
                .map(|r| r.get(0))
        })
        .map_err(err)?;
        if found.is_none() {
            blocking(move || drop(conn));
            return Err(StoreError::NotALedger {
                path: shown.into(),
                why: "a database (and schema) without pagemill's tables".into(),
            });
        }
        Ok(Self {
            conn: Mutex::new(Some(conn)),
            shown,
        })
    }

    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        on(&self.conn, &self.shown, f)
    }

    fn unit_rows(&self, document_id: Option<&str>) -> Result<Vec<UnitBrief>, StoreError> {
        let with_results = document_id.is_some();
        self.with(|c| {
            let rows = c.query(
                "SELECT u.key, u.document_id, u.task, u.target, u.prompt_version, u.model, u.status,
                        u.reason, u.updated_at, r.request_id, CASE WHEN $2 THEN r.result END
                 FROM units u LEFT JOIN results r ON r.unit_key = u.key
                 WHERE $1::text IS NULL OR u.document_id = $1 ORDER BY u.updated_at, u.key",
                &[&document_id, &with_results],
            )?;
            Ok(rows
                .iter()
                .map(|r| UnitBrief {
                    key: r.get(0),
                    document_id: r.get(1),
                    task: r.get(2),
                    target: r.get(3),
                    prompt_version: r.get(4),
                    model: r.get(5),
                    status: UnitStatus::parse(r.get(6)),
                    reason: r.get(7),
                    updated_at: r.get(8),
                    request_id: r.get(9),
                    result: r
                        .get::<_, Option<String>>(10)
                        .and_then(|s| serde_json::from_str(&s).ok()),
                })
                .collect())
        })
    }
}

impl Drop for PgView {
    fn drop(&mut self) {
        close(&self.conn);
    }
}

impl History for PgView {
    fn name(&self) -> String {
        self.shown.clone()
    }

    fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, started_at, finished_at, endpoints, summary FROM runs ORDER BY started_at, id",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| RunRow {
                    id: r.get(0),
                    started_at: r.get(1),
                    finished_at: r.get(2),
                    endpoints: serde_json::from_str(r.get(3)).unwrap_or_default(),
                    summary: r
                        .get::<_, Option<String>>(4)
                        .and_then(|s| serde_json::from_str(&s).ok()),
                })
                .collect())
        })
    }

    fn requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        self.with(|c| read_requests(c, None))
    }

    fn each_request(&self, f: &mut dyn FnMut(RequestRow)) -> Result<(), StoreError> {
        for r in self.requests()? {
            f(r);
        }
        Ok(())
    }

    fn documents(&self) -> Result<Vec<DocumentRow>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, path, kind, pages, added_at FROM documents ORDER BY added_at, path",
                &[],
            )?;
            Ok(rows
                .iter()
                .map(|r| DocumentRow {
                    id: r.get(0),
                    path: r.get(1),
                    kind: r.get(2),
                    pages: r.get::<_, i32>(3).max(0) as u32,
                    added_at: r.get(4),
                })
                .collect())
        })
    }

    fn units(&self) -> Result<Vec<UnitBrief>, StoreError> {
        self.unit_rows(None)
    }

    fn units_of(&self, document_id: &str) -> Result<Vec<UnitBrief>, StoreError> {
        self.unit_rows(Some(document_id))
    }

    fn pages(&self, document_id: &str) -> Result<Vec<PageRow>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT number, quality, failure, text FROM pages WHERE document_id = $1 ORDER BY number",
                &[&document_id],
            )?;
            Ok(rows
                .iter()
                .map(|r| PageRow {
                    number: r.get::<_, i32>(0).max(0) as u32,
                    quality: r.get(1),
                    failure: r.get(2),
                    text: r.get(3),
                })
                .collect())
        })
    }

    fn sections(&self, document_id: &str) -> Result<Vec<SectionRow>, StoreError> {
        self.with(|c| {
            let rows = c.query(
                "SELECT id, title, level, first_page, last_page FROM sections WHERE document_id = $1 ORDER BY id",
                &[&document_id],
            )?;
            let int = |v: i32| v.max(0) as u32;
            Ok(rows
                .iter()
                .map(|r| SectionRow {
                    id: int(r.get(0)),
                    title: r.get(1),
                    level: r.get::<_, i32>(2).clamp(0, 255) as u8,
                    pages: (int(r.get(3)), int(r.get(4))),
                })
                .collect())
        })
    }
}
