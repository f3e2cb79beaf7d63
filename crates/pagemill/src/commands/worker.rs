//! `pagemill worker`: works on what a shared PostgreSQL ledger holds to do. Documents come
//! from the store (each recorded whole by the run that planned it), so a worker needs no
//! files; each pass leases what is free, sets aside what other workers hold until it is done
//! or their lease lapses, and ends when every unit of those documents is done. Units the
//! worker's own configuration would key differently (another model, prompt or schema) are
//! not its work: it plans nothing new (`Replan::Known`) and says so.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, ensure};
use pagemill_pipeline::store::{Replan, postgres};

use crate::cli::{GlobalArgs, WorkerArgs};
use crate::commands::run::{RunContext, context, open_any_store, setup_of};

/// Runs the worker until the store has nothing to do (with --exit-when-done), or until
/// SIGTERM or Ctrl-C.
pub async fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let WorkerArgs {
        run: args,
        poll,
        exit_when_done,
    } = args;
    ensure!(
        args.pipeline.inputs.is_empty(),
        "a worker takes its documents from the store: give no inputs (`pagemill run --plan INPUTS --store …` records them)"
    );
    let Some(url) = args
        .store
        .as_deref()
        .and_then(std::path::Path::to_str)
        .filter(|s| postgres::is_postgres(s))
        .map(str::to_owned)
    else {
        bail!("a worker needs a shared store: --store postgres://user@host/db (or PAGEMILL_STORE)");
    };
    let setup = setup_of(&args.pipeline)?;
    let RunContext {
        tasks,
        endpoints,
        mut opts,
        servers: _servers,
    } = context(global, &args, setup).await?;
    if opts.replan == Replan::Resume {
        opts.replan = Replan::Known;
    }
    let stop = crate::commands::stop_on_signals(
        "stopping: no new requests; finishing those in flight (the store keeps every finished result)",
    );
    let live = Arc::new(super::metrics::Live::default());
    live.endpoints(&endpoints);
    let _metrics = match args.metrics_addr {
        Some(addr) => Some(super::metrics::serve(addr, Arc::clone(&live)).await?),
        None => None,
    };
    eprintln!("worker: taking work from {}", postgres::redact_url(&url));
    let mut idle_said = false;
    let (mut passes, mut units_done) = (0u64, 0u64);
    while !stop.is_cancelled() {
        // (The ledger's calls keep off the async workers themselves.)
        let pass = async {
            let (_, ledger) = open_any_store(&args.out, &args)?;
            let docs = ledger.documents_to_do()?;
            if docs.is_empty() {
                return anyhow::Ok(None);
            }
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
            Ok(Some(outcome.summary))
        };
        let wait = match pass.await {
            Ok(None) => {
                if exit_when_done {
                    eprintln!("worker: the store holds nothing to do");
                    break;
                }
                if !idle_said {
                    eprintln!(
                        "worker: nothing to do; looking again every {}",
                        pagemill_client::clock::human(poll)
                    );
                    idle_said = true;
                }
                true
            }
            Ok(Some(s)) => {
                idle_said = false;
                passes += 1;
                units_done += s.tasks.values().map(|t| t.done).sum::<u64>();
                eprintln!(
                    "worker: {} document(s) with work to do; {} request(s), {} page(s) done, {} pending{}",
                    s.documents,
                    s.requests,
                    s.pages_done,
                    s.pages_pending,
                    s.stopped
                        .as_deref()
                        .map_or(String::new(), |why| format!("; stopped: {why}"))
                );
                let stuck = s.requests == 0 && s.pages_pending > 0 && !stop.is_cancelled();
                if stuck {
                    // Nothing this worker may take: other configurations' units, or failures
                    // only --retry-failed takes again.
                    eprintln!(
                        "worker: what is left is not this worker's to do (planned with another model, prompt or task set, or dead letters: --retry-failed){}",
                        if exit_when_done {
                            String::new()
                        } else {
                            format!(": waiting {}", pagemill_client::clock::human(poll))
                        }
                    );
                    if exit_when_done {
                        break;
                    }
                }
                stuck
            }
            // The store or the endpoint failed this pass: a worker that serves keeps going
            // (what finished is in the store); one asked to finish reports it.
            Err(e) if !exit_when_done => {
                eprintln!(
                    "worker: {e:#}; trying again in {}",
                    pagemill_client::clock::human(poll)
                );
                true
            }
            Err(e) => return Err(e),
        };
        if wait {
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
    let trips = postgres::process_round_trips();
    eprintln!(
        "worker: {passes} pass(es), {units_done} unit(s) done here, {trips} round trips to the store{}",
        if units_done > 0 {
            format!(" ({:.1} a unit)", trips as f64 / units_done as f64)
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
