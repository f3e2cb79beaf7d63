//! Which endpoints a command talks to: the configuration file, else the environment's
//! `OPENAI_*` default, else a built-in one started in-process — the embedded local model
//! (`local`), or the simulator (`sim`) in a build without it — so every command works on a
//! fresh machine with no key and no network. The names `local` and `sim` always mean the
//! built-in ones unless the configuration defines endpoints of those names.

use anyhow::Context;
use pagemill_client::{ClientError, Config, Endpoint};
use pagemill_sim::{Profile, ServerHandle, Sim};

use crate::cli::GlobalArgs;

/// The built-in simulator's endpoint name.
pub const SIM_ENDPOINT: &str = "sim";
/// The embedded local model's endpoint name.
pub const LOCAL_ENDPOINT: &str = pagemill_local::start::ENDPOINT_NAME;

/// Endpoints ready to use, and the in-process servers behind `sim` / `local` if started.
#[derive(Debug)]
pub struct Resolved {
    /// The endpoints, in the order asked for (or configured).
    pub endpoints: Vec<Endpoint>,
    /// Keeps the in-process servers alive while the command runs.
    pub servers: Vec<ServerHandle>,
    /// Where the endpoints came from, for messages.
    pub origin: String,
}

/// Resolves `wanted` endpoint names (all configured ones when empty).
pub async fn resolve(global: &GlobalArgs, wanted: &[String]) -> anyhow::Result<Resolved> {
    resolve_with(global, wanted, "fast-local").await
}

/// Like [`resolve`], with the in-process simulator (if one starts) on `sim_profile`.
pub async fn resolve_with(
    global: &GlobalArgs,
    wanted: &[String],
    sim_profile: &str,
) -> anyhow::Result<Resolved> {
    let config = Config::load(global.config.as_deref())?;
    let configured = |name: &str| config.endpoint.iter().any(|e| e.name == name);
    let asks = |name: &str| wanted.iter().any(|w| w == name) && !configured(name);
    let nothing_configured = config.endpoint.is_empty();
    let by_default = nothing_configured && wanted.is_empty();
    let local_default = by_default && pagemill_local::AVAILABLE;

    let mut servers = Vec::new();
    let mut builtin: Vec<Endpoint> = Vec::new();
    if asks(SIM_ENDPOINT) || (by_default && !local_default) {
        if by_default {
            eprintln!(
                "note: no endpoint configured (no pagemill.toml, no OPENAI_API_KEY); \
                 using the in-process simulator `{SIM_ENDPOINT}`"
            );
        }
        let profile = Profile::load(sim_profile)?;
        let model = profile.model.clone();
        let like = profile.priced_like.clone();
        let handle = Sim::start(profile)
            .await
            .context("starting the in-process simulator")?;
        let mut ep = Endpoint::new(SIM_ENDPOINT, handle.base_url(), model);
        // A profile with TLS serves a certificate made at start: trust exactly that one.
        ep.transport.ca_pem = handle.ca_pem().map(str::to_owned);
        // Priced like a real model, so a demo shows real-looking costs, labelled simulated.
        if let Some(like) = like {
            pagemill_client::prices::simulate(&mut ep, &like);
        }
        // The simulator reads ChatML prompts back into their messages (`run --array`).
        ep.prompt_template = Some("chatml".into());
        builtin.push(ep);
        servers.push(handle);
    }
    if asks(LOCAL_ENDPOINT) || local_default {
        if by_default {
            eprintln!(
                "note: no endpoint configured (no pagemill.toml, no OPENAI_API_KEY); \
                 using the embedded local model `{LOCAL_ENDPOINT}`"
            );
        }
        let (handle, ep) = start_local().await?;
        builtin.push(ep);
        servers.push(handle);
    }
    let find_builtin = |name: &str| builtin.iter().find(|e| e.name == name).cloned();
    let mut endpoints = Vec::new();
    if wanted.is_empty() {
        endpoints.extend(config.endpoint.iter().cloned());
        if nothing_configured {
            endpoints.extend(builtin.iter().cloned());
        }
    } else {
        for name in wanted {
            match find_builtin(name) {
                Some(ep) if !configured(name) => endpoints.push(ep),
                _ => endpoints.push(config.get(Some(name)).map_err(with_builtins)?.clone()),
            }
        }
    }
    let origin = if nothing_configured {
        "the built-in endpoint".to_owned()
    } else {
        config.origin.clone().unwrap_or_default()
    };
    Ok(Resolved {
        endpoints,
        servers,
        origin,
    })
}

/// An unknown endpoint's error lists the built-in ones too (`sim`, and `local` when built in).
fn with_builtins(e: ClientError) -> ClientError {
    match e {
        ClientError::UnknownEndpoint { name, mut known } => {
            known.push(SIM_ENDPOINT.to_owned());
            if pagemill_local::AVAILABLE {
                known.push(LOCAL_ENDPOINT.to_owned());
            }
            ClientError::UnknownEndpoint { name, known }
        }
        other => other,
    }
}

async fn start_local() -> anyhow::Result<(ServerHandle, Endpoint)> {
    let settings = pagemill_local::LocalSettings::from_env();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    Ok(pagemill_local::start(&settings, loopback, None, crate::commands::local::say).await?)
}
