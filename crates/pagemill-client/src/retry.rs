//! When to send a failed request again, and after how long.
//!
//! Only [`ErrorClass::Transient`] and [`ErrorClass::Throttled`] failures are retried, within a
//! bound on attempts and on total time. A throttled failure waits what the server asked
//! (`Retry-After`, `x-ratelimit-reset-*`); everything else waits an exponential backoff with
//! jitter (from `backon`). A failure after content had arrived is not retried unless the caller
//! allows it: the provider has likely billed those tokens already.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::endpoint::RetryConfig;
use crate::error::{ErrorClass, FailureKind, RequestError};
use crate::stream::Exchange;

/// The final attempt of a request and the failed ones before it.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The last attempt: the answer, or the failure that ended the retries.
    pub last: Exchange,
    /// Earlier failed attempts, in order.
    pub retried: Vec<Exchange>,
}

impl Outcome {
    /// The answer, or why there is none.
    pub fn result(&self) -> Result<&Exchange, &RequestError> {
        match &self.last.error {
            None => Ok(&self.last),
            Some(e) => Err(e),
        }
    }

    /// Every attempt, oldest first.
    pub fn attempts(&self) -> impl Iterator<Item = &Exchange> {
        self.retried.iter().chain(std::iter::once(&self.last))
    }
}

/// Decides on retries for one request.
#[derive(Debug)]
pub struct RetryState {
    config: RetryConfig,
    backoff: backon::ExponentialBackoff,
    attempts: u32,
    waited: Duration,
    resend_after_content: bool,
    fast_reset_used: bool,
}

impl RetryState {
    /// A fresh state for a request under `config`.
    pub fn new(config: &RetryConfig, resend_after_content: bool) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(config.base_delay_ms))
            .with_max_delay(Duration::from_millis(
                config.max_delay_ms.max(config.base_delay_ms),
            ))
            .with_jitter()
            .without_max_times()
            .build();
        Self {
            config: config.clone(),
            backoff,
            attempts: 0,
            waited: Duration::ZERO,
            resend_after_content,
            fast_reset_used: false,
        }
    }

    /// After a failed attempt that took `took`: how long to wait before the next one, or
    /// `None` to give up.
    pub fn next_delay(&mut self, err: &RequestError, took: Duration) -> Option<Duration> {
        self.attempts += 1;
        self.waited += took;
        if !err.class.is_retryable()
            || (err.delivered_content && !self.resend_after_content)
            || self.attempts >= self.config.max_attempts
        {
            return None;
        }
        // A connection closed under a request before any answer is most often a pooled
        // connection the server had just timed out (llama-server keeps idle ones 5 s): the
        // first such retry goes at once, on a new connection; later ones back off as usual.
        if err.kind == FailureKind::ResetBeforeHeaders && !self.fast_reset_used {
            self.fast_reset_used = true;
            return Some(Duration::ZERO);
        }
        let jittered = self
            .backoff
            .next()
            .unwrap_or(Duration::from_millis(self.config.max_delay_ms));
        let delay = match (err.class, err.retry_after) {
            // The server said how long; a little jitter on top keeps clients from re-arriving
            // together.
            (ErrorClass::Throttled, Some(after)) | (ErrorClass::Transient, Some(after)) => {
                after + jittered.min(Duration::from_millis(self.config.base_delay_ms)) / 4
            }
            _ => jittered,
        };
        let budget = Duration::try_from_secs_f64(self.config.max_elapsed_secs.max(0.0))
            .unwrap_or(Duration::MAX);
        if self.waited + delay > budget {
            return None;
        }
        self.waited += delay;
        Some(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(class: ErrorClass) -> RequestError {
        RequestError::new(FailureKind::Status, class, "x")
    }

    fn config() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            base_delay_ms: 100,
            max_delay_ms: 1_000,
            max_elapsed_secs: 60.0,
        }
    }

    #[test]
    fn transient_retries_with_bounded_growing_backoff_then_stops() {
        let mut s = RetryState::new(&config(), false);
        let delays: Vec<_> = (0..4)
            .map_while(|_| s.next_delay(&err(ErrorClass::Transient), Duration::ZERO))
            .collect();
        assert_eq!(delays.len(), 3, "4 attempts = 3 retries");
        for d in &delays {
            assert!(
                *d >= Duration::from_millis(100) && *d <= Duration::from_millis(2_000),
                "{d:?}"
            );
        }
    }

    #[test]
    fn permanent_and_context_errors_are_never_retried() {
        for class in [ErrorClass::Permanent, ErrorClass::ContextTooLong] {
            assert_eq!(
                RetryState::new(&config(), false).next_delay(&err(class), Duration::ZERO),
                None
            );
        }
    }

    #[test]
    fn throttled_waits_what_the_server_asked() {
        let mut e = err(ErrorClass::Throttled);
        e.retry_after = Some(Duration::from_secs(7));
        let d = RetryState::new(&config(), false)
            .next_delay(&e, Duration::ZERO)
            .unwrap();
        assert!(
            d >= Duration::from_secs(7) && d <= Duration::from_millis(7_025),
            "{d:?}"
        );
    }

    #[test]
    fn delivered_content_is_not_resent_unless_allowed() {
        let mut e = err(ErrorClass::Transient);
        e.delivered_content = true;
        assert_eq!(
            RetryState::new(&config(), false).next_delay(&e, Duration::ZERO),
            None
        );
        assert!(
            RetryState::new(&config(), true)
                .next_delay(&e, Duration::ZERO)
                .is_some()
        );
    }

    #[test]
    fn total_time_bounds_the_retries() {
        let mut cfg = config();
        cfg.max_elapsed_secs = 10.0;
        let mut e = err(ErrorClass::Throttled);
        e.retry_after = Some(Duration::from_secs(6));
        let mut s = RetryState::new(&cfg, false);
        assert!(s.next_delay(&e, Duration::from_secs(1)).is_some()); // 1 + 6 ≤ 10
        assert_eq!(s.next_delay(&e, Duration::from_secs(1)), None); // 8 + 6 > 10
    }

    #[test]
    fn a_connection_closed_before_headers_is_retried_at_once_the_first_time() {
        let mut r = RetryState::new(&config(), false);
        let reset = RequestError::new(FailureKind::ResetBeforeHeaders, ErrorClass::Transient, "x");
        assert_eq!(r.next_delay(&reset, Duration::ZERO), Some(Duration::ZERO));
        let second = r.next_delay(&reset, Duration::ZERO).unwrap();
        assert!(second > Duration::ZERO, "then the usual backoff");
    }
}
