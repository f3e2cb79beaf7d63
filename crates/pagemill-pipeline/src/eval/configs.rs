//! The configurations `pagemill eval` compares — every endpoint × pack size × prompt profile ×
//! structured-output mode — run through the same pipeline into one ledger, and each one's
//! outcome scored with what it spent.
//!
//! A configuration's units carry a variant of their keys (its setting), so configurations never
//! share results, and a second eval of the same configurations reuses every finished unit.

use std::collections::HashSet;
use std::sync::Arc;

use pagemill_client::{Client, PromptProfile};
use serde_json::{Value, json};

use super::compare::Scored;
use super::gold::GoldDocument;
use super::score::Sources;
use super::{evaluate, spend};
use crate::ingest::Document;
use crate::run::setup::Setup;
use crate::run::{
    FormatMode, PackSize, Progress, RunError, RunOptions, RunOutcome, Tasks, UngroundedPolicy,
};
use crate::store::{RequestRow, Store};
use crate::tasks::TaskError;

/// What to vary.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Pack sizes.
    pub packs: Vec<PackSize>,
    /// Prompt profiles (`None`: each endpoint's own).
    pub profiles: Vec<Option<PromptProfile>>,
    /// Structured-output modes.
    pub formats: Vec<FormatMode>,
    /// Requests in flight per configuration (`None`: the endpoint's max_concurrency, else 8).
    pub concurrency: Option<usize>,
}

/// One configuration to run.
#[derive(Debug, Clone)]
pub struct Configuration {
    /// `endpoint · pack N · profile · format`, as tables show it.
    pub name: String,
    /// Its setting as JSON (endpoint, pack, prompt_profile, response_format).
    pub setting: Value,
    /// The endpoint's client, shared by its configurations (limits and connections too).
    pub client: Arc<Client>,
    /// The tasks, fitted to the profile.
    pub tasks: Tasks,
    /// How it runs (its variant keeps its units apart).
    pub opts: RunOptions,
}

/// A prompt profile's name in settings: `default` or `small`.
pub fn profile_name(p: PromptProfile) -> &'static str {
    match p {
        PromptProfile::Standard => "default",
        PromptProfile::Small => "small",
    }
}

/// Every combination of `grid` on each client, each once (a value named twice, such as
/// `--pack 1,1`, runs once).
pub fn configurations(
    clients: &[Arc<Client>],
    grid: &Grid,
    setup: &Setup,
) -> Result<Vec<Configuration>, TaskError> {
    let mut out: Vec<Configuration> = Vec::new();
    for client in clients {
        let ep = client.endpoint();
        for &pack in &grid.packs {
            for profile in &grid.profiles {
                for &format in &grid.formats {
                    let profile = profile.unwrap_or(ep.prompt_profile);
                    let (tasks, mut opts) = setup.fitted(profile)?;
                    opts.pack = pack;
                    if let PackSize::Fixed(n) = pack {
                        opts.max_pack = n;
                    }
                    opts.format = format;
                    opts.concurrency = grid.concurrency.or(ep.limits.max_concurrency).unwrap_or(8);
                    let setting = json!({"endpoint": ep.name, "pack": pack.to_string(),
                                         "prompt_profile": profile_name(profile),
                                         "response_format": format.to_string()});
                    opts.variant = format!("eval {setting}");
                    if out.iter().any(|c| c.opts.variant == opts.variant) {
                        continue;
                    }
                    out.push(Configuration {
                        name: format!(
                            "{} · pack {pack} · {} · {format}",
                            ep.name,
                            profile_name(profile)
                        ),
                        setting,
                        client: Arc::clone(client),
                        tasks,
                        opts,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Runs every configuration on `docs` into one store (`stores`: a connection to it per
/// configuration, e.g. from `Ledger::share`): interleaved (one task each, so endpoints share one
/// time window) or one after another. `progress` has one entry per configuration; `finished`
/// hears of each as it ends. Outcomes are in the configurations' order.
pub async fn run_all(
    configs: &[Configuration],
    docs: Arc<Vec<Document>>,
    stores: Vec<Box<dyn Store>>,
    progress: &[Arc<Progress>],
    sequential: bool,
    finished: &(dyn Fn(&Configuration, &RunOutcome) + Sync),
) -> Result<Vec<RunOutcome>, RunError> {
    let mut outcomes: Vec<Option<RunOutcome>> = configs.iter().map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    for ((i, config), ledger) in configs.iter().enumerate().zip(stores) {
        let docs = Arc::clone(&docs);
        let progress = Arc::clone(&progress[i]);
        let (client, tasks, opts) = (
            Arc::clone(&config.client),
            config.tasks.clone(),
            config.opts.clone(),
        );
        let job = async move {
            let r = crate::run::run(
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
        if sequential {
            let (i, r) = job.await;
            let outcome = r?;
            finished(&configs[i], &outcome);
            outcomes[i] = Some(outcome);
        } else {
            set.spawn(job);
        }
    }
    while let Some(joined) = set.join_next().await {
        // A configuration's task that panicked is a bug; its units stay in the ledger.
        let Ok((i, r)) = joined else {
            return Err(RunError::Panicked("a configuration's run panicked".into()));
        };
        let outcome = r?;
        finished(&configs[i], &outcome);
        outcomes[i] = Some(outcome);
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// A configuration's outcome scored against `gold`, with what it spent (from the ledger's
/// `requests`: every request that carried its units, in any run) and where its results went.
pub fn scored(
    config: &Configuration,
    outcome: &RunOutcome,
    requests: &[RequestRow],
    gold: &[GoldDocument],
    sources: &Sources,
    results_dir: &str,
) -> Result<Scored, serde_json::Error> {
    let results = outcome
        .documents
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    let s = &outcome.summary;
    let keys: HashSet<String> = outcome.keys.iter().cloned().collect();
    // Pages the work covers: without entities, every page (none is "skipped" for content).
    let pages = if config.tasks.entities.is_some() {
        s.pages.saturating_sub(s.pages_skipped)
    } else {
        s.pages
    }
    .max(1);
    let mut spent = spend::spend(requests, &keys, pages);
    spent.wall_secs = (s.requests > 0).then_some(s.wall_secs);
    spent.documents = Some(s.documents);
    spent.complete_documents = Some(s.complete_documents);
    let mut setting = config.setting.clone();
    setting["results"] = json!(results_dir);
    // Added here, not in the setting a configuration's unit keys are made from.
    setting["prices_from"] = json!(config.client.endpoint().price_source.to_string());
    Ok(Scored {
        name: config.name.clone(),
        setting,
        report: evaluate(gold, &results, sources),
        run: serde_json::to_value(&spent)?,
    })
}
