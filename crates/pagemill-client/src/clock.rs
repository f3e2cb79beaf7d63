//! Monotonic timestamps in nanoseconds, comparable across processes on one host.
//!
//! Every timestamp in a [`Timeline`](crate::Timeline) is `CLOCK_MONOTONIC` nanoseconds, the same
//! clock the simulator writes into its ground-truth log, so pagemill's own measurements can be
//! checked against what a server on the same machine really did. `std::time::Instant` uses the
//! same clock on Linux but hides its value, so we read it directly.

use std::time::Duration;

/// Nanoseconds of `CLOCK_MONOTONIC`: never goes backwards, unrelated to wall time.
pub fn mono_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // The monotonic clock starts at boot, so both fields are non-negative.
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// The time from `earlier` to `later`, zero when `later` is not after `earlier`.
pub fn between(earlier: u64, later: u64) -> Duration {
    Duration::from_nanos(later.saturating_sub(earlier))
}

/// A duration for people: `12.3 ms`, `1.24 s` (every view formats durations with this).
pub fn human(d: std::time::Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 1_000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_ns_advances_at_least_as_far_as_a_sleep() {
        let a = mono_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = mono_ns();
        // A sleep lasts at least its duration, so this lower bound cannot flake.
        assert!(between(a, b) >= Duration::from_millis(2));
        assert_eq!(between(b, a), Duration::ZERO);
    }
}
