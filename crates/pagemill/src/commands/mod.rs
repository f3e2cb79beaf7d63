//! One module per command.

pub mod bench;
pub mod chat;
pub mod doctor;
pub mod eval;
pub mod ingest;
pub mod local;
pub mod quote;
pub mod report;
pub mod run;
pub mod sim;
