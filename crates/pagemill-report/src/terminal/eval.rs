//! `pagemill eval`'s views: one configuration's scores, configurations side by side with
//! their Pareto front and differences, and an eval report inside `pagemill report`.

use std::fmt::Write as _;

use pagemill_pipeline::eval::EvalReport;
use pagemill_pipeline::eval::compare::{Comparison, Scored};
use pagemill_pipeline::eval::score::{Counts, Level};
use serde_json::Value;

use super::{right, table};
use crate::fmt::{NONE, count, inert, ms, num, opt, pct, score, usd};

/// An eval report in `pagemill report`: each configuration's quality, cost and errors.
pub(crate) fn view(out: &mut String, e: &crate::eval::EvalView) {
    let _ = writeln!(out, "\nQuality against gold ({})", inert(&e.path));
    let cost = if e.by_dollars {
        "$ a page"
    } else {
        "tokens a page"
    };
    let mut t = table(&[
        "configuration",
        "front",
        "overall",
        "entity F1",
        "metadata",
        "ROUGE-L",
        "support",
        cost,
        "missed",
        "spurious",
        "wrong type",
        "wrong span",
    ]);
    let f = |v: Option<f64>| opt(v, score);
    for c in &e.configurations {
        let errors =
            |k: &str| -> String { count(c.documents.iter().filter_map(|d| d.counts.get(k)).sum()) };
        t.add_row(vec![
            inert(&c.name),
            if c.pareto_front { "*" } else { "" }.to_owned(),
            f(c.overall),
            f(c.entity_f1),
            f(c.metadata),
            f(c.rouge_l),
            f(c.support),
            opt(c.cost, if e.by_dollars { usd } else { num }),
            errors("missed"),
            errors("spurious"),
            errors("wrong_type"),
            errors("wrong_span"),
        ]);
    }
    right(&mut t, 2);
    let _ = writeln!(out, "{t}");
}

/// Configurations side by side (quality, tokens, cache, cost, latency; the Pareto front
/// starred), then each one's differences from the first with 95% intervals.
pub fn comparison(configs: &[Scored], cmp: &Comparison) -> String {
    let mut t = table(&[
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
        "p50",
        "wall",
    ]);
    let f2 = |x: Option<f64>| opt(x, score);
    for (c, on_front) in configs.iter().zip(&cmp.front) {
        let r = &c.report;
        let run = |k: &str| c.run[k].as_f64();
        let metadata = (!r.metadata.is_empty()).then(|| {
            r.metadata.values().map(|m| m.normalized).sum::<f64>() / r.metadata.len() as f64
        });
        t.add_row([
            if *on_front { "*" } else { "" }.to_owned(),
            inert(&c.name),
            match (
                c.run["complete_documents"].as_u64(),
                c.run["documents"].as_u64(),
            ) {
                (Some(k), Some(n)) => format!("{k}/{n}"),
                _ => NONE.into(),
            },
            f2(r.entities.as_ref().map(|e| e.strict.f1())),
            f2(metadata),
            f2(r.summaries.as_ref().map(|s| s.rouge.rouge_l)),
            f2(r.summary_checks.support()),
            f2(r.summary_checks.length_compliance()),
            opt(run("prompt_tokens_per_page"), num),
            opt(run("completion_tokens_per_page"), num),
            opt(run("cached_share"), pct),
            run("cost_per_page_usd").map_or_else(|| "unknown".into(), |x| usd(x * 1000.0)),
            opt(run("latency_ms_p50"), ms),
            opt(run("wall_secs"), |s| format!("{} s", num(s))),
        ]);
    }
    right(&mut t, 2);
    let mut s = format!("{t}\n");
    let _ = writeln!(
        s,
        "* on the Pareto front: no other configuration is both {} and better overall",
        if cmp.by_dollars {
            "cheaper"
        } else {
            "lighter (tokens a page)"
        }
    );
    let mut prices: Vec<String> = configs
        .iter()
        .filter_map(|c| {
            Some(format!(
                "{}: {}",
                c.setting["endpoint"].as_str()?,
                c.setting["prices_from"].as_str()?
            ))
        })
        .collect();
    prices.dedup();
    if !prices.is_empty() {
        let _ = writeln!(s, "prices: {}", inert(&prices.join("; ")));
    }
    if let Some(first) = configs.first() {
        let _ = writeln!(
            s,
            "against {} (B − A, 95% interval, paired by document):",
            inert(&first.name)
        );
    }
    for (name, d) in &cmp.differences {
        let verdict = match d.verdict_name() {
            "too_few_documents" => "too few documents to tell".to_owned(),
            v => v.replace('_', " "),
        };
        let _ = writeln!(
            s,
            "  {}: {} {:+.3} [{:+.3}, {:+.3}] over {} document(s): {verdict}",
            inert(name),
            d.metric.name(),
            d.mean,
            d.low,
            d.high,
            d.documents
        );
    }
    s
}

