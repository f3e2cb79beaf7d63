//! The ledger: one SQLite file (WAL) that makes every run resumable without paying twice.
//!
//! - A **unit** is one piece of work (a task on a target: entities of a page, summary of a
//!   section, metadata of a document). Its key hashes everything that decides its answer —
//!   content, task, prompt version, model, schema — so a rerun finds finished work by key.
//! - Its lifecycle is explicit: `pending → leased → done | failed`. A unit is `done` only in
//!   the same transaction that commits its validated result, so a run killed at any moment
//!   loses nothing finished; a `leased` unit whose run died goes back to `pending` on open.
//! - Every **request** is written before it is sent and updated when it ends (status, error
//!   class, tokens, cost, timeline), so what a killed run paid for is on record.
//! - One run at a time: the store is locked (an OS file lock next to it); a second run is
//!   refused with a message naming the lock, and the lock dies with its process.
//!
//! The lifecycle columns are the ones a shared PostgreSQL queue will need (`FOR UPDATE SKIP
//! LOCKED`, leases that expire), so moving there needs no redesign.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

pub mod postgres;
#[cfg(test)]
mod suite;
mod view;
pub use postgres::{PgLedger, PgView, Sharing};
pub use view::{DocumentRow, History, LedgerView, PageRow, RunRow, SectionRow, UnitBrief};

/// Schema version written to `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY, path TEXT NOT NULL, kind TEXT NOT NULL, pages INTEGER NOT NULL,
    added_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pages (
    document_id TEXT NOT NULL REFERENCES documents(id), number INTEGER NOT NULL, quality TEXT NOT NULL,
    chars INTEGER NOT NULL, failure TEXT, text TEXT NOT NULL, PRIMARY KEY (document_id, number)
);
CREATE TABLE IF NOT EXISTS sections (
    document_id TEXT NOT NULL REFERENCES documents(id), id INTEGER NOT NULL, title TEXT NOT NULL,
    level INTEGER NOT NULL, first_page INTEGER NOT NULL, last_page INTEGER NOT NULL,
    PRIMARY KEY (document_id, id)
);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, document_id TEXT NOT NULL REFERENCES documents(id), task TEXT NOT NULL,
    target TEXT NOT NULL, prompt_version TEXT NOT NULL, model TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'leased', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0, reason TEXT, updated_at INTEGER NOT NULL,
    retry INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS units_status ON units(status, task);
CREATE TABLE IF NOT EXISTS results (
    unit_key TEXT PRIMARY KEY REFERENCES units(key), result TEXT NOT NULL, request_id INTEGER,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, endpoint TEXT NOT NULL,
    task TEXT NOT NULL, prompt_version TEXT NOT NULL, prefix_tokens INTEGER, unit_keys TEXT NOT NULL, retries INTEGER NOT NULL DEFAULT 0, retried_errors TEXT, status TEXT NOT NULL CHECK (status IN ('sent', 'ok', 'failed', 'interrupted')),
    error_class TEXT, error TEXT, prompt_tokens INTEGER, cached_tokens INTEGER, completion_tokens INTEGER,
    cost_pico INTEGER, timeline TEXT, started_at INTEGER NOT NULL, finished_at INTEGER
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, finished_at INTEGER, endpoints TEXT NOT NULL,
    summary TEXT
);
";

/// What went wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("ledger `{path}`: {source}")]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// PostgreSQL failed.
    #[error("ledger `{store}`: {source}")]
    Postgres {
        /// The store's URL, its password hidden.
        store: String,
        /// Why.
        source: ::postgres::Error,
    },
    /// Another run holds the store.
    #[error(
        "ledger `{path}` is in use by another pagemill run (lock `{lock}`); wait for it to finish or use another --store"
    )]
    Busy {
        /// The ledger file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file could not be opened.
    #[error("cannot lock `{path}`: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a pagemill ledger (missing, or another kind of file).
    #[error("`{path}` is not a pagemill ledger: {why}")]
    NotALedger {
        /// The file.
        path: PathBuf,
        /// Why not.
        why: String,
    },
    /// Written by a newer pagemill.
    #[error(
        "ledger `{path}` has schema version {found}, newer than this pagemill's {SCHEMA_VERSION}"
    )]
    Newer {
        /// The ledger file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// A PostgreSQL ledger migrated by a newer pagemill.
    #[error(
        "ledger `{store}` has schema version {found}, newer than this pagemill's {known}: upgrade pagemill"
    )]
    NewerSchema {
        /// The store's URL, its password hidden.
        store: String,
        /// Its version.
        found: i64,
        /// The newest this pagemill knows.
        known: i64,
    },
}

/// Lifecycle of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitStatus {
    /// Not done yet.
    Pending,
    /// Taken by a run that is working on it.
    Leased,
    /// Its validated result is committed.
    Done,
    /// Given up on, with a reason (the dead-letter list).
    Failed,
}

impl UnitStatus {
    fn parse(s: &str) -> Self {
        match s {
            "leased" => UnitStatus::Leased,
            "done" => UnitStatus::Done,
            "failed" => UnitStatus::Failed,
            _ => UnitStatus::Pending,
        }
    }
}

