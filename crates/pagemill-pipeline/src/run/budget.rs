//! Spending limits on a run: `--budget-usd` for this run, `--budget-usd-per-day` and
//! `--budget-tokens-per-day` for the day so far, counted in the ledger so they hold across
//! restarts and across runs sharing it.
//!
//! A request goes out only while what has been spent, plus the most every request in flight
//! can still cost, plus the most this one can cost, stays within every limit. The most a
//! request can cost is its prompt at the input price and its whole `max_tokens` at the output
//! price, in dollars; in tokens, its prompt and its `max_tokens` (what providers count against a
//! tokens-per-minute limit). So spend never passes a budget, whatever is in flight. A request
//! that does not fit waits while others are in flight (they usually cost far less than they
//! could, and give room back as they end); one that does not fit with nothing in flight stops
//! the run (exit code 3) with every finished result in the ledger, so a rerun with more budget
//! (or the next day) resumes without paying twice. Spend thus ends within one request's most
//! of the budget.

use std::collections::HashMap;
use std::sync::Mutex;

use pagemill_client::{ChatRequest, Client};
use serde::{Deserialize, Serialize};

/// The limits asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetSpec {
    /// Dollars this run may spend.
    pub usd: Option<f64>,
    /// Dollars a day may see spent, this run's and earlier ones' (from the ledger).
    pub usd_per_day: Option<f64>,
    /// Tokens (prompt and completion) a day may see spent.
    pub tokens_per_day: Option<u64>,
    /// Where days begin: minutes east of UTC (`--budget-tz +02:00` is 120).
    pub utc_offset_minutes: i32,
}

impl BudgetSpec {
    /// Whether any limit is set.
    pub fn is_set(&self) -> bool {
        self.usd.is_some() || self.usd_per_day.is_some() || self.tokens_per_day.is_some()
    }

    /// Whether a limit in dollars is set (it needs prices).
    pub fn counts_dollars(&self) -> bool {
        self.usd.is_some() || self.usd_per_day.is_some()
    }

    /// The Unix time (seconds) today began at, in the budget's time zone.
    pub fn day_start(&self, now_unix: i64) -> i64 {
        let offset = i64::from(self.utc_offset_minutes) * 60;
        (now_unix + offset).div_euclid(86_400) * 86_400 - offset
    }
}

/// Parses a `--budget-tz`: `UTC`, `Z`, or an offset `+HH:MM` / `-HH:MM` / `+HH`.
pub fn parse_utc_offset(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(0);
    }
    let bad = || format!("`{s}`: UTC, or an offset from it such as +02:00 or -05:30");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    Ok(sign * (h * 60 + m))
}

/// Where a run's spending limits stand (for metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BudgetStatus {
    /// Dollars this run's requests that ended cost.
    pub spent_usd: f64,
    /// Dollars spent today, this run's and earlier runs' on the ledger.
    pub spent_today_usd: f64,
    /// Tokens spent today likewise.
    pub spent_today_tokens: u64,
    /// The most the requests in flight can still cost, dollars.
    pub held_usd: f64,
    /// `--budget-usd`.
    pub run_limit_usd: Option<f64>,
    /// `--budget-usd-per-day`.
    pub day_limit_usd: Option<f64>,
    /// `--budget-tokens-per-day`.
    pub day_limit_tokens: Option<u64>,
    /// A request did not fit with nothing in flight: the run stopped taking work.
    pub reached: bool,
}

/// Where a run keeps its limits once set, for [`crate::run::Progress::budget_status`].
#[derive(Debug, Default)]
pub struct BudgetCell(pub(crate) std::sync::OnceLock<std::sync::Arc<Budget>>);

/// Picodollars and tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spend {
    pub(crate) pico: u64,
    pub(crate) tokens: u64,
}

impl Spend {
    fn plus(self, o: Spend) -> Spend {
        Spend {
            pico: self.pico.saturating_add(o.pico),
            tokens: self.tokens.saturating_add(o.tokens),
        }
    }

    fn minus(self, o: Spend) -> Spend {
        Spend {
            pico: self.pico.saturating_sub(o.pico),
            tokens: self.tokens.saturating_sub(o.tokens),
        }
    }

    fn within(self, limit: Spend) -> bool {
        self.pico <= limit.pico && self.tokens <= limit.tokens
    }

    fn is_zero(self) -> bool {
        self.pico == 0 && self.tokens == 0
    }
}

/// What a request about to go out may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserve {
    /// It fits: go.
    Sent,
    /// It does not fit while others are in flight: wait for them to give room back.
    Wait,
    /// It does not fit with nothing in flight: a budget is reached.
    Stop,
}

