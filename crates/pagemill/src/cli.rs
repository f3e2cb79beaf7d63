//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pagemill_bench::collect::SloItem;
use pagemill_bench::experiment::{BenchError, Ramp};
use pagemill_client::PromptProfile;
use pagemill_client::wire::ReasoningEffort;
use pagemill_local::LocalSettings;
use pagemill_pipeline::ingest::Limits;
use pagemill_pipeline::run::{FormatMode, PackSize, RunOptions, UngroundedPolicy};
use pagemill_pipeline::tasks::{TaskConfig, TaskKind};

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
    /// Configuration file (default: $PAGEMILL_CONFIG, else ./pagemill.toml, else
    /// $XDG_CONFIG_HOME/pagemill/config.toml).
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
    /// Measure endpoints: latency, throughput, tokens, caching, errors and cost, under load,
    /// interleaved so they share one time window.
    Bench(Box<BenchArgs>),
    /// Read documents into pages and sections, exactly as the pipeline will see them.
    Ingest(IngestArgs),
    /// Run the pipeline: entities of pages, summaries of sections, metadata of documents —
    /// packed, cache-friendly, validated, grounded, resumable, with exact cost.
    Run(Box<RunArgs>),
    /// Work on what a shared PostgreSQL ledger holds to do (planned by `run --plan`, or by
    /// runs on other machines), on any machine, beside other workers, until it is done.
    Worker(Box<WorkerArgs>),
    /// Tokens and cost of running the pipeline on each endpoint, before running it.
    Quote(Box<QuoteArgs>),
    /// Report on runs and benchmarks: one self-contained HTML file (charts, tables, documents
    /// with their entities), terminal tables (--format text) or JSON (--format json).
    Report(ReportArgs),
    /// Serve the embedded local model over the OpenAI-compatible HTTP surface.
    Serve(ServeArgs),
    /// The embedded local model's file: fetch it, or say where it is.
    Model(ModelArgs),
    /// Quality next to cost: run configurations (endpoints × pack sizes × prompt profiles ×
    /// formats) on documents, or take finished runs, and score them against gold annotations
    /// (`schemas/gold.schema.json`): entities, metadata, summaries, with tokens, cost and latency
    /// a page
    Eval(Box<EvalArgs>),
    /// What each endpoint will be charged and where the prices come from (configuration, the
    /// price table that ships with pagemill, or unknown); a model's table entries; or import
    /// LiteLLM's price file.
    Prices(PricesArgs),
    /// Print a shell completion script: `pagemill completions bash > /etc/bash_completion.d/pagemill`
    /// (or zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the manual page (roff): `pagemill man > pagemill.1; man ./pagemill.1`.
    Man,
}

/// How workers share rate limits (`--rate-sharing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateSharing {
    /// One token bucket row per endpoint in the database.
    Bucket,
    /// The limit divided by the live workers.
    Divide,
    /// Each worker by the whole limit.
    None,
}

/// `pagemill worker`: `run`'s options (the endpoint, concurrency, lease, tasks…), its
/// documents taken from the store.
#[derive(Debug, Args)]
#[command(mut_arg("inputs", |a| a.required(false).hide(true)))]
pub struct WorkerArgs {
    /// How `run` would go (no inputs: they come from the store; --store is a PostgreSQL URL).
    #[command(flatten)]
    pub run: RunArgs,
    /// How often to look for work when there is none.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub poll: std::time::Duration,
    /// Exit once the store holds nothing to do (else wait for more, until SIGTERM or Ctrl-C,
    /// which finish the requests in flight first).
    #[arg(long)]
    pub exit_when_done: bool,
}

/// `pagemill prices`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PricesArgs {
    /// Other things prices does.
    #[command(subcommand)]
    pub command: Option<PricesCommand>,
    /// A model (or part of its name): its entries in the price tables. Without it, the
    /// configured endpoints' prices.
    pub model: Option<String>,
    /// Print a table or JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `pagemill prices …`.
#[derive(Debug, Subcommand)]
pub enum PricesCommand {
    /// Read LiteLLM's `model_prices_and_context_window.json` (its chat models) into your own
    /// price table, consulted before pagemill's.
    Import(PricesImportArgs),
}

