//! `pagemill run --watch DIR…`: a long-lived run that picks up new and changed files.
//!
//! The inputs are listed (directories recursively) whenever the file system says something
//! under them changed (inotify, through the `notify` crate), and besides every 5 minutes in
//! case an event was missed. A file is taken once it is *settled*: the same size and
//! modification time as at the last look, and last modified at least `--settle` ago, so a file
//! still being written (copied, uploaded, saved in pieces) waits until it is whole; a file
//! settling is looked at again when its `--settle` has passed. Where inotify is not to be had
//! (network mounts and some containers' bind mounts never send events; the kernel's watch
//! limit), or with `--watch-poll`, the inputs are listed every `--watch-interval` instead.
//!
//! Settled files that are new, or changed since this watcher took them, go through passes of
//! the pipeline (at most `--watch-batch` files a pass, oldest first) on the same ledger as every
//! other pass: units already done (by this watcher
//! before a restart, or by any earlier run) are not asked again, so nothing is paid twice, and a
//! pass's results are written as it ends. SIGTERM or Ctrl-C stops taking files, lets the pass in
//! flight drain (its requests finish and are recorded), writes its results and exits 0 — what a
//! service manager expects.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pagemill_pipeline::run::output::write_results;

use crate::cli::{GlobalArgs, RunArgs};
use crate::commands::ingest::read_inputs;
use crate::commands::run::{RunContext, context, open_any_store, setup_of};

/// What a file looked like: its size and modification time.
type Stamp = (u64, SystemTime);

/// With file-system events, how often the inputs are listed anyway (an event can be lost: the
/// kernel's queue overflows, a directory is replaced).
const RESCAN: Duration = Duration::from_secs(300);

/// Listings at most this often while events pour in (a file being written sends one a write).
const MIN_GAP: Duration = Duration::from_millis(100);

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
    live.endpoints(&endpoints);
    let _metrics = match args.metrics_addr {
        Some(addr) => Some(super::metrics::serve(addr, Arc::clone(&live)).await?),
        None => None,
    };
    let changed = Arc::new(tokio::sync::Notify::new());
    let events = if args.watch_poll {
        None
    } else {
        match Events::start(&args.pipeline.inputs, &args.out, Arc::clone(&changed)) {
            Ok(events) => Some(events),
            Err(e) => {
                eprintln!(
                    "watch: no file-system events ({e}); listing the inputs every {} instead",
                    humantime::format_duration(args.watch_interval)
                );
                None
            }
        }
    };
    eprintln!(
        "watching {} for new and changed files ({}; taken once unchanged for {}); results in {}",
        args.pipeline
            .inputs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        if events.is_some() {
            format!(
                "told by inotify, and listed every {}",
                humantime::format_duration(RESCAN)
            )
        } else {
            format!(
                "listed every {}",
                humantime::format_duration(args.watch_interval)
            )
        },
        humantime::format_duration(args.settle),
        args.out.display()
    );
    // Each file's stamp at the last look, and since when it has had it.
    let mut seen: HashMap<PathBuf, (Stamp, std::time::Instant)> = HashMap::new();
    let mut taken: HashMap<PathBuf, Stamp> = HashMap::new();
    while !stop.is_cancelled() {
        let listed = tokio::time::Instant::now();
        // A walk of the file system: off the async workers.
        let (inputs, out) = (args.pipeline.inputs.clone(), args.out.clone());
        let listing = tokio::task::spawn_blocking(move || list(&inputs, &out))
            .await
            .unwrap_or_default();
        let now: HashMap<PathBuf, (Stamp, std::time::Instant)> = listing
            .into_iter()
            .map(|(path, stamp)| {
                let since = match seen.get(&path) {
                    Some((before, since)) if *before == stamp => *since,
                    _ => std::time::Instant::now(),
                };
                (path, (stamp, since))
            })
            .collect();
        let mut settled = Vec::new();
        // Files new or changed that are not settled yet: when the first will be.
        let mut settling: Option<Duration> = None;
        for (path, (stamp, since)) in &now {
            if taken.get(path) == Some(stamp) {
                continue;
            }
            let looked_before = seen.get(path).is_some_and(|(s, _)| s == stamp);
            match settles_in(*stamp, *since, looked_before, args.settle) {
                Duration::ZERO => settled.push(path.clone()),
                left => settling = Some(settling.map_or(left, |s| s.min(left))),
            }
        }
        // Oldest first, --watch-batch a pass: a drop of hundreds shows results as it goes.
        settled.sort_by_key(|path| now.get(path).map(|((_, modified), _)| *modified));
        let more = settled.len() > args.watch_batch as usize;
        settled.truncate(args.watch_batch as usize);
        // Files gone from the inputs (moved away once done, say) are forgotten: the watcher's
        // memory stays the size of the inbox. One put back is taken again, free by the ledger.
        taken.retain(|path, _| now.contains_key(path));
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
                let outcome = live
                    .pass(&stop, |progress| {
                        pagemill_pipeline::run::run(
                            &docs,
                            tasks.clone(),
                            endpoints.clone(),
                            ledger,
                            opts.clone(),
                            progress,
                            args.ungrounded,
                        )
                    })
                    .await?;
                write_results(&args.out, &outcome.documents, &outcome.summary)?;
                let s = &outcome.summary;
                // Stopped by a budget: the files wait (not taken) until the next day.
                if s.stopped
                    .as_deref()
                    .is_some_and(|w| w.contains("budget reached"))
                    && !stop.is_cancelled()
                {
                    pause = Some(next_day(&opts.budget));
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
                    if let Some((stamp, _)) = seen.get(&path) {
                        taken.insert(path, *stamp);
                    }
                }
            }
        }
        let wait = match pause {
            Some(next) => {
                live.paused_until(Some(next));
                let wait = until(next);
                eprintln!(
                    "watch: the day's budget is reached; pausing {} until the next day begins",
                    humantime::format_duration(wait)
                );
                wait
            }
            // Files left for the next pass: at once.
            None if more => Duration::ZERO,
            None => {
                let idle = if events.is_some() {
                    RESCAN
                } else {
                    args.watch_interval
                };
                // A settling file is looked at again once its --settle has passed (a little
                // after, so it has), or at the next listing if that comes first.
                settling.map_or(idle, |left| {
                    idle.min((left + Duration::from_millis(20)).max(MIN_GAP))
                })
            }
        };
        if pause.is_some() {
            // Paused for the day: events wait too.
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        } else {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
                () = changed.notified() => {
                    tokio::time::sleep_until(listed + MIN_GAP).await;
                }
            }
        }
    }
    drop(events);
    Ok(ExitCode::SUCCESS)
}

