//! A read-only view of a ledger, for reports: it takes no lock, so a report can be made while
//! a run is writing (SQLite's WAL gives the reader a consistent snapshot per query), and it
//! never changes the file.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};
use serde::{Deserialize, Serialize};

use super::{
    RequestRow, SCHEMA_VERSION, StoreError, UnitStatus, each_request, read_requests, sqlite_error,
};

/// A run as recorded (ledgers written before runs were recorded have none; reports then
/// derive runs from their requests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// The run's id (in every request it made).
    pub id: String,
    /// Unix seconds.
    pub started_at: i64,
    /// Unix seconds; `None` for a run that was killed or is still going.
    pub finished_at: Option<i64>,
    /// Endpoints, primary first.
    pub endpoints: Vec<String>,
    /// Its summary (`RunSummary` as JSON), when it finished.
    pub summary: Option<serde_json::Value>,
}

/// A document as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRow {
    /// Content hash.
    pub id: String,
    /// Path it was first given as.
    pub path: String,
    /// `pdf`, `html`, …
    pub kind: String,
    /// Pages.
    pub pages: u32,
    /// Unix seconds.
    pub added_at: i64,
}

/// A page as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRow {
    /// 1-based.
    pub number: u32,
    /// Readability (`good`, `no_text_layer`, …).
    pub quality: String,
    /// Why it could not be read, if it could not.
    pub failure: Option<String>,
    /// Its text, exactly as sent (mention offsets count characters of it).
    pub text: String,
}

/// A section as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionRow {
    /// Id within the document.
    pub id: u32,
    /// Title.
    pub title: String,
    /// Heading level.
    pub level: u8,
    /// First and last page.
    pub pages: (u32, u32),
}

/// A unit as recorded, with its result when asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitBrief {
    /// Its key.
    pub key: String,
    /// The document.
    pub document_id: String,
    /// Task name.
    pub task: String,
    /// `page:3`, `section:2`, `document`.
    pub target: String,
    /// Prompt version.
    pub prompt_version: String,
    /// Model.
    pub model: String,
    /// Status.
    pub status: UnitStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// Unix seconds of its last change.
    pub updated_at: i64,
    /// The request that produced its result.
    pub request_id: Option<i64>,
    /// Its result (only from [`LedgerView::units_of`]).
    pub result: Option<serde_json::Value>,
}

/// A store's history, read: runs, requests, documents with their pages and sections, units.
/// `pagemill report` and bench's ledger replay read through this; [`LedgerView`] is the SQLite
/// implementation (read-only, without the run's lock, so it reads a ledger a run is writing).
pub trait History {
    /// Names the store for people (a file path, a database).
    fn name(&self) -> String;
    /// Runs recorded, oldest first.
    fn runs(&self) -> Result<Vec<RunRow>, StoreError>;
    /// Every request, oldest first.
    fn requests(&self) -> Result<Vec<RequestRow>, StoreError>;
    /// Hands every request to `f`, oldest first, one at a time (long histories are reduced
    /// without being held).
    fn each_request(&self, f: &mut dyn FnMut(RequestRow)) -> Result<(), StoreError>;
    /// Every document, in the order they were added.
    fn documents(&self) -> Result<Vec<DocumentRow>, StoreError>;
    /// Every unit, without results.
    fn units(&self) -> Result<Vec<UnitBrief>, StoreError>;
    /// One document's units, with results.
    fn units_of(&self, document_id: &str) -> Result<Vec<UnitBrief>, StoreError>;
    /// One document's pages.
    fn pages(&self, document_id: &str) -> Result<Vec<PageRow>, StoreError>;
    /// One document's sections.
    fn sections(&self, document_id: &str) -> Result<Vec<SectionRow>, StoreError>;
}

/// A ledger opened for reading.
#[derive(Debug)]
pub struct LedgerView {
    conn: Connection,
    path: PathBuf,
    has_runs: bool,
}