fn prf(c: &Counts) -> String {
    format!(
        "P {} R {} F1 {}",
        score(c.precision()),
        score(c.recall()),
        score(c.f1())
    )
}

/// One configuration's scores, and what its run spent a page.
pub fn single(r: &EvalReport, run: &Value) -> String {
    let mut s = format!(
        "gold documents scored: {}{}\n",
        r.documents.len(),
        if r.unmatched.is_empty() {
            String::new()
        } else {
            format!(" · no result for: {}", inert(&r.unmatched.join(", ")))
        }
    );
    if let Some(e) = &r.entities {
        let level = match e.level {
            Some(Level::Mention) => "by mention",
            Some(Level::Entity) => "by entity",
            None => "mixed",
        };
        let _ = writeln!(
            s,
            "entities ({level}): strict {} · relaxed F1 {} · type-blind F1 {} · macro F1 {}{}",
            prf(&e.strict),
            score(e.relaxed.f1()),
            score(e.type_blind.f1()),
            score(e.macro_f1()),
            e.offsets_exact()
                .map(|x| format!(" · offsets exact {}", pct(x)))
                .unwrap_or_default()
        );
        for (kind, c) in &e.by_type {
            let _ = writeln!(
                s,
                "  {:<14} {}  (tp {} fp {} fn {})",
                inert(kind),
                prf(c),
                c.tp,
                c.fp,
                c.fn_
            );
        }
    }
    if !r.metadata.is_empty() {
        let fields: Vec<String> = r
            .metadata
            .iter()
            .map(|(f, m)| {
                format!(
                    "{} {} (exact {})",
                    inert(f),
                    score(m.normalized),
                    score(m.exact)
                )
            })
            .collect();
        let _ = writeln!(s, "metadata: {}", fields.join(" · "));
    }
    if let Some(m) = &r.summaries {
        let _ = writeln!(
            s,
            "summaries: ROUGE-1 {} · ROUGE-2 {} · ROUGE-L {} over {} reference(s){}",
            score(m.rouge.rouge1),
            score(m.rouge.rouge2),
            score(m.rouge.rouge_l),
            m.references,
            if m.unanswered > 0 {
                format!(" ({} without a summary in the run)", m.unanswered)
            } else {
                String::new()
            }
        );
    }
    let c = &r.summary_checks;
    if c.summaries > 0 {
        let _ = writeln!(
            s,
            "summaries ({}): sentences backed by their section {} · within the word limit {}",
            c.summaries,
            opt(c.support(), pct),
            opt(c.length_compliance(), pct)
        );
    }
    let run = |k: &str| run[k].as_f64();
    let cost = run("cost_per_page_usd").map_or_else(
        || "cost unknown".to_owned(),
        |c| format!("{} per page", usd(c)),
    );
    match (
        run("prompt_tokens_per_page"),
        run("completion_tokens_per_page"),
    ) {
        (Some(p), Some(c)) => {
            let _ = writeln!(
                s,
                "run: {} prompt + {} completion tokens per page · {cost}",
                num(p),
                num(c)
            );
        }
        _ => s.push_str("run: no run-summary.json beside the results\n"),
    }
    s
}
