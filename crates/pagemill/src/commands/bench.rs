//! `pagemill bench`: arguments → targets and a spec → the benchmark → tables, JSON, JSONL.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use pagemill_bench::bench::{BenchSpec, bench};
use pagemill_bench::collect::{parse_duration, parse_slo};
use pagemill_bench::record::Record;
use pagemill_bench::report::{BenchReport, TargetReport};
use pagemill_bench::runner::Target;
use pagemill_bench::schedule::{Arrival, Load};
use pagemill_bench::workload::{Replayed, Workload};
use pagemill_client::{Client, Endpoint, Message};
use pagemill_pipeline::ingest::{Limits, expand_inputs, ingest_path};
use tokio_util::sync::CancellationToken;

use crate::cli::{ArrivalKind, BenchArgs, ExperimentKind, Format, GlobalArgs, WorkloadKind};
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let resolved = settings::resolve_with(global, &args.endpoints, &args.sim_profile).await?;
    // Building a pages workload reads documents (files, poppler): keep it off the async worker.
    let workload = tokio::task::block_in_place(|| workload(&args))?;
    let targets = targets(&args, &resolved.endpoints, workload)?;
    let spec = spec(&args)?;

    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nstopping: no new requests; waiting for those in flight, then reporting");
            on_signal.cancel();
        }
    });

    let mut writer = match &args.records {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating `{}`", p.display()))?,
        )),
        None => None,
    };
    // Progress on stderr, once a second: requests done and failed so far.
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = {
        let (done, failed) = (done.clone(), failed.clone());
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let (d, f) = (done.load(Relaxed), failed.load(Relaxed));
                eprint!(
                    "\r  {:>6.0}s  {d} requests done, {f} failed   ",
                    start.elapsed().as_secs_f64()
                );
            }
        })
    };
    let mut sink = |r: &Record| {
        done.fetch_add(1, Relaxed);
        if r.error.is_some() {
            failed.fetch_add(1, Relaxed);
        }
        if let (Some(w), Ok(line)) = (writer.as_mut(), serde_json::to_string(r)) {
            let _ = writeln!(w, "{line}");
        }
    };
    eprintln!(
        "bench: {} target(s), workload {}, {} point(s) × {} repeat(s)",
        targets.len(),
        targets.first().map_or("", |t| t.workload.name.as_str()),
        spec.points.len(),
        spec.repeat
    );
    let (mut report, kept) = bench(&targets, &spec, cancel, &mut sink).await;
    progress.abort();
    eprintln!();
    if let Some(w) = writer.as_mut() {
        w.flush().context("writing records")?;
    }
    if args.truth {
        report.truth = truth(&resolved.endpoints, &kept).await;
    }

    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &args.json {
        std::fs::write(p, &json).with_context(|| format!("writing `{}`", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{json}")?,
        Format::Text => write!(out, "{}", render(&report))?,
    }
    let failed = report
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

fn workload(args: &BenchArgs) -> anyhow::Result<Workload> {
    let mut w = match args.workload {
        WorkloadKind::Synthetic => {
            Workload::synthetic(args.input_tokens, args.output_tokens, args.seed)?
        }
        WorkloadKind::SharedPrefix => Workload::shared_prefix(
            args.prefixes,
            args.prefix_tokens,
            args.suffix_tokens,
            args.output_tokens,
            args.seed,
        )?,
        WorkloadKind::Pages => {
            if args.files.is_empty() {
                bail!("--workload pages needs --files (documents, directories or globs)");
            }
            // Real pages, read exactly as `pagemill ingest` reads them.
            let (files, problems) = expand_inputs(&args.files);
            for p in problems {
                eprintln!("warning: {p}");
            }
            let mut pages = Vec::new();
            for f in &files {
                match ingest_path(f, &Limits::default()) {
                    Ok(d) => pages.extend(
                        d.pages
                            .into_iter()
                            .filter(|p| p.failure.is_none())
                            .map(|p| p.text),
                    ),
                    Err(e) => eprintln!("warning: {e}"),
                }
            }
            Workload::pages(
                &pages,
                args.page_tokens,
                &args.instruction,
                args.output_tokens,
            )?
        }
        WorkloadKind::Ledger => {
            let Some(path) = &args.ledger else {
                bail!("--workload ledger needs --ledger (the ledger of a finished pagemill run)");
            };
            if !path.is_file() {
                bail!("no ledger at `{}`", path.display());
            }
            let ledger = pagemill_pipeline::store::Ledger::open(path)?;
            let shape: Vec<Replayed> = ledger
                .requests()?
                .into_iter()
                .filter(|r| r.end.ok)
                .filter_map(|r| {
                    Some(Replayed {
                        pages: if r.task == "entities" {
                            r.unit_keys.len() as f64
                        } else {
                            0.0
                        },
                        prefix_key: r.prompt_version,
                        prefix_tokens: r.prefix_tokens.unwrap_or(0),
                        prompt_tokens: r.end.prompt_tokens?,
                        completion_tokens: r.end.completion_tokens?,
                    })
                })
                .collect();
            let mut w = Workload::replay(&shape, args.seed)?;
            w.ignore_eos = true;
            w.stream = !args.no_stream;
            return Ok(w);
        }
    };
    w.ignore_eos = args.ignore_eos;
    w.stream = !args.no_stream;
    Ok(w)
}

fn with_transport(ep: &Endpoint, f: impl FnOnce(&mut Endpoint)) -> anyhow::Result<Client> {
    let mut ep = ep.clone();
    f(&mut ep);
    Ok(Client::new(ep)?)
}

/// One target per endpoint, or two arms per endpoint for an experiment.
fn targets(
    args: &BenchArgs,
    endpoints: &[Endpoint],
    workload: Workload,
) -> anyhow::Result<Vec<Target>> {
    let w = Arc::new(workload);
    let mut out = Vec::new();
    for ep in endpoints {
        let client = Client::new(ep.clone())?;
        let arm = |suffix: &str, client: Client, workload: Arc<Workload>| Target {
            name: format!("{} {suffix}", ep.name),
            client,
            workload,
        };
        match args.experiment {
            None => out.push(Target {
                name: ep.name.clone(),
                client,
                workload: w.clone(),
            }),
            Some(ExperimentKind::Keepalive) => {
                out.push(arm("pooled", client, w.clone()));
                let fresh = with_transport(ep, |e| e.transport.fresh_connections = true)?;
                out.push(arm("fresh", fresh, w.clone()));
            }
            Some(ExperimentKind::Cache) => {
                let total = args.prefix_tokens + args.suffix_tokens;
                let mut stable = Workload::shared_prefix(
                    1,
                    args.prefix_tokens,
                    args.suffix_tokens,
                    args.output_tokens,
                    args.seed,
                )?;
                let mut random = Workload::synthetic(total + 7, args.output_tokens, args.seed)?;
                for x in [&mut stable, &mut random] {
                    x.stream = !args.no_stream;
                    x.ignore_eos = args.ignore_eos;
                }
                out.push(arm("stable-prefix", client.clone(), Arc::new(stable)));
                out.push(arm("random-prefix", client, Arc::new(random)));
            }
            Some(ExperimentKind::Pack) => {
                let (single, packed) = pack_workloads(&w, args.pack_k, args.output_tokens)?;
                out.push(arm("k=1", client.clone(), Arc::new(single)));
                out.push(arm(&format!("k={}", args.pack_k), client, Arc::new(packed)));
            }
            Some(ExperimentKind::Trim) => {
                let (Some(a), Some(b)) = (&args.trim_a, &args.trim_b) else {
                    bail!(
                        "--experiment trim needs --trim-a and --trim-b (two system prompt files)"
                    );
                };
                for (label, path) in [("prompt-a", a), ("prompt-b", b)] {
                    let system = std::fs::read_to_string(path)
                        .with_context(|| format!("reading `{}`", path.display()))?;
                    let convs = (0..64)
                        .map(|i| {
                            let user = w
                                .item(i)
                                .request
                                .messages
                                .last()
                                .map(|m| m.content.clone())
                                .unwrap_or_default();
                            (
                                vec![Message::system(system.clone()), Message::user(user)],
                                1.0,
                            )
                        })
                        .collect();
                    let mut t = Workload::fixed(format!("trim-{label}"), convs, args.output_tokens);
                    t.stream = !args.no_stream;
                    out.push(arm(label, client.clone(), Arc::new(t)));
                }
            }
        }
    }
    if out.is_empty() {
        bail!("no endpoint to benchmark");
    }
    Ok(out)
}

/// `k` items answered one per request, and `k` per request with ID-keyed answers.
fn pack_workloads(
    base: &Workload,
    k: usize,
    output_tokens: u32,
) -> anyhow::Result<(Workload, Workload)> {
    let k = k.max(2);
    let rules = "For each numbered item, write one short sentence about it. Answer as JSON: {\"answers\": [{\"id\": N, \"text\": \"…\"}]}.";
    let items: Vec<String> = (0..(k as u64 * 16))
        .map(|i| {
            base.item(i)
                .request
                .messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default()
        })
        .collect();
    let single = items
        .iter()
        .map(|it| {
            (
                vec![Message::system(rules), Message::user(format!("1. {it}"))],
                1.0,
            )
        })
        .collect();
    let packed = items
        .chunks(k)
        .map(|group| {
            let body = group
                .iter()
                .enumerate()
                .map(|(i, it)| format!("{}. {it}", i + 1))
                .collect::<Vec<_>>()
                .join("\n");
            (
                vec![Message::system(rules), Message::user(body)],
                group.len() as f64,
            )
        })
        .collect();
    let mut a = Workload::fixed("pack-k1", single, output_tokens);
    let mut b = Workload::fixed(
        format!("pack-k{k}"),
        packed,
        output_tokens.saturating_mul(k as u32),
    );
    a.stream = base.stream;
    b.stream = base.stream;
    Ok((a, b))
}

fn spec(args: &BenchArgs) -> anyhow::Result<BenchSpec> {
    let arrival = match args.arrival {
        ArrivalKind::Constant => Arrival::Constant,
        ArrivalKind::Poisson => Arrival::Poisson,
        ArrivalKind::Gamma => Arrival::Gamma {
            shape: args.burstiness,
        },
    };
    let mut points: Vec<Load> = Vec::new();
    points.extend(
        args.sweep_concurrency
            .iter()
            .map(|&n| Load::Concurrency { n }),
    );
    points.extend(
        args.sweep_rate
            .iter()
            .map(|&per_sec| Load::Rate { per_sec, arrival }),
    );
    if points.is_empty() {
        points.push(if let Some(r) = &args.ramp {
            let parts: Vec<f64> = r.split(':').filter_map(|p| p.parse().ok()).collect();
            let [from, to, over_secs] = parts[..] else {
                bail!("--ramp takes FROM:TO:SECONDS, e.g. 1:50:30");
            };
            Load::Ramp {
                from,
                to,
                over_secs,
            }
        } else if let Some(per_sec) = args.rate {
            Load::Rate { per_sec, arrival }
        } else {
            Load::Concurrency {
                n: args.concurrency.unwrap_or(8),
            }
        });
    }
    let duration = args.duration.as_deref().map(|d| {
        let d = d.trim();
        match d.strip_suffix('m').filter(|_| !d.ends_with("ms")) {
            Some(m) => m
                .parse::<f64>()
                .map(|m| std::time::Duration::from_secs_f64(m * 60.0))
                .map_err(|e| e.to_string()),
            None => parse_duration(d),
        }
    });
    let duration = duration.transpose().map_err(anyhow::Error::msg)?;
    Ok(BenchSpec {
        points,
        find_saturation: args.find_saturation,
        requests: args
            .requests
            .or(if duration.is_none() { Some(100) } else { None }),
        duration,
        warmup: args.warmup,
        repeat: args.repeat.max(1),
        seed: args.seed,
        slo: args
            .slo
            .as_deref()
            .map(parse_slo)
            .transpose()
            .map_err(anyhow::Error::msg)?
            .unwrap_or_default(),
        pages_per_day: args.pages_per_day,
        keep_chunk_times: args.truth,
        agreement_prompts: args.agreement,
        experiment: args.experiment.map(|e| format!("{e:?}").to_lowercase()),
    })
}

/// Fetches `/sim/log` from the endpoints that are pagemill simulators and compares.
async fn truth(endpoints: &[Endpoint], kept: &[Record]) -> Option<pagemill_bench::truth::Truth> {
    let mut log = Vec::new();
    for ep in endpoints {
        let root = ep
            .base_url
            .trim_end_matches('/')
            .trim_end_matches("/v1")
            .to_owned();
        let Ok(c) = Client::new(Endpoint::new("truth", root, "")) else {
            continue;
        };
        if let Ok((200, serde_json::Value::Array(entries))) = c
            .get_json_limited("sim/log", pagemill_client::client::MAX_FILE_BYTES)
            .await
        {
            log.extend(entries);
        }
    }
    if log.is_empty() {
        eprintln!("note: --truth needs a pagemill simulator endpoint (none answered /sim/log)");
        return None;
    }
    Some(pagemill_bench::truth::compare(kept, &log))
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2}s", v / 1e3)
    } else {
        format!("{v:.1}")
    }
}

