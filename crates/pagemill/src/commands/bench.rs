//! `pagemill bench`: arguments → `pagemill_bench::experiment` settings → the benchmark →
//! tables, JSON, or rows (JSONL, CSV).

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, bail};
use pagemill_bench::bench::{BenchSpec, bench};
use pagemill_bench::experiment::{self, Experiment, LoadSettings, Source, WorkloadSettings};
use pagemill_bench::record::Record;
use pagemill_bench::schedule::Arrival;
use pagemill_pipeline::run::output::write_atomic;
use pagemill_report::fmt::inert;
use pagemill_report::rows::RowWriter;
use pagemill_report::terminal;

use crate::cli::{ArrivalKind, BenchArgs, ExperimentKind, GlobalArgs, RowFormat, WorkloadKind};
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    // Everything that can be refused is checked before any server starts.
    let settings = workload_settings(&args);
    let experiment = experiment(&args)?;
    let spec = spec(&args, experiment.as_ref());
    // Building a pages workload reads documents (files, poppler): keep it off the async worker.
    // (spawn_blocking, not block_in_place: the latter needs a multi-threaded runtime.)
    let owned = settings.clone();
    let (workload, warnings) = tokio::task::spawn_blocking(move || experiment::workload(&owned))
        .await
        .context("building the workload (a bug)")??;
    for w in warnings {
        eprintln!("warning: {}", inert(&w));
    }
    let resolved = settings::resolve_with(global, &args.endpoints, &args.sim_profile).await?;
    let targets = experiment::targets(
        &resolved.endpoints,
        workload,
        experiment.as_ref(),
        &settings,
    )?;
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();

    let cancel = crate::commands::stop_on_ctrl_c(
        "stopping: no new requests; waiting for those in flight, then reporting",
    );
    let mut records = match &args.records {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating `{}`", p.display()))?,
        )),
        None => None,
    };
    let mut rows =
        crate::commands::row_kind(args.format).map(|kind| RowWriter::new(kind, std::io::stdout()));
    let counts = Arc::new(Counts::default());
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = (!args.quiet).then(|| {
        let every = if on_terminal {
            None
        } else {
            Some(
                args.progress_every
                    .max(std::time::Duration::from_millis(100)),
            )
        };
        show_progress(Arc::clone(&counts), every)
    });
    let live = args
        .metrics_addr
        .map(|_| super::metrics::BenchLive::new(names.clone()));
    let _metrics = match (args.metrics_addr, &live) {
        (Some(addr), Some(live)) => Some(Arc::clone(live).serve(addr).await?),
        _ => None,
    };
    let mut row_error = None;
    let mut sink = |r: &Record| {
        if let Some(live) = &live {
            live.add(r);
        }
        counts.done.fetch_add(1, Relaxed);
        if r.error.is_some() {
            counts.failed.fetch_add(1, Relaxed);
        }
        // Serialized only when asked for: 1.6% of the client's CPU at wire speed otherwise.
        if let Some(w) = records.as_mut()
            && let Ok(line) = serde_json::to_string(r)
        {
            let _ = writeln!(w, "{line}");
        }
        if let Some(rows) = rows.as_mut() {
            let name = names.get(r.target).map_or("", String::as_str);
            if let Err(e) = rows.row(&r.row(name)) {
                row_error.get_or_insert(e);
            }
        }
    };
    eprintln!(
        "bench: {} target(s), workload {}, {} point(s) × {} repeat(s)",
        targets.len(),
        targets.first().map_or("", |t| t.workload.name.as_str()),
        spec.points.len(),
        spec.repeat
    );
    let (mut results, kept) = bench(&targets, &spec, cancel, &mut sink).await;
    if let Some(p) = progress {
        p.abort();
        if on_terminal {
            eprintln!();
        }
    }
    if let Some(w) = records.as_mut() {
        w.flush().context("writing records")?;
    }
    if let Some(e) = row_error {
        return Err(e.into());
    }
    if args.truth {
        results.truth = pagemill_bench::truth::fetch(&resolved.endpoints, &kept).await;
        if results.truth.is_none() {
            eprintln!("note: --truth needs a pagemill simulator endpoint (none answered /sim/log)");
        }
    }

    let json = serde_json::to_string_pretty(&results)?;
    if let Some(p) = &args.out {
        write_atomic(p, format!("{json}\n").as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        RowFormat::Json => writeln!(out, "{json}")?,
        RowFormat::Text => write!(out, "{}", terminal::bench::render(&results))?,
        RowFormat::Jsonl | RowFormat::Csv => {
            if let Some(rows) = rows.as_mut() {
                rows.flush()?;
            }
        }
    }
    let failed = results
        .points
        .iter()
        .flat_map(|p| &p.targets)
        .all(|t| t.ok == 0);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Requests done and failed so far.
#[derive(Default)]
struct Counts {
    done: AtomicU64,
    failed: AtomicU64,
}

/// Progress on stderr: on a terminal, one line redrawn every second; elsewhere (`lines`), a
/// whole line every so often, as log collectors expect.
fn show_progress(
    counts: Arc<Counts>,
    lines: Option<std::time::Duration>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = std::time::Instant::now();
        let period = lines.unwrap_or(std::time::Duration::from_secs(1));
        loop {
            tokio::time::sleep(period).await;
            let (d, f) = (counts.done.load(Relaxed), counts.failed.load(Relaxed));
            let at = start.elapsed().as_secs_f64();
            if lines.is_some() {
                eprintln!("progress: {at:.0}s, {d} requests done, {f} failed");
            } else {
                eprint!("\r  {at:>6.0}s  {d} requests done, {f} failed   ");
            }
        }
    })
}