/// `pagemill prices import`.
#[derive(Debug, Args)]
pub struct PricesImportArgs {
    /// The LiteLLM file.
    pub file: PathBuf,
    /// Where to write the table [default: $XDG_CONFIG_HOME/pagemill/prices.toml].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

/// `pagemill completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// A `--budget-usd`: a finite amount of dollars, not negative.
fn budget_usd(s: &str) -> Result<f64, String> {
    match s.trim().trim_start_matches('$').parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}`: an amount of dollars, e.g. 2.50")),
    }
}

/// A `--duration`.
fn duration(s: &str) -> Result<std::time::Duration, BenchError> {
    pagemill_bench::experiment::parse_duration(s)
}

/// `--slo`: latency objectives for goodput.
#[derive(Debug, Clone)]
pub struct Slos(pub Vec<SloItem>);

fn slos(s: &str) -> Result<Slos, BenchError> {
    pagemill_bench::experiment::parse_slo(s).map(Slos)
}

/// How to run the embedded local model (shared by `serve` and the default endpoint).
#[derive(Debug, Args, Clone)]
pub struct LocalArgs {
    /// A GGUF file (default: SmolLM2-135M-Instruct Q4_1, fetched on first use).
    #[arg(long, env = "PAGEMILL_MODEL")]
    pub model: Option<PathBuf>,
    /// CPU threads per slot (more than the idle cores makes llama.cpp much slower).
    #[arg(long, default_value_t = LocalSettings::default().threads)]
    pub threads: i32,
    /// Requests decoded at once, each with its own KV cache.
    #[arg(long, default_value_t = LocalSettings::default().slots)]
    pub slots: usize,
    /// Context length per slot, in tokens.
    #[arg(long, default_value_t = LocalSettings::default().ctx)]
    pub ctx: u32,
}

/// `pagemill serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The model and how to run it.
    #[command(flatten)]
    pub local: LocalArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 8090)]
    pub port: u16,
    /// How clients may reach it.
    #[command(flatten)]
    pub exposure: ExposureArgs,
}

/// Who may use a server pagemill starts (`serve`, `sim`).
#[derive(Debug, Args, Clone)]
pub struct ExposureArgs {
    /// Require the key on every request, in its API's header: `Authorization: Bearer <KEY>`
    /// (`x-api-key` on the Messages API, `api-key` on Azure deployment paths); a 401
    /// otherwise.
    #[arg(long, env = "PAGEMILL_SERVE_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Listen beyond loopback with no key: anyone who can reach the port may use it.
    #[arg(long)]
    pub insecure_no_auth: bool,
}

/// `pagemill model`.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ModelAction,
}

/// `pagemill model …`.
#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Download the default model into the cache (once) and verify it.
    Fetch,
    /// Print where the default model is (or would be).
    Path,
}

/// What the pipeline does to documents (shared by `run` and `quote`).
#[derive(Debug, Args, Clone)]
pub struct PipelineArgs {
    /// Files, directories (read recursively) or globs.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// The tasks and how documents are read.
    #[command(flatten)]
    pub work: WorkArgs,
    /// Items per request: a number, or `auto` (as many as fit --pack-tokens, up to 16).
    #[arg(long, default_value_t = RunOptions::default().pack)]
    pub pack: PackSize,
    /// Document tokens one packed request may carry (with --pack auto).
    #[arg(long, default_value_t = RunOptions::default().pack_tokens)]
    pub pack_tokens: u64,
}

/// The tasks, how documents are read, and the simulator's profile (shared by `run`, `quote`
/// and `eval`).
#[derive(Debug, Args, Clone)]
pub struct WorkArgs {
    /// Tasks to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "entities,summary,metadata",
        value_parser = clap::value_parser!(TaskKind)
    )]
    pub tasks: Vec<TaskKind>,
    /// Entity types, comma-separated (default: person, organization, location, date, money,
    /// law, product).
    #[arg(long, value_delimiter = ',')]
    pub entity_types: Vec<String>,
    /// Longest summary, in words (asked of the model; `eval` checks summaries against it).
    #[arg(long, default_value_t = TaskConfig::default().summary_max_words)]
    pub summary_max_words: u32,
    /// A JSON Schema file replacing the metadata schema (e.g. to add fields).
    #[arg(long)]
    pub metadata_schema: Option<PathBuf>,
    /// Characters per page for text without page breaks.
    #[arg(long, default_value_t = Limits::default().text_page_chars)]
    pub page_chars: usize,
    /// Tokens a section may hold before it is split.
    #[arg(long, default_value_t = Limits::default().section_tokens)]
    pub section_tokens: u64,
    /// Profile of the in-process simulator when an endpoint is `sim` (a preset, or a TOML
    /// file; its `[gold]` section makes it answer from a gold file).
    #[arg(long, default_value = "fast-local")]
    pub sim_profile: String,
}

