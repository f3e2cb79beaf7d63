//! pagemill's integration tests: one binary, a module per command or component.

// Test helpers outside #[test] functions may unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod chat;
mod client;
mod common;
mod dialects;
mod doctor;
mod eval;
mod faults;
mod hardening;
mod ingest;
mod prices;
mod report;
mod run;
mod secrets;
mod setup;
mod shared;
mod sim;
mod truth;
mod views;
