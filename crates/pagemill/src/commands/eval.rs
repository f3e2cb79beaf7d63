//! `pagemill eval GOLD DOCS… -e A -e B --pack 1,8 --prompt-profile default,small`: every
//! combination run through the same pipeline and ledger, scored against gold, next to what
//! it cost a page; or `pagemill eval GOLD --results DIR…`: finished runs scored.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use comfy_table::Table;
use pagemill_client::{Client, PromptProfile};
use pagemill_pipeline::eval::compare::{self, Difference, Metric};
use pagemill_pipeline::eval::gold::{DocRef, GoldDocument};
use pagemill_pipeline::eval::score::{Counts, Sources};
use pagemill_pipeline::eval::{EvalReport, evaluate, gold, import, spend};
use pagemill_pipeline::ingest::Document;
use pagemill_pipeline::run::{PackSize, Progress, UngroundedPolicy};
use serde_json::{Value, json};

use crate::cli::{
    EvalArgs, EvalCommand, EvalImportArgs, EvalInitArgs, Format, GlobalArgs, PipelineArgs,
};
use crate::commands::run::{open_store, prepare, result_files, write_atomic};
use crate::settings;

/// One configuration, scored.
struct Scored {
    /// How it is named in tables.
    name: String,
    /// Endpoint, pack, prompt profile and format (run mode), or the results directory.
    setting: Value,
    report: EvalReport,
    /// Tokens, cost and latency a page.
    run: Value,
}

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
        let (results, summary) = read_results(dir)?;
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
        let report = evaluate(gold, &results, &sources(&docs, args.work.summary_max_words));
        let run = json!({
            "prompt_tokens_per_page": summary["prompt_tokens_per_page"],
            "completion_tokens_per_page": summary["completion_tokens_per_page"],
            "cached_share": summary["cached_share"],
            "cost_per_page_usd": summary["cost_per_page_usd"],
            "wall_secs": summary["wall_secs"],
            "documents": summary["documents"],
            "complete_documents": summary["complete_documents"],
        });
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

/// Each section's title and text, for source support.
fn sources(docs: &[Document], summary_max_words: u32) -> Sources {
    let mut s = Sources {
        summary_max_words: Some(summary_max_words),
        ..Sources::default()
    };
    for d in docs {
        for sec in &d.sections {
            let text = d.text.get(sec.range.0..sec.range.1).unwrap_or("").trim();
            s.sections
                .insert((d.id.clone(), sec.id), (sec.title.clone(), text.to_owned()));
        }
    }
    s
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
        eprintln!("skipped {}", crate::printer::skipped(path, why));
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
                    let (tasks, mut opts) = prepared.fitted(profile)?;
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
    let progress: Vec<Arc<Progress>> = plans.iter().map(|_| Arc::default()).collect();
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
    let sources = sources(&docs, args.work.summary_max_words);
    let mut configs = Vec::new();
    for (plan, outcome) in plans.iter().zip(outcomes) {
        let outcome = outcome.context("a configuration did not finish")?;
        let dir = args.out.join(slug(&plan.name));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let mut results = Vec::new();
        let files = result_files(
            &dir,
            outcome
                .documents
                .iter()
                .map(|d| (d.path.as_str(), d.id.as_str())),
        );
        for (d, file) in outcome.documents.iter().zip(&files) {
            let v = serde_json::to_value(d)?;
            write_atomic(file, serde_json::to_string_pretty(&v)?.as_bytes())?;
            results.push(v);
        }
        write_atomic(
            &dir.join("run-summary.json"),
            serde_json::to_string_pretty(&outcome.summary)?.as_bytes(),
        )?;
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
/// differences.
fn print(configs: &[Scored], format: Format, save: Option<&Path>) -> anyhow::Result<()> {
    let differences: Vec<(String, Difference)> = configs
        .iter()
        .skip(1)
        .flat_map(|c| {
            let first = &configs[0].report;
            Metric::ALL
                .iter()
                .filter_map(move |&m| compare::difference(first, &c.report, m))
                .map(move |d| (c.name.clone(), d))
        })
        .collect();
    let runs: Vec<&Value> = configs.iter().map(|c| &c.run).collect();
    let (costs, by_dollars) = compare::costs_per_page(&runs);
    let points: Vec<(f64, f64)> = configs
        .iter()
        .zip(costs)
        .map(|(c, cost)| (cost, compare::overall(&c.report).unwrap_or(0.0)))
        .collect();
    let front = compare::pareto_front(&points);
    let json = if configs.len() == 1 {
        let c = &configs[0];
        let mut v = serde_json::to_value(&c.report)?;
        v["run"] = c.run.clone();
        v
    } else {
        let mut list = Vec::new();
        for ((c, on_front), (_, quality)) in configs.iter().zip(&front).zip(&points) {
            let mut v = serde_json::to_value(&c.report)?;
            v["run"] = c.run.clone();
            list.push(json!({"results": c.name, "setting": c.setting, "report": v,
                             "overall": quality, "pareto_front": on_front}));
        }
        let diffs: Vec<Value> = differences
            .iter()
            .map(|(name, d)| {
                let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
                v["verdict"] = json!(verdict(d));
                v["results"] = json!(name);
                v["against"] = json!(configs[0].name);
                v
            })
            .collect();
        json!({"schema_version": pagemill_pipeline::eval::REPORT_SCHEMA_VERSION,
               "configurations": list, "differences": diffs})
    };
    if let Some(path) = save {
        write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())?;
        eprintln!(
            "wrote {}: `pagemill report` shows it beside the ledger (quality against cost, each document's errors in its pages)",
            path.display()
        );
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &json)?;
            writeln!(out)?;
        }
        Format::Text if configs.len() == 1 => {
            write!(out, "{}", text_report(&configs[0].report, &configs[0].run))?;
        }
        Format::Text => {
            write!(out, "{}", table(configs, &front))?;
            writeln!(
                out,
                "* on the Pareto front: no other configuration is both {} and better overall",
                if by_dollars {
                    "cheaper"
                } else {
                    "lighter (tokens a page)"
                }
            )?;
            writeln!(
                out,
                "against {} (B − A, 95% interval, paired by document):",
                configs[0].name
            )?;
            for (name, d) in &differences {
                let verdict = match verdict(d) {
                    "too_few_documents" => "too few documents to tell".to_owned(),
                    v => v.replace('_', " "),
                };
                writeln!(
                    out,
                    "  {name}: {} {:+.3} [{:+.3}, {:+.3}] over {} document(s): {verdict}",
                    d.metric.name(),
                    d.mean,
                    d.low,
                    d.high,
                    d.documents
                )?;
            }
        }
    }
    Ok(())
}

