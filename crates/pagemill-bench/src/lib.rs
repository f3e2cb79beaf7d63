//! `pagemill bench`: true, comparable measurements of OpenAI-compatible endpoints.
//!
//! # Layout
//! - [`workload`]: exact-length synthetic prompts, shared prefixes, pages of documents.
//! - [`schedule`]: closed-loop concurrency, open-loop arrivals (constant, Poisson, gamma, ramp).
//! - [`runner`]: sends the load to interleaved targets; one collector owns the statistics.
//! - [`record`]: one request's measurements. [`collect`]: HDR histograms and counters.
//! - [`stats`]: confidence intervals and comparisons. [`results`]: what a benchmark found
//!   (the JSON `pagemill report` reads; `schemas/bench-report.schema.json`).
//! - [`bench`](mod@bench): sweeps, repeats, experiments and agreement, put together.
//! - [`experiment`]: the plan from settings: workload, targets (experiment arms), load points,
//!   durations and SLOs; typed [`experiment::BenchError`]s.
//! - [`truth`]: client timings against a pagemill simulator's own log.

pub mod bench;
pub mod collect;
pub mod experiment;
pub mod record;
pub mod results;
pub mod runner;
pub mod schedule;
pub mod stats;
pub mod truth;
pub mod workload;
