//! The cost of a [`Usage`] under an endpoint's [`Prices`].
//!
//! Money is counted in whole picodollars (10⁻¹² USD) so that sums over millions of requests are
//! exact: a price of $0.075 per 1M tokens is 75,000 picodollars a token. A cost is *unknown*
//! (`None`) when prices or token counts are missing — never a silent 0.

use serde::{Deserialize, Serialize};

use crate::usage::Usage;

/// An amount of US dollars, in picodollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(pub u64);

impl Money {
    /// Zero dollars.
    pub const ZERO: Money = Money(0);

    /// The amount in dollars (for display and projections).
    pub fn dollars(self) -> f64 {
        self.0 as f64 / 1e12
    }

    /// Sum that saturates instead of wrapping.
    pub fn saturating_add(self, other: Money) -> Money {
        Money(self.0.saturating_add(other.0))
    }

    fn per_token(price_per_million: f64) -> u64 {
        // $/1M tokens × 10¹² pico/$ ÷ 10⁶ tokens = price × 10⁶ picodollars per token.
        (price_per_million * 1e6).round().max(0.0) as u64
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Money::saturating_add)
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.dollars();
        if d != 0.0 && d < 0.01 {
            write!(f, "${d:.6}")
        } else {
            write!(f, "${d:.4}")
        }
    }
}

/// Prices in US dollars per 1M tokens, as providers publish them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Uncached prompt tokens.
    pub input: Option<f64>,
    /// Prompt tokens served from cache; the input price applies when unset.
    pub cached_input: Option<f64>,
    /// Prompt tokens written to cache; the input price applies when unset.
    pub cache_write: Option<f64>,
    /// Generated tokens (reasoning included).
    pub output: Option<f64>,
    /// Fraction taken off for batch-API requests, e.g. `0.5`.
    pub batch_discount: Option<f64>,
}

/// What a request cost, by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Everything.
    pub total: Money,
    /// Uncached prompt tokens.
    pub input: Money,
    /// Cached prompt tokens.
    pub cached_input: Money,
    /// Cache-write prompt tokens.
    pub cache_write: Money,
    /// Completion tokens.
    pub output: Money,
    /// The server did not say how many prompt tokens were cached, so all were priced as
    /// uncached: the true cost may be lower.
    pub cached_unreported: bool,
}

impl Prices {
    /// True when both the input and output prices are set.
    pub fn is_known(&self) -> bool {
        self.input.is_some() && self.output.is_some()
    }

    /// The cost of `usage`, or `None` when prices or token counts are missing.
    pub fn cost(&self, usage: &Usage) -> Option<Cost> {
        self.cost_inner(usage, false)
    }

    /// The cost of `usage` sent through the provider's batch API.
    pub fn batch_cost(&self, usage: &Usage) -> Option<Cost> {
        self.cost_inner(usage, true)
    }

    fn cost_inner(&self, usage: &Usage, batch: bool) -> Option<Cost> {
        let input = Money::per_token(self.input?);
        let output = Money::per_token(self.output?);
        let cached_price = self.cached_input.map_or(input, Money::per_token);
        let write_price = self.cache_write.map_or(input, Money::per_token);

        let prompt = usage.prompt?.tokens;
        let completion = usage.completion?.tokens;
        let cached = usage.cached_prompt.map_or(0, |c| c.tokens).min(prompt);
        let write = usage
            .cache_write
            .map_or(0, |c| c.tokens)
            .min(prompt - cached);
        let uncached = prompt - cached - write;

        let factor = if batch {
            1.0 - self.batch_discount.unwrap_or(0.0).clamp(0.0, 1.0)
        } else {
            1.0
        };
        let part = |tokens: u64, price: u64| {
            let full = u128::from(tokens) * u128::from(price);
            let scaled = (full as f64 * factor).round();
            Money(scaled.min(u64::MAX as f64) as u64)
        };
        let mut cost = Cost {
            input: part(uncached, input),
            cached_input: part(cached, cached_price),
            cache_write: part(write, write_price),
            output: part(completion, output),
            cached_unreported: usage.cached_prompt.is_none(),
            ..Cost::default()
        };
        cost.total = [cost.input, cost.cached_input, cost.cache_write, cost.output]
            .into_iter()
            .sum();
        Some(cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::Count;

    fn prices() -> Prices {
        Prices {
            input: Some(0.15),
            cached_input: Some(0.075),
            cache_write: None,
            output: Some(0.60),
            batch_discount: Some(0.5),
        }
    }

    fn usage(prompt: u64, cached: Option<u64>, completion: u64) -> Usage {
        Usage {
            prompt: Some(Count::server(prompt)),
            cached_prompt: cached.map(Count::server),
            completion: Some(Count::server(completion)),
            ..Usage::default()
        }
    }

    #[test]
    fn cached_tokens_at_the_cached_price() {
        let c = prices().cost(&usage(2_000, Some(1_000), 500)).unwrap();
        // 1000 × 0.15/1M + 1000 × 0.075/1M + 500 × 0.60/1M = 0.00015 + 0.000075 + 0.0003
        assert_eq!(c.input, Money(150_000_000));
        assert_eq!(c.cached_input, Money(75_000_000));
        assert_eq!(c.output, Money(300_000_000));
        assert_eq!(c.total, Money(525_000_000));
        assert!((c.total.dollars() - 0.000525).abs() < 1e-15);
        assert!(!c.cached_unreported);
    }

    #[test]
    fn unreported_cache_is_priced_uncached_and_flagged() {
        let c = prices().cost(&usage(2_000, None, 0)).unwrap();
        assert_eq!(c.total, Money(300_000_000));
        assert!(c.cached_unreported);
    }

    #[test]
    fn missing_prices_or_counts_are_unknown_not_zero() {
        let mut p = prices();
        p.output = None;
        assert_eq!(p.cost(&usage(10, Some(0), 10)), None);
        assert_eq!(Prices::default().cost(&usage(10, Some(0), 10)), None);
        let mut u = usage(10, Some(0), 10);
        u.completion = None;
        assert_eq!(prices().cost(&u), None);
    }

    #[test]
    fn batch_discount_halves_the_cost() {
        let u = usage(2_000, Some(1_000), 500);
        let full = prices().cost(&u).unwrap().total;
        let batch = prices().batch_cost(&u).unwrap().total;
        assert_eq!(batch.0 * 2, full.0);
    }

    #[test]
    fn sums_stay_exact_over_a_million_requests() {
        let one = prices().cost(&usage(1, Some(0), 0)).unwrap().total;
        let total: Money = std::iter::repeat_n(one, 1_000_000).sum();
        assert_eq!(total, Money(150_000_000_000)); // exactly $0.15
        assert_eq!(total.to_string(), "$0.1500");
    }
}