/// The limits of one run and what is spent and held against them.
#[derive(Debug)]
pub(crate) struct Budget {
    spec: BudgetSpec,
    /// What this run may spend: the run's own limit and what is left of the day's.
    limit: Spend,
    /// Spent today before this run.
    before: Spend,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Cost of this run's requests that ended.
    spent: Spend,
    /// The most each request in flight can still cost, by ledger request id.
    held: HashMap<i64, Spend>,
    /// Reserved for requests about to be recorded (see [`Budget::reserve`]).
    pending: Spend,
    /// The first request that did not fit, when one has not.
    refused: Option<Spend>,
}

impl Budget {
    /// The limits of `spec`, with `today` already spent today (from the ledger).
    pub(crate) fn new(spec: &BudgetSpec, today: Spend) -> Self {
        let pico = |usd: f64| (usd.max(0.0) * 1e12).round() as u64;
        let run = spec.usd.map_or(u64::MAX, pico);
        let day = spec
            .usd_per_day
            .map_or(u64::MAX, |d| pico(d).saturating_sub(today.pico));
        let tokens = spec
            .tokens_per_day
            .map_or(u64::MAX, |t| t.saturating_sub(today.tokens));
        Self {
            spec: spec.clone(),
            limit: Spend {
                pico: run.min(day),
                tokens,
            },
            before: today,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `worst` for a request about to go out if it fits beside what is spent and
    /// held (in one step, so two workers cannot both take the last room).
    pub(crate) fn reserve(&self, worst: Spend) -> Reserve {
        let mut s = self.state();
        let held = s.held.values().fold(s.pending, |a, h| a.plus(*h));
        if s.spent.plus(held).plus(worst).within(self.limit) {
            s.pending = s.pending.plus(worst);
            Reserve::Sent
        } else if !held.is_zero() {
            Reserve::Wait
        } else {
            s.refused.get_or_insert(worst);
            Reserve::Stop
        }
    }

    /// The reservation of `worst` now belongs to request `rid`, recorded and about to go out.
    pub(crate) fn hold(&self, rid: i64, worst: Spend) {
        let mut s = self.state();
        s.pending = s.pending.minus(worst);
        s.held.insert(rid, worst);
    }

    /// Request `rid` ended: what it held becomes what it cost (all it held, where a part is
    /// unknown).
    pub(crate) fn settle(&self, rid: i64, cost: Option<u64>, tokens: Option<u64>) {
        let mut s = self.state();
        if let Some(worst) = s.held.remove(&rid) {
            let actual = Spend {
                pico: cost.unwrap_or(worst.pico),
                tokens: tokens.unwrap_or(worst.tokens),
            };
            s.spent = s.spent.plus(actual);
        }
    }

    /// Where the limits stand now.
    pub(crate) fn status(&self) -> BudgetStatus {
        let s = self.state();
        let usd = |p: u64| p as f64 / 1e12;
        let held = s.held.values().fold(s.pending, |a, h| a.plus(*h));
        BudgetStatus {
            spent_usd: usd(s.spent.pico),
            spent_today_usd: usd(self.before.pico.saturating_add(s.spent.pico)),
            spent_today_tokens: self.before.tokens.saturating_add(s.spent.tokens),
            held_usd: usd(held.pico),
            run_limit_usd: self.spec.usd,
            day_limit_usd: self.spec.usd_per_day,
            day_limit_tokens: self.spec.tokens_per_day,
            reached: s.refused.is_some(),
        }
    }

    /// Why the run stopped, once a request did not fit with nothing in flight.
    pub(crate) fn reached(&self) -> Option<String> {
        let s = self.state();
        let worst = s.refused?;
        let usd = |p: u64| format!("${:.6}", p as f64 / 1e12);
        let mut over = Vec::new();
        if s.spent.pico.saturating_add(worst.pico) > self.limit.pico {
            let day = self.spec.usd_per_day.map(|d| (d * 1e12).round() as u64);
            let run_limit = self.spec.usd.map(|u| (u * 1e12).round() as u64);
            let today = self.before.pico.saturating_add(s.spent.pico);
            match (run_limit, day) {
                (Some(r), _) if r <= self.limit.pico => over.push(format!(
                    "this run's budget: {} of {} spent",
                    usd(s.spent.pico),
                    usd(r)
                )),
                (_, Some(d)) => over.push(format!(
                    "today's budget: {} of {} a day spent ({} by this run)",
                    usd(today),
                    usd(d),
                    usd(s.spent.pico)
                )),
                _ => {}
            }
            over.push(format!(
                "the next request could cost up to {}",
                usd(worst.pico)
            ));
        }
        if let Some(t) = self.spec.tokens_per_day
            && s.spent.tokens.saturating_add(worst.tokens) > self.limit.tokens
        {
            over.push(format!(
                "today's token budget: {} of {} a day spent; the next request could take up to {}",
                self.before.tokens.saturating_add(s.spent.tokens),
                t,
                worst.tokens
            ));
        }
        Some(format!(
            "budget reached: {} (a rerun with a larger budget, or tomorrow's, goes on from here, \
             nothing paid twice)",
            over.join("; ")
        ))
    }
}

/// The most `req` can cost on `client`: every prompt token uncached at the input price and its
/// whole `max_tokens` at the output price (reasoning included), and those tokens; the dollars
/// are `u64::MAX` without prices.
pub(crate) fn worst_cost(client: &Client, req: &ChatRequest) -> Spend {
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
    let prices = &client.endpoint().prices;
    // Prices are dollars per million tokens: picodollars a token = price × 10⁶.
    let pico = |tokens: u64, price: f64| (tokens as f64 * price * 1e6).ceil() as u64;
    Spend {
        pico: match (prices.input, prices.output) {
            (Some(i), Some(o)) => pico(prompt, i).saturating_add(pico(completion, o)),
            _ => u64::MAX,
        },
        tokens: prompt + completion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(pico: u64) -> Spend {
        Spend { pico, tokens: 0 }
    }

    #[test]
    fn spend_and_requests_in_flight_never_pass_the_limit() {
        let spec = BudgetSpec {
            usd: Some(1e-6), // 1,000,000 picodollars
            ..BudgetSpec::default()
        };
        let b = Budget::new(&spec, Spend::default());
        assert_eq!(b.reserve(usd(400_000)), Reserve::Sent);
        b.hold(1, usd(400_000));
        assert_eq!(
            b.reserve(usd(400_000)),
            Reserve::Sent,
            "reserved, not yet recorded"
        );
        assert_eq!(
            b.reserve(usd(400_000)),
            Reserve::Wait,
            "800k held: wait for room"
        );
        b.hold(2, usd(400_000));
        assert_eq!(b.reached(), None, "waiting is not reached");
        // The first ends costing far less than it could: room again.
        b.settle(1, Some(50_000), Some(0));
        assert_eq!(b.reserve(usd(400_000)), Reserve::Sent);
        b.hold(3, usd(400_000));
        // Unknown cost: all it held counts as spent (50k + 400k, and 400k held).
        b.settle(2, None, None);
        assert_eq!(b.reserve(usd(200_000)), Reserve::Wait);
        b.settle(3, Some(400_000), Some(0));
        // 850k spent, nothing in flight: 200k more can never fit.
        assert_eq!(b.reserve(usd(200_000)), Reserve::Stop);
        let why = b.reached().unwrap();
        assert!(
            why.contains("this run's budget: $0.000001 of $0.000001"),
            "{why}"
        );
        assert_eq!(
            b.reserve(usd(150_000)),
            Reserve::Sent,
            "a smaller one still fits"
        );
    }

    #[test]
    fn a_days_budget_counts_what_earlier_runs_spent_today() {
        let spec = BudgetSpec {
            usd_per_day: Some(1e-6),
            tokens_per_day: Some(1_000),
            ..BudgetSpec::default()
        };
        let today = Spend {
            pico: 900_000,
            tokens: 100,
        };
        let b = Budget::new(&spec, today);
        assert_eq!(
            b.reserve(Spend {
                pico: 200_000,
                tokens: 10
            }),
            Reserve::Stop
        );
        assert!(
            b.reached()
                .unwrap()
                .contains("today's budget: $0.000001 of $0.000001 a day")
        );
        let b = Budget::new(&spec, today);
        assert_eq!(
            b.reserve(Spend {
                pico: 50_000,
                tokens: 901
            }),
            Reserve::Stop
        );
        assert!(
            b.reached()
                .unwrap()
                .contains("today's token budget: 100 of 1000")
        );
    }

    #[test]
    fn days_begin_at_midnight_where_the_budget_says() {
        let utc = BudgetSpec::default();
        // 2025-12-01 23:30 UTC.
        let t = 1_764_631_800;
        assert_eq!(utc.day_start(t), 1_764_547_200);
        let berlin = BudgetSpec {
            utc_offset_minutes: parse_utc_offset("+01:00").unwrap(),
            ..BudgetSpec::default()
        };
        // 00:30 on 2 December in Berlin: the day began half an hour ago.
        assert_eq!(berlin.day_start(t), t - 1_800);
        assert_eq!(parse_utc_offset("-05:30"), Ok(-330));
        assert_eq!(parse_utc_offset("UTC"), Ok(0));
        assert!(parse_utc_offset("Europe/Berlin").is_err());
        assert!(parse_utc_offset("+25:00").is_err());
    }
}
