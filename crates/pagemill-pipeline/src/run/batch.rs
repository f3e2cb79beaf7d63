//! Batch mode: the same jobs, sent through the endpoint's batch API (OpenAI's, or Anthropic's
//! Message Batches; see [`pagemill_client::batch`]) — one batch per round, polled until finished, partial results taken, and only the failed lines (and the
//! items a pack failed) sent again in the next round. Each line's `custom_id` is its ledger
//! request id, so a line maps back to exactly the units it carried.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pagemill_client::{
    ErrorClass, Exchange, FailureKind, Outcome, RequestError, Usage, wire::ChatResponse,
};

use super::FormatMode;
use super::exec::{Job, Shared, failed};
use crate::store::StoreError;

/// Runs every unit through batches on the primary endpoint until all are done or given up.
pub(crate) async fn drive(shared: &Arc<Shared>) -> Result<(), StoreError> {
    let client = Arc::clone(&shared.endpoints[0]);
    loop {
        let mut jobs: Vec<Job> = Vec::new();
        while jobs.len() < shared.opts.batch_max_lines {
            match shared.take() {
                Some(j) => jobs.push(j),
                None => break,
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let mut requests = Vec::new();
        let mut sent: HashMap<String, (Job, i64, FormatMode)> = HashMap::new();
        for mut job in jobs {
            match shared.start(&mut job)? {
                Some((req, rid, format)) => {
                    requests.push((rid.to_string(), req));
                    sent.insert(rid.to_string(), (job, rid, format));
                }
                None => shared.job_over(),
            }
        }
        shared.progress.batches.fetch_add(1, Ordering::Relaxed);
        let results = run_batch(shared, &client, &requests).await;
        match results {
            Err(e) => {
                // The batch as a whole failed: every line shares the failure.
                for (_, (job, rid, format)) in sent.drain() {
                    let outcome = failed(e.clone());
                    let r = shared.finish(job, rid, format, &outcome);
                    shared.job_over();
                    r?;
                }
            }
            Ok(results) => {
                for res in results {
                    let Some((job, rid, format)) = sent.remove(&res.custom_id) else {
                        continue;
                    };
                    let outcome = match res.result {
                        Ok(resp) => answered(&client, &resp),
                        Err(e) => failed(e),
                    };
                    let r = shared.finish(job, rid, format, &outcome);
                    shared.job_over();
                    r?;
                }
                // Lines the provider never answered (an expired batch): send again.
                for (_, (job, rid, format)) in sent.drain() {
                    let e = RequestError::new(
                        FailureKind::Truncated,
                        ErrorClass::Transient,
                        "line missing from the batch output",
                    );
                    let r = shared.finish(job, rid, format, &failed(e));
                    shared.job_over();
                    r?;
                }
            }
        }
    }
}

async fn run_batch(
    shared: &Shared,
    client: &pagemill_client::Client,
    requests: &[(String, pagemill_client::ChatRequest)],
) -> Result<Vec<pagemill_client::batch::BatchResult>, RequestError> {
    let mut batch = client.submit_batch(requests).await?;
    tracing::info!(batch = %batch.id, "batch submitted");
    while !batch.is_finished() {
        if shared.progress.stop.is_cancelled() {
            break;
        }
        tokio::time::sleep(shared.opts.batch_poll).await;
        batch = client.get_batch(&batch.id).await?;
    }
    client.batch_outcome(&batch).await
}

fn answered(client: &pagemill_client::Client, resp: &ChatResponse) -> Outcome {
    let choice = resp.choices.first();
    let message = choice.and_then(|c| c.message.as_ref());
    let usage = resp.usage.as_ref().map(Usage::from_raw).unwrap_or_default();
    let cost = client.endpoint().prices.batch_cost(&usage);
    Outcome {
        last: Exchange {
            endpoint: client.endpoint().name.clone(),
            model: resp.model.clone(),
            response_id: resp.id.clone(),
            content: message.and_then(|m| m.content.clone()).unwrap_or_default(),
            finish_reason: choice.and_then(|c| c.finish_reason.clone()),
            usage,
            cost,
            ..Exchange::default()
        },
        retried: Vec::new(),
    }
}