/// `pagemill run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Documents and what to do with them.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Endpoint (default: the first configured; `sim` for the simulator).
    #[arg(long, short)]
    pub endpoint: Option<String>,
    /// Endpoints to fall back to, in order, when the primary fails permanently.
    #[arg(long)]
    pub fallback: Vec<String>,
    /// Where results go: one JSON per document and run-summary.json.
    #[arg(long, short, default_value = "pagemill-out")]
    pub out: PathBuf,
    /// The ledger: a SQLite file (default: `<out>/ledger.sqlite`), or a PostgreSQL database
    /// many runs and workers share (`postgres://user@host/db`; the password from the URL or
    /// PGPASSWORD-style `password=`, never shown; `sslmode=disable|prefer|require`, the
    /// certificate checked against PGSSLROOTCERT when set).
    #[arg(long, env = "PAGEMILL_STORE")]
    pub store: Option<PathBuf>,
    /// How long a PostgreSQL ledger's lease on a unit lasts without the worker's heartbeat
    /// (renewed every third of it): a killed worker's units go to others after it.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub lease: std::time::Duration,
    /// How runs sharing a PostgreSQL ledger share each endpoint's configured requests/min and
    /// tokens/min: `bucket` (one row in the database, reserved from by every request: exact
    /// however many workers come and go), `divide` (each paces at the limit over the live
    /// workers: no round trip a request, late to see workers come and go) or `none` (each
    /// paces by the whole limit alone: for workers with API keys, and limits, of their own).
    #[arg(long, value_enum, default_value_t = RateSharing::Bucket)]
    pub rate_sharing: RateSharing,
    /// Record the documents and plan their units, send nothing: `pagemill worker` processes
    /// sharing the store (a PostgreSQL one) do the work, on any machine. Planning twice plans
    /// once.
    #[arg(long, conflicts_with = "watch")]
    pub plan: bool,
    /// Redo units the ledger already has results for.
    #[arg(long)]
    pub force: bool,
    /// Try the ledger's dead letters again, those whose answers failed too (the ones the
    /// endpoint failed, after its retries ran out, are tried again by every run).
    #[arg(long, conflicts_with = "force")]
    pub retry_failed: bool,
    /// Requests in flight (default: the endpoint's max_concurrency, else 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Re-asks of a unit whose answer is unusable, before it is dead-lettered.
    #[arg(long, default_value_t = RunOptions::default().max_reasks)]
    pub max_reasks: u32,
    /// Structured output: auto (json_schema, falling back when refused), json_schema,
    /// json_object or text.
    #[arg(long, default_value_t = RunOptions::default().format)]
    pub response_format: FormatMode,
    /// Values the document does not back (mentions and metadata not found in it, `date` or
    /// `money` mentions that are neither): drop (counted by reason in each document's
    /// `dropped`) or keep-flagged. Values from the prompt's examples are dropped either way.
    #[arg(long, default_value_t = UngroundedPolicy::default())]
    pub ungrounded: UngroundedPolicy,
    /// How hard a reasoning model thinks (none, minimal, low, medium, high), sent in the
    /// endpoint's API's own way [default: the endpoint's `reasoning_effort`, else the model's].
    /// Results are kept apart per effort.
    #[arg(long)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Send through the endpoint's batch API (OpenAI's, or Anthropic's Message Batches),
    /// polling until done.
    #[arg(long)]
    pub batch: bool,
    /// Seconds between batch polls.
    #[arg(long, default_value_t = RunOptions::default().batch_poll.as_secs_f64())]
    pub batch_poll: f64,
    /// Send up to N requests of a task as one prompt array on legacy /v1/completions (vLLM,
    /// SGLang, llama.cpp's server, the local model), each conversation written in the
    /// endpoint's `prompt_template`; usage is shared out among them.
    #[arg(long, value_name = "N", conflicts_with = "batch")]
    pub array: Option<usize>,
    /// Spend at most this many dollars in this run: a request goes out only while the most it
    /// can cost (its prompt and its whole max_tokens at the endpoint's prices) fits beside what
    /// is spent and in flight; then the run stops (exit code 3), finished work kept, and a
    /// rerun resumes. Needs prices for every endpoint used.
    #[arg(long, value_name = "USD", value_parser = budget_usd, conflicts_with_all = ["batch", "watch"])]
    pub budget_usd: Option<f64>,
    /// The same for a day: what every run on this ledger spent since midnight counts
    /// (`--budget-tz`), so the limit holds across restarts.
    #[arg(long, value_name = "USD", value_parser = budget_usd, conflicts_with = "batch")]
    pub budget_usd_per_day: Option<f64>,
    /// Tokens (prompt and completion, as providers count them) a day may see spent, counted
    /// as `--budget-usd-per-day`; needs no prices.
    #[arg(long, value_name = "TOKENS", conflicts_with = "batch")]
    pub budget_tokens_per_day: Option<u64>,
    /// Keep running: watch the inputs (directories recursively) and run every new or changed
    /// file once it has settled, on the same ledger, until SIGTERM or Ctrl-C (which drain the
    /// requests in flight and exit 0).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: how often to list the inputs where there are no file-system events
    /// (--watch-poll, or inotify unavailable), e.g. `2s`, `500ms`.
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub watch_interval: std::time::Duration,
    /// With --watch: list the inputs every --watch-interval instead of waiting for inotify's
    /// events (network file systems, and bind mounts that send none).
    #[arg(long)]
    pub watch_poll: bool,
    /// With --watch: at most this many files a pass, oldest first (the rest go in the next
    /// passes); each pass writes its results as it ends, so a large drop shows results as it
    /// goes.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub watch_batch: u32,
    /// With --watch: a file is taken once unchanged for this long (a file being written waits).
    #[arg(long, value_parser = duration, default_value = "2s")]
    pub settle: std::time::Duration,
    /// Serve Prometheus metrics of the run at http://ADDR/metrics while it runs (e.g.
    /// 127.0.0.1:9184; port 0 picks a free one, printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where a budget's day begins: UTC, or an offset such as +02:00 or -05:30.
    #[arg(long, value_name = "OFFSET", default_value = "UTC", value_parser = pagemill_pipeline::run::budget::parse_utc_offset)]
    pub budget_tz: i32,
    /// Ask for whole answers instead of streams.
    #[arg(long)]
    pub no_stream: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// What to print: the summary as text or JSON, or every entity mention of the run's
    /// documents as JSONL or CSV rows (document, page, offsets, type, text, grounding).
    #[arg(long, value_enum, default_value_t = RowFormat::Text)]
    pub format: RowFormat,
}

