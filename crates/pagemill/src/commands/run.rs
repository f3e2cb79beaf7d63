//! `pagemill run`: the document pipeline, with progress bars, a resumable ledger, one JSON per
//! document and a run summary.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use pagemill_client::{Client, Money, PromptProfile, Tokenizer};
use pagemill_pipeline::ingest::Document;
use pagemill_pipeline::run::{Progress, RunOptions, RunSummary, Tasks};
use pagemill_pipeline::store::Ledger;
use pagemill_pipeline::tasks::{Task, TaskConfig, TaskKind};

use crate::cli::{GlobalArgs, PipelineArgs, RunArgs};
use crate::commands::ingest::read_inputs;
use crate::settings;

/// Documents read, the ones that could not be, and the tasks to run.
pub(crate) struct Prepared {
    pub(crate) docs: Vec<Document>,
    pub(crate) skipped: Vec<(PathBuf, String)>,
    pub(crate) tasks: Tasks,
    pub(crate) opts: RunOptions,
    config: TaskConfig,
    kinds: Vec<TaskKind>,
}

impl Prepared {
    /// Fits the tasks and packing to how the primary endpoint's model is prompted: a small
    /// model gets at most [`SMALL_PACK`] items a request and at most [`SMALL_ENTITIES`] entities
    /// an item (see docs/ARCHITECTURE.md, "Prompt profiles", for the measurements).
    pub(crate) fn fit(&mut self, profile: PromptProfile) -> anyhow::Result<()> {
        let (tasks, opts) = self.fitted(profile)?;
        self.tasks = tasks;
        self.opts = opts;
        Ok(())
    }

    /// The tasks and options [`Prepared::fit`] would make, leaving these as they are (one set
    /// of documents run under several prompt profiles).
    pub(crate) fn fitted(&self, profile: PromptProfile) -> anyhow::Result<(Tasks, RunOptions)> {
        let mut opts = self.opts.clone();
        if profile != PromptProfile::Small {
            return Ok((self.tasks.clone(), opts));
        }
        let mut config = self.config.clone();
        config.max_entities = config.max_entities.min(SMALL_ENTITIES);
        config.small = true;
        opts.max_pack = opts.max_pack.min(SMALL_PACK);
        opts.quality_reasks = false;
        Ok((build_tasks(&self.kinds, &config)?, opts))
    }
}

/// Most items in one request to a small model: one. Measured with `pagemill eval` on the
/// examples' gold (embedded model, one core; `bench/eval-local.sh`): pack 1 against pack 8 gave
/// summaries of ROUGE-L 0.48 against 0.00 and source support 0.78 against 0.41, the same
/// entities (F1 0.00 both: the 135M model's mentions are all dropped as ungrounded or copied
/// from the prompt) and metadata (0.42), fewer prompt tokens a page (2,722 against 3,023: packs
/// were cut and their items asked again alone), the same wall time (135 s). Earlier, with
/// packs of up to 4: ROUGE-L 0.16 against 0.48.
const SMALL_PACK: usize = 1;
/// Most entities in one item's answer from a small model.
const SMALL_ENTITIES: u32 = 40;

fn build_tasks(kinds: &[TaskKind], config: &TaskConfig) -> anyhow::Result<Tasks> {
    let mut tasks = Tasks {
        entities: None,
        summary: None,
        metadata: None,
        metadata_tokens: 1500,
    };
    for &kind in kinds {
        let task = Task::new(kind, config)?;
        match kind {
            TaskKind::Entities => tasks.entities = Some(task),
            TaskKind::Summary => tasks.summary = Some(task),
            TaskKind::Metadata => tasks.metadata = Some(task),
        }
    }
    Ok(tasks)
}

/// Reads the inputs and builds the tasks `args` ask for.
pub(crate) async fn prepare(args: &PipelineArgs) -> anyhow::Result<Prepared> {
    let mut config = TaskConfig {
        summary_max_words: args.work.summary_max_words,
        ..TaskConfig::default()
    };
    if !args.work.entity_types.is_empty() {
        config.entity_types = args.work.entity_types.clone();
    }
    if let Some(path) = &args.work.metadata_schema {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the metadata schema `{}`", path.display()))?;
        let schema: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not JSON", path.display()))?;
        jsonschema_check(&schema).with_context(|| format!("`{}`", path.display()))?;
        config.metadata_schema = Some(schema);
    }
    let kinds = args.work.tasks.clone();
    let tasks = build_tasks(&kinds, &config)?;
    let opts = RunOptions {
        pack: args.pack,
        pack_tokens: args.pack_tokens,
        ..RunOptions::default()
    };
    let (docs, skipped) =
        read_inputs(&args.inputs, args.work.page_chars, args.work.section_tokens).await?;
    Ok(Prepared {
        docs,
        skipped,
        tasks,
        opts,
        config,
        kinds,
    })
}

