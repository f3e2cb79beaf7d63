//! `pagemill report`: what runs cost and how endpoints behaved, as one self-contained HTML
//! file, terminal tables, or JSON.
//!
//! The figures are computed once, into [`Report`] (what `--format json` writes); the HTML and
//! terminal views only present them. Sources are read, never changed: a ledger is opened
//! read-only without its lock (a report can be made while a run writes), bench reports are the
//! JSON files `pagemill bench -o FILE` (or `--format json`) wrote.
//!
//! - [`runs`]: figures from a ledger's requests, units and runs.
//! - [`documents`]: one document's pages with grounded entities, summaries and metadata.
//! - [`eval`]: `pagemill eval`'s configurations, quality against cost, and each document's
//!   entity errors placed in its pages.
//! - [`html`] with [`chart`]: the HTML page; charts are SVG drawn here, so they show without
//!   JavaScript, and every text goes through maud's escaping.
//! - [`terminal`]: every terminal view: the report's figures, `run`'s and `quote`'s summaries,
//!   `bench`'s and `eval`'s tables; [`fmt`]: the one way numbers and untrusted text are written.

use std::path::{Path, PathBuf};

use pagemill_bench::results::BenchResults;
use pagemill_pipeline::store::{LedgerView, StoreError};
use serde::{Deserialize, Serialize};

pub mod chart;
pub mod documents;
pub mod eval;
pub mod fmt;
pub mod html;
pub mod rows;
pub mod runs;
pub mod terminal;
pub mod time;

pub use documents::DocumentView;
pub use runs::RunsReport;

/// Version of the report format (`schemas/report.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What a report could not read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The ledger.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A JSON file is not a bench or eval report.
    #[error("`{path}` is not a pagemill bench or eval report: {why}")]
    NotBench {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Nothing to report on.
    #[error(
        "nothing to report on: give a ledger (pagemill run's <out>/ledger.sqlite), bench results (pagemill bench -o FILE) or an eval report (pagemill eval's <out>/eval-report.json)"
    )]
    Empty,
}

/// What to put in a report.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Documents shown page by page: at most this many (the most recently added).
    pub documents: usize,
    /// Show only documents whose path contains one of these, or whose id starts with one.
    pub select: Vec<String>,
    /// Pages a day to project monthly cost at (besides the observed rate).
    pub pages_per_day: Option<f64>,
}

/// One bench report and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchInput {
    /// The file.
    pub path: String,
    /// Its contents.
    pub report: BenchResults,
}

/// Everything a report shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Format version.
    pub schema_version: u32,
    /// Unix seconds when it was made.
    pub generated_at: i64,
    /// Figures from the ledger, when one was given.
    pub runs: Option<RunsReport>,
    /// Documents shown page by page.
    pub documents: Vec<DocumentView>,
    /// Documents in the ledger not shown (see `--document`, `--documents`).
    pub documents_omitted: usize,
    /// Bench reports, in the order given.
    pub benchmarks: Vec<BenchInput>,
    /// An eval report (`pagemill eval`'s `eval-report.json`), when one was given.
    #[serde(default)]
    pub eval: Option<eval::EvalView>,
}

/// A source, told apart by its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pagemill ledger: an SQLite file, or a PostgreSQL URL (`postgres://…`).
    Ledger(PathBuf),
    /// A bench or eval report (JSON), told apart when it is read.
    Bench(PathBuf),
}

impl Source {
    /// SQLite files start with `SQLite format 3\0`; anything else is taken for a JSON report.
    pub fn detect(path: &Path) -> Result<Self, ReportError> {
        use std::io::Read;
        if path
            .to_str()
            .is_some_and(pagemill_pipeline::store::postgres::is_postgres)
        {
            return Ok(Source::Ledger(path.into()));
        }
        let mut head = [0u8; 16];
        let mut f = std::fs::File::open(path).map_err(|source| ReportError::Read {
            path: path.into(),
            source,
        })?;
        let n = f.read(&mut head).map_err(|source| ReportError::Read {
            path: path.into(),
            source,
        })?;
        Ok(if head[..n] == *b"SQLite format 3\0" {
            Source::Ledger(path.into())
        } else {
            Source::Bench(path.into())
        })
    }
}

/// Reads a bench report.
pub fn read_bench(path: &Path) -> Result<BenchInput, ReportError> {
    bench_of(path, read_json(path)?)
}

/// A bench report from its JSON.
fn bench_of(path: &Path, v: serde_json::Value) -> Result<BenchInput, ReportError> {
    let report: BenchResults = serde_json::from_value(v).map_err(|e| ReportError::NotBench {
        path: path.into(),
        why: e.to_string(),
    })?;
    Ok(BenchInput {
        path: path.display().to_string(),
        report,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ReportError::NotBench {
        path: path.into(),
        why: e.to_string(),
    })
}

/// Builds the report from its sources (at most one ledger; later ones are refused by the
/// caller).
pub fn build(sources: &[Source], opts: &Options) -> Result<Report, ReportError> {
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        generated_at: time::now(),
        runs: None,
        documents: Vec::new(),
        documents_omitted: 0,
        benchmarks: Vec::new(),
        eval: None,
    };
    let mut ledger = None;
    let mut evals = Vec::new();
    for source in sources {
        match source {
            Source::Ledger(path) => {
                let view: Box<dyn pagemill_pipeline::store::History> = match path
                    .to_str()
                    .filter(|s| pagemill_pipeline::store::postgres::is_postgres(s))
                {
                    Some(url) => Box::new(pagemill_pipeline::store::PgView::open(url)?),
                    None => Box::new(LedgerView::open(path)?),
                };
                report.runs = Some(runs::build(&*view, opts.pages_per_day)?);
                let (docs, omitted) = documents::build(&*view, opts)?;
                report.documents = docs;
                report.documents_omitted = omitted;
                ledger = Some(view);
            }
            Source::Bench(path) => {
                let v = read_json(path)?;
                if eval::is_eval(&v) {
                    evals.push((path, v));
                } else {
                    report.benchmarks.push(bench_of(path, v)?);
                }
            }
        }
    }
    // After the ledger, wherever it was given: errors are placed in its page texts.
    for (path, v) in evals {
        report.eval = Some(eval::build(path, &v, ledger.as_deref())?);
    }
    if report.runs.is_none() && report.benchmarks.is_empty() && report.eval.is_none() {
        return Err(ReportError::Empty);
    }
    Ok(report)
}