impl LedgerView {
    /// Opens the ledger at `path` read-only.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let sql = sqlite_error(path);
        let not = |why: &str| StoreError::NotALedger {
            path: path.into(),
            why: why.into(),
        };
        if !path.is_file() {
            return Err(not("no such file"));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|_| not("not an SQLite database"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: path.into(),
                found: version,
            });
        }
        let table = |name: &str| -> Result<bool, StoreError> {
            conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(sql)
        };
        if !table("requests")? || !table("units")? {
            return Err(not("an SQLite database without pagemill's tables"));
        }
        let has_runs = table("runs")?;
        Ok(Self {
            conn,
            path: path.into(),
            has_runs,
        })
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        sqlite_error(&self.path)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unit_rows(&self, document_id: Option<&str>) -> Result<Vec<UnitBrief>, StoreError> {
        let with_results = document_id.is_some();
        let query = format!(
            "SELECT u.key, u.document_id, u.task, u.target, u.prompt_version, u.model, u.status,
                    u.reason, u.updated_at, r.request_id, {}
             FROM units u LEFT JOIN results r ON r.unit_key = u.key
             WHERE ?1 IS NULL OR u.document_id = ?1 ORDER BY u.updated_at, u.key",
            if with_results { "r.result" } else { "NULL" },
        );
        let mut st = self.conn.prepare(&query).map_err(self.sql())?;
        st.query_map(params![document_id], |r| {
            Ok(UnitBrief {
                key: r.get(0)?,
                document_id: r.get(1)?,
                task: r.get(2)?,
                target: r.get(3)?,
                prompt_version: r.get(4)?,
                model: r.get(5)?,
                status: UnitStatus::parse(&r.get::<_, String>(6)?),
                reason: r.get(7)?,
                updated_at: r.get(8)?,
                request_id: r.get(9)?,
                result: r
                    .get::<_, Option<String>>(10)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
            })
        })
        .map_err(self.sql())?
        .collect::<Result<_, _>>()
        .map_err(self.sql())
    }
}

impl History for LedgerView {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs recorded, oldest first.
    fn runs(&self) -> Result<Vec<RunRow>, StoreError> {
        if !self.has_runs {
            return Ok(Vec::new());
        }
        let mut st = self
            .conn
            .prepare(
                "SELECT id, started_at, finished_at, endpoints, summary FROM runs ORDER BY started_at, id",
            )
            .map_err(self.sql())?;
        st.query_map([], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                endpoints: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or_default(),
                summary: r
                    .get::<_, Option<String>>(4)?
                    .and_then(|s| serde_json::from_str(&s).ok()),
            })
        })
        .map_err(self.sql())?
        .collect::<Result<_, _>>()
        .map_err(self.sql())
    }

    /// Every request, oldest first.
    fn requests(&self) -> Result<Vec<RequestRow>, StoreError> {
        read_requests(&self.conn).map_err(self.sql())
    }

    /// Hands every request to `f`, oldest first, one at a time: for reducing long histories
    /// (timelines of streamed answers run to tens of kilobytes each) without holding them.
    fn each_request(&self, f: &mut dyn FnMut(RequestRow)) -> Result<(), StoreError> {
        each_request(&self.conn, f).map_err(self.sql())
    }

    /// Every document, in the order they were added.
    fn documents(&self) -> Result<Vec<DocumentRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, path, kind, pages, added_at FROM documents ORDER BY added_at, path",
            )
            .map_err(self.sql())?;
        st.query_map([], |r| {
            Ok(DocumentRow {
                id: r.get(0)?,
                path: r.get(1)?,
                kind: r.get(2)?,
                pages: r.get::<_, i64>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                added_at: r.get(4)?,
            })
        })
        .map_err(self.sql())?
        .collect::<Result<_, _>>()
        .map_err(self.sql())
    }

    /// Every unit, without results.
    fn units(&self) -> Result<Vec<UnitBrief>, StoreError> {
        self.unit_rows(None)
    }

    /// A document's units, with their results.
    fn units_of(&self, document_id: &str) -> Result<Vec<UnitBrief>, StoreError> {
        self.unit_rows(Some(document_id))
    }

    /// A document's pages, with their text.
    fn pages(&self, document_id: &str) -> Result<Vec<PageRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT number, quality, failure, text FROM pages WHERE document_id = ?1 ORDER BY number",
            )
            .map_err(self.sql())?;
        st.query_map([document_id], |r| {
            Ok(PageRow {
                number: r.get::<_, i64>(0)?.clamp(0, i64::from(u32::MAX)) as u32,
                quality: r.get(1)?,
                failure: r.get(2)?,
                text: r.get(3)?,
            })
        })
        .map_err(self.sql())?
        .collect::<Result<_, _>>()
        .map_err(self.sql())
    }

    /// A document's sections.
    fn sections(&self, document_id: &str) -> Result<Vec<SectionRow>, StoreError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, title, level, first_page, last_page FROM sections WHERE document_id = ?1 ORDER BY id",
            )
            .map_err(self.sql())?;
        let int = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
        st.query_map([document_id], |r| {
            Ok(SectionRow {
                id: int(r.get(0)?),
                title: r.get(1)?,
                level: r.get::<_, i64>(2)?.clamp(0, 255) as u8,
                pages: (int(r.get(3)?), int(r.get(4)?)),
            })
        })
        .map_err(self.sql())?
        .collect::<Result<_, _>>()
        .map_err(self.sql())
    }
}
