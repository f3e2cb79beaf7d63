//! The embedded local model: `pagemill serve`, `pagemill model fetch|path`, and starting it
//! in-process as the default endpoint.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_local::model;

use crate::cli::{LocalArgs, ModelAction, ModelArgs, ServeArgs};

/// The model file `args` name, else the default one, fetched on first use (with a message).
pub async fn model_path(args: &LocalArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.model {
        anyhow::ensure!(p.is_file(), "no model file at `{}`", p.display());
        return Ok(p.clone());
    }
    let dir = model::cache_dir();
    let path = tokio::task::spawn_blocking(move || {
        model::fetch(&dir, &model::DEFAULT, &|m| eprintln!("pagemill: {m}"))
    })
    .await
    .context("the model download task")??;
    Ok(path)
}

/// `pagemill model …`.
pub async fn model(args: ModelArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match args.action {
        ModelAction::Path => {
            let dir = model::cache_dir();
            let path = model::path_in(&dir, &model::DEFAULT);
            let state = if model::cached(&dir, &model::DEFAULT).is_some() {
                "verified"
            } else {
                "not fetched yet: pagemill model fetch"
            };
            writeln!(out, "{} ({state})", path.display())?;
        }
        ModelAction::Fetch => {
            drop(out);
            let path = model_path(&LocalArgs::from_env()).await?;
            writeln!(std::io::stdout(), "{}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl LocalArgs {
    /// The defaults, with `PAGEMILL_MODEL` (a GGUF path) and `PAGEMILL_THREADS` honoured: the
    /// settings of the default endpoint.
    pub fn from_env() -> Self {
        Self {
            model: std::env::var_os("PAGEMILL_MODEL").map(PathBuf::from),
            threads: std::env::var("PAGEMILL_THREADS")
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(1),
            slots: 1,
            ctx: 8192,
        }
    }
}

#[cfg(feature = "local")]
mod enabled {
    use super::*;
    use pagemill_client::Endpoint;
    use pagemill_local::engine::EngineConfig;
    use pagemill_sim::{ServerHandle, ServerOptions};

    /// Starts the engine and its HTTP surface in this process; the endpoint reaches it.
    pub async fn start(
        args: &LocalArgs,
        addr: std::net::SocketAddr,
    ) -> anyhow::Result<(ServerHandle, Endpoint)> {
        start_with_key(args, addr, None).await
    }

    /// [`start`], requiring `api_key` of every request when given.
    pub(super) async fn start_with_key(
        args: &LocalArgs,
        addr: std::net::SocketAddr,
        api_key: Option<pagemill_client::ApiKey>,
    ) -> anyhow::Result<(ServerHandle, Endpoint)> {
        let path = model_path(args).await?;
        let config = EngineConfig {
            threads: args.threads.max(1),
            slots: args.slots.max(1),
            n_ctx: args.ctx,
            ..EngineConfig::new(&path)
        };
        let options = ServerOptions {
            addr,
            api_key: api_key.clone(),
            ..ServerOptions::default()
        };
        let (engine, handle) = pagemill_local::server::start(config, options)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("starting the local model `{}`", path.display()))?;
        let mut ep = Endpoint::new(
            crate::settings::LOCAL_ENDPOINT,
            handle.base_url(),
            engine.info().id.clone(),
        );
        ep.api_key = api_key;
        // One request decoding per slot and one waiting behind each: more would only queue.
        ep.limits.max_concurrency = Some(engine.info().slots * 2);
        // Constrained decoding follows the schema exactly: tell it the items of each request.
        ep.per_request_schema = true;
        ep.prompt_profile = pagemill_client::PromptProfile::Small;
        Ok((handle, ep))
    }

    /// `pagemill serve`.
    pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
        let ip: std::net::IpAddr = args
            .host
            .parse()
            .with_context(|| format!("`{}` is not an IP address", args.host))?;
        let key = crate::commands::server_key(ip, &args.exposure)?;
        let (handle, ep) =
            start_with_key(&args.local, std::net::SocketAddr::new(ip, args.port), key).await?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "pagemill serve: model `{}` ({} thread(s) × {} slot(s)) listening on {}",
                ep.model,
                args.local.threads,
                args.local.slots,
                handle.base_url()
            );
            let _ = out.flush();
        }
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        handle.shutdown();
        Ok(ExitCode::SUCCESS)
    }
}

#[cfg(feature = "local")]
pub use enabled::{serve, start};

/// `pagemill serve` in a build without the local backend.
#[cfg(not(feature = "local"))]
pub async fn serve(_: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!(
        "this pagemill was built without the local model (--no-default-features); rebuild with the default features, or point an endpoint at another server"
    )
}
