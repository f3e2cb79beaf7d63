//! `pagemill eval GOLD --results DIR`: a finished run's results scored against gold, next to
//! what the run cost per page.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_pipeline::eval::compare::{self, Difference, Metric};
use pagemill_pipeline::eval::gold::{DocRef, GoldDocument};
use pagemill_pipeline::eval::score::Counts;
use pagemill_pipeline::eval::{EvalReport, evaluate, gold, import};
use serde_json::{Value, json};

use crate::cli::{EvalArgs, EvalCommand, EvalImportArgs, EvalInitArgs, Format};

/// Runs the command.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Some(EvalCommand::Init(init)) => return write_skeleton(init),
        Some(EvalCommand::Import(import)) => return write_imported(import),
        None => {}
    }
    let Some(gold_path) = &args.gold else {
        anyhow::bail!("name a gold file: `pagemill eval GOLD.jsonl --results DIR`");
    };
    let text = std::fs::read_to_string(gold_path)
        .with_context(|| format!("reading the gold file `{}`", gold_path.display()))?;
    let gold = gold::parse(&text).with_context(|| format!("in `{}`", gold_path.display()))?;
    let mut configs = Vec::new();
    for dir in &args.results {
        let (results, summary) = read_results(dir)?;
        let report = evaluate(&gold, &results);
        if report.documents.is_empty() {
            anyhow::bail!(
                "none of the {} document(s) in `{}` has a result in `{}` (gold documents are matched by id, path or file name)",
                gold.len(),
                gold_path.display(),
                dir.display()
            );
        }
        let run = json!({
            "prompt_tokens_per_page": summary["prompt_tokens_per_page"],
            "completion_tokens_per_page": summary["completion_tokens_per_page"],
            "cached_share": summary["cached_share"],
            "cost_per_page_usd": summary["cost_per_page_usd"],
            "wall_secs": summary["wall_secs"],
        });
        configs.push((dir.display().to_string(), report, run));
    }
    let differences: Vec<(String, Difference)> = configs
        .iter()
        .skip(1)
        .flat_map(|(name, report, _)| {
            let first = &configs[0].1;
            Metric::ALL
                .iter()
                .filter_map(move |&m| compare::difference(first, report, m))
                .map(move |d| (name.clone(), d))
        })
        .collect();
    let runs: Vec<&Value> = configs.iter().map(|(_, _, run)| run).collect();
    let (costs, by_dollars) = compare::costs_per_page(&runs);
    let points: Vec<(f64, f64)> = configs
        .iter()
        .zip(costs)
        .map(|((_, report, _), cost)| (cost, compare::overall(report).unwrap_or(0.0)))
        .collect();
    let front = compare::pareto_front(&points);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json if configs.len() == 1 => {
            let (_, report, run) = &configs[0];
            let mut v = serde_json::to_value(report)?;
            v["run"] = run.clone();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Json => {
            let mut list = Vec::new();
            for (((name, report, run), on_front), (_, quality)) in
                configs.iter().zip(&front).zip(&points)
            {
                let mut v = serde_json::to_value(report)?;
                v["run"] = run.clone();
                list.push(json!({"results": name, "report": v,
                                 "overall": quality, "pareto_front": on_front}));
            }
            let diffs: Vec<Value> = differences
                .iter()
                .map(|(name, d)| {
                    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
                    v["results"] = json!(name);
                    v["against"] = json!(configs[0].0);
                    v
                })
                .collect();
            let v = json!({"schema_version": pagemill_pipeline::eval::REPORT_SCHEMA_VERSION,
                           "configurations": list, "differences": diffs});
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        Format::Text if configs.len() == 1 => {
            write!(out, "{}", text_report(&configs[0].1, &configs[0].2))?;
        }
        Format::Text => {
            for (name, report, run) in &configs {
                writeln!(out, "== {name}")?;
                write!(out, "{}", text_report(report, run))?;
            }
            let unit = if by_dollars {
                "cost a page"
            } else {
                "tokens a page"
            };
            writeln!(
                out,
                "== Pareto front (overall quality against {unit}; nothing else is both cheaper and better)"
            )?;
            for (((name, _, _), on_front), (cost, quality)) in
                configs.iter().zip(&front).zip(&points)
            {
                let cost = if by_dollars {
                    format!("${cost:.6}")
                } else {
                    format!("{cost:.0}")
                };
                let mark = if *on_front { "*" } else { " " };
                writeln!(out, "{mark} {name}: overall {quality:.3} · {cost} {unit}")?;
            }
            writeln!(
                out,
                "== against {} (B − A, 95% interval, paired by document)",
                configs[0].0
            )?;
            for (name, d) in &differences {
                let verdict = match d.verdict() {
                    1 => "better",
                    -1 => "worse",
                    _ => "not told apart",
                };
                writeln!(
                    out,
                    "{name}: {} {:+.3} [{:+.3}, {:+.3}] over {} document(s): {verdict}",
                    d.metric.name(),
                    d.mean,
                    d.low,
                    d.high,
                    d.documents
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
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