/// The workload settings the arguments describe.
fn workload_settings(args: &BenchArgs) -> WorkloadSettings {
    let source = match args.workload {
        WorkloadKind::Synthetic => Source::Synthetic {
            input_tokens: args.input_tokens,
        },
        WorkloadKind::SharedPrefix => Source::SharedPrefix {
            prefixes: args.prefixes,
        },
        WorkloadKind::Pages => Source::Pages {
            files: args.files.clone(),
            page_tokens: args.page_tokens,
            instruction: args.instruction.clone(),
        },
        WorkloadKind::Ledger => Source::Ledger {
            path: args.ledger.clone().unwrap_or_default(),
        },
    };
    WorkloadSettings {
        source,
        output_tokens: args.output_tokens,
        prefix_tokens: args.prefix_tokens,
        suffix_tokens: args.suffix_tokens,
        ignore_eos: args.ignore_eos,
        stream: !args.no_stream,
        seed: args.seed,
    }
}

/// The experiment the arguments ask for.
fn experiment(args: &BenchArgs) -> anyhow::Result<Option<Experiment>> {
    Ok(match args.experiment {
        None => None,
        Some(ExperimentKind::Keepalive) => Some(Experiment::Keepalive),
        Some(ExperimentKind::Cache) => Some(Experiment::Cache),
        Some(ExperimentKind::Pack) => Some(Experiment::Pack { k: args.pack_k }),
        Some(ExperimentKind::Prompts) => Some(Experiment::Prompts { k: args.pack_k }),
        Some(ExperimentKind::Trim) => {
            let (Some(a), Some(b)) = (&args.trim_a, &args.trim_b) else {
                bail!("--experiment trim needs --trim-a and --trim-b (two system prompt files)");
            };
            Some(Experiment::Trim {
                a: a.clone(),
                b: b.clone(),
            })
        }
    })
}

fn spec(args: &BenchArgs, experiment: Option<&Experiment>) -> BenchSpec {
    let load = LoadSettings {
        concurrency: args.concurrency,
        rate: args.rate,
        arrival: Some(match args.arrival {
            ArrivalKind::Constant => Arrival::Constant,
            ArrivalKind::Poisson => Arrival::Poisson,
            ArrivalKind::Gamma => Arrival::Gamma {
                shape: args.burstiness,
            },
        }),
        ramp: args.ramp,
        sweep_concurrency: args.sweep_concurrency.clone(),
        sweep_rate: args.sweep_rate.clone(),
    };
    BenchSpec {
        points: load.points(),
        find_saturation: args.find_saturation,
        requests: args.requests.or(if args.duration.is_none() {
            Some(100)
        } else {
            None
        }),
        duration: args.duration,
        warmup: args.warmup,
        repeat: args.repeat.max(1),
        seed: args.seed,
        slo: args.slo.clone().map(|s| s.0).unwrap_or_default(),
        pages_per_day: args.pages_per_day,
        keep_chunk_times: args.truth,
        agreement_prompts: args.agreement,
        experiment: experiment.map(|e| e.name().to_owned()),
        client_cores: usize::from(args.client_cores),
    }
}
