//! A benchmark's plan from its settings: the workload to send, the targets to send it to (one
//! per endpoint, or two interleaved arms per endpoint for an experiment) and the load points.
//! The command line fills these settings in; everything that decides what a benchmark does
//! lives here, so the binary only parses arguments and prints.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use pagemill_client::{Client, Endpoint, Message};
use pagemill_pipeline::ingest::{Limits, read_all};
use pagemill_pipeline::store::{History, LedgerView};

use crate::collect::SloItem;
use crate::runner::Target;
use crate::schedule::{Arrival, Load};
use crate::workload::{Replayed, Workload, WorkloadError};

/// Why a benchmark could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is missing or malformed.
    #[error("{0}")]
    Settings(String),
    /// The workload cannot be built at the sizes asked for.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// An endpoint's client cannot be built.
    #[error(transparent)]
    Client(#[from] pagemill_client::ClientError),
    /// The ledger to replay cannot be read.
    #[error(transparent)]
    Store(#[from] pagemill_pipeline::store::StoreError),
    /// A file the settings name cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Where a workload's prompts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Prompts of exactly `input_tokens` tokens, unique from their first token.
    Synthetic {
        /// Prompt length.
        input_tokens: u64,
    },
    /// `prefixes` shared system prefixes of `prefix_tokens`, each request with a unique suffix.
    SharedPrefix {
        /// Distinct prefixes.
        prefixes: usize,
    },
    /// Pages of documents (any kind pagemill reads), about `page_tokens` each.
    Pages {
        /// Files, directories or globs.
        files: Vec<PathBuf>,
        /// Page size in tokens.
        page_tokens: u64,
        /// The system prompt.
        instruction: String,
    },
    /// The requests a `pagemill run` recorded in a ledger, replayed with their lengths.
    Ledger {
        /// The ledger file.
        path: PathBuf,
    },
}

/// What to send.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSettings {
    /// Where the prompts come from.
    pub source: Source,
    /// `max_tokens` of every request.
    pub output_tokens: u32,
    /// Shared-prefix workload and cache experiment: prefix length.
    pub prefix_tokens: u64,
    /// Shared-prefix workload and cache experiment: unique suffix length.
    pub suffix_tokens: u64,
    /// Ask servers to ignore end-of-sequence (exact output lengths).
    pub ignore_eos: bool,
    /// Stream answers.
    pub stream: bool,
    /// Seed of synthetic prompts.
    pub seed: u64,
}

/// A lever tested per endpoint as interleaved arms (two, or three for keep-alive over TLS).
#[derive(Debug, Clone, PartialEq)]
pub enum Experiment {
    /// Pooled keep-alive connections against a fresh connection per request, and (over TLS)
    /// HTTP/2 with every request on one connection.
    Keepalive,
    /// A stable shared prefix against a randomized one of the same length.
    Cache,
    /// One item per request against `k` items per request.
    Pack {
        /// Items per packed request.
        k: usize,
    },
    /// The same items as `k` prompts in one legacy completions request (a prompt array),
    /// against one prompt a request and against `k` items packed into one chat prompt.
    Prompts {
        /// Prompts per request.
        k: usize,
    },
    /// Two system prompts on the same inputs.
    Trim {
        /// The first system prompt file.
        a: PathBuf,
        /// The second.
        b: PathBuf,
    },
}

impl Experiment {
    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Keepalive => "keepalive",
            Self::Cache => "cache",
            Self::Pack { .. } => "pack",
            Self::Prompts { .. } => "prompts",
            Self::Trim { .. } => "trim",
        }
    }
}

/// The workload `s` describes, and warnings about inputs that could not be read.
/// Blocking (a pages workload reads documents): call it from a blocking thread in async code.
pub fn workload(s: &WorkloadSettings) -> Result<(Workload, Vec<String>), BenchError> {
    let mut warnings = Vec::new();
    let mut w = match &s.source {
        Source::Synthetic { input_tokens } => {
            Workload::synthetic(*input_tokens, s.output_tokens, s.seed)?
        }
        Source::SharedPrefix { prefixes } => Workload::shared_prefix(
            *prefixes,
            s.prefix_tokens,
            s.suffix_tokens,
            s.output_tokens,
            s.seed,
        )?,
        Source::Pages {
            files,
            page_tokens,
            instruction,
        } => {
            if files.is_empty() {
                return Err(BenchError::Settings(
                    "the pages workload needs documents: --files (documents, directories or globs)"
                        .into(),
                ));
            }
            // Real pages, read exactly as `pagemill ingest` reads them.
            let read = read_all(files, &Limits::default());
            warnings.extend(read.skipped.into_iter().map(|(_, why)| why));
            let pages: Vec<String> = read
                .docs
                .into_iter()
                .flat_map(|d| d.pages)
                .filter(|p| p.failure.is_none())
                .map(|p| p.text)
                .collect();
            Workload::pages(&pages, *page_tokens, instruction, s.output_tokens)?
        }
        Source::Ledger { path } => {
            let mut w = Workload::replay(&replayed(path)?, s.seed)?;
            // Replayed completions have the lengths the run saw: ask for exactly those.
            w.ignore_eos = true;
            w.stream = s.stream;
            return Ok((w, warnings));
        }
    };
    w.ignore_eos = s.ignore_eos;
    w.stream = s.stream;
    Ok((w, warnings))
}

