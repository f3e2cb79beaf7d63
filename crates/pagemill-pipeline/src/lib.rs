//! The document pipeline. This crate so far holds its first two stages.
//!
//! # Layout
//! - [`ingest`]: files → [`ingest::Document`]s of pages and headings, one module per format
//!   (`pdf` through poppler in a child process, `html`, `markdown`, `text`, `docx`).
//! - [`sections`]: headings and token budgets → a partition of each document into sections.
//! - [`store`]: the SQLite ledger — unit lifecycle, results, requests; resumable runs.
//! - [`tasks`]: entities, summaries, metadata as versioned prompt templates and answer schemas.

pub mod ingest;
pub mod sections;
pub mod store;
pub mod tasks;
