//! `pagemill run`: the document pipeline, with progress bars, a resumable ledger, one JSON per
//! document and a run summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use pagemill_client::{Client, Money};
use pagemill_pipeline::ingest::Document;
use pagemill_pipeline::run::budget::BudgetSpec;
use pagemill_pipeline::run::output::{SUMMARY_FILE, mention_rows, write_results};
use pagemill_pipeline::run::setup::{self, Setup};
use pagemill_pipeline::run::{Progress, RunOptions, RunSummary};
use pagemill_pipeline::store::{Ledger, PgLedger, Replan, Sharing, Store, postgres};
use pagemill_pipeline::tasks::TaskConfig;
use pagemill_report::terminal;

use crate::cli::{GlobalArgs, PipelineArgs, RateSharing, RowFormat, RunArgs};
use crate::commands::ingest::read_inputs;
use crate::settings;

/// Documents read, the ones that could not be, and what to run on them.
pub(crate) struct Prepared {
    pub(crate) docs: Vec<Document>,
    pub(crate) skipped: Vec<(PathBuf, String)>,
    pub(crate) setup: Setup,
}

/// Reads the inputs and sets up the tasks `args` ask for.
pub(crate) async fn prepare(args: &PipelineArgs) -> anyhow::Result<Prepared> {
    let setup = setup_of(args)?;
    let (docs, skipped) =
        read_inputs(&args.inputs, args.work.page_chars, args.work.section_tokens).await?;
    Ok(Prepared {
        docs,
        skipped,
        setup,
    })
}

/// The tasks `args` ask for, checked (a template that does not render is found before any
/// document is read).
pub(crate) fn setup_of(args: &PipelineArgs) -> anyhow::Result<Setup> {
    let mut config = TaskConfig {
        summary_max_words: args.work.summary_max_words,
        ..TaskConfig::default()
    };
    if !args.work.entity_types.is_empty() {
        config.entity_types = args.work.entity_types.clone();
    }
    if let Some(path) = &args.work.metadata_schema {
        config.metadata_schema = Some(setup::metadata_schema(path)?);
    }
    let setup = Setup {
        kinds: args.work.tasks.clone(),
        config,
        opts: RunOptions {
            pack: args.pack,
            pack_tokens: args.pack_tokens,
            ..RunOptions::default()
        },
    };
    setup.tasks()?;
    Ok(setup)
}

/// What every pass of a run shares: its tasks fitted to the primary endpoint, its endpoints
/// and its options.
pub(crate) struct RunContext {
    pub(crate) tasks: pagemill_pipeline::run::plan::Tasks,
    pub(crate) endpoints: Vec<Arc<Client>>,
    pub(crate) opts: RunOptions,
    /// Keeps the in-process servers (`sim`, `local`) alive for as long as the run.
    pub(crate) servers: Vec<pagemill_sim::ServerHandle>,
}

