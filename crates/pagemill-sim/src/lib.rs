//! A simulated OpenAI-compatible provider, for tests, demos, benchmarks and fault drills.
//!
//! Every behaviour is seeded, so a run can be repeated exactly, and every request leaves a
//! ground-truth [`LogEntry`] (received, each write's due and actual send time, tokens, cached
//! tokens, status, fault) on the same `CLOCK_MONOTONIC` clock the client uses.
//!
//! # Layout
//! - [`server`]: the loopback HTTP server; [`Reply`] (a response described as data) and
//!   [`Sink`] (a response driven live); the ground-truth [`server::Log`].
//! - [`sim`]: [`Sim::start`] — routes, the latency model, the life of a chat request.
//! - [`profile`]: [`Profile`] and its presets. [`content`]: answers of exact token length and
//!   schema-valid JSON from the prompt's words. [`cache`]: prefix-cache emulation.
//!   [`ratelimit`]: RPM/TPM with headers. [`faults`]: fault draws and scripts.
//!   `batch`: the batch API (files and batches routes). [`gold`]: answers from a gold file
//!   with errors at set rates, and what was answered (`GET /sim/gold`).
//! - [`script`]: replies in each dialect and with each fault; [`Script`], a fixed sequence.

mod batch;
pub mod cache;
pub mod content;
mod error;
pub mod faults;
pub mod gold;
pub mod profile;
pub mod ratelimit;
pub mod script;
pub mod server;
pub mod sim;

pub use error::SimError;
pub use profile::Profile;
pub use script::Script;
pub use server::{
    ChunkLog, LogEntry, Part, Received, Reply, ServerHandle, ServerOptions, Sink, serve, serve_with,
};
pub use sim::{Sim, SimHandle};