/// A user's metadata schema must be a schema (and an object schema: metadata is an object).
fn jsonschema_check(schema: &serde_json::Value) -> anyhow::Result<()> {
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        anyhow::bail!("the metadata schema must be a JSON Schema with \"type\": \"object\"");
    }
    pagemill_pipeline::tasks::answers::check_schema(schema).map_err(anyhow::Error::msg)
}

/// The files documents' results are written to, in their order: each its name and the start
/// of its id; when two inputs would share one (`a/x.txt` and `b/x.txt`, same bytes), each also
/// gets the start of its path's hash, so every input has its own file, named the same on
/// every run of the same inputs.
pub(crate) fn result_files<'a>(
    out: &Path,
    docs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Vec<PathBuf> {
    let plain: Vec<PathBuf> = docs
        .clone()
        .map(|(p, id)| result_file(out, p, id))
        .collect();
    let mut uses: std::collections::HashMap<&PathBuf, usize> = std::collections::HashMap::new();
    for f in &plain {
        *uses.entry(f).or_default() += 1;
    }
    plain
        .iter()
        .zip(docs)
        .map(|(file, (path, _))| {
            if uses[file] < 2 {
                return file.clone();
            }
            let tag = &pagemill_pipeline::run::plan::hash(path)[..6];
            let name = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let stem = name.strip_suffix(".json").unwrap_or(&name);
            file.with_file_name(format!("{stem}.{tag}.json"))
        })
        .collect()
}

/// The file a document's result is written to: its name and the start of its id.
pub(crate) fn result_file(out: &Path, path: &str, id: &str) -> PathBuf {
    let stem = Path::new(path)
        .file_name()
        .map_or_else(|| "document".into(), |s| s.to_string_lossy().into_owned());
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.join(format!("{safe}.{}.json", &id[..id.len().min(8)]))
}

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut prepared = prepare(&args.pipeline).await?;
    // Nothing to run: say why before anything is created (no output folder, no ledger).
    if prepared.docs.is_empty() {
        let reasons: Vec<String> = prepared
            .skipped
            .iter()
            .map(|(path, why)| crate::printer::skipped(path, why))
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
        .map(|e| Client::new(e.clone()).map(Arc::new))
        .collect::<Result<_, _>>()?;
    let primary = endpoints
        .first()
        .ok_or(pagemill_client::ClientError::NoEndpoint)?;
    prepared.fit(primary.endpoint().prompt_profile)?;
    let mut opts = prepared.opts.clone();
    opts.force = args.force;
    opts.max_reasks = args.max_reasks;
    opts.format = args.response_format;
    opts.stream = !args.no_stream;
    opts.batch = args.batch;
    opts.batch_poll = Duration::from_secs_f64(args.batch_poll.max(0.01));
    opts.concurrency = args
        .concurrency
        .or(primary.endpoint().limits.max_concurrency)
        .unwrap_or(8);
    let policy = args.ungrounded;

    let (store, ledger) = open_store(&args.out, args.store.as_deref())?;
    for (path, why) in &prepared.skipped {
        eprintln!("skipped {}", crate::printer::skipped(path, why));
    }

    let progress = Arc::new(Progress::default());
    let on_signal = Arc::clone(&progress);
    let signals = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstopping: no new requests; finishing those in flight (Ctrl-C again to quit now; the ledger keeps every finished result)"
            );
            on_signal.stop.store(true, Ordering::Relaxed);
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let show = !args.quiet && std::io::stderr().is_terminal();
    let bars = show.then(|| Bars::new(Arc::clone(&progress)));

    let outcome = pagemill_pipeline::run::run(
        &prepared.docs,
        prepared.tasks,
        endpoints,
        ledger,
        opts,
        Arc::clone(&progress),
        policy,
    )
    .await;
    signals.abort();
    if let Some(b) = bars {
        b.finish().await;
    }
    let outcome = outcome?;

    let files = result_files(
        &args.out,
        outcome
            .documents
            .iter()
            .map(|d| (d.path.as_str(), d.id.as_str())),
    );
    for (d, path) in outcome.documents.iter().zip(&files) {
        let text = serde_json::to_string_pretty(d)?;
        write_atomic(path, text.as_bytes())?;
    }
    let summary_path = args.out.join("run-summary.json");
    write_atomic(
        &summary_path,
        serde_json::to_string_pretty(&outcome.summary)?.as_bytes(),
    )?;

    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &outcome.summary)?;
        writeln!(stdout)?;
    } else {
        write!(stdout, "{}", summary_text(&outcome.summary))?;
        writeln!(
            stdout,
            "results: {} (one JSON per document, run-summary.json); ledger: {}",
            args.out.display(),
            store.display()
        )?;
        if outcome.summary.endpoints.first().map(String::as_str) == Some(settings::LOCAL_ENDPOINT) {
            write!(stdout, "{}", LOCAL_NOTE)?;
        }
    }
    Ok(ExitCode::from(run_exit_code(
        &outcome.summary,
        !prepared.skipped.is_empty(),
    )))
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