/// What decides a unit's answer; its key is their hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitSpec {
    /// The document.
    pub document_id: String,
    /// `entities`, `summary`, `metadata`, …
    pub task: String,
    /// What within the document: `page:3`, `section:12`, `document`.
    pub target: String,
    /// Hash of the exact content sent (page or section text).
    pub content_hash: String,
    /// The prompt template's version.
    pub prompt_version: String,
    /// The model.
    pub model: String,
    /// Hash of the answer's JSON Schema.
    pub schema_hash: String,
    /// A configuration that must not share results with others (`pagemill eval` runs each
    /// endpoint × pack × prompt profile × format apart); empty for an ordinary run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl UnitSpec {
    /// The unit's key: BLAKE3 of every field, length-prefixed so no two specs collide (the
    /// variant only when set, so ordinary runs keep the keys they always had).
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        let variant = (!self.variant.is_empty()).then_some(&self.variant);
        for part in [
            &self.document_id,
            &self.task,
            &self.target,
            &self.content_hash,
            &self.prompt_version,
            &self.model,
            &self.schema_hash,
        ]
        .into_iter()
        .chain(variant)
        {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }
}

/// A finished or failed request, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestEnd {
    /// Succeeded.
    pub ok: bool,
    /// Error class, when failed.
    pub error_class: Option<String>,
    /// Error message (already redacted by the client).
    pub error: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: Option<u64>,
    /// Cached prompt tokens (`None`: unreported).
    pub cached_tokens: Option<u64>,
    /// Completion tokens.
    pub completion_tokens: Option<u64>,
    /// Cost in picodollars (`None`: unknown).
    pub cost_pico: Option<u64>,
    /// The request's timeline, as JSON.
    pub timeline: Option<String>,
    /// Attempts the client retried before this outcome.
    pub retries: u32,
    /// The error class of each retried attempt.
    #[serde(default)]
    pub retried_errors: Vec<String>,
    /// What each retried attempt's error said (already redacted by the client), so transient
    /// failures can be diagnosed, not only counted.
    #[serde(default)]
    pub retried_messages: Vec<String>,
}

/// The `retried_errors` column: `[{"class", "message"}]` (ledgers before held classes alone).
fn retried_json(end: &RequestEnd) -> Option<String> {
    let list: Vec<serde_json::Value> = end
        .retried_errors
        .iter()
        .enumerate()
        .map(|(i, class)| {
            serde_json::json!({"class": class, "message": end.retried_messages.get(i)})
        })
        .collect();
    serde_json::to_string(&list).ok()
}

/// Reads the `retried_errors` column, either shape: (classes, messages).
pub(crate) fn retried_parse(text: Option<&str>) -> (Vec<String>, Vec<String>) {
    let list: Vec<serde_json::Value> = text
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let mut classes = Vec::with_capacity(list.len());
    let mut messages = Vec::new();
    for v in list {
        match v {
            serde_json::Value::String(c) => classes.push(c),
            v => {
                classes.push(v["class"].as_str().unwrap_or("unknown").to_owned());
                if let Some(m) = v["message"].as_str() {
                    messages.push(m.to_owned());
                }
            }
        }
    }
    (classes, messages)
}

/// A request as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRow {
    /// Its id (ascending in the order requests were made).
    pub id: i64,
    /// The run that made it.
    pub run_id: String,
    /// Endpoint name.
    pub endpoint: String,
    /// Task name.
    pub task: String,
    /// Prompt version.
    pub prompt_version: String,
    /// Tokens of the byte-stable system prefix it began with.
    pub prefix_tokens: Option<u64>,
    /// Units it carried.
    pub unit_keys: Vec<String>,
    /// `sent`, `ok`, `failed` or `interrupted`.
    pub status: String,
    /// How it ended otherwise.
    #[serde(flatten)]
    pub end: RequestEnd,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds, when it ended.
    #[serde(default)]
    pub finished_at: Option<i64>,
}

/// A unit as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRow {
    /// Its key.
    pub key: String,
    /// Status.
    pub status: UnitStatus,
    /// Attempts (leases) so far.
    pub attempts: u32,
    /// Why it failed, if it did.
    pub reason: Option<String>,
    /// Its result, when done.
    pub result: Option<serde_json::Value>,
    /// The request that produced the result.
    pub request_id: Option<i64>,
}

/// Counts by status, and what was spent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Units pending.
    pub pending: u64,
    /// Units leased.
    pub leased: u64,
    /// Units done.
    pub done: u64,
    /// Units failed.
    pub failed: u64,
    /// Requests recorded.
    pub requests: u64,
    /// Requests a killed run left unfinished.
    pub interrupted_requests: u64,
    /// Picodollars spent (known costs).
    pub cost_pico: u64,
}

