//! `pagemill quote`: what a run would send and cost on each endpoint, before sending anything.
//!
//! Prompt tokens are exact for the endpoint's tokenizer: the very requests the run would make
//! (same packing rule, same rendered prompts) are counted. Completion tokens are an estimate
//! (entities ≈ a quarter of a page's tokens, a summary ≈ 1.3 tokens a word of its bound,
//! metadata ≈ 120), and cost is given twice: with no prompt caching (an upper bound) and with
//! the byte-stable system prefix served from cache after the first request of each task.

use std::collections::HashSet;

use pagemill_client::{Endpoint, Money, Prices, Tokenizer, Usage};
use serde::{Deserialize, Serialize};

use super::exec::{AUTO_MAX_ITEMS, pack_len};
use super::plan::{Tasks, plan};
use super::{PackSize, RunOptions};
use crate::ingest::Document;
use crate::tasks::{Item, TaskKind};

/// One endpoint's quote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// Endpoint name.
    pub endpoint: String,
    /// Model.
    pub model: String,
    /// Pages read.
    pub pages: u64,
    /// Units by task.
    pub units: std::collections::BTreeMap<String, u64>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens (exact for this tokenizer).
    pub prompt_tokens: u64,
    /// Of which the stable system prefix, repeated in every request.
    pub prefix_tokens: u64,
    /// Completion tokens (estimated).
    pub completion_tokens_estimate: u64,
    /// Cost with no caching, USD (`None` without prices).
    pub cost_usd: Option<f64>,
    /// Cost with the prefix cached after each task's first request, USD.
    pub cost_cached_usd: Option<f64>,
    /// Cost per page (no caching), USD.
    pub cost_per_page_usd: Option<f64>,
    /// Pages a day assumed for the month figure.
    pub pages_per_day: Option<u64>,
    /// Cost per 30-day month at that rate (no caching), USD.
    pub per_month_usd: Option<f64>,
    /// The tokenizer used to count.
    pub tokenizer: String,
    /// Where the prices come from.
    pub prices_from: pagemill_client::prices::PriceSource,
}

/// Quotes a run of `tasks` over `docs` on `endpoint`.
pub fn quote(
    docs: &[Document],
    tasks: &Tasks,
    endpoint: &Endpoint,
    tokenizer: &Tokenizer,
    opts: &RunOptions,
    pages_per_day: Option<u64>,
) -> Quote {
    let (work, _) = plan(docs, tasks, &endpoint.model, tokenizer);
    let mut seen = HashSet::new();
    let unique: Vec<_> = work.iter().filter(|w| seen.insert(&w.key)).collect();
    let mut q = Quote {
        endpoint: endpoint.name.clone(),
        model: endpoint.model.clone(),
        pages: docs.iter().map(|d| d.pages.len() as u64).sum(),
        units: Default::default(),
        requests: 0,
        prompt_tokens: 0,
        prefix_tokens: 0,
        completion_tokens_estimate: 0,
        cost_usd: None,
        cost_cached_usd: None,
        cost_per_page_usd: None,
        pages_per_day,
        per_month_usd: None,
        tokenizer: tokenizer.name().to_owned(),
        prices_from: endpoint.price_source.clone(),
    };
    let mut cached_total = 0u64;
    for kind in [TaskKind::Entities, TaskKind::Summary, TaskKind::Metadata] {
        let Some(task) = tasks.get(kind) else {
            continue;
        };
        let units: Vec<_> = unique.iter().filter(|w| w.kind == kind).collect();
        q.units.insert(kind.name().to_owned(), units.len() as u64);
        let (k, budget) = match (kind, opts.pack) {
            (TaskKind::Metadata, _) => (1, u64::MAX),
            (_, PackSize::Fixed(k)) => (k.max(1), u64::MAX),
            (_, PackSize::Auto) => (AUTO_MAX_ITEMS.min(opts.max_pack.max(1)), opts.pack_tokens),
        };
        let prefix = tokenizer.count(task.system_prompt());
        let mut rest = &units[..];
        let mut first = true;
        while !rest.is_empty() {
            let n = pack_len(rest.iter().map(|w| w.tokens), k, budget);
            let (pack, tail) = rest.split_at(n);
            rest = tail;
            let items: Vec<Item<'_>> = pack
                .iter()
                .map(|w| Item {
                    id: &w.item_id,
                    text: &w.text,
                    hints: w.hints.as_ref(),
                })
                .collect();
            q.prompt_tokens += tokenizer.count_messages(&task.messages(&items));
            q.prefix_tokens += prefix;
            q.requests += 1;
            if !first {
                cached_total += prefix;
            }
            first = false;
            q.completion_tokens_estimate += pack
                .iter()
                .map(|w| estimate_completion(kind, w.tokens, task.max_words()))
                .sum::<u64>();
        }
    }
    let cost = |cached: u64| {
        cost_of(
            &endpoint.prices,
            q.prompt_tokens,
            cached,
            q.completion_tokens_estimate,
        )
    };
    q.cost_usd = cost(0);
    q.cost_cached_usd = cost(cached_total);
    if let Some(c) = q.cost_usd {
        let per_page = c / q.pages.max(1) as f64;
        q.cost_per_page_usd = Some(per_page);
        q.per_month_usd = pages_per_day.map(|d| per_page * d as f64 * 30.0);
    }
    q
}

fn estimate_completion(kind: TaskKind, item_tokens: u64, max_words: u32) -> u64 {
    match kind {
        TaskKind::Entities => item_tokens / 4 + 10,
        TaskKind::Summary => u64::from(max_words) * 13 / 10 + 10,
        TaskKind::Metadata => 120,
    }
}

fn cost_of(prices: &Prices, prompt: u64, cached: u64, completion: u64) -> Option<f64> {
    let usage = Usage {
        prompt: Some(pagemill_client::Count::tokenizer(prompt)),
        cached_prompt: Some(pagemill_client::Count::tokenizer(cached.min(prompt))),
        completion: Some(pagemill_client::Count::tokenizer(completion)),
        ..Usage::default()
    };
    prices.cost(&usage).map(|c| Money::dollars(c.total))
}
