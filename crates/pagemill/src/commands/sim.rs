//! `pagemill sim`: a simulated provider on a real port, until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_sim::{Profile, ServerOptions, Sim};

use crate::cli::SimArgs;

/// Runs the command.
pub async fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut profile = Profile::load(&args.profile)?;
    if let Some(seed) = args.seed {
        profile.seed = seed;
    }
    if args.print_profile {
        use std::io::Write as _;
        write!(
            std::io::stdout().lock(),
            "{}",
            toml::to_string(&profile).context("printing the profile")?
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let api_key = super::server_key(args.host, &args.exposure)?;
    let options = ServerOptions {
        addr: SocketAddr::new(args.host, args.port),
        log_file: args.log.clone(),
        api_key,
        ..ServerOptions::default()
    };
    let name = profile.name.clone();
    let seed = profile.seed;
    let handle = Sim::start_with(profile, options)
        .await
        .with_context(|| format!("starting the simulator on {}:{}", args.host, args.port))?;
    // Whoever started us may stop reading stdout; that must not stop the server.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "pagemill sim: profile `{name}` (seed {seed}) listening on {}",
            handle.base_url()
        );
        let _ = writeln!(
            out,
            "speaks: chat/completions, completions (prompt arrays), messages (an endpoint with \
             api = \"anthropic\"), responses (api = \"responses\"), and Azure at \
             http://{}/openai/deployments/NAME (provider = \"azure\")",
            handle.addr
        );
        let _ = writeln!(
            out,
            "ground truth: http://{0}/sim/log (JSON, ?format=jsonl), http://{0}/sim/stats",
            handle.addr
        );
        let _ = out.flush();
    }
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    let stats = pagemill_sim::sim::stats(&handle.log());
    eprintln!("stopping: {stats}");
    handle.shutdown();
    Ok(ExitCode::SUCCESS)
}
