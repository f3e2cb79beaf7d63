//! `pagemill sim`: a simulated provider on a real port, until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_sim::{Profile, ServerOptions, Sim};

use crate::cli::SimArgs;

/// Runs the command.
pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut profile = Profile::load(&args.profile).map_err(anyhow::Error::msg)?;
    if let Some(seed) = args.seed {
        profile.seed = seed;
    }
    if args.print_profile {
        print!(
            "{}",
            toml::to_string(&profile).context("printing the profile")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = ServerOptions {
        addr: SocketAddr::new(args.host, args.port),
        log_file: args.log.clone(),
        ..ServerOptions::default()
    };
    let name = profile.name.clone();
    let seed = profile.seed;
    let handle = Sim::start_with(profile, options)
        .await
        .with_context(|| format!("starting the simulator on {}:{}", args.host, args.port))?;
    println!(
        "pagemill sim: profile `{name}` (seed {seed}) listening on {}",
        handle.base_url()
    );
    println!(
        "ground truth: http://{}/sim/log (JSON, ?format=jsonl), http://{}/sim/stats",
        handle.addr, handle.addr
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let stats = pagemill_sim::sim::stats(&handle.log());
    eprintln!("stopping: {stats}");
    handle.shutdown();
    Ok(ExitCode::SUCCESS)
}