/// File-system events under the inputs (inotify on Linux), each waking the watcher.
struct Events {
    _watcher: notify::RecommendedWatcher,
}

impl Events {
    /// Watches `inputs` (directories recursively); events about `results` (the ledger's writes
    /// during a pass, the results) are not news.
    fn start(
        inputs: &[PathBuf],
        results: &Path,
        changed: Arc<tokio::sync::Notify>,
    ) -> notify::Result<Self> {
        use notify::Watcher as _;
        let results = std::fs::canonicalize(results).unwrap_or_else(|_| results.to_path_buf());
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let news = match &event {
                    Ok(e) => {
                        !e.kind.is_access()
                            && (e.paths.is_empty()
                                || e.paths.iter().any(|p| !p.starts_with(&results)))
                    }
                    // The queue overflowed, or a watch broke: a listing sorts it out.
                    Err(_) => true,
                };
                if news {
                    changed.notify_one();
                }
            })?;
        for input in inputs {
            watcher.watch(input, notify::RecursiveMode::Recursive)?;
        }
        Ok(Self { _watcher: watcher })
    }
}

/// How long until a file stamped `stamp` (unchanged since `since`) is settled: unchanged since
/// an earlier look, and last modified `settle` ago — by its modification time, or by this
/// watcher's clock since the stamp first showed (a modification time in the future, from a
/// machine whose clock runs ahead, would otherwise hold the file back for ever). Zero: settled.
fn settles_in(
    stamp: Stamp,
    since: std::time::Instant,
    looked_before: bool,
    settle: Duration,
) -> Duration {
    if !looked_before {
        // Seen once: looked at again (soon) to see it unchanged.
        return MIN_GAP;
    }
    let by_mtime = settle.saturating_sub(stamp.1.elapsed().unwrap_or_default());
    let by_clock = settle.saturating_sub(since.elapsed());
    by_mtime.min(by_clock)
}

/// When the budget's next day begins, Unix seconds.
fn next_day(budget: &pagemill_pipeline::run::budget::BudgetSpec) -> i64 {
    budget
        .day_start(pagemill_pipeline::store::unix_now())
        .saturating_add(86_400)
}

/// How long until `unix` (Unix seconds), a second at least.
fn until(unix: i64) -> std::time::Duration {
    let left = unix.saturating_sub(pagemill_pipeline::store::unix_now());
    std::time::Duration::from_secs(u64::try_from(left).unwrap_or(0))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const SETTLE: Duration = Duration::from_secs(2);

    fn stamp(modified: SystemTime) -> Stamp {
        (100, modified)
    }

    #[test]
    fn a_file_settles_once_unchanged_over_a_look_and_old_enough() {
        let old = SystemTime::now() - Duration::from_secs(60);
        // First seen: looked at again before anything else.
        assert_eq!(
            settles_in(stamp(old), Instant::now(), false, SETTLE),
            MIN_GAP
        );
        // Unchanged over a look and modified a minute ago: settled.
        assert_eq!(
            settles_in(stamp(old), Instant::now(), true, SETTLE),
            Duration::ZERO
        );
        // Modified just now: waits out the rest of --settle.
        let fresh = SystemTime::now();
        let left = settles_in(stamp(fresh), Instant::now(), true, SETTLE);
        assert!(
            left > Duration::from_millis(1_500) && left <= SETTLE,
            "{left:?}"
        );
    }

    #[test]
    fn a_modification_time_in_the_future_settles_by_the_watchers_clock() {
        let ahead = SystemTime::now() + Duration::from_secs(3_600);
        let just_seen = Instant::now();
        assert!(settles_in(stamp(ahead), just_seen, true, SETTLE) > Duration::from_secs(1));
        let seen_long_ago = Instant::now() - Duration::from_secs(5);
        assert_eq!(
            settles_in(stamp(ahead), seen_long_ago, true, SETTLE),
            Duration::ZERO,
            "unchanged for longer than --settle, whatever its clock said"
        );
    }
}
