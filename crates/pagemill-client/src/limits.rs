//! Per-endpoint request pacing: requests/min and token-weighted tokens/min buckets, a
//! concurrency cap, and pauses taken from the server's own `Retry-After` and `x-ratelimit-*`.
//!
//! Written here rather than with `governor` for two reasons: its quotas are fixed at
//! construction, while we tighten pacing from what the server reports, and its async waits run
//! on its own clock, so tests could not drive them with `tokio::time::pause()`. The buckets use
//! reservations: a request takes its tokens at once, possibly going into debt, and waits until
//! the debt is paid. That keeps arrival order and admits a request larger than one second's
//! allowance (it simply waits longer) instead of blocking forever.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::endpoint::Limits;

/// What a response said about the endpoint's rate limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitInfo {
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-requests`.
    pub reset_requests: Option<Duration>,
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-tokens`.
    pub reset_tokens: Option<Duration>,
    /// `retry-after-ms` or `retry-after` (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
}

impl RateLimitInfo {
    /// Reads the rate-limit headers of a response; absent or unreadable ones stay `None`.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        let num = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
        let dur = |name: &str| text(name).and_then(parse_reset);
        let retry_after = text("retry-after-ms")
            .and_then(|v| v.parse::<f64>().ok())
            .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
            .or_else(|| text("retry-after").and_then(parse_retry_after));
        if headers.contains_key("anthropic-ratelimit-requests-limit")
            || headers.contains_key("anthropic-ratelimit-tokens-limit")
            || headers.contains_key("anthropic-ratelimit-input-tokens-limit")
        {
            // Anthropic: resets are RFC 3339 times (when the window is full again); tokens are
            // the most restrictive of its limits, else its input-token limit.
            let a = |what: &str, field: &str| format!("anthropic-ratelimit-{what}-{field}");
            let until = |name: String| {
                let when = humantime::parse_rfc3339_weak(text(&name)?).ok()?;
                Some(
                    when.duration_since(std::time::SystemTime::now())
                        .unwrap_or(Duration::ZERO),
                )
            };
            let tokens = if headers.contains_key(a("tokens", "limit").as_str()) {
                "tokens"
            } else {
                "input-tokens"
            };
            return Self {
                limit_requests: num(&a("requests", "limit")),
                remaining_requests: num(&a("requests", "remaining")),
                reset_requests: until(a("requests", "reset")),
                limit_tokens: num(&a(tokens, "limit")),
                remaining_tokens: num(&a(tokens, "remaining")),
                reset_tokens: until(a(tokens, "reset")),
                retry_after,
            };
        }
        Self {
            limit_requests: num("x-ratelimit-limit-requests"),
            remaining_requests: num("x-ratelimit-remaining-requests"),
            reset_requests: dur("x-ratelimit-reset-requests"),
            limit_tokens: num("x-ratelimit-limit-tokens"),
            remaining_tokens: num("x-ratelimit-remaining-tokens"),
            reset_tokens: dur("x-ratelimit-reset-tokens"),
            retry_after,
        }
    }

    /// How long to wait before sending again: `Retry-After` if given; else, for an exhausted
    /// window, the time until it has room again. Providers (OpenAI and the simulator) report
    /// `reset` as the time until the window is *full* again, refilling steadily, so room for
    /// one request comes after `reset / limit`, and room for a typical request's tokens (about
    /// [`TYPICAL_REQUEST_TOKENS`]) after that share of `reset`. Waiting for the full reset
    /// instead idles a client for up to a minute after every brief exhaustion.
    pub fn wait_hint(&self) -> Option<Duration> {
        if self.retry_after.is_some() {
            return self.retry_after;
        }
        let share = |reset: Duration, need: f64, limit: Option<u64>| match limit {
            Some(l) if l > 0 => reset.mul_f64((need / l as f64).min(1.0)),
            _ => reset,
        };
        let req = self
            .reset_requests
            .filter(|_| self.remaining_requests == Some(0))
            .map(|r| share(r, 1.0, self.limit_requests));
        let tok = self
            .reset_tokens
            .filter(|_| self.remaining_tokens == Some(0))
            .map(|r| share(r, TYPICAL_REQUEST_TOKENS, self.limit_tokens));
        req.max(tok)
    }

    /// True when any header was present.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Tokens assumed for the next request when a tokens window is exhausted.
pub const TYPICAL_REQUEST_TOKENS: f64 = 2_000.0;

