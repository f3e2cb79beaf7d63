//! The embedded local model: `pagemill serve` and `pagemill model fetch|path`. Starting it is
//! `pagemill_local::start`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_local::{LocalSettings, model};

use crate::cli::{LocalArgs, ModelAction, ModelArgs, ServeArgs};

/// What the local model says while it starts (a first download).
pub(crate) fn say(m: &str) {
    eprintln!("pagemill: {m}");
}

impl From<&LocalArgs> for LocalSettings {
    fn from(a: &LocalArgs) -> Self {
        Self {
            model: a.model.clone(),
            threads: a.threads,
            slots: a.slots,
            ctx: a.ctx,
        }
    }
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
            let settings = LocalSettings::from_env();
            let path = pagemill_local::start::model_path(settings.model.as_deref(), say).await?;
            writeln!(std::io::stdout(), "{}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pagemill serve`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ip: std::net::IpAddr = args
        .host
        .parse()
        .with_context(|| format!("`{}` is not an IP address", args.host))?;
    let key = crate::commands::server_key(ip, &args.exposure)?;
    let settings = LocalSettings::from(&args.local);
    let (handle, ep) = pagemill_local::start(
        &settings,
        std::net::SocketAddr::new(ip, args.port),
        key,
        say,
    )
    .await?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "pagemill serve: model `{}` ({} thread(s) × {} slot(s)) listening on {}",
            ep.model,
            settings.threads,
            settings.slots,
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