/// What a difference says: `better`, `worse`, `not_told_apart`, or `too_few_documents` to
/// tell.
fn verdict(d: &Difference) -> &'static str {
    match d.verdict() {
        1 => "better",
        -1 => "worse",
        _ if d.documents < compare::MIN_DOCUMENTS => "too_few_documents",
        _ => "not_told_apart",
    }
}

/// Configurations side by side: quality, tokens, cache, cost and latency.
fn table(configs: &[Scored], front: &[bool]) -> String {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    crate::printer::fit(&mut t);
    t.set_header([
        "",
        "configuration",
        "complete",
        "entity F1",
        "metadata",
        "ROUGE-L",
        "support",
        "length ok",
        "prompt/page",
        "compl./page",
        "cached",
        "$/1k pages",
        "p50 ms",
        "wall s",
    ]);
    let f2 = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |x| format!("{x:.2}"));
    for (c, on_front) in configs.iter().zip(front) {
        let r = &c.report;
        let num = |k: &str| c.run[k].as_f64();
        let metadata = (!r.metadata.is_empty()).then(|| {
            r.metadata.values().map(|m| m.normalized).sum::<f64>() / r.metadata.len() as f64
        });
        t.add_row([
            if *on_front { "*" } else { "" }.to_owned(),
            c.name.clone(),
            match (
                c.run["complete_documents"].as_u64(),
                c.run["documents"].as_u64(),
            ) {
                (Some(k), Some(n)) => format!("{k}/{n}"),
                _ => "–".into(),
            },
            f2(r.entities.as_ref().map(|e| e.strict.f1())),
            f2(metadata),
            f2(r.summaries.as_ref().map(|s| s.rouge.rouge_l)),
            f2(r.summary_checks.support()),
            f2(r.summary_checks.length_compliance()),
            num("prompt_tokens_per_page").map_or_else(|| "–".into(), |x| format!("{x:.0}")),
            num("completion_tokens_per_page").map_or_else(|| "–".into(), |x| format!("{x:.0}")),
            num("cached_share").map_or_else(|| "–".into(), |x| format!("{:.0}%", x * 100.0)),
            num("cost_per_page_usd").map_or_else(
                || "unknown".into(),
                |x| crate::printer::usd(Some(x * 1000.0), "unknown"),
            ),
            num("latency_ms_p50").map_or_else(|| "–".into(), |x| format!("{x:.0}")),
            num("wall_secs").map_or_else(|| "–".into(), |x| format!("{x:.1}")),
        ]);
    }
    format!("{t}\n")
}