/// Where a run keeps its work: the documents, the units (`pending → leased → done | failed`)
/// with their results, every request (recorded before it is sent), and the runs. The runner
/// speaks only this; [`Ledger`] is the SQLite implementation, and a PostgreSQL one shared by
/// many workers is the next, which is why:
/// - a lease has a time to live: a worker that dies holding units loses them when it expires,
///   and `lease` returns the keys it got (another worker may hold the rest);
/// - committing a result is idempotent: the first result stands (a forced re-run's plan drops
///   the old one), and marks the unit done in the same transaction; a failure recorded after
///   it changes nothing.
pub trait Store: Send {
    /// This run's id (in every request it records).
    fn run_id(&self) -> &str;
    /// Whether other runs may work in this store at the same time (units they lease are left
    /// out of what [`Store::lease`] returns).
    fn shared(&self) -> bool {
        false
    }
    /// The endpoint's rate limits as every run sharing this store paces by them, named `name`
    /// (the provider account's); `None`: this run's own limiter paces alone.
    fn rate_budget(
        &self,
        name: &str,
        limits: &pagemill_client::endpoint::Limits,
    ) -> Option<std::sync::Arc<dyn pagemill_client::limits::SharedBudget>> {
        let _ = (name, limits);
        None
    }
    /// The documents with units still to do, whole, for a worker that has not read their
    /// files (none where the store does not keep them: SQLite keeps pages and sections only).
    fn documents_to_do(&self) -> Result<Vec<crate::ingest::Document>, StoreError> {
        Ok(Vec::new())
    }
    /// Records a document with its pages and sections, once.
    fn record_document(
        &mut self,
        doc: &crate::ingest::Document,
        kind: &str,
    ) -> Result<(), StoreError>;
    /// Adds the units not known yet as `pending` and returns the keys still to do: the pending
    /// ones, the failed ones `replan` sends back, every one with [`Replan::Force`].
    fn plan(&mut self, units: &[UnitSpec], replan: Replan) -> Result<Vec<String>, StoreError>;
    /// Takes `pending` units (and this run's own leased ones) for work, counting an attempt;
    /// returns the keys leased. How long a lease lasts is the store's (SQLite: the run's life,
    /// its file lock; PostgreSQL: `--lease`, renewed by a heartbeat).
    fn lease(&self, keys: &[String]) -> Result<Vec<String>, StoreError>;
    /// Gives leased units back (`leased → pending`): a job put back for a budget to free.
    fn release(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Records a request before it is sent; returns its id.
    fn request_started(
        &self,
        endpoint: &str,
        task: &str,
        prompt_version: &str,
        prefix_tokens: u64,
        unit_keys: &[String],
    ) -> Result<i64, StoreError>;
    /// Records how a request ended.
    fn request_finished(&self, id: i64, end: &RequestEnd) -> Result<(), StoreError>;
    /// Commits a unit's result and marks it `done`, atomically and idempotently.
    fn complete(
        &mut self,
        key: &str,
        result: &serde_json::Value,
        request_id: Option<i64>,
    ) -> Result<(), StoreError>;
    /// Gives up on a unit with a reason (the dead-letter list). A `retryable` one failed for
    /// its endpoint's sake (transient errors or throttling outlasted the retries), not its
    /// own: the next run tries it again.
    fn fail(&self, key: &str, reason: &str, retryable: bool) -> Result<(), StoreError>;
    /// The units of `keys`, with status, reason and result.
    fn units(&self, keys: &[String]) -> Result<Vec<UnitRow>, StoreError>;
    /// Every request recorded, oldest first.
    fn requests(&self) -> Result<Vec<RequestRow>, StoreError>;
    /// The latest `n` requests recorded, oldest first (what a run learns answer lengths from:
    /// a long-lived shared ledger need not be read whole).
    fn recent_requests(&self, n: usize) -> Result<Vec<RequestRow>, StoreError> {
        let mut all = self.requests()?;
        let cut = all.len().saturating_sub(n);
        all.drain(..cut);
        Ok(all)
    }
    /// What requests started at or after `since` (Unix seconds) cost, by every run: dollars
    /// (picodollars, where known) and tokens (prompt and completion, where reported).
    fn spent_since(&self, since: i64) -> Result<(u64, u64), StoreError>;
    /// The summaries (JSON) of the other runs that started at or after `since` (Unix seconds)
    /// and finished, oldest first.
    fn run_summaries_since(&self, since: i64) -> Result<Vec<String>, StoreError>;
    /// Records that this run started, on `endpoints` (primary first).
    fn run_started(&self, endpoints: &[String]) -> Result<(), StoreError>;
    /// Records that this run ended, with its summary (JSON).
    fn run_finished(&self, summary: &str) -> Result<(), StoreError>;
}

/// What planning does with units the ledger already knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replan {
    /// Finished work stays finished; of the failed units, those that failed for their
    /// endpoint's sake (retryable) go back to `pending`, the others stay dead letters.
    #[default]
    Resume,
    /// As [`Replan::Resume`], and every failed unit goes back to `pending` too.
    RetryFailed,
    /// Every unit goes back to `pending` and its result is dropped.
    Force,
    /// Units not planned yet are not added: only what the store already holds is to do (a
    /// worker takes the work `run --plan` planned, and nothing its own configuration would
    /// plan differently).
    Known,
}