/// Resolves the endpoints `args` name and fits the tasks and options to them.
pub(crate) async fn context(
    global: &GlobalArgs,
    args: &RunArgs,
    setup: Setup,
) -> anyhow::Result<RunContext> {
    let wanted: Vec<String> = args
        .endpoint
        .iter()
        .chain(&args.fallback)
        .cloned()
        .collect();
    let resolved = settings::resolve_with(global, &wanted, &args.pipeline.work.sim_profile).await?;
    let endpoints: Vec<Arc<Client>> = resolved
        .endpoints
        .iter()
        .take(if wanted.is_empty() { 1 } else { usize::MAX })
        .map(|e| {
            let mut e = e.clone();
            if args.reasoning_effort.is_some() {
                e.reasoning_effort = args.reasoning_effort;
            }
            Client::new(e).map(Arc::new)
        })
        .collect::<Result<_, _>>()?;
    let primary = endpoints
        .first()
        .ok_or(pagemill_client::ClientError::NoEndpoint)?;
    let (tasks, mut opts) = setup.fitted(primary.endpoint().prompt_profile)?;
    opts.plan_only = args.plan;
    opts.replan = if args.force {
        Replan::Force
    } else if args.retry_failed {
        Replan::RetryFailed
    } else {
        Replan::Resume
    };
    opts.max_reasks = args.max_reasks;
    opts.format = args.response_format;
    opts.stream = !args.no_stream;
    opts.batch = args.batch;
    opts.array = args.array.unwrap_or(0);
    opts.budget = BudgetSpec {
        usd: args.budget_usd,
        usd_per_day: args.budget_usd_per_day,
        tokens_per_day: args.budget_tokens_per_day,
        utc_offset_minutes: args.budget_tz,
    };
    if opts.budget.counts_dollars()
        && let Some(unpriced) = endpoints.iter().find(|c| !c.endpoint().prices.is_known())
    {
        anyhow::bail!(
            "--budget-usd needs the prices of every endpoint it may spend on; `{}` has none \
             (set [endpoint.prices] input and output, in dollars per million tokens)",
            unpriced.endpoint().name
        );
    }
    opts.batch_poll = Duration::from_secs_f64(args.batch_poll.max(0.01));
    opts.concurrency = args
        .concurrency
        .or(primary.endpoint().limits.max_concurrency)
        .unwrap_or(8);
    Ok(RunContext {
        tasks,
        endpoints,
        opts,
        servers: resolved.servers,
    })
}

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.watch {
        return super::watch::run(global, args).await;
    }
    let prepared = prepare(&args.pipeline).await?;
    // Nothing to run: say why before anything is created (no output folder, no ledger).
    if prepared.docs.is_empty() {
        let reasons: Vec<String> = prepared
            .skipped
            .iter()
            .map(|(path, why)| pagemill_report::fmt::skipped(path, why))
            .collect();
        anyhow::bail!(
            "no readable documents among the inputs{}",
            if reasons.is_empty() {
                String::new()
            } else {
                format!(":\n  {}", reasons.join("\n  "))
            }
        );
    }
    let RunContext {
        tasks,
        endpoints,
        opts,
        servers: _servers,
    } = context(global, &args, prepared.setup).await?;
    let policy = args.ungrounded;

    let (store, ledger) = open_any_store(&args.out, &args)?;
    for (path, why) in &prepared.skipped {
        eprintln!("skipped {}", pagemill_report::fmt::skipped(path, why));
    }

    let progress = Arc::new(Progress {
        stop: crate::commands::stop_on_ctrl_c(
            "stopping: no new requests; finishing those in flight, then writing the results (the ledger keeps every finished one)",
        ),
        ..Progress::default()
    });
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let live = super::metrics::Live::of(&progress, &endpoints);
            Some(super::metrics::serve(addr, live).await?)
        }
        None => None,
    };
    let show = !args.quiet && std::io::stderr().is_terminal();
    let bars = show.then(|| Bars::new(Arc::clone(&progress)));

    let outcome = pagemill_pipeline::run::run(
        &prepared.docs,
        tasks,
        endpoints,
        ledger,
        opts,
        Arc::clone(&progress),
        policy,
    )
    .await;
    if let Some(b) = bars {
        b.finish().await;
    }
    drop(metrics);
    let outcome = outcome?;

    write_results(&args.out, &outcome.documents, &outcome.summary)?;

    let mut stdout = std::io::stdout().lock();
    match args.format {
        RowFormat::Json => {
            serde_json::to_writer_pretty(&mut stdout, &outcome.summary)?;
            writeln!(stdout)?;
        }
        RowFormat::Jsonl | RowFormat::Csv => {
            if let Some(kind) = crate::commands::row_kind(args.format) {
                pagemill_report::rows::write(kind, &mut stdout, &mention_rows(&outcome.documents))?;
            }
        }
        RowFormat::Text => {
            write!(stdout, "{}", terminal::run::summary(&outcome.summary))?;
            writeln!(
                stdout,
                "results: {} (one JSON per document, {SUMMARY_FILE}); ledger: {}",
                args.out.display(),
                store
            )?;
            if outcome.summary.endpoints.first().map(String::as_str)
                == Some(settings::LOCAL_ENDPOINT)
            {
                write!(stdout, "{LOCAL_NOTE}")?;
            }
        }
    }
    if args.plan {
        let s = &outcome.summary;
        let to_do: u64 = s.tasks.values().map(|t| t.units - t.already_done).sum();
        eprintln!(
            "planned: {} document(s), {to_do} unit(s) to do in {store}; workers take them: pagemill worker --store …",
            s.documents
        );
        return Ok(ExitCode::SUCCESS);
    }
    Ok(ExitCode::from(run_exit_code(
        &outcome.summary,
        !prepared.skipped.is_empty(),
    )))
}

