//! `pagemill eval GOLD DOCS… -e A -e B --pack 1,8 --prompt-profile default,small`: every
//! combination run through the same pipeline and ledger, scored against gold, next to what
//! it cost a page; or `pagemill eval GOLD --results DIR…`: finished runs scored.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pagemill_client::{Client, PromptProfile};
use pagemill_pipeline::eval::compare::{self, Scored};
use pagemill_pipeline::eval::gold::{DocRef, GoldDocument};
use pagemill_pipeline::eval::score::Sources;
use pagemill_pipeline::eval::{evaluate, gold, import, results, spend};
use pagemill_pipeline::run::output::{write_atomic, write_results};
use pagemill_pipeline::run::{PackSize, Progress, UngroundedPolicy};
use pagemill_report::terminal;
use serde_json::{Value, json};

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

/// One configuration to run.
struct Plan {
    name: String,
    setting: Value,
    client: Arc<Client>,
    tasks: pagemill_pipeline::run::Tasks,
    opts: pagemill_pipeline::run::RunOptions,
}

fn profile_name(p: PromptProfile) -> &'static str {
    match p {
        PromptProfile::Standard => "default",
        PromptProfile::Small => "small",
    }
}

/// DOCS given: every endpoint × pack × prompt profile × format run through the pipeline, in
/// one ledger (each configuration's units kept apart by a variant of their keys, so finished
/// ones are reused on the next eval and never paid twice), interleaved unless `--sequential`.
async fn run_configurations(
    global: &GlobalArgs,
    args: &EvalArgs,
    gold: &[GoldDocument],
) -> anyhow::Result<Vec<Scored>> {
    let packs = &args.pack;
    let formats = &args.response_format;
    let profiles: Vec<Option<PromptProfile>> = if args.prompt_profile.is_empty() {
        vec![None]
    } else {
        args.prompt_profile.iter().copied().map(Some).collect()
    };
    let pipeline = PipelineArgs {
        inputs: args.docs.clone(),
        work: args.work.clone(),
        pack: PackSize::Auto,
        pack_tokens: 6000,
    };
    let mut prepared = prepare(&pipeline).await?;
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
    let mut plans = Vec::new();
    for ep in resolved.endpoints.iter().take(take) {
        // One client an endpoint: its limits and connections are shared by its configurations.
        let client = Arc::new(Client::new(ep.clone())?);
        for &pack in packs {
            for profile in &profiles {
                for &format in formats {
                    let profile = profile.unwrap_or(ep.prompt_profile);
                    let (tasks, mut opts) = prepared.setup.fitted(profile)?;
                    opts.pack = pack;
                    if let PackSize::Fixed(n) = pack {
                        opts.max_pack = n;
                    }
                    opts.format = format;
                    opts.concurrency = args.concurrency.or(ep.limits.max_concurrency).unwrap_or(8);
                    let pack_name = match pack {
                        PackSize::Fixed(n) => n.to_string(),
                        PackSize::Auto => "auto".into(),
                    };
                    let format_name = serde_json::to_value(format)?
                        .as_str()
                        .unwrap_or("auto")
                        .to_owned();
                    let setting = json!({"endpoint": ep.name, "pack": pack_name,
                                         "prompt_profile": profile_name(profile),
                                         "response_format": format_name});
                    opts.variant = format!("eval {setting}");
                    // Named twice (`--pack 1,1`): run once.
                    if plans.iter().any(|p: &Plan| p.opts.variant == opts.variant) {
                        continue;
                    }
                    plans.push(Plan {
                        name: format!(
                            "{} · pack {pack_name} · {} · {format_name}",
                            ep.name,
                            profile_name(profile)
                        ),
                        setting,
                        client: Arc::clone(&client),
                        tasks,
                        opts,
                    });
                }
            }
        }
    }
    let (store, ledger) = open_store(&args.out, args.store.as_deref())?;
    let docs = Arc::new(std::mem::take(&mut prepared.docs));
    eprintln!(
        "eval: {} configuration(s) × {} document(s){}; ledger {}",
        plans.len(),
        docs.len(),
        if args.sequential || plans.len() == 1 {
            ""
        } else {
            ", interleaved"
        },
        store.display()
    );
    let mut outcomes: Vec<Option<pagemill_pipeline::run::RunOutcome>> =
        (0..plans.len()).map(|_| None).collect();
    let stop = crate::commands::stop_on_ctrl_c(
        "stopping: no new requests; finishing those in flight, then scoring what is done (the ledger keeps every finished result)",
    );
    let progress: Vec<Arc<Progress>> = plans
        .iter()
        .map(|_| {
            Arc::new(Progress {
                stop: stop.clone(),
                ..Progress::default()
            })
        })
        .collect();
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| bar(&progress));
    let mut set = tokio::task::JoinSet::new();
    for (i, plan) in plans.iter().enumerate() {
        let (ledger, docs) = (ledger.share()?, Arc::clone(&docs));
        let progress = Arc::clone(&progress[i]);
        let (client, tasks, opts) = (
            Arc::clone(&plan.client),
            plan.tasks.clone(),
            plan.opts.clone(),
        );
        let job = async move {
            let r = pagemill_pipeline::run::run(
                &docs,
                tasks,
                vec![client],
                ledger,
                opts,
                progress,
                UngroundedPolicy::Drop,
            )
            .await;
            (i, r)
        };
        if args.sequential {
            let (i, r) = job.await;
            outcomes[i] = Some(finished(&plans[i], r)?);
        } else {
            set.spawn(job);
        }
    }
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.context("a configuration's run panicked")?;
        outcomes[i] = Some(finished(&plans[i], r)?);
    }
    if let Some(b) = bar {
        b.abort();
    }
    let requests = ledger.requests()?;
    let sources = Sources::of(&docs, args.work.summary_max_words);
    let mut configs = Vec::new();
    for (plan, outcome) in plans.iter().zip(outcomes) {
        let outcome = outcome.context("a configuration did not finish")?;
        let dir = args.out.join(slug(&plan.name));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        write_results(&dir, &outcome.documents, &outcome.summary)?;
        let results = outcome
            .documents
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        let s = &outcome.summary;
        let keys: HashSet<String> = outcome.keys.iter().cloned().collect();
        // Pages the work covers: without entities, every page (none is "skipped" for content).
        let pages = if plan.tasks.entities.is_some() {
            s.pages.saturating_sub(s.pages_skipped)
        } else {
            s.pages
        }
        .max(1);
        let mut spent = spend::spend(&requests, &keys, pages);
        spent.wall_secs = (s.requests > 0).then_some(s.wall_secs);
        spent.documents = Some(s.documents);
        spent.complete_documents = Some(s.complete_documents);
        let mut setting = plan.setting.clone();
        setting["results"] = json!(dir.display().to_string());
        configs.push(Scored {
            name: plan.name.clone(),
            setting,
            report: evaluate(gold, &results, &sources),
            run: serde_json::to_value(&spent)?,
        });
    }
    drop(resolved);
    Ok(configs)
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

/// A configuration's run ended: its outcome, or why it could not run.
fn finished(
    plan: &Plan,
    r: Result<pagemill_pipeline::run::RunOutcome, pagemill_pipeline::run::RunError>,
) -> anyhow::Result<pagemill_pipeline::run::RunOutcome> {
    let outcome = r.with_context(|| format!("running {}", plan.name))?;
    let s = &outcome.summary;
    eprintln!(
        "done: {} — {}/{} documents complete, {} request(s), {:.1} s",
        plan.name, s.complete_documents, s.documents, s.requests, s.wall_secs
    );
    Ok(outcome)
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
