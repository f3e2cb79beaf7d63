//! A simulated OpenAI-compatible provider, for tests, demos and fault drills.
//!
//! # Layout
//! - [`server`]: the loopback HTTP server that plays described [`Reply`]s (delays, bytes,
//!   resets) and keeps a ground-truth [`LogEntry`] per request.
//! - [`script`]: replies in each provider dialect and with each fault, and [`Script`], a server
//!   that answers with a fixed sequence of them.
//! - [`sim`]: the simulator proper — answers of the requested length paced by a [`Profile`].

pub mod script;
pub mod server;
pub mod sim;

pub use script::Script;
pub use server::{LogEntry, Part, Received, Reply, ServerHandle, serve};
pub use sim::{Profile, Sim};
