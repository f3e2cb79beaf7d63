//! Which endpoints a command talks to: the configuration file, else the environment's
//! `OPENAI_*` default, else the simulator started in-process (so every command works on a
//! fresh machine with no key and no network). The name `sim` always means the simulator
//! unless the configuration defines an endpoint of that name.

use anyhow::Context;
use pagemill_client::{Config, Endpoint};
use pagemill_sim::{Profile, ServerHandle, Sim};

use crate::cli::GlobalArgs;

/// The built-in simulator's endpoint name.
pub const SIM_ENDPOINT: &str = "sim";

/// Endpoints ready to use, and the simulator behind `sim` if one was started.
#[derive(Debug)]
pub struct Resolved {
    /// The endpoints, in the order asked for (or configured).
    pub endpoints: Vec<Endpoint>,
    /// Keeps the in-process simulator alive while the command runs.
    pub sim: Option<ServerHandle>,
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
    let configured_sim = config.endpoint.iter().any(|e| e.name == SIM_ENDPOINT);
    let wants_sim = wanted.iter().any(|w| w == SIM_ENDPOINT) && !configured_sim;
    let nothing_configured = config.endpoint.is_empty();

    let mut sim = None;
    let mut endpoints = Vec::new();
    if wants_sim || nothing_configured {
        if nothing_configured && wanted.is_empty() {
            eprintln!(
                "note: no endpoint configured (no pagemill.toml, no OPENAI_API_KEY); \
                 using the in-process simulator `{SIM_ENDPOINT}`"
            );
        }
        let profile = Profile::load(sim_profile).map_err(anyhow::Error::msg)?;
        let model = profile.model.clone();
        let handle = Sim::start(profile)
            .await
            .context("starting the in-process simulator")?;
        let ep = Endpoint::new(SIM_ENDPOINT, handle.base_url(), model);
        sim = Some((handle, ep));
    }
    let sim_endpoint = sim.as_ref().map(|(_, ep)| ep.clone());
    if wanted.is_empty() {
        endpoints.extend(config.endpoint.iter().cloned());
        if nothing_configured {
            endpoints.extend(sim_endpoint);
        }
    } else {
        for name in wanted {
            match (&sim_endpoint, name.as_str()) {
                (Some(ep), SIM_ENDPOINT) => endpoints.push(ep.clone()),
                _ => endpoints.push(config.get(Some(name))?.clone()),
            }
        }
    }
    let origin = if nothing_configured {
        "the in-process simulator".to_owned()
    } else {
        config.origin.clone().unwrap_or_default()
    };
    Ok(Resolved {
        endpoints,
        sim: sim.map(|(h, _)| h),
        origin,
    })
}