fn usd(v: Option<f64>) -> String {
    v.map_or_else(
        || "unknown".to_owned(),
        |v| {
            if v < 0.01 {
                format!("${v:.6}")
            } else {
                format!("${v:.2}")
            }
        },
    )
}

fn row(t: &TargetReport) -> Vec<String> {
    let l = |k: &str| t.latency_ms.get(k).copied().unwrap_or_default();
    let errors: u64 = t.errors.values().sum();
    vec![
        t.name.clone(),
        format!("{}/{}", t.ok, errors),
        format!("{:.1}", t.request_throughput),
        format!("{:.0}", t.output_token_throughput),
        format!(
            "{} / {}",
            ms(l("ttft_answer").p50),
            ms(l("ttft_answer").p99)
        ),
        format!("{} / {}", ms(l("tpot").p50), ms(l("tpot").p99)),
        format!("{} / {}", ms(l("itl_token").p50), ms(l("itl_token").p99)),
        format!("{} / {}", ms(l("e2e").p50), ms(l("e2e").p99)),
        t.tokens
            .cached_ratio
            .map_or_else(|| "unreported".into(), |r| format!("{:.0}%", r * 100.0)),
        usd(t.cost.per_request_usd),
        usd(t.cost.per_1k_pages_usd),
        usd(t.cost.per_month_usd),
    ]
}