/// The shape of a finished run's successful requests.
fn replayed(path: &std::path::Path) -> Result<Vec<Replayed>, BenchError> {
    if !path.is_file() {
        return Err(BenchError::Settings(format!(
            "no ledger at `{}` (the ledger workload replays a finished pagemill run's ledger)",
            path.display()
        )));
    }
    // Read-only, without the run's lock: a ledger a run is still writing can be replayed.
    let ledger = LedgerView::open(path)?;
    Ok(ledger
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
        .collect())
}

/// One target per endpoint, or two arms per endpoint for an experiment.
pub fn targets(
    endpoints: &[Endpoint],
    workload: Workload,
    experiment: Option<&Experiment>,
    s: &WorkloadSettings,
) -> Result<Vec<Target>, BenchError> {
    let w = Arc::new(workload);
    let mut out = Vec::new();
    for ep in endpoints {
        let client = Client::new(ep.clone())?;
        let Some(experiment) = experiment else {
            out.push(Target {
                name: ep.name.clone(),
                client,
                workload: w.clone(),
            });
            continue;
        };
        for (label, client, workload) in arms(ep, client, &w, experiment, s)? {
            out.push(Target {
                name: format!("{} {label}", ep.name),
                client,
                workload,
            });
        }
    }
    if out.is_empty() {
        return Err(BenchError::Settings("no endpoint to benchmark".into()));
    }
    Ok(out)
}

type Arm = (String, Client, Arc<Workload>);

/// The arms of `experiment` on one endpoint.
fn arms(
    ep: &Endpoint,
    client: Client,
    w: &Arc<Workload>,
    experiment: &Experiment,
    s: &WorkloadSettings,
) -> Result<Vec<Arm>, BenchError> {
    Ok(match experiment {
        Experiment::Keepalive => {
            // Pooled and fresh speak HTTP/1.1; over TLS a third arm speaks HTTP/2, every
            // request multiplexed on one connection (negotiated by ALPN).
            let with = |http2: bool, fresh: bool| {
                let mut e = ep.clone();
                e.transport.http2 = http2;
                e.transport.fresh_connections = fresh;
                e
            };
            let pooled = if ep.transport.http2 {
                Client::new(with(false, false))?
            } else {
                client
            };
            let mut arms = vec![
                ("pooled".into(), pooled, w.clone()),
                ("fresh".into(), Client::new(with(false, true))?, w.clone()),
            ];
            if ep.base_url.starts_with("https://") {
                arms.push(("h2".into(), Client::new(with(true, false))?, w.clone()));
            }
            arms
        }
        Experiment::Cache => {
            let total = s.prefix_tokens + s.suffix_tokens;
            let mut stable = Workload::shared_prefix(
                1,
                s.prefix_tokens,
                s.suffix_tokens,
                s.output_tokens,
                s.seed,
            )?;
            // Seven tokens longer than the pair, so no prefix lines up with the stable arm's.
            let mut random = Workload::synthetic(total + 7, s.output_tokens, s.seed)?;
            for x in [&mut stable, &mut random] {
                x.stream = s.stream;
                x.ignore_eos = s.ignore_eos;
            }
            vec![
                ("stable-prefix".into(), client.clone(), Arc::new(stable)),
                ("random-prefix".into(), client, Arc::new(random)),
            ]
        }
        Experiment::Pack { k } => {
            let (single, packed) = pack_workloads(w, *k, s.output_tokens);
            vec![
                ("k=1".into(), client.clone(), Arc::new(single)),
                (format!("k={}", (*k).max(2)), client, Arc::new(packed)),
            ]
        }
        Experiment::Prompts { k } => {
            let k = (*k).max(2);
            let items: Vec<String> = (0..(k as u64 * 16))
                .map(|i| format!("{PROMPT_RULE}\n\n{}", last_message(w, i)))
                .collect();
            let output = s.output_tokens;
            let one = items.iter().map(|p| vec![p.clone()]).collect();
            let arrays = items.chunks(k).map(<[String]>::to_vec).collect();
            let (_, packed) = pack_workloads(w, k, output);
            let mut arms = vec![
                (
                    "prompts=1".to_owned(),
                    Workload::prompt_arrays("prompts-1", one, output),
                ),
                (
                    format!("prompts={k}"),
                    Workload::prompt_arrays(format!("prompts-{k}"), arrays, output),
                ),
            ];
            for (_, a) in &mut arms {
                a.stream = s.stream;
                a.ignore_eos = s.ignore_eos;
            }
            arms.push((format!("packed k={k}"), packed));
            arms.into_iter()
                .map(|(label, wl)| (label, client.clone(), Arc::new(wl)))
                .collect()
        }
        Experiment::Trim { a, b } => {
            let mut arms = Vec::new();
            for (label, path) in [("prompt-a", a), ("prompt-b", b)] {
                let system = std::fs::read_to_string(path).map_err(|source| BenchError::Read {
                    path: path.clone(),
                    source,
                })?;
                let convs = (0..64)
                    .map(|i| {
                        let user = last_message(w, i);
                        (
                            vec![Message::system(system.clone()), Message::user(user)],
                            1.0,
                        )
                    })
                    .collect();
                let mut t = Workload::fixed(format!("trim-{label}"), convs, s.output_tokens);
                t.stream = s.stream;
                arms.push((label.to_owned(), client.clone(), Arc::new(t)));
            }
            arms
        }
    })
}

