//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Run documents through per-token-priced LLM endpoints cheaply, and measure those endpoints
/// truthfully.
#[derive(Debug, Parser)]
#[command(name = "pagemill", version, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: $PAGEMILL_CONFIG, else ./pagemill.toml).
    #[arg(long, global = true, env = "PAGEMILL_CONFIG")]
    pub config: Option<PathBuf>,
    /// More logging on stderr (-v, -vv).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send one prompt and show the answer with its timings, tokens and cost.
    Chat(ChatArgs),
    /// Check configured endpoints: reachable, model listed, streaming, usage, parameters.
    Doctor(DoctorArgs),
    /// Serve a simulated OpenAI-compatible provider (latency model, prompt cache, rate limits,
    /// faults) with a ground-truth log at /sim/log.
    Sim(SimArgs),
}

/// `pagemill chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// The prompt.
    pub prompt: String,
    /// Endpoint name from the configuration (default: the first; `sim` for the simulator).
    #[arg(long, short)]
    pub endpoint: Option<String>,
    /// A system prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Upper bound on generated tokens.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Ask for the whole answer at once instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the full record (answer, timeline, usage, cost) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pagemill doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only these endpoints (default: all configured).
    #[arg(long, short)]
    pub endpoint: Vec<String>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `pagemill sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// A preset (fast-local, instant, hosted, slow, flaky, throttled) or a TOML profile file.
    #[arg(long, short, default_value = "fast-local")]
    pub profile: String,
    /// Port to listen on (0: any free port).
    #[arg(long, default_value_t = 8089)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
    /// Seed of every random choice (overrides the profile's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also append every request's ground-truth record to this JSONL file.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Print the resolved profile as TOML and exit (a starting point for your own).
    #[arg(long)]
    pub print_profile: bool,
}
