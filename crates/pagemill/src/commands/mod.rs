//! One module per command.

pub mod chat;
pub mod doctor;
pub mod sim;