/// What each prompt of the prompt-array arms asks, as the packed arm's rules do.
const PROMPT_RULE: &str = "Write one short sentence about this item.";

/// The text of the last message of the workload's `i`-th request.
fn last_message(w: &Workload, i: u64) -> String {
    w.item(i)
        .request
        .messages
        .last()
        .map(|m| m.content.clone())
        .unwrap_or_default()
}

/// `k` items answered one per request, and `k` per request with ID-keyed answers.
fn pack_workloads(base: &Workload, k: usize, output_tokens: u32) -> (Workload, Workload) {
    let k = k.max(2);
    let rules = "For each numbered item, write one short sentence about it. Answer as JSON: {\"answers\": [{\"id\": N, \"text\": \"…\"}]}.";
    let items: Vec<String> = (0..(k as u64 * 16))
        .map(|i| last_message(base, i))
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
    (a, b)
}

/// A linear rate ramp `FROM:TO:SECONDS` (e.g. `1:50:30`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    /// Starting rate per second.
    pub from: f64,
    /// Final rate per second.
    pub to: f64,
    /// Seconds to get there.
    pub over_secs: f64,
}

impl FromStr for Ramp {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BenchError::Settings(format!("ramp `{s}`: FROM:TO:SECONDS, e.g. 1:50:30"));
        let parts: Vec<f64> = s
            .split(':')
            .map(|p| p.trim().parse::<f64>().map_err(|_| bad()))
            .collect::<Result<_, _>>()?;
        let [from, to, over_secs] = parts[..] else {
            return Err(bad());
        };
        if [from, to, over_secs]
            .iter()
            .any(|v| !v.is_finite() || *v < 0.0)
            || over_secs == 0.0
        {
            return Err(bad());
        }
        Ok(Self {
            from,
            to,
            over_secs,
        })
    }
}

/// The offered load: one level, or a sweep of levels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadSettings {
    /// Requests in flight (closed loop).
    pub concurrency: Option<usize>,
    /// Arrivals per second (open loop).
    pub rate: Option<f64>,
    /// Arrival process of rates.
    pub arrival: Option<Arrival>,
    /// A linear rate ramp.
    pub ramp: Option<Ramp>,
    /// Concurrencies to sweep.
    pub sweep_concurrency: Vec<usize>,
    /// Rates to sweep.
    pub sweep_rate: Vec<f64>,
}

/// Requests in flight when no load is given.
pub const DEFAULT_CONCURRENCY: usize = 8;

impl LoadSettings {
    /// The load points, run one after another: sweeps when given, else the one level asked
    /// for (a ramp, a rate, or a concurrency, [`DEFAULT_CONCURRENCY`] by default).
    pub fn points(&self) -> Vec<Load> {
        let arrival = self.arrival.unwrap_or(Arrival::Poisson);
        let mut points: Vec<Load> = self
            .sweep_concurrency
            .iter()
            .map(|&n| Load::Concurrency { n })
            .collect();
        points.extend(
            self.sweep_rate
                .iter()
                .map(|&per_sec| Load::Rate { per_sec, arrival }),
        );
        if points.is_empty() {
            points.push(if let Some(r) = self.ramp {
                Load::Ramp {
                    from: r.from,
                    to: r.to,
                    over_secs: r.over_secs,
                }
            } else if let Some(per_sec) = self.rate {
                Load::Rate { per_sec, arrival }
            } else {
                Load::Concurrency {
                    n: self.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
                }
            });
        }
        points
    }
}