/// `Retry-After`: delay seconds (integer, or a float some servers send) or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs.max(0.0)).ok();
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// OpenAI's reset values: `1s`, `6m0s`, `20ms`, `1h2m3.5s`, or bare seconds.
fn parse_reset(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs.max(0.0)).ok();
    }
    let mut total = 0.0f64;
    let mut rest = v;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// A reservation bucket refilled continuously at `per_sec`, holding at most `capacity`.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn per_minute(limit: f64) -> Self {
        let per_sec = limit / 60.0;
        // One second of allowance as burst, and at least one whole request's worth.
        let capacity = per_sec.max(1.0);
        Self {
            capacity,
            per_sec,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// What could be taken now without waiting: negative when reservations run ahead of the
    /// refill.
    fn level(&self) -> f64 {
        let (level, last) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        (level + last.elapsed().as_secs_f64() * self.per_sec).min(self.capacity)
    }

    /// How long taking `n` now would wait.
    fn wait_for(&self, n: f64) -> Duration {
        self.wait_at(self.level() - n)
    }

    /// How long until a level of `after` (negative: owed) is paid back to zero.
    fn wait_at(&self, after: f64) -> Duration {
        if after >= 0.0 || self.per_sec <= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-after / self.per_sec).unwrap_or(Duration::MAX)
        }
    }

    /// Takes `n`, returning how long the caller must wait for its turn.
    fn reserve(&self, n: f64) -> Duration {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (level, last) = *state;
        let refilled =
            (level + now.duration_since(last).as_secs_f64() * self.per_sec).min(self.capacity);
        let after = refilled - n;
        *state = (after, now);
        self.wait_at(after)
    }
}

/// An endpoint's requests/min and tokens/min shared with other processes (workers on other
/// machines sending to the same provider account): set on a [`Limiter`], it paces in place of
/// the limiter's own buckets.
pub trait SharedBudget: Send + Sync + std::fmt::Debug {
    /// Reserves one request of `tokens` (prompt + max completion) from the shared budget;
    /// returns how long to wait before sending it. Called from async code: an implementation
    /// that blocks must keep off the runtime's workers itself.
    fn reserve(&self, tokens: u64) -> Duration;
}

/// What a [`Limiter`] would let through now, as it sees it (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Headroom {
    /// Requests that could go out now without waiting, when requests/min are paced here
    /// (configured or learned): negative when reservations run ahead of the refill.
    pub requests: Option<f64>,
    /// Tokens that could go out now, when tokens/min are paced here; negative likewise.
    pub tokens: Option<f64>,
    /// How long one more request would wait now: a pause, or the requests bucket's debt, or
    /// the tokens bucket's.
    pub wait: Duration,
    /// Free concurrency slots, when concurrency is capped.
    pub slots: Option<usize>,
    /// Requests the server last said were left in its window (`x-ratelimit-remaining-*`).
    pub server_requests: Option<u64>,
    /// Tokens the server last said were left in its window.
    pub server_tokens: Option<u64>,
}

/// Paces requests to one endpoint. Share it (`Arc`) between every task that sends there.
#[derive(Debug)]
pub struct Limiter {
    requests: Option<Bucket>,
    tokens: Option<Bucket>,
    concurrency: Option<Arc<Semaphore>>,
    paused_until: Mutex<Option<Instant>>,
    /// The requests/min limit the server announced (`x-ratelimit-limit-requests`), paced from
    /// then on when none is configured: a client that only reacts to 429s sends in herds.
    learned_requests: std::sync::OnceLock<Bucket>,
    /// The budget shared with other processes, when there is one.
    shared: std::sync::OnceLock<Arc<dyn SharedBudget>>,
    /// What the server's last rate-limit headers said was left: requests, tokens.
    server_left: Mutex<(Option<u64>, Option<u64>)>,
}

/// Holds a concurrency slot until dropped.
#[derive(Debug)]
pub struct Permit {
    _slot: Option<OwnedSemaphorePermit>,
    /// How long acquiring it waited.
    pub waited: Duration,
}

impl Limiter {
    /// A limiter for an endpoint's configured limits (no limits: never waits).
    pub fn new(limits: &Limits) -> Self {
        Self {
            requests: limits
                .requests_per_minute
                .map(|r| Bucket::per_minute(f64::from(r))),
            tokens: limits
                .tokens_per_minute
                .map(|t| Bucket::per_minute(t as f64)),
            concurrency: limits
                .max_concurrency
                .map(|c| Arc::new(Semaphore::new(c.max(1)))),
            paused_until: Mutex::new(None),
            learned_requests: std::sync::OnceLock::new(),
            shared: std::sync::OnceLock::new(),
            server_left: Mutex::new((None, None)),
        }
    }

