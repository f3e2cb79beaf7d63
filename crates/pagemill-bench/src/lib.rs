//! `pagemill bench`: true, comparable measurements of OpenAI-compatible endpoints.
//!
//! # Layout
//! - [`workload`]: exact-length synthetic prompts, shared prefixes, pages of documents.
//! - [`schedule`]: closed-loop concurrency, open-loop arrivals (constant, Poisson, gamma, ramp).
//! - [`runner`]: sends the load to interleaved targets; one collector owns the statistics.
//! - [`record`]: one request's measurements. [`collect`]: HDR histograms and counters.
//! - [`stats`]: confidence intervals and comparisons. [`report`]: the report (JSON + tables).
//! - [`bench`](mod@bench): sweeps, repeats, experiments and agreement, put together.

pub mod bench;
pub mod collect;
pub mod record;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod truth;
pub mod workload;
