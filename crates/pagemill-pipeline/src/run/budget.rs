//! A spending limit on a run (`run --budget-usd`).
//!
//! A request goes out only while what the run has spent, plus the most every request in flight
//! can still cost, plus the most this one can cost (its prompt at the input price and its
//! whole `max_tokens` at the output price), stays within the limit. So the run's spend never
//! passes the budget, whatever is in flight. A request that does not fit waits while others
//! are in flight (they usually cost far less than they could, and give room back as they
//! end); one that does not fit with nothing in flight stops the run (exit code 3), every
//! finished result in the ledger, so a rerun with more budget resumes without paying twice.
//! The run's spend thus ends within one request's most of the budget.

use std::collections::HashMap;
use std::sync::Mutex;

use pagemill_client::{ChatRequest, Client};

/// What a request about to go out may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// It fits: go.
    Sent,
    /// It does not fit while others are in flight: wait for them to give room back.
    Wait,
    /// It does not fit with nothing in flight: the budget is reached.
    Stop,
}

/// The limit and what is spent and held against it.
#[derive(Debug)]
pub(crate) struct Budget {
    limit_pico: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Cost of the requests that ended.
    spent: u64,
    /// The most each request in flight can still cost, by ledger request id.
    held: HashMap<i64, u64>,
    /// Reserved for requests about to be recorded (see [`Budget::reserve`]).
    pending: u64,
    /// The first request that did not fit, when one has not.
    refused: Option<u64>,
}

impl Budget {
    /// A budget of `usd` dollars.
    pub(crate) fn new(usd: f64) -> Self {
        Self {
            limit_pico: (usd.max(0.0) * 1e12).round() as u64,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `worst` for a request about to go out if it fits beside what is spent and
    /// held (in one step, so two workers cannot both take the last room).
    pub(crate) fn reserve(&self, worst: u64) -> Reserve {
        let mut s = self.state();
        let held: u64 = s.held.values().sum::<u64>().saturating_add(s.pending);
        if s.spent.saturating_add(held).saturating_add(worst) <= self.limit_pico {
            s.pending += worst;
            Reserve::Sent
        } else if held > 0 {
            Reserve::Wait
        } else {
            s.refused.get_or_insert(worst);
            Reserve::Stop
        }
    }

    /// The reservation of `worst` now belongs to request `rid`, recorded and about to go out.
    pub(crate) fn hold(&self, rid: i64, worst: u64) {
        let mut s = self.state();
        s.pending = s.pending.saturating_sub(worst);
        s.held.insert(rid, worst);
    }

    /// Request `rid` ended: what it held becomes what it cost (all it held, when its cost is
    /// unknown).
    pub(crate) fn settle(&self, rid: i64, cost: Option<u64>) {
        let mut s = self.state();
        if let Some(worst) = s.held.remove(&rid) {
            s.spent = s.spent.saturating_add(cost.unwrap_or(worst));
        }
    }

    /// Why the run stopped, once a request did not fit.
    pub(crate) fn reached(&self) -> Option<String> {
        let s = self.state();
        let worst = s.refused?;
        Some(format!(
            "budget reached: ${:.6} of ${:.6} spent; the next request could cost up to ${:.6} \
             (a rerun with a larger --budget-usd goes on from here, nothing paid twice)",
            s.spent as f64 / 1e12,
            self.limit_pico as f64 / 1e12,
            worst as f64 / 1e12
        ))
    }
}

/// The most `req` can cost on `client`: every prompt token uncached at the input price and
/// its whole `max_tokens` at the output price (reasoning included); `None` without prices.
pub(crate) fn worst_cost(client: &Client, req: &ChatRequest) -> Option<u64> {
    let prices = &client.endpoint().prices;
    let (input, output) = (prices.input?, prices.output?);
    let tokenizer = client.tokenizer();
    // A few tokens a message for the chat framing the tokenizer does not see.
    let prompt: u64 = req
        .messages
        .iter()
        .map(|m| tokenizer.count(&m.content) + 8)
        .sum::<u64>()
        + req.prompts.iter().map(|p| tokenizer.count(p)).sum::<u64>();
    let completion = u64::from(req.max_tokens.unwrap_or(0))
        * u64::try_from(req.prompts.len().max(1)).unwrap_or(1);
    // Prices are dollars per million tokens: picodollars a token = price × 10⁶.
    let pico = |tokens: u64, price: f64| (tokens as f64 * price * 1e6).ceil() as u64;
    Some(pico(prompt, input).saturating_add(pico(completion, output)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_and_requests_in_flight_never_pass_the_limit() {
        let b = Budget::new(1e-6); // 1,000,000 picodollars
        assert_eq!(b.reserve(400_000), Reserve::Sent);
        b.hold(1, 400_000);
        assert_eq!(
            b.reserve(400_000),
            Reserve::Sent,
            "reserved, not yet recorded"
        );
        assert_eq!(
            b.reserve(400_000),
            Reserve::Wait,
            "800k held: wait for room"
        );
        b.hold(2, 400_000);
        assert_eq!(b.reached(), None, "waiting is not reached");
        // The first ends costing far less than it could: room again.
        b.settle(1, Some(50_000));
        assert_eq!(b.reserve(400_000), Reserve::Sent);
        b.hold(3, 400_000);
        // Unknown cost: all it held counts as spent (50k + 400k, and 400k held).
        b.settle(2, None);
        assert_eq!(b.reserve(200_000), Reserve::Wait);
        b.settle(3, Some(400_000));
        // 850k spent, nothing in flight: 200k more can never fit.
        assert_eq!(b.reserve(200_000), Reserve::Stop);
        assert!(
            b.reached().unwrap().contains("$0.000001 of $0.000001"),
            "{:?}",
            b.reached()
        );
        assert_eq!(
            b.reserve(150_000),
            Reserve::Sent,
            "a smaller one still fits"
        );
    }
}