/// What `pagemill report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One self-contained HTML file.
    Html,
    /// The figures as JSON (schemas/report.schema.json).
    Json,
    /// Tables on standard output.
    Text,
}

/// `pagemill report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A ledger (`pagemill run`'s `<out>/ledger.sqlite`), bench results (`pagemill bench -o
    /// FILE`) and/or an eval report (`pagemill eval`'s `<out>/eval-report.json`), told apart by
    /// their contents [default: pagemill-out/ledger.sqlite].
    pub inputs: Vec<PathBuf>,
    /// Where to write (`-` for standard output) [default: pagemill-report.html; JSON goes to
    /// standard output].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// An HTML page (written to --out), the figures as JSON, or tables on the terminal (with
    /// --document: that document page by page).
    #[arg(long, value_enum, default_value = "html")]
    pub format: ReportFormat,
    /// The same as `--format text`.
    #[arg(long, hide = true)]
    pub terminal: bool,
    /// Show documents whose path contains this, or whose id starts with it (repeatable).
    #[arg(long)]
    pub document: Vec<String>,
    /// Show at most this many documents page by page (the most recent, unless --document).
    #[arg(long, default_value_t = 20)]
    pub documents: usize,
    /// Project monthly cost at this many pages a day (besides the observed rate).
    #[arg(long)]
    pub pages_per_day: Option<f64>,
}

