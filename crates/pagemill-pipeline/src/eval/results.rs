//! Finished runs read back for scoring (`pagemill eval GOLD --results DIR`): the per-document
//! results and the run summary a results directory holds.

use std::path::Path;

use serde_json::{Value, json};

use crate::run::output::SUMMARY_FILE;

/// What a results directory holds.
#[derive(Debug, Clone, Default)]
pub struct Finished {
    /// Every document result (JSON with `id` and `path`).
    pub results: Vec<Value>,
    /// The run summary (`Null` when absent).
    pub summary: Value,
}

/// Reads every document result in `dir` and its run summary; errors name the file.
pub fn read(dir: &Path) -> std::io::Result<Finished> {
    let named = |p: &Path, e: &dyn std::fmt::Display, kind| {
        std::io::Error::new(kind, format!("`{}`: {e}", p.display()))
    };
    let entries = std::fs::read_dir(dir).map_err(|e| {
        named(
            dir,
            &format!("cannot read the results directory: {e}"),
            e.kind(),
        )
    })?;
    let mut out = Finished {
        summary: Value::Null,
        ..Finished::default()
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| named(&path, &e, e.kind()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            named(
                &path,
                &format!("not JSON: {e}"),
                std::io::ErrorKind::InvalidData,
            )
        })?;
        if path.file_name().is_some_and(|n| n == SUMMARY_FILE) {
            out.summary = v;
        } else if v["id"].is_string() && v["path"].is_string() {
            out.results.push(v);
        }
    }
    Ok(out)
}

/// The figures a configuration is compared on (tokens and cost a page, cached share, wall
/// time, documents complete), from a run summary.
pub fn figures(summary: &Value) -> Value {
    json!({
        "prompt_tokens_per_page": summary["prompt_tokens_per_page"],
        "completion_tokens_per_page": summary["completion_tokens_per_page"],
        "cached_share": summary["cached_share"],
        "cost_per_page_usd": summary["cost_per_page_usd"],
        "wall_secs": summary["wall_secs"],
        "documents": summary["documents"],
        "complete_documents": summary["complete_documents"],
    })
}