/// A duration: `500ms`, `2s`, `750us`, `1m30s`, `2h`, and decimals of one unit (`1.5s`).
/// Units and their combinations are humantime's; it has no decimals, so `N.Fu` is scaled here.
pub fn parse_duration(v: &str) -> Result<Duration, BenchError> {
    let v = v.trim();
    let bad = || {
        BenchError::Settings(format!(
            "duration `{v}`: a number with a unit, e.g. 500ms, 30s, 2m, 1m30s, 1h"
        ))
    };
    if let Ok(d) = humantime::parse_duration(v) {
        return Ok(d);
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let one = humantime::parse_duration(&format!("1{unit}")).map_err(|_| bad())?;
    Duration::try_from_secs_f64(one.as_secs_f64() * n).map_err(|_| bad())
}

/// Parses SLOs: `ttft_p99=500ms,tpot_p99=50ms,e2e_p50=2s`.
pub fn parse_slo(text: &str) -> Result<Vec<SloItem>, BenchError> {
    let bad = |why: String| BenchError::Settings(why);
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|part| {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| bad(format!("SLO `{part}` needs NAME_pPCT=DURATION")))?;
            let (metric, pct) = name
                .split_once("_p")
                .ok_or_else(|| bad(format!("SLO `{name}` needs a percentile, e.g. ttft_p99")))?;
            if !["ttft", "tpot", "itl", "e2e"].contains(&metric) {
                return Err(bad(format!(
                    "unknown SLO metric `{metric}` (ttft, tpot, itl, e2e)"
                )));
            }
            let pct: f64 = match pct {
                "999" => 99.9,
                p => p
                    .parse()
                    .map_err(|_| bad(format!("bad percentile in `{name}`")))?,
            };
            Ok(SloItem {
                metric: metric.to_owned(),
                pct,
                threshold: parse_duration(value)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit_and_combination() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms").unwrap(), ms(500));
        assert_eq!(parse_duration("1.5s").unwrap(), ms(1500));
        assert_eq!(parse_duration("750us").unwrap(), Duration::from_micros(750));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("0.5h").unwrap(), Duration::from_secs(1800));
        for bad in ["5", "", "fast", "1.5.5s", "-1s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slos_parse_and_refuse() {
        let slo = parse_slo("ttft_p99=150ms,tpot_p90=20ms").unwrap();
        assert_eq!(slo.len(), 2);
        assert_eq!(slo[1].metric, "tpot");
        assert_eq!(slo[1].threshold, Duration::from_millis(20));
        let s = parse_slo("ttft_p999=1m").unwrap();
        assert_eq!((s[0].pct, s[0].threshold), (99.9, Duration::from_secs(60)));
        assert!(parse_slo("latency_p99=1s").is_err());
        assert!(parse_slo("ttft=1s").is_err());
    }

    #[test]
    fn ramps_and_load_points() {
        let r: Ramp = "1:50:30".parse().unwrap();
        assert_eq!((r.from, r.to, r.over_secs), (1.0, 50.0, 30.0));
        for bad in ["1:50", "a:b:c", "1:50:0", "1:-5:10"] {
            assert!(bad.parse::<Ramp>().is_err(), "{bad}");
        }
        let default = LoadSettings::default().points();
        assert_eq!(
            default,
            [Load::Concurrency {
                n: DEFAULT_CONCURRENCY
            }]
        );
        let sweep = LoadSettings {
            sweep_concurrency: vec![1, 4],
            sweep_rate: vec![2.0],
            rate: Some(9.0),
            ..LoadSettings::default()
        };
        assert_eq!(sweep.points().len(), 3, "a sweep replaces the single level");
        let ramp = LoadSettings {
            ramp: Some(r),
            ..LoadSettings::default()
        };
        assert!(matches!(ramp.points()[..], [Load::Ramp { to, .. }] if to == 50.0));
    }

    #[test]
    fn pack_arms_carry_the_same_items() {
        let base = Workload::synthetic(40, 8, 1).unwrap();
        let (single, packed) = pack_workloads(&base, 4, 8);
        assert_eq!(
            packed.output_tokens, 32,
            "k answers need k times the tokens"
        );
        let one = last_message(&single, 0);
        let four = last_message(&packed, 0);
        assert!(
            four.starts_with(&one),
            "the first packed item is the single one: {four}"
        );
        assert_eq!(four.lines().count(), 4);
    }
}
