//! The truthful OpenAI-compatible client under every part of pagemill.
//!
//! It sends chat completions to any OpenAI-compatible endpoint and records what really
//! happened: a [`Timeline`] of monotonic timestamps taken as bytes arrive, a normalized
//! [`Usage`] from whichever dialect the provider speaks (with the source of every count), the
//! [`Cost`] under the endpoint's [`Prices`], the connection used, and — on failure — an
//! [`ErrorClass`] that decides whether a retry can help.
//!
//! # Layout
//! - [`endpoint`]: `pagemill.toml` endpoints, keys from the environment, limits, prices.
//! - [`dialect`]: which API an endpoint speaks (chat completions, Responses, Anthropic
//!   Messages), its auth and its providers' quirks, as data (`data/providers.toml`).
//!   [`api`]: requests and answers of the Responses and Messages APIs.
//! - [`wire`]: tolerant request/response types. [`sse`]: the event-stream parser.
//! - [`stream`]: reading a response into an [`Exchange`] with its [`Timeline`].
//! - [`usage`]: dialects → [`Usage`]; tokenizer fallback. [`pricing`]: [`Usage`] → [`Cost`];
//!   [`prices`]: the price table that ships with pagemill and where each price comes from.
//! - [`transport`]: pooled or fresh-connection HTTP with connection stamps.
//! - [`limits`]: RPM/TPM/concurrency pacing and rate-limit headers. [`retry`]: retry policy.
//! - [`runaway`]: answers that loop, caught while they stream. [`secrets`]: the keys this
//!   process holds, removed by value from any outside text kept or shown.
//! - [`client`]: [`Client::send`] (one attempt) and [`Client::chat`] (paced, retried).
//! - [`clock`]: `CLOCK_MONOTONIC` nanoseconds. [`probe`]: what an endpoint supports
//!   (`pagemill doctor`).

pub mod api;
pub mod batch;
pub mod client;
pub mod clock;
pub mod dialect;
pub mod endpoint;
pub mod error;
pub mod limits;
pub mod prices;
pub mod pricing;
pub mod probe;
pub mod retry;
pub mod runaway;
pub mod rxtime;
pub mod secrets;
pub mod sse;
pub mod stream;
pub mod transport;
pub mod usage;
pub mod wire;

pub use client::Client;
pub use dialect::{Api, Auth, Dialect};
pub use endpoint::{ApiKey, Config, Endpoint, Limits, PromptProfile, RetryConfig, TransportConfig};
pub use error::{ClientError, ErrorClass, FailureKind, RequestError};
pub use limits::{Headroom, Limiter, RateLimitInfo};
pub use pricing::{Cost, Money, Prices};
pub use retry::Outcome;
pub use stream::{ChunkMark, Exchange, Timeline};
pub use transport::ConnectionInfo;
pub use usage::{Count, Source, Tokenizer, Usage};
pub use wire::{ChatRequest, ChatResponse, Message};