/// `pagemill quote`.
#[derive(Debug, Args)]
pub struct QuoteArgs {
    /// Documents and what to do with them.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Endpoints to quote (default: all configured).
    #[arg(long, short)]
    pub endpoint: Vec<String>,
    /// Pages a day, for the monthly figure.
    #[arg(long)]
    pub pages_per_day: Option<u64>,
    /// Print the quotes as text or JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
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
    /// Sampling temperature [default: the server's; 0 on an endpoint with the small prompt
    /// profile, such as the embedded model]
    #[arg(long)]
    pub temperature: Option<f32>,
    /// How hard a reasoning model thinks (none, minimal, low, medium, high) [default: the
    /// endpoint's `reasoning_effort`, else the model's].
    #[arg(long)]
    pub reasoning_effort: Option<ReasoningEffort>,
    /// Ask for the whole answer at once instead of streaming it.
    #[arg(long)]
    pub no_stream: bool,
    /// Print the answer and one line of figures, or the full record (answer, timeline, usage,
    /// cost) as JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `pagemill doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check only these endpoints (default: all configured).
    #[arg(long, short)]
    pub endpoint: Vec<String>,
    /// Print the checks as text or JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
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
    /// With a profile that speaks TLS, write its self-signed certificate here (PEM) for
    /// clients' `transport.ca_file` (default: a file in the temporary directory, named on
    /// start).
    #[arg(long)]
    pub ca_out: Option<PathBuf>,
    /// How clients may reach it (the ground-truth routes fall under the key too).
    #[command(flatten)]
    pub exposure: ExposureArgs,
}

/// What `pagemill bench` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Prompts of exactly `--input-tokens` tokens, unique from their first token.
    Synthetic,
    /// `--prefixes` shared system prefixes of `--prefix-tokens` + unique `--suffix-tokens`.
    SharedPrefix,
    /// Pages of `--files`, about `--page-tokens` each.
    Pages,
    /// The requests a `pagemill run` recorded in `--ledger`, replayed with their prompt and
    /// completion lengths and shared prefixes (your real traffic's shape, without the
    /// documents).
    Ledger,
}

/// How arrivals are spaced with `--rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ArrivalKind {
    /// Evenly.
    Constant,
    /// Exponential gaps.
    Poisson,
    /// Gamma gaps with shape `--burstiness` (below 1: burstier).
    Gamma,
}

/// A lever to test per endpoint, as two interleaved arms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExperimentKind {
    /// Pooled keep-alive connections vs a fresh connection per request (and, over TLS, vs
    /// HTTP/2 with every request on one connection).
    Keepalive,
    /// A stable shared prefix vs a randomized one of the same length.
    Cache,
    /// One item per request vs `--pack-k` items per request.
    Pack,
    /// The same items as `--pack-k` prompts in one `/v1/completions` request (a prompt
    /// array), one prompt a request, and `--pack-k` items packed into one chat prompt.
    Prompts,
    /// System prompt `--trim-a` vs `--trim-b` on the same inputs.
    Trim,
}

/// What a command prints on standard output: `--format`, on every command. Files a command
/// writes (results, reports) are named by `--out`/`-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Tables and lines to read.
    Text,
    /// One JSON document (each command's schema is in `schemas/`).
    Json,
}