/// Creates the output directory and opens the ledger `--store` names, SQLite or PostgreSQL
/// (with `--lease` and `--rate-sharing` there); returns it with how to show it (no password).
pub(crate) fn open_any_store(
    out: &Path,
    args: &RunArgs,
) -> anyhow::Result<(String, Box<dyn Store>)> {
    let store = args.store.as_deref();
    if let Some(url) = store
        .and_then(Path::to_str)
        .filter(|s| postgres::is_postgres(s))
    {
        std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
        let mut ledger = PgLedger::open_with(url, args.lease)?;
        ledger.sharing = match args.rate_sharing {
            RateSharing::Bucket => Sharing::Bucket,
            RateSharing::Divide => Sharing::Divide,
            RateSharing::None => Sharing::None,
        };
        return Ok((ledger.shown().to_owned(), Box::new(ledger)));
    }
    let (path, ledger) = open_store(out, store)?;
    Ok((path.display().to_string(), Box::new(ledger)))
}

/// Creates the output directory and opens the ledger (`<out>/ledger.sqlite` unless `store`
/// names one).
pub(crate) fn open_store(out: &Path, store: Option<&Path>) -> anyhow::Result<(PathBuf, Ledger)> {
    std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
    let store = store.map_or_else(|| out.join("ledger.sqlite"), Path::to_path_buf);
    let ledger = Ledger::open(&store)?;
    Ok((store, ledger))
}

/// How a run that finished ends: stopped early, no request succeeded (the endpoint cannot be
/// used), some work given up on or some input skipped, or all done.
pub(crate) fn run_exit_code(s: &RunSummary, skipped_inputs: bool) -> u8 {
    use crate::exit;
    if s.pages_pending > 0 || s.stopped.is_some() {
        exit::STOPPED
    } else if s.requests > 0 && s.failed_requests == s.requests {
        exit::ENDPOINT
    } else if s.dead_letters > 0 || skipped_inputs {
        exit::INCOMPLETE
    } else {
        exit::SUCCESS
    }
}

/// The closing lines of a run on the embedded model.
pub(crate) const LOCAL_NOTE: &str = "\
note: this ran on the embedded model, SmolLM2-135M: a tiny model for trying pagemill with no key
      and no network. Its extractions are modest. For real work, point pagemill at an endpoint:
  OPENAI_API_KEY=... pagemill run INPUTS    (or an [[endpoint]] in pagemill.toml: see pagemill.example.toml)
";

/// Progress bars on stderr: pages, units, tokens, cost so far, ETA.
struct Bars {
    task: tokio::task::JoinHandle<()>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Bars {
    fn new(progress: Arc<Progress>) -> Self {
        let multi = indicatif::MultiProgress::new();
        let style = indicatif::ProgressStyle::with_template(
            "{prefix:>6} [{bar:30}] {pos}/{len} {msg} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let pages = multi.add(indicatif::ProgressBar::new(0).with_style(style.clone()));
        pages.set_prefix("pages");
        let units = multi.add(indicatif::ProgressBar::new(0).with_style(style));
        units.set_prefix("units");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            loop {
                let (p, pt) = progress.pages();
                let (u, ut) = progress.units();
                let (tokens, cost) = progress.spend();
                pages.set_length(pt);
                pages.set_position(p);
                units.set_length(ut);
                units.set_position(u);
                let cost = cost.map_or_else(|| "cost unknown".to_owned(), |c| Money(c).to_string());
                units.set_message(format!("{tokens} tokens · {cost}"));
                if done.load(Ordering::Relaxed) {
                    pages.finish();
                    units.finish();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Self { task, stop }
    }

    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}
