//! Starting the embedded model in this process and returning the endpoint that reaches it:
//! the default endpoint when none is configured, and `pagemill serve`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pagemill_client::{ApiKey, Endpoint};
use pagemill_sim::ServerHandle;

use crate::model;

/// The default endpoint's name.
pub const ENDPOINT_NAME: &str = "local";

/// How to run the model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// A GGUF file; the default model (fetched on first use) when `None`.
    pub model: Option<PathBuf>,
    /// CPU threads per slot.
    pub threads: i32,
    /// Requests decoded at once, each with its own KV cache.
    pub slots: usize,
    /// Context length per slot, in tokens.
    pub ctx: u32,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            model: None,
            threads: 1,
            slots: 1,
            ctx: 8192,
        }
    }
}

impl LocalSettings {
    /// The defaults, with `PAGEMILL_MODEL` (a GGUF path) and `PAGEMILL_THREADS` honoured: the
    /// settings of the default endpoint.
    pub fn from_env() -> Self {
        Self {
            model: std::env::var_os("PAGEMILL_MODEL").map(PathBuf::from),
            threads: std::env::var("PAGEMILL_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(1),
            ..Self::default()
        }
    }
}

/// Why the local model could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The model file named does not exist.
    #[error("no model file at `{0}`")]
    NoModel(PathBuf),
    /// The default model could not be fetched.
    #[error(transparent)]
    Fetch(#[from] model::FetchError),
    /// The engine did not start.
    #[cfg(feature = "llama")]
    #[error("starting the local model `{path}`: {source}")]
    Engine {
        /// The model file.
        path: PathBuf,
        /// Why.
        source: crate::engine::EngineError,
    },
    /// The server could not listen.
    #[error("the local model cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A blocking task failed (a bug).
    #[error("{0}")]
    Task(String),
    /// This build has no local model.
    #[error(
        "this pagemill was built without the local model (--no-default-features): use `-e sim` or configure an endpoint"
    )]
    Unavailable,
}

/// The model file `model` names, else the default one, fetched on first use (saying so
/// through `say`).
pub async fn model_path(model: Option<&Path>, say: fn(&str)) -> Result<PathBuf, LocalError> {
    if let Some(p) = model {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(LocalError::NoModel(p.to_path_buf()))
        };
    }
    let dir = model::cache_dir();
    tokio::task::spawn_blocking(move || model::fetch(&dir, &model::DEFAULT, &|m| say(m)))
        .await
        .map_err(|e| LocalError::Task(format!("the model download task: {e}")))?
        .map_err(LocalError::from)
}

/// Starts the engine and its HTTP surface on `addr` in this process, requiring `api_key` of
/// every request when given; the endpoint reaches it, fitted to a small model (the small
/// prompt profile, per-request schemas, two requests per slot at most).
#[cfg(feature = "llama")]
pub async fn start(
    settings: &LocalSettings,
    addr: SocketAddr,
    api_key: Option<ApiKey>,
    say: fn(&str),
) -> Result<(ServerHandle, Endpoint), LocalError> {
    let path = model_path(settings.model.as_deref(), say).await?;
    let config = crate::engine::EngineConfig {
        threads: settings.threads.max(1),
        slots: settings.slots.max(1),
        n_ctx: settings.ctx,
        ..crate::engine::EngineConfig::new(&path)
    };
    let options = pagemill_sim::ServerOptions {
        addr,
        api_key: api_key.clone(),
        ..pagemill_sim::ServerOptions::default()
    };
    let (engine, handle) = crate::server::start(config, options).await?;
    let mut ep = Endpoint::new(ENDPOINT_NAME, handle.base_url(), engine.info().id.clone());
    ep.api_key = api_key;
    // One request decoding per slot and one waiting behind each: more would only queue.
    ep.limits.max_concurrency = Some(engine.info().slots * 2);
    // Constrained decoding follows the schema exactly: tell it the items of each request.
    ep.per_request_schema = true;
    ep.prompt_profile = pagemill_client::PromptProfile::Small;
    // A client writing whole prompts (`run --array`) writes them as the model was trained to
    // read them.
    ep.prompt_template.clone_from(&engine.info().chat_template);
    // Nothing is charged per token here: the cost is $0, and says why.
    ep.prices = pagemill_client::Prices {
        input: Some(0.0),
        output: Some(0.0),
        ..pagemill_client::Prices::default()
    };
    ep.price_source = pagemill_client::prices::PriceSource::Local;
    Ok((handle, ep))
}

/// In a build without llama.cpp: says so.
#[cfg(not(feature = "llama"))]
pub async fn start(
    _: &LocalSettings,
    _: SocketAddr,
    _: Option<ApiKey>,
    _: fn(&str),
) -> Result<(ServerHandle, Endpoint), LocalError> {
    Err(LocalError::Unavailable)
}
