//! pagemill's timings against a server's own record of what it did: the pagemill simulator logs
//! every write's send time on the same `CLOCK_MONOTONIC` clock, so the client's receive times can
//! be checked, not just trusted.

use serde_json::Value;

use crate::collect::{hist, percentiles};
use crate::record::Record;
use crate::results::Truth;

/// Fetches `/sim/log` from those of `endpoints` that are pagemill simulators and compares
/// `kept` records with it; `None` when no endpoint answered.
pub async fn fetch(endpoints: &[pagemill_client::Endpoint], kept: &[Record]) -> Option<Truth> {
    use pagemill_client::{Client, Endpoint};
    let mut log = Vec::new();
    for ep in endpoints {
        let root = ep.base_url.trim_end_matches('/').trim_end_matches("/v1");
        let mut truth = Endpoint::new("truth", root, "");
        truth.transport = ep.transport.clone();
        let Ok(c) = Client::new(truth) else {
            continue;
        };
        if let Ok((200, Value::Array(entries))) = c
            .get_json_limited("sim/log", pagemill_client::client::MAX_FILE_BYTES)
            .await
        {
            log.extend(entries);
        }
    }
    (!log.is_empty()).then(|| compare(kept, &log))
}

/// Compares kept records (with chunk times and tags) with the simulator's `/sim/log` entries.
pub fn compare(records: &[Record], log: &[Value]) -> Truth {
    let by_id: std::collections::HashMap<&str, &Value> = log
        .iter()
        .filter_map(|e| Some((e["request_id"].as_str()?, e)))
        .collect();
    let (mut chunk_h, mut ttft_h) = (hist(), hist());
    let (mut new_h, mut reused_h, mut connect_h) = (hist(), hist(), hist());
    let mut t = Truth::default();
    // Warm-up requests open connections: their TTFT includes the server's accept queue, which
    // its log cannot see, so only measured requests are compared.
    for r in records.iter().filter(|r| r.measured) {
        let Some(entry) = r.tag.as_deref().and_then(|id| by_id.get(id)) else {
            t.unmatched += 1;
            continue;
        };
        t.matched += 1;
        let sent: Vec<u64> = entry["chunks"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter(|c| c["tokens"].as_u64().unwrap_or(0) > 0)
                    .filter_map(|c| c["sent_ns"].as_u64())
                    .collect()
            })
            .unwrap_or_default();
        if let (Some(first_sent), Some(received), Some(ttft)) = (
            sent.first(),
            entry["received_ns"].as_u64(),
            r.ttft_content_ns,
        ) {
            // From the request's last byte on the wire when known, else from the hand-off;
            // the network time the simulator slept before reading it is the server's too.
            let client_ttft = ttft.saturating_sub(r.lag_ns + r.write_lag_ns.unwrap_or(0));
            // From when the request reached the server's socket where the server knows it
            // (the wait to read it and the modelled network are then inside); else from
            // when it was read, with the network time the simulator slept before that.
            let server_ttft = match entry["arrived_ns"].as_u64() {
                Some(arrived) => first_sent.saturating_sub(arrived),
                None => {
                    let network = entry["network_ns"].as_u64().unwrap_or(0);
                    first_sent.saturating_sub(received) + network
                }
            };
            let delta = client_ttft.saturating_sub(server_ttft);
            let _ = ttft_h.record(delta);
            let _ = match r.reused {
                Some(false) => new_h.record(delta),
                _ => reused_h.record(delta),
            };
        }
        if let (Some(client), Some(server)) = (r.connect_ns, entry["connection_setup_ns"].as_u64())
        {
            let _ = connect_h.record(client.abs_diff(server));
        }
        if sent.len() != r.chunk_at_ns.len() {
            t.chunk_count_mismatch += 1;
            continue;
        }
        for (at, s) in r.chunk_at_ns.iter().zip(&sent) {
            t.chunks += 1;
            if at < s {
                t.causality_violations += 1;
            }
            let _ = chunk_h.record(at.saturating_sub(*s));
        }
    }
    t.chunk_delay_us = percentiles(&chunk_h, 1e-3);
    t.ttft_delta_us = percentiles(&ttft_h, 1e-3);
    t.ttft_delta_new_us = percentiles(&new_h, 1e-3);
    t.ttft_delta_reused_us = percentiles(&reused_h, 1e-3);
    t.connect_delta_us = percentiles(&connect_h, 1e-3);
    t
}