/// The report as terminal tables (readable without colour).
pub fn render(r: &BenchReport) -> String {
    let mut s = String::new();
    for p in &r.points {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            "target",
            "ok/err",
            "req/s",
            "out tok/s",
            "TTFT ms p50/p99",
            "TPOT ms p50/p99",
            "ITL/token ms p50/p99",
            "E2E ms p50/p99",
            "cached",
            "$/request",
            "$/1K pages",
            "$/month",
        ]);
        for tr in &p.targets {
            t.add_row(row(tr));
        }
        s.push_str(&format!(
            "\nload {} — workload {}\n{t}\n",
            p.load.label(),
            r.workload
        ));
        for tr in &p.targets {
            let tok = &tr.tokens;
            s.push_str(&format!(
                "  {}: tokens in {} (discrepancy vs server {:+.1} mean, {} mismatched), out {}/{} asked ({} short), {:.2} tokens/event, sources server {} / tokenizer {}; connections reused {} new {}",
                tr.name, tok.input_counted, tok.input_discrepancy_mean, tok.input_mismatches, tok.output_received,
                tok.output_requested, tok.output_short,
                if tok.content_events > 0 { tok.output_received as f64 / tok.content_events as f64 } else { 0.0 },
                tok.output_source_server, tok.output_source_tokenizer, tr.connections.reused, tr.connections.new
            ));
            if let Some(g) = tr.goodput {
                s.push_str(&format!(
                    "; goodput {g:.2} req/s ({:.0}% within SLO)",
                    tr.slo_attainment.unwrap_or(0.0) * 100.0
                ));
            }
            if !tr.errors.is_empty() {
                let e: Vec<String> = tr.errors.iter().map(|(k, v)| format!("{k} {v}")).collect();
                s.push_str(&format!("; errors: {}", e.join(", ")));
            }
            if let Some(pp) = &tr.per_page {
                s.push_str(&format!(
                    "; per page: {:.0} in / {:.0} out tokens, {:.0} ms",
                    pp.input_tokens, pp.output_tokens, pp.e2e_ms
                ));
            }
            s.push('\n');
            for (k, e) in &tr.across_repeats {
                s.push_str(&format!(
                    "    {k}: {:.3} ± {:.3} (95% CI, {} runs)\n",
                    e.mean, e.ci95, e.n
                ));
            }
        }
        if !p.comparisons.is_empty() {
            let mut c = Table::new();
            c.load_preset(UTF8_FULL_CONDENSED);
            c.set_header([
                "metric",
                "baseline",
                "target",
                "baseline",
                "target",
                "Δ ± 95% CI",
                "significant",
            ]);
            for cmp in &p.comparisons {
                c.add_row(vec![
                    cmp.metric.clone(),
                    cmp.baseline.clone(),
                    cmp.target.clone(),
                    format!("{:.4}", cmp.baseline_value),
                    format!("{:.4}", cmp.target_value),
                    format!("{:+.4} ± {:.4}", cmp.difference, cmp.ci95),
                    if cmp.significant {
                        "yes".into()
                    } else {
                        "no".into()
                    },
                ]);
            }
            s.push_str(&format!("{c}\n"));
        }
    }
    if let Some(a) = &r.agreement {
        for row in &a.endpoints {
            s.push_str(&format!(
                "agreement with {} over {} prompts: {} exact {:.0}%{}\n",
                a.reference,
                a.prompts,
                row.name,
                row.exact_match_rate * 100.0,
                row.json_field_agreement
                    .map_or_else(String::new, |f| format!(", JSON fields {:.0}%", f * 100.0))
            ));
        }
    }
    if let Some(t) = &r.truth {
        s.push_str(&format!(
            "timing truth vs the simulator's log: {} requests, {} chunks; receive − send p50 {:.0} µs, p99 {:.0} µs; TTFT difference p50 {:.0} µs, p99 {:.0} µs; {} causality violations\n",
            t.matched, t.chunks, t.chunk_delay_us.p50, t.chunk_delay_us.p99, t.ttft_delta_us.p50, t.ttft_delta_us.p99, t.causality_violations
        ));
    }
    let sc = &r.self_check;
    s.push_str(&format!(
                "client: lag p50 {:.2} ms p99 {:.2} ms, to the wire p50 {:.2} ms p99 {:.2} ms, CPU {:.2}s over {:.2}s ({:.1} µs/request, {:.2} µs/event), peak memory {:.1} MiB\n",
                sc.lag_ms.p50, sc.lag_ms.p99, sc.write_lag_ms.p50, sc.write_lag_ms.p99, sc.cpu_s, sc.wall_s, sc.cpu_per_request_us, sc.cpu_per_event_us,
        sc.peak_rss_bytes as f64 / (1 << 20) as f64
    ));
    for w in &sc.warnings {
        s.push_str(&format!("warning: {w}\n"));
    }
    if r.interrupted {
        s.push_str("interrupted: partial results\n");
    }
    s
}
