//! `pagemill sim`: a simulated provider on a real port, until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_pipeline::run::output::write_atomic;
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
    let ca_file = match handle.ca_pem() {
        Some(pem) => {
            let path = args.ca_out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("pagemill-sim-{}.pem", handle.addr.port()))
            });
            write_atomic(&path, pem.as_bytes())
                .with_context(|| format!("writing the certificate to `{}`", path.display()))?;
            Some(path)
        }
        None => None,
    };
    let root = handle.base_url().trim_end_matches("/v1").to_owned();
    // Whoever started us may stop reading stdout; that must not stop the server.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "pagemill sim: profile `{name}` (seed {seed}) listening on {}",
            handle.base_url()
        );
        if let Some(path) = &ca_file {
            let _ = writeln!(
                out,
                "TLS with a self-signed certificate, written to {0}: trust it with \
                 transport = {{ ca_file = \"{0}\" }} on the endpoint",
                path.display()
            );
        }
        let _ = writeln!(
            out,
            "speaks: chat/completions, completions (prompt arrays), messages (an endpoint with \
             api = \"anthropic\"), responses (api = \"responses\"), and Azure at \
             {root}/openai/deployments/NAME (provider = \"azure\")"
        );
        let _ = writeln!(
            out,
            "ground truth: {root}/sim/log (JSON, ?format=jsonl), {root}/sim/stats"
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