/// Writes through a temporary file and a rename, so a killed run never leaves half a file.
/// The temporary file is created new (`O_EXCL`: never through a link or a file someone
/// planted), named for this process, and removed if the write fails.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    // Created here or not at all: a name that exists already is someone else's, left alone.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating `{}`", tmp.display()))?;
    if let Err(e) = file.write_all(bytes) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing `{}`", tmp.display()));
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing `{}`", path.display()))
    })
}

fn usd(x: Option<f64>) -> String {
    crate::printer::usd(x, "unknown")
}

/// The summary as a table and a few lines.
pub(crate) fn summary_text(s: &RunSummary) -> String {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    crate::printer::fit(&mut t);
    t.set_header([
        "task",
        "units",
        "done before",
        "done",
        "failed",
        "requests",
        "pack",
        "prompt tok",
        "cached",
        "completion",
        "prompt/page",
        "retries",
        "cost",
    ]);
    for (name, ts) in &s.tasks {
        if ts.units == 0 {
            continue;
        }
        t.add_row([
            name.clone(),
            ts.units.to_string(),
            ts.already_done.to_string(),
            ts.done.to_string(),
            ts.failed.to_string(),
            ts.requests.to_string(),
            ts.pack_size.to_string(),
            ts.prompt_tokens.to_string(),
            ts.cached_tokens.to_string(),
            ts.completion_tokens.to_string(),
            format!("{:.1}", ts.prompt_tokens_per_page),
            ts.retries.to_string(),
            usd(ts.cost_usd),
        ]);
    }
    let mut out = format!("{t}\n");
    out.push_str(&format!(
        "pages {} · done {} · skipped {} · failed {} · pending {} · documents {}/{} complete · {:.1} s\n",
        s.pages, s.pages_done, s.pages_skipped, s.pages_failed, s.pages_pending,
        s.complete_documents, s.documents, s.wall_secs
    ));
    out.push_str(&format!(
        "tokens/page: prompt {:.1} · completion {:.1} · cached share {} · requests {} (failed {}, client retries {}, re-asks {}, re-run alone {}, fallbacks {}, pack shrinks {})\n",
        s.prompt_tokens_per_page,
        s.completion_tokens_per_page,
        s.cached_share.map_or_else(|| "unreported".into(), |c| format!("{:.1}%", c * 100.0)),
        s.requests, s.failed_requests, s.retries, s.reasks, s.singles, s.fallbacks, s.shrinks
    ));
    out.push_str(&format!(
        "cost {} · per page {}{}\n",
        usd(s.cost_usd),
        usd(s.cost_per_page_usd),
        s.cost_note
            .as_ref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default()
    ));
    if !s.errors.is_empty() {
        let list: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("errors by class: {}\n", list.join(" · ")));
    }
    if !s.dropped.is_empty() {
        let list: Vec<String> = s.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(
            "values left out as not backed by the document: {} (`--ungrounded keep-flagged` keeps them, flagged)\n",
            list.join(" · ")
        ));
    }
    if s.loops_cancelled > 0 {
        out.push_str(&format!(
            "{} looping answer(s) cancelled mid-stream, sparing up to {} completion tokens\n",
            s.loops_cancelled, s.loop_tokens_saved
        ));
    }
    if s.dead_letters > 0 {
        out.push_str(&format!(
            "{} unit(s) dead-lettered: see `dead_letters` in the document results\n",
            s.dead_letters
        ));
    }
    if let Some(why) = &s.stopped {
        out.push_str(&format!("stopped early: {why}\n"));
    }
    out
}

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

/// The tokenizer of an endpoint, for quotes.
pub(crate) fn tokenizer_of(endpoint: &pagemill_client::Endpoint) -> anyhow::Result<Tokenizer> {
    match &endpoint.tokenizer {
        Some(name) => Tokenizer::by_name(name).map_err(anyhow::Error::msg),
        None => Ok(Tokenizer::o200k()),
    }
}