/// An open ledger, held by one run.
#[derive(Debug)]
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    run_id: String,
    _lock: File,
}

/// Unix seconds now: the clock of every timestamp in the ledger (and of what is compared with
/// them: budget days, the drift window).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Brings a ledger written by an older pagemill up to [`SCHEMA`]: columns added since are
/// added with their defaults (older binaries ignore them, so the version stays).
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has_retry: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('units') WHERE name = 'retry'",
        [],
        |r| r.get(0),
    )?;
    if !has_retry {
        conn.execute(
            "ALTER TABLE units ADD COLUMN retry INTEGER NOT NULL DEFAULT 0",
            [],
        )?;
    }
    Ok(())
}

/// A connection to the ledger file as every run uses it: WAL, normal sync, foreign keys, and
/// a wait of up to 30 s for another connection's write (runs side by side share the file).
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    Ok(conn)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path` for one run, locking it. Units a killed run left
    /// `leased` return to `pending`, and its unfinished requests are marked `interrupted`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock_path = path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Busy {
                    path: path.into(),
                    lock: lock_path,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Lock {
                    path: lock_path,
                    source,
                });
            }
        }
        let sql = sqlite_error(path);
        let conn = connect(path).map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: path.into(),
                found: version,
            });
        }
        conn.execute_batch(SCHEMA).map_err(sql)?;
        migrate(&conn).map_err(sql)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(sql)?;
        // Recover from a run that died: its leases lapse, its open requests are marked.
        conn.execute(
            "UPDATE units SET status = 'pending', updated_at = ?1 WHERE status = 'leased'",
            [unix_now()],
        )
        .map_err(sql)?;
        conn.execute(
            "UPDATE requests SET status = 'interrupted', finished_at = ?1 WHERE status = 'sent'",
            [unix_now()],
        )
        .map_err(sql)?;
        // Unix seconds and the process; a process's later runs (a watcher's passes, tests) add
        // a count, or two in the same second would share an id.
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run_id = match OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
            0 => format!("{}-{}", unix_now(), std::process::id()),
            n => format!("{}-{}.{n}", unix_now(), std::process::id()),
        };
        Ok(Self {
            conn,
            path: path.into(),
            run_id,
            _lock: lock,
        })
    }

    /// Another connection to the same ledger, under the same lock, as a run of its own (its
    /// own run id): for configurations run side by side in one process (`pagemill eval`).
    pub fn share(&self) -> Result<Self, StoreError> {
        let conn = connect(&self.path).map_err(sqlite_error(&self.path))?;
        let lock = self._lock.try_clone().map_err(|source| StoreError::Lock {
            path: self.path.with_extension("lock"),
            source,
        })?;
        static SHARED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = SHARED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self {
            conn,
            path: self.path.clone(),
            run_id: format!("{}-{n}", self.run_id),
            _lock: lock,
        })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_error(&self.path)
    }

    /// Records a document (once; later calls keep the first record).
    pub fn add_document(
        &self,
        id: &str,
        path: &str,
        kind: &str,
        pages: u32,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO documents (id, path, kind, pages, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, path, kind, pages, unix_now()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// A recorded page's text.
    pub fn page_text(&self, document_id: &str, number: u32) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT text FROM pages WHERE document_id = ?1 AND number = ?2",
                params![document_id, number],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())
    }

    /// A unit's status, if known.
    pub fn status(&self, key: &str) -> Result<Option<UnitStatus>, StoreError> {
        let s: Option<String> = self
            .conn
            .query_row("SELECT status FROM units WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.sql())?;
        Ok(s.as_deref().map(UnitStatus::parse))
    }

    /// A unit's committed result, if done.
    pub fn result(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let s: Option<String> = self
            .conn
            .query_row(
                "SELECT result FROM results WHERE unit_key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        Ok(s.and_then(|s| serde_json::from_str(&s).ok()))
    }

    /// Failed units with their reasons.
    pub fn dead_letters(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT key, COALESCE(reason, '') FROM units WHERE status = 'failed' ORDER BY updated_at, key")
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    /// Counts by status, requests and spend.
    pub fn summary(&self) -> Result<Summary, StoreError> {
        let mut s = Summary::default();
        let mut st = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM units GROUP BY status")
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(self.sql())?;
        for row in rows {
            let (status, n) = row.map_err(self.sql())?;
            let n = n.max(0) as u64;
            match UnitStatus::parse(&status) {
                UnitStatus::Pending => s.pending = n,
                UnitStatus::Leased => s.leased = n,
                UnitStatus::Done => s.done = n,
                UnitStatus::Failed => s.failed = n,
            }
        }
        let (requests, interrupted, cost): (i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(status = 'interrupted'), 0), COALESCE(SUM(cost_pico), 0) FROM requests",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.sql())?;
        s.requests = requests.max(0) as u64;
        s.interrupted_requests = interrupted.max(0) as u64;
        s.cost_pico = cost.max(0) as u64;
        Ok(s)
    }
}

impl Store for Ledger {
    /// This run's id (in every request it records).
    fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Records a document with its pages (text, quality) and sections, once: what reports
    /// need to show results in context, without the source files.
    fn record_document(
        &mut self,
        doc: &crate::ingest::Document,
        kind: &str,
    ) -> Result<(), StoreError> {
        let sql = sqlite_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        tx.execute(
            "INSERT OR IGNORE INTO documents (id, path, kind, pages, added_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![doc.id, doc.path.to_string_lossy(), kind, doc.pages.len() as i64, unix_now()],
        )
        .map_err(&sql)?;
        {
            let mut page = tx
                .prepare(
                    "INSERT OR IGNORE INTO pages (document_id, number, quality, chars, failure, text)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&sql)?;
            for p in &doc.pages {
                let quality = serde_json::to_value(p.quality)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                page.execute(params![
                    doc.id,
                    p.number,
                    quality,
                    p.chars as i64,
                    p.failure,
                    p.text
                ])
                .map_err(&sql)?;
            }
            let mut section = tx
                .prepare(
                    "INSERT OR IGNORE INTO sections (document_id, id, title, level, first_page, last_page)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(&sql)?;
            for s in &doc.sections {
                section
                    .execute(params![
                        doc.id, s.id, s.title, s.level, s.pages.0, s.pages.1
                    ])
                    .map_err(&sql)?;
            }
        }
        tx.commit().map_err(&sql)
    }

    /// Plans units: new ones become `pending`; known ones keep their status (so finished work
    /// is never redone) except the failed ones `replan` sends back (see [`Replan`]). Returns
    /// the keys still to do, in the order given.
    fn plan(&mut self, units: &[UnitSpec], replan: Replan) -> Result<Vec<String>, StoreError> {
        let t = unix_now();
        let sql = sqlite_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        let mut todo = Vec::new();
        {
            let mut insert = tx
                .prepare(
                    "INSERT OR IGNORE INTO units (key, document_id, task, target, prompt_version, model, status, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
                )
                .map_err(&sql)?;
            let mut reset = tx
                .prepare("UPDATE units SET status = 'pending', attempts = 0, reason = NULL, retry = 0, updated_at = ?2 WHERE key = ?1")
                .map_err(&sql)?;
            let mut retry = tx
                .prepare(
                    "UPDATE units SET status = 'pending', attempts = 0, reason = NULL, retry = 0, updated_at = ?2
                     WHERE key = ?1 AND status = 'failed' AND (retry = 1 OR ?3)",
                )
                .map_err(&sql)?;
            let mut status = tx
                .prepare("SELECT status FROM units WHERE key = ?1")
                .map_err(&sql)?;
            for u in units {
                let key = u.key();
                if replan != Replan::Known {
                    insert
                        .execute(params![
                            key,
                            u.document_id,
                            u.task,
                            u.target,
                            u.prompt_version,
                            u.model,
                            t
                        ])
                        .map_err(&sql)?;
                }
                if replan == Replan::Force {
                    reset.execute(params![key, t]).map_err(&sql)?;
                    tx.execute("DELETE FROM results WHERE unit_key = ?1", [&key])
                        .map_err(&sql)?;
                } else {
                    retry
                        .execute(params![key, t, replan == Replan::RetryFailed])
                        .map_err(&sql)?;
                }
                let s: Option<String> = status
                    .query_row([&key], |r| r.get(0))
                    .optional()
                    .map_err(&sql)?;
                if s.as_deref().map(UnitStatus::parse) == Some(UnitStatus::Pending) {
                    todo.push(key);
                }
            }
        }
        tx.commit().map_err(&sql)?;
        Ok(todo)
    }

    /// Takes units for work (`pending → leased`, or leased again), counting an attempt.
    ///
    /// One run holds a SQLite ledger (its lock file), so every lease is this run's: every
    /// pending or leased key asked for is leased, and no lease needs a time limit: a
    /// killed run's leases return to `pending` when the ledger is next opened.
    fn lease(&self, keys: &[String]) -> Result<Vec<String>, StoreError> {
        let mut leased = Vec::with_capacity(keys.len());
        for k in keys {
            let n = self
                .conn
                .execute(
                    "UPDATE units SET status = 'leased', attempts = attempts + 1, updated_at = ?2 WHERE key = ?1 AND status IN ('pending', 'leased')",
                    params![k, unix_now()],
                )
                .map_err(self.sql())?;
            if n == 1 {
                leased.push(k.clone());
            }
        }
        Ok(leased)
    }

    /// Gives units back (`leased → pending`), e.g. to re-run them alone after a pack failed.
    fn release(&self, keys: &[String]) -> Result<(), StoreError> {
        for k in keys {
            self.conn
                .execute(
                    "UPDATE units SET status = 'pending', updated_at = ?2 WHERE key = ?1 AND status = 'leased'",
                    params![k, unix_now()],
                )
                .map_err(self.sql())?;
        }
        Ok(())
    }

    /// Records a request before it is sent; returns its id.
    fn request_started(
        &self,
        endpoint: &str,
        task: &str,
        prompt_version: &str,
        prefix_tokens: u64,
        unit_keys: &[String],
    ) -> Result<i64, StoreError> {
        let keys = serde_json::to_string(unit_keys).unwrap_or_else(|_| "[]".into());
        self.conn
            .execute(
                "INSERT INTO requests (run_id, endpoint, task, prompt_version, prefix_tokens, unit_keys, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'sent', ?7)",
                params![self.run_id, endpoint, task, prompt_version, i64::try_from(prefix_tokens).unwrap_or(i64::MAX), keys, unix_now()],
            )
            .map_err(self.sql())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how a request ended.
    fn request_finished(&self, id: i64, end: &RequestEnd) -> Result<(), StoreError> {
        let n = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        self.conn
            .execute(
                "UPDATE requests SET status = ?2, error_class = ?3, error = ?4, prompt_tokens = ?5, cached_tokens = ?6,
                 completion_tokens = ?7, cost_pico = ?8, timeline = ?9, finished_at = ?10, retries = ?11, retried_errors = ?12 WHERE id = ?1",
                params![
                    id,
                    if end.ok { "ok" } else { "failed" },
                    end.error_class,
                    end.error,
                    n(end.prompt_tokens),
                    n(end.cached_tokens),
                    n(end.completion_tokens),
                    n(end.cost_pico),
                    end.timeline,
                    unix_now(),
                    end.retries,
                    retried_json(end)
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Commits a unit's validated result and marks it `done`, in one transaction: a unit is
    /// done exactly when its result is on disk. The first result stands (a forced rerun's plan
    /// drops the old one first).
    fn complete(
        &mut self,
        key: &str,
        result: &serde_json::Value,
        request_id: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = sqlite_error(&self.path);
        let tx = self.conn.transaction().map_err(&sql)?;
        tx.execute(
            "INSERT INTO results (unit_key, result, request_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (unit_key) DO NOTHING",
            params![key, result.to_string(), request_id, unix_now()],
        )
        .map_err(&sql)?;
        tx.execute(
            "UPDATE units SET status = 'done', reason = NULL, retry = 0, updated_at = ?2 WHERE key = ?1",
            params![key, unix_now()],
        )
        .map_err(&sql)?;
        tx.commit().map_err(&sql)
    }

    /// Gives up on a unit with a reason (the dead-letter list).
    fn fail(&self, key: &str, reason: &str, retryable: bool) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE units SET status = 'failed', reason = ?2, retry = ?3, updated_at = ?4 WHERE key = ?1 AND status <> 'done'",
                params![key, reason, retryable, unix_now()],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Every unit among `keys` that the ledger knows, with its result when done.
    fn units(&self, keys: &[String]) -> Result<Vec<UnitRow>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT u.key, u.status, u.attempts, u.reason, r.result, r.request_id
                 FROM units u LEFT JOIN results r ON r.unit_key = u.key WHERE u.key = ?1",
            )
            .map_err(self.sql())?;
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let row = st
                .query_row([k], |r| {
                    Ok(UnitRow {
                        key: r.get(0)?,
                        status: UnitStatus::parse(&r.get::<_, String>(1)?),
                        attempts: r.get::<_, i64>(2)?.clamp(0, i64::from(u32::MAX)) as u32,
                        reason: r.get(3)?,
                        result: r
                            .get::<_, Option<String>>(4)?
                            .and_then(|s| serde_json::from_str(&s).ok()),
                        request_id: r.get(5)?,
                    })
                })
                .optional()
                .map_err(self.sql())?;
            out.extend(row);
        }
        Ok(out)
    }

    /// Every request recorded, oldest first.
    fn requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        read_requests(&self.conn).map_err(self.sql())
    }

    fn run_summaries_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT summary FROM runs WHERE started_at >= ?1 AND id != ?2 AND summary IS NOT NULL
                 ORDER BY started_at, id",
            )
            .map_err(self.sql())?;
        st.query_map(params![since, self.run_id], |r| r.get::<_, String>(0))
            .map_err(self.sql())?
            .collect::<Result<_, _>>()
            .map_err(self.sql())
    }

    fn spent_since(&self, since: i64) -> Result<(u64, u64), StoreError> {
        let (pico, tokens): (i64, i64) = self
            .conn
            .query_row(
                "SELECT COALESCE(SUM(cost_pico), 0),
                        COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0)
                 FROM requests WHERE started_at >= ?1",
                params![since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.sql())?;
        Ok((pico.max(0) as u64, tokens.max(0) as u64))
    }

    /// Records that this run started, on `endpoints` (primary first).
    fn run_started(&self, endpoints: &[String]) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO runs (id, started_at, endpoints) VALUES (?1, ?2, ?3)",
                params![
                    self.run_id,
                    unix_now(),
                    serde_json::to_string(endpoints).unwrap_or_default()
                ],
            )
            .map_err(self.sql())?;
        Ok(())
    }

    /// Records that this run ended, with its summary (JSON).
    fn run_finished(&self, summary: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2, summary = ?3 WHERE id = ?1",
                params![self.run_id, unix_now(), summary],
            )
            .map_err(self.sql())?;
        Ok(())
    }
}

/// Maps SQLite errors on the ledger at `path`.
pub(crate) fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Sqlite {
        path: path.into(),
        source,
    }
}

/// Every request in `conn`, oldest first.
pub(crate) fn read_requests(conn: &Connection) -> rusqlite::Result<Vec<RequestRow>> {
    let mut out = Vec::new();
    each_request(conn, |r| out.push(r))?;
    Ok(out)
}

/// Hands every request in `conn` to `f`, oldest first, one at a time (a long history of
/// streamed timelines need not be in memory at once).
pub(crate) fn each_request(
    conn: &Connection,
    mut f: impl FnMut(RequestRow),
) -> rusqlite::Result<()> {
    let mut st = conn.prepare(
        "SELECT id, run_id, endpoint, task, prompt_version, unit_keys, status, error_class, error,
                prompt_tokens, cached_tokens, completion_tokens, cost_pico, timeline, retries, started_at, retried_errors, prefix_tokens, finished_at
         FROM requests ORDER BY id",
    )?;
    let n = |v: Option<i64>| v.map(|v| v.max(0) as u64);
    let rows = st.query_map([], |r| {
        let status: String = r.get(6)?;
        let (retried_errors, retried_messages) =
            retried_parse(r.get::<_, Option<String>>(16)?.as_deref());
        let mut row = RequestRow {
            id: r.get(0)?,
            run_id: r.get(1)?,
            endpoint: r.get(2)?,
            task: r.get(3)?,
            prompt_version: r.get(4)?,
            prefix_tokens: n(r.get(17)?),
            unit_keys: serde_json::from_str(&r.get::<_, String>(5)?).unwrap_or_default(),
            end: RequestEnd {
                ok: status == "ok",
                error_class: r.get(7)?,
                error: r.get(8)?,
                prompt_tokens: n(r.get(9)?),
                cached_tokens: n(r.get(10)?),
                completion_tokens: n(r.get(11)?),
                cost_pico: n(r.get(12)?),
                timeline: r.get(13)?,
                retries: r.get::<_, i64>(14)?.clamp(0, i64::from(u32::MAX)) as u32,
                retried_errors: Vec::new(),
                retried_messages: Vec::new(),
            },
            status,
            started_at: r.get(15)?,
            finished_at: r.get(18)?,
        };
        row.end.retried_errors = retried_errors;
        row.end.retried_messages = retried_messages;
        Ok(row)
    })?;
    for row in rows {
        f(row?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str) -> UnitSpec {
        UnitSpec {
            document_id: "doc".into(),
            task: "entities".into(),
            target: target.into(),
            content_hash: format!("hash-of-{target}"),
            prompt_version: "entities-v1".into(),
            model: "m".into(),
            schema_hash: "s".into(),
            variant: String::new(),
        }
    }

    fn store(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pagemill-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("ledger.sqlite")
    }

    #[test]
    fn keys_change_with_anything_that_changes_the_answer() {
        let a = spec("page:1");
        let mut b = a.clone();
        assert_eq!(a.key(), b.key());
        b.prompt_version = "entities-v2".into();
        assert_ne!(a.key(), b.key());
        let mut c = a.clone();
        c.model = "other".into();
        assert_ne!(a.key(), c.key());
        // Length prefixes: moving a boundary between fields changes the key.
        let mut d = a.clone();
        d.task = "entitiesp".into();
        d.target = "age:1".into();
        assert_ne!(a.key(), d.key());
        // A variant keeps a configuration's results apart; none keeps the keys of old ledgers.
        let mut e = a.clone();
        e.variant = "pack=8".into();
        assert_ne!(a.key(), e.key());
        assert_eq!(
            a.key(),
            "0e2b357caf44fb7380391ab0e7330e62726e8baf3a9e94a12b21085dd9a896f7",
            "the key of a spec without a variant is what it always was (checked with Python's blake3)"
        );
    }

    #[test]
    fn a_shared_ledger_is_another_run_under_the_same_lock() {
        let path = store("share");
        let first = Ledger::open(&path).unwrap();
        let second = first.share().unwrap();
        assert_ne!(first.run_id(), second.run_id());
        drop(first);
        // The lock lives as long as any connection of the process holds it.
        assert!(matches!(Ledger::open(&path), Err(StoreError::Busy { .. })));
        drop(second);
        Ledger::open(&path).unwrap();
    }

    #[test]
    fn a_ledger_from_before_retryable_failures_opens_and_keeps_its_dead_letters() {
        let path = store("old");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE units (
                    key TEXT PRIMARY KEY, document_id TEXT NOT NULL, task TEXT NOT NULL,
                    target TEXT NOT NULL, prompt_version TEXT NOT NULL, model TEXT NOT NULL,
                    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,
                    updated_at INTEGER NOT NULL);
                 INSERT INTO units VALUES ('k', 'doc', 'entities', 'page:1', 'v1', 'm', 'failed', 1, 'gave up', 0);
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.dead_letters().unwrap(), [("k".into(), "gave up".into())]);
        drop(l);
        // Opening again finds the column there and leaves it.
        Ledger::open(&path).unwrap();
    }

    #[test]
    fn a_killed_run_loses_nothing_finished_and_its_leases_lapse() {
        let path = store("killed");
        let units = [spec("page:1"), spec("page:2")];
        let (done_key, leased_key);
        {
            let mut l = Ledger::open(&path).unwrap();
            l.add_document("doc", "a.pdf", "pdf", 2).unwrap();
            let todo = l.plan(&units, Replan::Resume).unwrap();
            l.lease(&todo).unwrap();
            let r = l
                .request_started("sim", "entities", "entities-v1", 300, &todo)
                .unwrap();
            l.complete(&todo[0], &serde_json::json!({"ok": 1}), Some(r))
                .unwrap();
            done_key = todo[0].clone();
            leased_key = todo[1].clone();
            let _ = r;
            // The run dies here: no request_finished, unit 2 still leased. `Ledger` has no
            // cleanup on drop, so dropping it leaves exactly what kill -9 leaves (the file
            // lock goes with the process either way).
            drop(l);
        }
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.status(&done_key).unwrap(), Some(UnitStatus::Done));
        assert_eq!(l.status(&leased_key).unwrap(), Some(UnitStatus::Pending));
        let s = l.summary().unwrap();
        assert_eq!(
            (s.done, s.pending, s.requests, s.interrupted_requests),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn two_runs_on_one_store_are_refused_with_a_clear_message() {
        let path = store("two");
        let _first = Ledger::open(&path).unwrap();
        let err = Ledger::open(&path).unwrap_err().to_string();
        assert!(err.contains("in use by another pagemill run"), "{err}");
    }

    #[test]
    fn requests_failures_and_dead_letters_are_recorded() {
        let path = store("requests");
        let mut l = Ledger::open(&path).unwrap();
        l.add_document("doc", "a.pdf", "pdf", 1).unwrap();
        let todo = l.plan(&[spec("page:1")], Replan::Resume).unwrap();
        let id = l
            .request_started("sim", "entities", "entities-v1", 300, &todo)
            .unwrap();
        l.request_finished(
            id,
            &RequestEnd {
                ok: true,
                prompt_tokens: Some(100),
                cached_tokens: None,
                completion_tokens: Some(5),
                cost_pico: Some(7_000),
                ..RequestEnd::default()
            },
        )
        .unwrap();
        l.fail(&todo[0], "invalid JSON after 3 re-asks", false)
            .unwrap();
        assert_eq!(
            l.dead_letters().unwrap(),
            [(todo[0].clone(), "invalid JSON after 3 re-asks".into())]
        );
        let s = l.summary().unwrap();
        assert_eq!((s.failed, s.requests, s.cost_pico), (1, 1, 7_000));
    }

    #[test]
    fn a_view_reads_a_held_ledger_and_refuses_other_files() {
        let path = store("view");
        let mut l = Ledger::open(&path).unwrap();
        l.add_document("doc", "a.pdf", "pdf", 2).unwrap();
        l.run_started(&["sim".into()]).unwrap();
        let todo = l.plan(&[spec("page:1")], Replan::Resume).unwrap();
        let id = l
            .request_started("sim", "entities", "entities-v1", 300, &todo)
            .unwrap();
        l.request_finished(
            id,
            &RequestEnd {
                ok: true,
                prompt_tokens: Some(100),
                ..RequestEnd::default()
            },
        )
        .unwrap();
        l.complete(&todo[0], &serde_json::json!({"mentions": []}), Some(id))
            .unwrap();

        // While the run holds the ledger, and before it has finished.
        let v = LedgerView::open(&path).unwrap();
        let runs = v.runs().unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].finished_at, runs[0].endpoints.clone()),
            (None, vec!["sim".to_owned()])
        );
        assert_eq!(v.requests().unwrap()[0].id, id);
        let units = v.units().unwrap();
        assert_eq!(
            (units[0].status, units[0].request_id),
            (UnitStatus::Done, Some(id))
        );
        assert!(units[0].result.is_none(), "results only per document");
        assert_eq!(
            v.units_of("doc").unwrap()[0].result,
            Some(serde_json::json!({"mentions": []}))
        );
        assert_eq!(v.documents().unwrap()[0].pages, 2);

        l.run_finished("{\"stopped\": null}").unwrap();
        let runs = v.runs().unwrap();
        assert!(runs[0].finished_at.is_some());
        assert_eq!(runs[0].summary, Some(serde_json::json!({"stopped": null})));

        let text = path.with_file_name("notes.txt");
        std::fs::write(&text, "not a database at all, just some text").unwrap();
        for bad in [text, path.with_file_name("missing.sqlite")] {
            let e = LedgerView::open(&bad).unwrap_err().to_string();
            assert!(e.contains("is not a pagemill ledger"), "{e}");
        }
    }
}
