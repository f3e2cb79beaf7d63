//! Provider-side rate limits: requests/min and tokens/min, replenished continuously (a bucket
//! holding a minute's allowance), reported in `x-ratelimit-*` headers on every answer and
//! enforced with 429 + `Retry-After` / `retry-after-ms`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::profile::RateLimits;

#[derive(Debug)]
struct Bucket {
    limit: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(per_minute: u64) -> Option<Self> {
        (per_minute > 0).then(|| Self {
            limit: per_minute as f64,
            per_sec: per_minute as f64 / 60.0,
            state: Mutex::new((per_minute as f64, Instant::now())),
        })
    }

    /// Current level after refilling.
    fn level(&self, now: Instant) -> f64 {
        let (level, last) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        (level + now.duration_since(last).as_secs_f64() * self.per_sec).min(self.limit)
    }

    /// How long until `n` fits (zero if it fits now).
    fn wait_for(&self, n: f64, now: Instant) -> Duration {
        let missing = n.min(self.limit) - self.level(now);
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.per_sec)
        }
    }

    fn take(&self, n: f64, now: Instant) {
        let level = self.level(now);
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = (level - n, now);
    }

    fn headers(&self, kind: &str, now: Instant, out: &mut Vec<(String, String)>) {
        let level = self.level(now).max(0.0);
        let to_full = (self.limit - level) / self.per_sec;
        out.push((
            format!("x-ratelimit-limit-{kind}"),
            format!("{}", self.limit as u64),
        ));
        out.push((
            format!("x-ratelimit-remaining-{kind}"),
            format!("{}", level.floor() as u64),
        ));
        out.push((
            format!("x-ratelimit-reset-{kind}"),
            format!("{to_full:.3}s"),
        ));
    }
}

/// The decision on one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// Go ahead; attach these headers.
    Allowed(Vec<(String, String)>),
    /// 429: wait this long; attach these headers.
    Throttled(Duration, Vec<(String, String)>),
    /// 429 `insufficient_quota`.
    NoQuota,
}

/// Requests/min and tokens/min limits of one simulated provider.
#[derive(Debug)]
pub struct RateLimiter {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    no_quota: bool,
}

impl RateLimiter {
    /// A limiter with these limits.
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            requests: Bucket::new(limits.requests_per_minute),
            tokens: Bucket::new(limits.tokens_per_minute),
            no_quota: limits.insufficient_quota,
        }
    }

    /// Admits (and charges) a request of `tokens` (prompt + `max_tokens`), or says how long to
    /// wait. A refused request is not charged.
    pub fn admit(&self, tokens: u64) -> Admission {
        if self.no_quota {
            return Admission::NoQuota;
        }
        let now = Instant::now();
        let wait = [(&self.requests, 1.0), (&self.tokens, tokens as f64)]
            .into_iter()
            .filter_map(|(b, n)| b.as_ref().map(|b| b.wait_for(n, now)))
            .max()
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() {
            if let Some(b) = &self.requests {
                b.take(1.0, now);
            }
            if let Some(b) = &self.tokens {
                b.take(tokens as f64, now);
            }
        }
        let mut headers = Vec::new();
        if let Some(b) = &self.requests {
            b.headers("requests", now, &mut headers);
        }
        if let Some(b) = &self.tokens {
            b.headers("tokens", now, &mut headers);
        }
        if wait.is_zero() {
            Admission::Allowed(headers)
        } else {
            headers.push((
                "retry-after".into(),
                format!("{}", wait.as_secs_f64().ceil() as u64),
            ));
            headers.push((
                "retry-after-ms".into(),
                format!("{}", wait.as_millis().max(1)),
            ));
            Admission::Throttled(wait, headers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
        h.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn requests_per_minute_allows_a_minute_of_burst_then_throttles() {
        let l = RateLimiter::new(&RateLimits {
            requests_per_minute: 3,
            ..RateLimits::default()
        });
        for left in ["2", "1", "0"] {
            match l.admit(0) {
                Admission::Allowed(h) => {
                    assert_eq!(header(&h, "x-ratelimit-remaining-requests"), left)
                }
                other => panic!("{other:?}"),
            }
        }
        match l.admit(0) {
            Admission::Throttled(wait, h) => {
                // One request replenishes every 20 s.
                assert!(
                    wait > Duration::from_secs(19) && wait <= Duration::from_secs(20),
                    "{wait:?}"
                );
                assert_eq!(header(&h, "retry-after"), "20");
                assert_eq!(header(&h, "x-ratelimit-limit-requests"), "3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_per_minute_weighs_requests_and_refusals_are_free() {
        let l = RateLimiter::new(&RateLimits {
            tokens_per_minute: 1_000,
            ..RateLimits::default()
        });
        assert!(matches!(l.admit(700), Admission::Allowed(_)));
        assert!(matches!(l.admit(400), Admission::Throttled(..)));
        // The refused 400 was not charged: 300 still fit.
        assert!(matches!(l.admit(300), Admission::Allowed(_)));
    }

    #[test]
    fn no_quota_refuses_everything() {
        let l = RateLimiter::new(&RateLimits {
            insufficient_quota: true,
            ..RateLimits::default()
        });
        assert_eq!(l.admit(1), Admission::NoQuota);
    }
}