/// `--format` of the commands whose results are also rows (`run`: entity mentions; `bench`:
/// requests), for loading into a dataframe or warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RowFormat {
    /// Tables and lines to read.
    Text,
    /// One JSON document.
    Json,
    /// One JSON object a row.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// `pagemill bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Endpoints to compare (default: all configured; `sim` for the in-process simulator).
    #[arg(long = "endpoint", short)]
    pub endpoints: Vec<String>,
    /// Profile of the in-process `sim` endpoint.
    #[arg(long, default_value = "fast-local")]
    pub sim_profile: String,
    /// What to send.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Synthetic)]
    pub workload: WorkloadKind,
    /// Prompt length, synthetic workload.
    #[arg(long, default_value_t = 256)]
    pub input_tokens: u64,
    /// `max_tokens` of every request.
    #[arg(long, default_value_t = 64)]
    pub output_tokens: u32,
    /// Shared-prefix workload: distinct prefixes.
    #[arg(long, default_value_t = 4)]
    pub prefixes: usize,
    /// Shared-prefix workload: prefix length.
    #[arg(long, default_value_t = 1024)]
    pub prefix_tokens: u64,
    /// Shared-prefix workload: unique suffix length.
    #[arg(long, default_value_t = 64)]
    pub suffix_tokens: u64,
    /// Pages workload: documents of any kind pagemill reads (PDF, HTML, Markdown, text, DOCX),
    /// directories or globs.
    #[arg(long)]
    pub files: Vec<PathBuf>,
    /// Pages workload: page size.
    #[arg(long, default_value_t = 800)]
    pub page_tokens: u64,
    /// Ledger workload: the ledger of a finished `pagemill run` (e.g. pagemill-out/ledger.sqlite).
    #[arg(long)]
    pub ledger: Option<PathBuf>,
    /// Pages workload: the system prompt.
    #[arg(long, default_value = "Summarize this page in three sentences.")]
    pub instruction: String,
    /// Ask servers to ignore end-of-sequence, for exact output lengths.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Ask for whole answers instead of streams (TTFT is then the whole latency).
    #[arg(long)]
    pub no_stream: bool,
    /// Requests in flight (closed loop). Default when no rate is given: 8.
    #[arg(long, short)]
    pub concurrency: Option<usize>,
    /// Arrivals per second (open loop).
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,
    /// Arrival process with `--rate`.
    #[arg(long, value_enum, default_value_t = ArrivalKind::Poisson)]
    pub arrival: ArrivalKind,
    /// Gamma shape with `--arrival gamma`.
    #[arg(long, default_value_t = 0.5)]
    pub burstiness: f64,
    /// A linear rate ramp `FROM:TO:SECONDS`.
    #[arg(long, conflicts_with_all = ["concurrency", "rate"])]
    pub ramp: Option<Ramp>,
    /// Run at each of these concurrencies, e.g. `1,4,16,64`.
    #[arg(long, value_delimiter = ',')]
    pub sweep_concurrency: Vec<usize>,
    /// Run at each of these rates, e.g. `5,10,20`.
    #[arg(long, value_delimiter = ',')]
    pub sweep_rate: Vec<f64>,
    /// Find the rate where the endpoints stop keeping up, then run at 50/75/90% of it.
    #[arg(long)]
    pub find_saturation: bool,
    /// Requests per run, warm-up included (default 100 when no --duration).
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,
    /// Length of each run, e.g. `30s`, `2m`, `1m30s`, `1h`.
    #[arg(long, value_parser = duration)]
    pub duration: Option<std::time::Duration>,
    /// Unmeasured requests at the start of each run.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Runs per load point (confidence intervals across runs).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Drive the load from N threads, each with a single-threaded runtime and connections of
    /// its own, feeding one collector: for a client core that is the limit (the self-check
    /// says so) on a machine with cores to spare. Default: one multi-threaded runtime.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub client_cores: u16,
    /// SLOs for goodput, e.g. `ttft_p99=500ms,tpot_p99=50ms`.
    #[arg(long, value_parser = slos)]
    pub slo: Option<Slos>,
    /// For cost per month.
    #[arg(long)]
    pub pages_per_day: Option<f64>,
    /// Test a lever per endpoint as interleaved arms (two; three for `prompts`).
    #[arg(long, value_enum)]
    pub experiment: Option<ExperimentKind>,
    /// Items per request in the `pack` and `prompts` experiments.
    #[arg(long, default_value_t = 8)]
    pub pack_k: usize,
    /// First system prompt file of the `trim` experiment.
    #[arg(long)]
    pub trim_a: Option<PathBuf>,
    /// Second system prompt file of the `trim` experiment.
    #[arg(long)]
    pub trim_b: Option<PathBuf>,
    /// Same prompts at temperature 0 to every endpoint: exact-match and JSON-field agreement.
    #[arg(long, default_value_t = 0)]
    pub agreement: u64,
    /// What to print: tables, the results as JSON, or every request's record as JSONL or CSV
    /// rows.
    #[arg(long, value_enum, default_value_t = RowFormat::Text)]
    pub format: RowFormat,
    /// Also write the results as JSON here (what `pagemill report` reads).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Write every request's record here (JSONL).
    #[arg(long)]
    pub records: Option<PathBuf>,
    /// Check pagemill's timings against a pagemill simulator's own log (`/sim/log`).
    #[arg(long)]
    pub truth: bool,
    /// No progress on stderr.
    #[arg(long, short)]
    pub quiet: bool,
    /// When stderr is not a terminal (a log collector, a file), print a progress line this
    /// often, e.g. `10s`, `1m` (on a terminal, one line is redrawn every second).
    #[arg(long, value_parser = duration, default_value = "10s")]
    pub progress_every: std::time::Duration,
    /// Serve Prometheus metrics of the benchmark at http://ADDR/metrics while it runs
    /// (requests, tokens, errors, cost and latency histograms by target; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Seed of arrivals and synthetic prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// `pagemill eval`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct EvalArgs {
    /// Other things eval does.
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// The gold file: JSONL, one document per line.
    #[arg(required = true)]
    pub gold: Option<PathBuf>,
    /// Documents to run every configuration on (files, directories, globs). Without them,
    /// eval scores finished runs (--results).
    pub docs: Vec<PathBuf>,
    /// Endpoints to compare (repeat it; default: the first configured, else the embedded
    /// model; `sim` for the simulator).
    #[arg(long, short)]
    pub endpoint: Vec<String>,
    /// Pack sizes to compare, comma-separated (`1,8`; `auto`). A number is run as given, even
    /// above a small model's ceiling: eval measures what you ask.
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub pack: Vec<PackSize>,
    /// Prompt profiles to compare, comma-separated (`default,small`; default: each endpoint's
    /// own).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(PromptProfile))]
    pub prompt_profile: Vec<PromptProfile>,
    /// Structured output modes to compare, comma-separated (auto, json_schema, json_object,
    /// text).
    #[arg(long, value_delimiter = ',', default_value = "auto")]
    pub response_format: Vec<FormatMode>,
    /// The tasks and how documents are read.
    #[command(flatten)]
    pub work: WorkArgs,
    /// Where each configuration's results go (a directory each) and the shared ledger.
    #[arg(long, short, default_value = "eval-out")]
    pub out: PathBuf,
    /// The ledger (default: `<out>/ledger.sqlite`; or a PostgreSQL URL, as `run --store`).
    /// Finished units are reused, so a second eval of the same configurations pays nothing.
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Run the configurations one after another (each wall time its own) instead of
    /// interleaved (all in one time window, as a fair comparison of endpoints needs).
    #[arg(long)]
    pub sequential: bool,
    /// Requests in flight per configuration (default: the endpoint's max_concurrency, else 8).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// A finished run's output directory (its per-document JSON and run-summary.json), when no
    /// documents are given. Repeat it to put runs side by side: each is compared with the
    /// first, document by document, with 95% intervals.
    #[arg(long, default_values = ["pagemill-out"])]
    pub results: Vec<PathBuf>,
    /// Print text or JSON (`schemas/eval-report.schema.json`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `pagemill eval …`.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Write a gold skeleton from a finished run's results (every kept mention with its
    /// offsets, the metadata, each section's summary), to correct by hand.
    Init(EvalInitArgs),
    /// Write gold from files in formats people already have: CoNLL/BIO token files for
    /// entities (one file per document, named after it: `report.pdf.conll` is `report.pdf`'s)
    /// and a CSV for metadata (a `path` or `id` column, one column per field, lists split on
    /// `;`).
    Import(EvalImportArgs),
}

