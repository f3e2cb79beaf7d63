//! The document pipeline: documents in, validated and grounded results out, every request and
//! result in a ledger so runs resume without paying twice.
//!
//! # Layout
//! - [`ingest`]: files → [`ingest::Document`]s of pages and headings, one module per format
//!   (`pdf` through poppler in a child process, `html`, `markdown`, `text`, `docx`).
//! - [`sections`]: headings and token budgets → a partition of each document into sections.
//! - [`tasks`]: entities, summaries, metadata as versioned prompt templates and answer schemas;
//!   lenient parsing and strict validation of answers.
//! - [`store`]: the SQLite ledger — unit lifecycle, results, requests; resumable runs.
//! - [`run`]: planning units, packing, sending, re-asking, grounding, outputs, quotes.

pub mod eval;
pub mod ingest;
pub mod run;
pub mod sections;
pub mod store;
pub mod tasks;
