//! The `pagemill` command line: arguments → settings → library calls → printed results.
//!
//! # Layout
//! - [`cli`]: clap definitions (doc comments are the help text).
//! - [`settings`]: endpoint resolution — configuration file, environment, or the in-process
//!   simulator when nothing is configured.
//! - [`commands`]: one module per command.
//!
//! Every view (tables, numbers, text made inert) is `pagemill_report::terminal` and
//! `pagemill_report::fmt`; what each command does is a library call.

pub mod cli;
pub mod commands;
pub mod settings;

use std::process::ExitCode;

use pagemill_client::ClientError;

/// What pagemill's exit codes mean (README, "Exit codes").
pub mod exit {
    /// Everything done.
    pub const SUCCESS: u8 = 0;
    /// Finished, but some work was given up on (dead letters), some input skipped, or a check
    /// failed (`doctor`): the results of everything else are there.
    pub const INCOMPLETE: u8 = 1;
    /// The command line was wrong (clap's own code, and values refused after parsing).
    pub const USAGE: u8 = 2;
    /// Stopped early (Ctrl-C, the run's budget reached, a fatal ledger error): a rerun resumes
    /// where it stopped.
    pub const STOPPED: u8 = 3;
    /// The endpoint could not be used: unreachable, refusing (auth, unknown model), or
    /// misconfigured (no key, bad URL); a run where no request succeeded.
    pub const ENDPOINT: u8 = 4;
    /// Bad input: nothing readable, an unreadable or invalid file (gold, schema, profile,
    /// configuration), a ledger in use or from a newer pagemill.
    pub const INPUT: u8 = 5;
    /// A bug: a panic or an error pagemill has no better name for.
    pub const INTERNAL: u8 = 6;
}

/// A command line value refused after parsing (exit code [`exit::USAGE`]).
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Makes a refused value a [`Usage`] error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// The exit code of a command that failed with `e`.
pub fn exit_code_for(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() {
            return exit::USAGE;
        }
        if cause.is::<ClientError>() || cause.is::<pagemill_client::RequestError>() {
            return exit::ENDPOINT;
        }
        // Errors that wrap a client error transparently (their chain skips it).
        if let Some(pagemill_bench::experiment::BenchError::Client(_)) = cause.downcast_ref() {
            return exit::ENDPOINT;
        }
        if let Some(pagemill_local::LocalError::Task(_)) = cause.downcast_ref() {
            return exit::INTERNAL;
        }
        if cause.is::<std::io::Error>()
            || cause.is::<pagemill_pipeline::store::StoreError>()
            || cause.is::<pagemill_pipeline::eval::gold::GoldError>()
            || cause.is::<serde_json::Error>()
        {
            return exit::INPUT;
        }
        if cause.is::<tokio::task::JoinError>() {
            return exit::INTERNAL;
        }
    }
    // Untyped messages are pagemill's own refusals of what it was given.
    exit::INPUT
}

/// Runs a parsed command line.
pub async fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        cli::Command::Chat(args) => commands::chat::run(&cli.global, args).await,
        cli::Command::Doctor(args) => commands::doctor::run(&cli.global, args).await,
        cli::Command::Sim(args) => commands::sim::run(args).await,
        cli::Command::Bench(args) => commands::bench::run(&cli.global, *args).await,
        cli::Command::Ingest(args) => commands::ingest::run(args).await,
        cli::Command::Run(args) => commands::run::run(&cli.global, *args).await,
        cli::Command::Worker(args) => commands::worker::run(&cli.global, *args).await,
        cli::Command::Quote(args) => commands::quote::run(&cli.global, *args).await,
        cli::Command::Report(args) => commands::report::run(args),
        cli::Command::Serve(args) => commands::local::serve(args).await,
        cli::Command::Model(args) => commands::local::model(args).await,
        cli::Command::Eval(args) => commands::eval::run(&cli.global, &args).await,
        cli::Command::Prices(args) => commands::prices::run(&cli.global, args),
        cli::Command::Completions(args) => {
            use clap::CommandFactory as _;
            let mut cmd = cli::Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(args.shell, &mut cmd, "pagemill", &mut out);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Man => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_mangen::Man::new(cli::Cli::command()).render(&mut out)?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An actionable next step for errors whose fix we know.
pub fn hint_for(e: &anyhow::Error) -> Option<String> {
    match e.downcast_ref::<ClientError>()? {
        ClientError::MissingApiKey { var, .. } => Some(format!(
            "export {var}=… in this shell, or remove `api_key_env` for a local server"
        )),
        ClientError::UnknownEndpoint { .. } | ClientError::NoEndpoint => Some(
            "add an [[endpoint]] table to pagemill.toml, or set OPENAI_API_KEY / OPENAI_BASE_URL"
                .into(),
        ),
        ClientError::Config { .. } => {
            Some("pagemill.example.toml is an annotated configuration to start from".into())
        }
        _ => None,
    }
}

/// Whether `e` is a write to a pipe whose reader has gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs to stderr; `-v` for debug, `RUST_LOG` for anything finer.
pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,pagemill=debug,pagemill_client=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .try_init();
}