    /// What this limiter would let through now. Pacing shared with other processes (see
    /// [`Limiter::share`]) is the store's to tell; only pauses and slots show here then.
    pub fn headroom(&self) -> Headroom {
        let local = self.shared.get().is_none();
        let requests = self
            .requests
            .as_ref()
            .or(self.learned_requests.get())
            .filter(|_| local);
        let tokens = self.tokens.as_ref().filter(|_| local);
        let paused = self
            .paused_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(Duration::ZERO, |t| {
                t.saturating_duration_since(Instant::now())
            });
        let wait = [
            Some(paused),
            requests.map(|b| b.wait_for(1.0)),
            tokens.map(|b| b.wait_for(0.0)),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or_default();
        let (server_requests, server_tokens) =
            *self.server_left.lock().unwrap_or_else(|e| e.into_inner());
        Headroom {
            requests: requests.map(Bucket::level),
            tokens: tokens.map(Bucket::level),
            wait,
            slots: self.concurrency.as_ref().map(|s| s.available_permits()),
            server_requests,
            server_tokens,
        }
    }

    /// Paces from now on by `budget`, shared with other processes, instead of this limiter's
    /// own requests/min and tokens/min (the concurrency cap and the server's pauses stay
    /// local). Once: a later budget is ignored.
    pub fn share(&self, budget: Arc<dyn SharedBudget>) {
        let _ = self.shared.set(budget);
    }

    /// Waits until a request of `tokens` (prompt + max completion) may be sent.
    pub async fn acquire(&self, tokens: u64) -> Permit {
        let start = Instant::now();
        self.wait_while_paused().await;
        let slot = match &self.concurrency {
            // The semaphore is never closed, so acquiring only fails if it were.
            Some(sem) => sem.clone().acquire_owned().await.ok(),
            None => None,
        };
        let mut wait = Duration::ZERO;
        if let Some(shared) = self.shared.get() {
            wait = shared.reserve(tokens);
        } else {
            if let Some(b) = self.requests.as_ref().or(self.learned_requests.get()) {
                wait = wait.max(b.reserve(1.0));
            }
            if let Some(b) = &self.tokens {
                wait = wait.max(b.reserve(tokens as f64));
            }
        }
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.wait_while_paused().await;
        Permit {
            _slot: slot,
            waited: start.elapsed(),
        }
    }

    /// Stops every sender until `for_` has passed (a 429's `Retry-After`, an exhausted window).
    pub fn pause(&self, for_: Duration) {
        let until = Instant::now() + for_;
        let mut p = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if p.is_none_or(|cur| cur < until) {
            *p = Some(until);
        }
    }

    /// Adapts to what a response said: an announced requests/min limit is paced from then on
    /// (unless one is configured), and an exhausted window pauses everyone until it has room.
    pub fn observe(&self, info: &RateLimitInfo) {
        if info.remaining_requests.is_some() || info.remaining_tokens.is_some() {
            *self.server_left.lock().unwrap_or_else(|e| e.into_inner()) =
                (info.remaining_requests, info.remaining_tokens);
        }
        if self.requests.is_none()
            && let Some(limit) = info.limit_requests.filter(|l| *l > 0)
        {
            self.learned_requests
                .get_or_init(|| Bucket::per_minute(limit as f64));
        }
        if let Some(wait) = info.wait_hint() {
            self.pause(wait);
        }
    }

    async fn wait_while_paused(&self) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn headroom_shows_what_is_left_and_how_long_the_next_request_waits() {
        let limiter = Limiter::new(&Limits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(6_000),
            max_concurrency: Some(4),
        });
        let h = limiter.headroom();
        assert_eq!(h.requests, Some(1.0), "one second of allowance");
        assert_eq!(h.tokens, Some(100.0));
        assert_eq!((h.wait, h.slots), (Duration::ZERO, Some(4)));
        let _permit = limiter.acquire(100).await;
        let h = limiter.headroom();
        assert!(h.requests.unwrap().abs() < 0.01, "{h:?}");
        assert_eq!(h.slots, Some(3));
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining-requests", "7".parse().unwrap());
        limiter.observe(&RateLimitInfo::from_headers(&headers));
        limiter.pause(Duration::from_secs(3));
        let h = limiter.headroom();
        assert_eq!(h.server_requests, Some(7));
        assert!(h.wait >= Duration::from_millis(2_900), "{h:?}");
    }