/// `pagemill eval import`.
#[derive(Debug, Args)]
pub struct EvalImportArgs {
    /// CoNLL/BIO token files, one per document.
    #[arg(long)]
    pub conll: Vec<PathBuf>,
    /// A CSV of metadata, one row per document.
    #[arg(long)]
    pub metadata_csv: Option<PathBuf>,
    /// Where to write the gold file.
    #[arg(short, long, default_value = "gold.jsonl")]
    pub output: PathBuf,
    /// Replace the gold file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `pagemill eval init`.
#[derive(Debug, Args)]
pub struct EvalInitArgs {
    /// The run's output directory.
    #[arg(default_value = "pagemill-out")]
    pub results: PathBuf,
    /// Where to write the gold file.
    #[arg(short, long, default_value = "gold.jsonl")]
    pub output: PathBuf,
    /// Replace the gold file if it exists.
    #[arg(long)]
    pub force: bool,
}

/// `pagemill ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Files, directories (read recursively) or globs.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Print text or JSON (`schemas/ingest.schema.json`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write each document's page texts under this directory, to read what a model will see.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Characters per page for text without page breaks (HTML, Markdown, plain text, DOCX).
    #[arg(long, default_value_t = Limits::default().text_page_chars)]
    pub page_chars: usize,
    /// Tokens a section may hold before it is split.
    #[arg(long, default_value_t = Limits::default().section_tokens)]
    pub section_tokens: u64,
    /// List every page, not only the ones that need attention.
    #[arg(long)]
    pub all_pages: bool,
}