/// `pagemill eval init`: one skeleton line per document result, sorted by path.
fn write_skeleton(args: &EvalInitArgs) -> anyhow::Result<ExitCode> {
    refuse_overwrite(&args.output, args.force)?;
    let (mut results, _) = read_results(&args.results)?;
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

/// Every document result in `dir` and its run-summary.json (`Null` when absent).
fn read_results(dir: &Path) -> anyhow::Result<(Vec<Value>, Value)> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the results directory `{}`", dir.display()))?;
    let mut results = Vec::new();
    let mut summary = Value::Null;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading `{}`", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not JSON", path.display()))?;
        if path.file_name().is_some_and(|n| n == "run-summary.json") {
            summary = v;
        } else if v["id"].is_string() && v["path"].is_string() {
            results.push(v);
        }
    }
    Ok((results, summary))
}

fn prf(c: &Counts) -> String {
    format!(
        "P {:.2} R {:.2} F1 {:.2}",
        c.precision(),
        c.recall(),
        c.f1()
    )
}

fn text_report(r: &EvalReport, run: &Value) -> String {
    let mut s = format!(
        "gold documents scored: {}{}\n",
        r.documents.len(),
        if r.unmatched.is_empty() {
            String::new()
        } else {
            format!(" · no result for: {}", r.unmatched.join(", "))
        }
    );
    if let Some(e) = &r.entities {
        let level = match e.level {
            Some(pagemill_pipeline::eval::score::Level::Mention) => "by mention",
            Some(pagemill_pipeline::eval::score::Level::Entity) => "by entity",
            None => "mixed",
        };
        s.push_str(&format!(
            "entities ({level}): strict {} · relaxed F1 {:.2} · type-blind F1 {:.2} · macro F1 {:.2}{}\n",
            prf(&e.strict),
            e.relaxed.f1(),
            e.type_blind.f1(),
            e.macro_f1(),
            e.offsets_exact()
                .map(|x| format!(" · offsets exact {:.0}%", x * 100.0))
                .unwrap_or_default()
        ));
        for (kind, c) in &e.by_type {
            s.push_str(&format!(
                "  {kind:<14} {}  (tp {} fp {} fn {})\n",
                prf(c),
                c.tp,
                c.fp,
                c.fn_
            ));
        }
    }
    if !r.metadata.is_empty() {
        let fields: Vec<String> = r
            .metadata
            .iter()
            .map(|(f, m)| format!("{f} {:.2} (exact {:.2})", m.normalized, m.exact))
            .collect();
        s.push_str(&format!("metadata: {}\n", fields.join(" · ")));
    }
    if let Some(m) = &r.summaries {
        s.push_str(&format!(
            "summaries: ROUGE-1 {:.2} · ROUGE-2 {:.2} · ROUGE-L {:.2} over {} reference(s){}\n",
            m.rouge.rouge1,
            m.rouge.rouge2,
            m.rouge.rouge_l,
            m.references,
            if m.unanswered > 0 {
                format!(" ({} without a summary in the run)", m.unanswered)
            } else {
                String::new()
            }
        ));
    }
    let c = &r.summary_checks;
    if c.summaries > 0 {
        let share =
            |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |x| format!("{:.0}%", x * 100.0));
        s.push_str(&format!(
            "summaries ({}): sentences backed by their section {} · within the word limit {}\n",
            c.summaries,
            share(c.support()),
            share(c.length_compliance())
        ));
    }
    let num = |k: &str| run[k].as_f64();
    let cost = match num("cost_per_page_usd") {
        Some(c) => format!("${c:.6} per page"),
        None => "cost unknown".to_owned(),
    };
    match (
        num("prompt_tokens_per_page"),
        num("completion_tokens_per_page"),
    ) {
        (Some(p), Some(c)) => s.push_str(&format!(
            "run: {p:.0} prompt + {c:.0} completion tokens per page · {cost}\n"
        )),
        _ => s.push_str("run: no run-summary.json beside the results\n"),
    }
    s
}