    #[test]
    fn reset_formats() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5x"), None);
    }

    #[test]
    fn headers_are_read_and_retry_after_wins() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-reset-requests", "12s".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "100".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "30s".parse().unwrap());
        let info = RateLimitInfo::from_headers(&h);
        assert_eq!(info.limit_requests, Some(500));
        // Only the exhausted window counts, and only until it has room for one request.
        assert_eq!(info.wait_hint(), Some(Duration::from_millis(24)));
        h.remove("x-ratelimit-limit-requests");
        let unknown_limit = RateLimitInfo::from_headers(&h);
        assert_eq!(unknown_limit.wait_hint(), Some(Duration::from_secs(12)));
        h.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(
            RateLimitInfo::from_headers(&h).wait_hint(),
            Some(Duration::from_secs(3))
        );
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(
            RateLimitInfo::from_headers(&h).wait_hint(),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn azure_headers_say_what_remains_and_retry_after_ms_when_refused() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        h.insert("x-ratelimit-remaining-tokens", "1200".parse().unwrap());
        let info = RateLimitInfo::from_headers(&h);
        assert_eq!(info.remaining_requests, Some(0));
        assert_eq!(info.remaining_tokens, Some(1200));
        // No reset said: no guess at a wait.
        assert_eq!(info.wait_hint(), None);
        h.insert("retry-after-ms", "1500".parse().unwrap());
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(
            RateLimitInfo::from_headers(&h).wait_hint(),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn anthropic_headers_are_read_with_rfc3339_resets() {
        let soon = std::time::SystemTime::now() + Duration::from_secs(60);
        let at = humantime::format_rfc3339_seconds(soon).to_string();
        let mut h = HeaderMap::new();
        h.insert("anthropic-ratelimit-requests-limit", "50".parse().unwrap());
        h.insert(
            "anthropic-ratelimit-requests-remaining",
            "0".parse().unwrap(),
        );
        h.insert("anthropic-ratelimit-requests-reset", at.parse().unwrap());
        h.insert(
            "anthropic-ratelimit-input-tokens-limit",
            "40000".parse().unwrap(),
        );
        h.insert(
            "anthropic-ratelimit-input-tokens-remaining",
            "39000".parse().unwrap(),
        );
        let info = RateLimitInfo::from_headers(&h);
        assert_eq!(info.limit_requests, Some(50));
        assert_eq!(info.remaining_requests, Some(0));
        assert_eq!(info.limit_tokens, Some(40_000));
        assert_eq!(info.remaining_tokens, Some(39_000));
        let reset = info.reset_requests.unwrap();
        assert!(
            reset > Duration::from_secs(55) && reset <= Duration::from_secs(60),
            "{reset:?}"
        );
        // Room for one request after a 50th of the window.
        let hint = info.wait_hint().unwrap();
        assert!(
            hint > Duration::from_millis(1100) && hint <= Duration::from_millis(1200),
            "{hint:?}"
        );
    }

    #[test]
    fn retry_after_as_http_date_in_the_past_is_zero() {
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            RateLimitInfo::from_headers(&h).retry_after,
            Some(Duration::ZERO)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_per_minute_paces_after_the_burst() {
        let limiter = Limiter::new(&Limits {
            requests_per_minute: Some(120),
            ..Limits::default()
        });
        let start = Instant::now();
        // 120/min = 2/s with a burst of 2: the 10th request may start after 4 s.
        for _ in 0..10 {
            limiter.acquire(0).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(4));
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_requests_limit_is_paced_when_none_is_configured() {
        let limiter = Limiter::new(&Limits::default());
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire(0).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "no limit known yet");
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-limit-requests", "120".parse().unwrap());
        h.insert("x-ratelimit-remaining-requests", "50".parse().unwrap());
        limiter.observe(&RateLimitInfo::from_headers(&h));
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire(0).await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(4),
            "2/s after a burst of 2"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_weights_requests_and_admits_big_ones() {
        let limiter = Limiter::new(&Limits {
            tokens_per_minute: Some(60_000),
            ..Limits::default()
        });
        let start = Instant::now();
        limiter.acquire(1_000).await; // the whole 1 s burst
        limiter.acquire(5_000).await; // 5 s of allowance, bigger than the burst
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_cap_holds_until_permits_drop() {
        let limiter = Arc::new(Limiter::new(&Limits {
            max_concurrency: Some(2),
            ..Limits::default()
        }));
        let a = limiter.acquire(0).await;
        let _b = limiter.acquire(0).await;
        let l2 = limiter.clone();
        let third = tokio::spawn(async move { l2.acquire(0).await.waited });
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert!(!third.is_finished());
        drop(a);
        assert_eq!(third.await.unwrap(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_from_the_server_holds_everyone() {
        let limiter = Limiter::new(&Limits::default());
        limiter.observe(&RateLimitInfo {
            retry_after: Some(Duration::from_secs(9)),
            ..RateLimitInfo::default()
        });
        // A shorter pause does not shorten it.
        limiter.pause(Duration::from_secs(1));
        let start = Instant::now();
        limiter.acquire(0).await;
        assert_eq!(start.elapsed(), Duration::from_secs(9));
        let start = Instant::now();
        limiter.acquire(0).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
