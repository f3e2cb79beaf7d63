//! `pagemill run --watch DIR…`: a long-lived run that picks up new and changed files.
//!
//! Every `--watch-interval` the inputs are listed (directories recursively). A file is taken
//! once it is *settled*: the same size and modification time as at the last look, and last
//! modified at least `--settle` ago, so a file still being written (copied, uploaded, saved in
//! pieces) waits until it is whole. Settled files that are new, or changed since this watcher
//! took them, go through one pass of the pipeline on the same ledger as every other pass:
//! units already done (by this watcher before a restart, or by any earlier run) are not asked
//! again, so nothing is paid twice, and a pass's results are written as it ends. SIGTERM or
//! Ctrl-C stops taking files, lets the pass in flight drain (its requests finish and are
//! recorded), writes its results and exits 0 — what a service manager expects.
//!
//! Listing by polling, not inotify: one `read_dir` walk an interval costs microseconds for the
//! hundreds of files a day this serves, works the same on every file system (network mounts
//! and containers' bind mounts often miss inotify events), and needs no extra dependency.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use pagemill_pipeline::run::Progress;
use pagemill_pipeline::run::output::write_results;

use crate::cli::{GlobalArgs, RunArgs};
use crate::commands::ingest::read_inputs;
use crate::commands::run::{RunContext, context, open_any_store, setup_of};

/// What a file looked like: its size and modification time.
type Stamp = (u64, SystemTime);

/// Runs the watcher until SIGTERM or Ctrl-C.
pub async fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    let setup = setup_of(&args.pipeline)?;
    let RunContext {
        tasks,
        endpoints,
        opts,
        servers: _servers,
    } = context(global, &args, setup).await?;
    let stop = crate::commands::stop_on_signals(
        "stopping: no new files; finishing the requests in flight, then writing the results",
    );
    let live = Arc::new(super::metrics::Live::default());
    let _metrics = match args.metrics_addr {
        Some(addr) => Some(super::metrics::serve(addr, Arc::clone(&live)).await?),
        None => None,
    };
    eprintln!(
        "watching {} for new and changed files (every {:?}, taken once unchanged for {:?}); \
         results in {}",
        args.pipeline
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.watch_interval,
        args.settle,
        args.out.display()
    );
    let mut seen: HashMap<PathBuf, Stamp> = HashMap::new();
    let mut taken: HashMap<PathBuf, Stamp> = HashMap::new();
    while !stop.is_cancelled() {
        // A walk of the file system: off the async workers.
        let (inputs, out) = (args.pipeline.inputs.clone(), args.out.clone());
        let now = tokio::task::spawn_blocking(move || list(&inputs, &out))
            .await
            .unwrap_or_default();
        let settled: Vec<PathBuf> = now
            .iter()
            .filter(|(path, stamp)| {
                seen.get(*path) == Some(stamp)
                    && stamp.1.elapsed().unwrap_or_default() >= args.settle
                    && taken.get(*path) != Some(stamp)
            })
            .map(|(p, _)| p.clone())
            .collect();
        seen = now;
        let mut pause = None;
        if !settled.is_empty() {
            let (docs, skipped) = read_inputs(
                &settled,
                args.pipeline.work.page_chars,
                args.pipeline.work.section_tokens,
            )
            .await?;
            for (path, why) in &skipped {
                eprintln!("skipped {}", pagemill_report::fmt::skipped(path, why));
            }
            if !docs.is_empty() {
                let (_, ledger) = open_any_store(&args.out, &args)?;
                let progress = Arc::new(Progress {
                    stop: stop.child_token(),
                    ..Progress::default()
                });
                live.start(&progress);
                let outcome = pagemill_pipeline::run::run(
                    &docs,
                    tasks.clone(),
                    endpoints.clone(),
                    ledger,
                    opts.clone(),
                    Arc::clone(&progress),
                    args.ungrounded,
                )
                .await;
                live.end();
                let outcome = outcome?;
                write_results(&args.out, &outcome.documents, &outcome.summary)?;
                let s = &outcome.summary;
                // Stopped by a budget: the files wait (not taken) until the next day.
                if s.stopped
                    .as_deref()
                    .is_some_and(|w| w.contains("budget reached"))
                    && !stop.is_cancelled()
                {
                    pause = Some(until_next_day(&opts.budget));
                }
                eprintln!(
                    "watch: {} document(s), {} complete; {} request(s), {} pages pending{}",
                    s.documents,
                    s.complete_documents,
                    s.requests,
                    s.pages_pending,
                    s.stopped
                        .as_deref()
                        .map_or(String::new(), |why| format!("; stopped: {why}"))
                );
            }
            if pause.is_none() {
                for path in settled {
                    if let Some(stamp) = seen.get(&path) {
                        taken.insert(path, *stamp);
                    }
                }
            }
        }
        let wait = match pause {
            Some(wait) => {
                eprintln!(
                    "watch: the day's budget is reached; pausing {} until the next day begins",
                    pagemill_client::clock::human(wait)
                );
                wait
            }
            None => args.watch_interval,
        };
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long until the budget's next day begins.
fn until_next_day(budget: &pagemill_pipeline::run::budget::BudgetSpec) -> std::time::Duration {
    let now_secs = pagemill_pipeline::store::unix_now();
    let next = budget.day_start(now_secs).saturating_add(86_400);
    std::time::Duration::from_secs(u64::try_from(next.saturating_sub(now_secs)).unwrap_or(0))
        .max(std::time::Duration::from_secs(1))
}

/// Every file under `inputs` (directories recursively; hidden entries and the results
/// folder `results` skipped), with its stamp.
fn list(inputs: &[PathBuf], results: &Path) -> HashMap<PathBuf, Stamp> {
    let results = std::fs::canonicalize(results).unwrap_or_else(|_| results.to_path_buf());
    let mut out = HashMap::new();
    for input in inputs {
        walk(input, &results, &mut out, 0);
    }
    out
}

fn walk(path: &Path, results: &Path, out: &mut HashMap<PathBuf, Stamp>, depth: usize) {
    let hidden = path
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    if hidden && depth > 0 {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        // The results folder (and what is in it) is pagemill's own output.
        if std::fs::canonicalize(path).is_ok_and(|p| p.starts_with(results)) {
            return;
        }
        // Deep enough for any real tree; a link loop ends here.
        if depth > 32 {
            return;
        }
        if let Ok(entries) = std::fs::read_dir(path) {
            for e in entries.flatten() {
                walk(&e.path(), results, out, depth + 1);
            }
        }
    } else if meta.is_file()
        && let Ok(modified) = meta.modified()
    {
        out.insert(path.to_path_buf(), (meta.len(), modified));
    }
}
