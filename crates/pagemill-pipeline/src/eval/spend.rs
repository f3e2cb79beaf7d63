//! What a configuration's results cost, read from the ledger: every request that carried one
//! of its units, in any run (retries and failed attempts that were billed included). A
//! configuration evaluated again, its results reused, still shows what they cost.

use std::collections::HashSet;

use serde::Serialize;

use crate::store::RequestRow;

/// Tokens, cost and latency of one configuration's requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    /// Requests that carried its units.
    pub requests: u64,
    /// Pages its figures are divided by.
    pub pages: u64,
    /// Prompt tokens a page.
    pub prompt_tokens_per_page: f64,
    /// Completion tokens a page.
    pub completion_tokens_per_page: f64,
    /// Cached share of prompt tokens (`None` when no server reported cached tokens).
    pub cached_share: Option<f64>,
    /// Dollars a page (`None` unless every request's cost is known).
    pub cost_per_page_usd: Option<f64>,
    /// Median time from sending a request to its last byte, ms (requests that succeeded).
    pub latency_ms_p50: Option<f64>,
    /// 95th percentile of the same.
    pub latency_ms_p95: Option<f64>,
    /// Median time to the first answer token, ms (streamed requests).
    pub ttft_ms_p50: Option<f64>,
    /// Wall time of the run that produced them this time (`None` when nothing was run).
    pub wall_secs: Option<f64>,
    /// Documents run.
    pub documents: Option<usize>,
    /// Of those, documents with every unit done (the others have units given up on, which
    /// score as missing).
    pub complete_documents: Option<usize>,
}

/// The spend of the requests among `requests` that carried any of `keys`, over `pages` pages.
pub fn spend(requests: &[RequestRow], keys: &HashSet<String>, pages: u64) -> Spend {
    let mut s = Spend {
        pages,
        ..Spend::default()
    };
    let (mut prompt, mut cached, mut completion, mut cost) = (0u64, 0u64, 0u64, 0u64);
    let (mut cached_known, mut cost_known) = (false, true);
    let mut latency = Vec::new();
    let mut ttft = Vec::new();
    for r in requests {
        if !r.unit_keys.iter().any(|k| keys.contains(k)) {
            continue;
        }
        s.requests += 1;
        prompt += r.end.prompt_tokens.unwrap_or(0);
        completion += r.end.completion_tokens.unwrap_or(0);
        if let Some(c) = r.end.cached_tokens {
            cached += c;
            cached_known = true;
        }
        match r.end.cost_pico {
            Some(c) => cost += c,
            None => cost_known = false,
        }
        let timeline: Option<serde_json::Value> = r
            .end
            .timeline
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        if let (true, Some(t)) = (r.end.ok, timeline) {
            let sent = t["sent"].as_u64();
            let ms = |at: Option<u64>| match (sent, at) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as f64 / 1e6),
                _ => None,
            };
            latency.extend(ms(t["done"].as_u64()));
            ttft.extend(ms(t["first_answer"].as_u64()));
        }
    }
    let per_page = |x: u64| x as f64 / pages.max(1) as f64;
    s.prompt_tokens_per_page = per_page(prompt);
    s.completion_tokens_per_page = per_page(completion);
    s.cached_share = (cached_known && prompt > 0).then(|| cached as f64 / prompt as f64);
    s.cost_per_page_usd = (cost_known && s.requests > 0).then(|| per_page(cost) / 1e12);
    s.latency_ms_p50 = percentile(&mut latency, 0.5);
    s.latency_ms_p95 = percentile(&mut latency, 0.95);
    s.ttft_ms_p50 = percentile(&mut ttft, 0.5);
    s
}

/// The `q` quantile (nearest rank) of `v`, `None` when empty.
fn percentile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RequestEnd;

    fn row(keys: &[&str], prompt: u64, cost: Option<u64>, sent: u64, done: u64) -> RequestRow {
        RequestRow {
            id: 0,
            run_id: "r".into(),
            endpoint: "e".into(),
            task: "entities".into(),
            prompt_version: "v".into(),
            prefix_tokens: None,
            unit_keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            status: "ok".into(),
            end: RequestEnd {
                ok: true,
                prompt_tokens: Some(prompt),
                cached_tokens: Some(prompt / 2),
                completion_tokens: Some(10),
                cost_pico: cost,
                timeline: Some(format!(
                    r#"{{"sent": {sent}, "first_answer": {}, "done": {done}}}"#,
                    sent + 1_000_000
                )),
                ..RequestEnd::default()
            },
            started_at: 0,
            finished_at: None,
        }
    }

    #[test]
    fn only_the_configurations_own_requests_count_and_unknown_cost_stays_unknown() {
        let rows = [
            row(&["a1", "a2"], 100, Some(2_000_000), 0, 40_000_000),
            row(&["a3"], 60, Some(1_000_000), 0, 10_000_000),
            row(&["b1"], 999, None, 0, 1),
        ];
        let keys: HashSet<String> = ["a1", "a2", "a3"].iter().map(|k| (*k).to_owned()).collect();
        let s = spend(&rows, &keys, 4);
        assert_eq!(s.requests, 2);
        assert_eq!(s.prompt_tokens_per_page, 40.0);
        assert_eq!(s.completion_tokens_per_page, 5.0);
        assert_eq!(s.cached_share, Some(0.5));
        assert_eq!(s.cost_per_page_usd, Some(3_000_000.0 / 4.0 / 1e12));
        assert_eq!(s.latency_ms_p50, Some(10.0));
        assert_eq!(s.latency_ms_p95, Some(40.0));
        assert_eq!(s.ttft_ms_p50, Some(1.0));
        let b: HashSet<String> = ["b1".to_owned()].into();
        assert_eq!(spend(&rows, &b, 1).cost_per_page_usd, None);
    }
}
