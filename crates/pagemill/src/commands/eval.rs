//! `pagemill eval GOLD DOCS… -e A -e B --pack 1,8 --prompt-profile default,small`: every
//! combination run through the same pipeline and ledger, scored against gold, next to what
//! it cost a page; or `pagemill eval GOLD --results DIR…`: finished runs scored.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pagemill_client::Client;
use pagemill_pipeline::eval::compare::{self, Scored};
use pagemill_pipeline::eval::configs::{self, Configuration, Grid};
use pagemill_pipeline::eval::gold::{DocRef, GoldDocument};
use pagemill_pipeline::eval::score::Sources;
use pagemill_pipeline::eval::{evaluate, gold, import, results};
use pagemill_pipeline::run::output::{write_atomic, write_results};
use pagemill_pipeline::run::{PackSize, Progress, RunOptions, RunOutcome};
use pagemill_pipeline::store::{History, PgLedger, PgView, Store};
use pagemill_report::terminal;
use serde_json::json;

use crate::cli::{
    EvalArgs, EvalCommand, EvalImportArgs, EvalInitArgs, Format, GlobalArgs, PipelineArgs,
};
use crate::commands::run::{open_store, prepare};
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: &EvalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(EvalCommand::Init(init)) => return write_skeleton(init),
        Some(EvalCommand::Import(import)) => return write_imported(import),
        None => {}
    }
    let Some(gold_path) = &args.gold else {
        anyhow::bail!(
            "name a gold file: `pagemill eval GOLD.jsonl DOCS…` or `pagemill eval GOLD.jsonl --results DIR`"
        );
    };
    let text = std::fs::read_to_string(gold_path)
        .with_context(|| format!("reading the gold file `{}`", gold_path.display()))?;
    let gold = gold::parse(&text).with_context(|| format!("in `{}`", gold_path.display()))?;
    let (configs, save) = if args.docs.is_empty() {
        (score_results(args, &gold).await?, None)
    } else {
        let configs = run_configurations(global, args, &gold).await?;
        (configs, Some(args.out.join("eval-report.json")))
    };
    for c in &configs {
        if c.report.documents.is_empty() {
            anyhow::bail!(
                "none of the {} document(s) in `{}` has a result in {} (gold documents are matched by id, path or file name)",
                gold.len(),
                gold_path.display(),
                c.name
            );
        }
    }
    print(&configs, args.format, save.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// `--results DIR…`: each finished run scored, its figures from its run-summary.json.
async fn score_results(args: &EvalArgs, gold: &[GoldDocument]) -> anyhow::Result<Vec<Scored>> {
    let mut configs = Vec::new();
    for dir in &args.results {
        let results::Finished { results, summary } = results::read(dir)?;
        // The documents, read again where they still are, for the summaries' source support.
        let paths: Vec<PathBuf> = results
            .iter()
            .filter_map(|r| r["path"].as_str().map(PathBuf::from))
            .filter(|p| p.is_file())
            .collect();
        let docs = if paths.is_empty() {
            Vec::new()
        } else {
            match crate::commands::ingest::read_inputs(
                &paths,
                args.work.page_chars,
                args.work.section_tokens,
            )
            .await
            {
                Ok((docs, _)) => docs,
                Err(e) => {
                    eprintln!(
                        "note: the documents could not be read again, so summaries get no source support: {e:#}"
                    );
                    Vec::new()
                }
            }
        };
        let report = evaluate(
            gold,
            &results,
            &Sources::of(&docs, args.work.summary_max_words),
        );
        let run = results::figures(&summary);
        let name = dir.display().to_string();
        configs.push(Scored {
            setting: json!({ "results": name }),
            name,
            report,
            run,
        });
    }
    Ok(configs)
}

/// DOCS given: every endpoint × pack × prompt profile × format run through the pipeline, in
/// one ledger (each configuration's units kept apart by a variant of their keys, so finished
/// ones are reused on the next eval and never paid twice), interleaved unless `--sequential`.
async fn run_configurations(
    global: &GlobalArgs,
    args: &EvalArgs,
    gold: &[GoldDocument],
) -> anyhow::Result<Vec<Scored>> {
    let pipeline = PipelineArgs {
        inputs: args.docs.clone(),
        work: args.work.clone(),
        pack: PackSize::Auto,
        pack_tokens: RunOptions::default().pack_tokens,
    };
    let prepared = prepare(&pipeline).await?;
    for (path, why) in &prepared.skipped {
        eprintln!("skipped {}", pagemill_report::fmt::skipped(path, why));
    }
    if prepared.docs.is_empty() {
        anyhow::bail!("no readable documents among the inputs");
    }
    let resolved = settings::resolve_with(global, &args.endpoint, &args.work.sim_profile).await?;
    let take = if args.endpoint.is_empty() {
        1
    } else {
        usize::MAX
    };
    let clients = resolved
        .endpoints
        .iter()
        .take(take)
        .map(|ep| Client::new(ep.clone()).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let grid = Grid {
        packs: args.pack.clone(),
        profiles: if args.prompt_profile.is_empty() {
            vec![None]
        } else {
            args.prompt_profile.iter().copied().map(Some).collect()
        },
        formats: args.response_format.clone(),
        concurrency: args.concurrency,
    };
    let configs = configs::configurations(&clients, &grid, &prepared.setup)?;
    // A PostgreSQL store: each configuration runs as a run of its own on the shared ledger (as
    // workers do); SQLite: one file, shared under its lock.
    let pg_url = args
        .store
        .as_deref()
        .and_then(std::path::Path::to_str)
        .filter(|s| pagemill_pipeline::store::postgres::is_postgres(s))
        .map(str::to_owned);
    let (shown, sqlite) = match &pg_url {
        Some(url) => {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating `{}`", args.out.display()))?;
            (pagemill_pipeline::store::postgres::redact_url(url), None)
        }
        None => {
            let (store, ledger) = open_store(&args.out, args.store.as_deref())?;
            (store.display().to_string(), Some(ledger))
        }
    };
    let docs = Arc::new(prepared.docs);
    eprintln!(
        "eval: {} configuration(s) × {} document(s){}; ledger {}",
        configs.len(),
        docs.len(),
        if args.sequential || configs.len() == 1 {
            ""
        } else {
            ", interleaved"
        },
        shown
    );
    let stop = crate::commands::stop_on_ctrl_c(
        "stopping: no new requests; finishing those in flight, then scoring what is done (the ledger keeps every finished result)",
    );
    let progress: Vec<Arc<Progress>> = configs
        .iter()
        .map(|_| {
            Arc::new(Progress {
                stop: stop.clone(),
                ..Progress::default()
            })
        })
        .collect();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| bar(&progress));
    let stores = configs
        .iter()
        .map(|_| match (&sqlite, &pg_url) {
            (Some(ledger), _) => ledger.share().map(|l| Box::new(l) as Box<dyn Store>),
            (None, Some(url)) => PgLedger::open(url).map(|l| Box::new(l) as Box<dyn Store>),
            (None, None) => unreachable!("a store is opened above"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = configs::run_all(
        &configs,
        Arc::clone(&docs),
        stores,
        &progress,
        args.sequential,
        &finished,
    )
    .await;
    if let Some(b) = bar {
        b.abort();
    }
    let outcomes = outcomes?;
    let requests = match (&sqlite, &pg_url) {
        (Some(ledger), _) => ledger.requests()?,
        (None, Some(url)) => History::requests(&PgView::open(url)?)?,
        (None, None) => Vec::new(),
    };
    let sources = Sources::of(&docs, args.work.summary_max_words);
    let mut scored = Vec::new();
    for (config, outcome) in configs.iter().zip(&outcomes) {
        let dir = args.out.join(slug(&config.name));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        write_results(&dir, &outcome.documents, &outcome.summary)?;
        let dir = dir.display().to_string();
        scored.push(configs::scored(
            config, outcome, &requests, gold, &sources, &dir,
        )?);
    }
    drop(resolved);
    Ok(scored)
}

/// One progress bar on a terminal: units finished over all configurations, tokens so far.
fn bar(progress: &[Arc<Progress>]) -> tokio::task::JoinHandle<()> {
    let progress = progress.to_vec();
    let style =
        indicatif::ProgressStyle::with_template("units [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
    let bar = indicatif::ProgressBar::new(0).with_style(style);
    tokio::spawn(async move {
        loop {
            let (mut done, mut total, mut tokens) = (0, 0, 0);
            for p in &progress {
                let (d, t) = p.units();
                done += d;
                total += t;
                tokens += p.spend().0;
            }
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{tokens} tokens"));
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    })
}

/// Says that a configuration's run ended, and how far it got.
fn finished(config: &Configuration, outcome: &RunOutcome) {
    let s = &outcome.summary;
    eprintln!(
        "done: {} — {}/{} documents complete, {} request(s), {:.1} s",
        config.name, s.complete_documents, s.documents, s.requests, s.wall_secs
    );
}

/// A directory name for a configuration.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_owned()
}

/// Prints one configuration's report, or the table of several with their Pareto front and
/// differences; saves the eval report when `save` names a file.
fn print(configs: &[Scored], format: Format, save: Option<&Path>) -> anyhow::Result<()> {
    let cmp = compare::compare(configs);
    let json = cmp.to_json(configs)?;
    if let Some(path) = save {
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        eprintln!(
            "wrote {}: `pagemill report` shows it beside the ledger (quality against cost, each document's errors in its pages)",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    match (format, configs) {
        (Format::Json, _) => {
            serde_json::to_writer_pretty(&mut out, &json)?;
            writeln!(out)?;
        }
        (Format::Text, [only]) => {
            write!(out, "{}", terminal::eval::single(&only.report, &only.run))?;
        }
        (Format::Text, _) => write!(out, "{}", terminal::eval::comparison(configs, &cmp))?,
    }
    Ok(())
}

/// `pagemill eval init`: one skeleton line per document result, sorted by path.
fn write_skeleton(args: &EvalInitArgs) -> anyhow::Result<ExitCode> {
    refuse_overwrite(&args.output, args.force)?;
    let mut results = results::read(&args.results)?.results;
    if results.is_empty() {
        anyhow::bail!("no document results in `{}`", args.results.display());
    }
    results.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let lines: Vec<GoldDocument> = results.iter().map(gold::skeleton).collect();
    write_gold(&args.output, &lines)?;
    eprintln!(
        "wrote {} gold line(s) to `{}`: what the run found, to correct by hand (entities it missed, wrong types, metadata, summaries)",
        lines.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `pagemill eval import`: CoNLL files and a metadata CSV, merged per document.
fn write_imported(args: &EvalImportArgs) -> anyhow::Result<ExitCode> {
    refuse_overwrite(&args.output, args.force)?;
    if args.conll.is_empty() && args.metadata_csv.is_none() {
        anyhow::bail!("nothing to import: give --conll FILE… and/or --metadata-csv FILE");
    }
    let mut lines = Vec::new();
    for path in &args.conll {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let entities =
            import::conll_entities(&text).with_context(|| format!("in `{}`", path.display()))?;
        // `report.pdf.conll` holds the entities of `report.pdf`.
        let document = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        lines.push(GoldDocument {
            document: DocRef {
                path: document,
                id: None,
            },
            entities: Some(entities),
            ..GoldDocument::default()
        });
    }
    if let Some(path) = &args.metadata_csv {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        lines.extend(
            import::metadata_csv(&text, &[]).with_context(|| format!("in `{}`", path.display()))?,
        );
    }
    let lines = import::merge(lines);
    write_gold(&args.output, &lines)?;
    eprintln!(
        "wrote {} gold line(s) to `{}`",
        lines.len(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        anyhow::bail!(
            "`{}` exists: it may hold corrected gold; pass --force to replace it",
            path.display()
        );
    }
    Ok(())
}

fn write_gold(path: &Path, lines: &[GoldDocument]) -> anyhow::Result<()> {
    let mut text = String::new();
    for g in lines {
        text.push_str(&serde_json::to_string(g)?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing `{}`", path.display()))
}
