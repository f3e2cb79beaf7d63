//! When requests are sent: a fixed number in flight (closed loop), or arrivals at a rate
//! (open loop: constant, Poisson, gamma with a burstiness shape, or a linear ramp).
//!
//! In an open loop every arrival has a scheduled time decided in advance; latency is measured
//! from it, so a slow server cannot hide its slowness by delaying the client (no coordinated
//! omission), and arrivals are never dropped — a client that falls behind reports its lag.

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};

/// How arrivals are spaced at a given mean rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Arrival {
    /// Evenly spaced.
    Constant,
    /// Exponential gaps (a Poisson process).
    Poisson,
    /// Gamma gaps with this shape: below 1 burstier than Poisson, above 1 more regular.
    Gamma {
        /// The shape parameter.
        shape: f64,
    },
}

/// The load a run offers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Load {
    /// Keep this many requests in flight (closed loop).
    Concurrency {
        /// Requests in flight.
        n: usize,
    },
    /// Arrivals at a mean rate per second (open loop).
    Rate {
        /// Requests per second.
        per_sec: f64,
        /// Gap distribution.
        arrival: Arrival,
    },
    /// A rate rising linearly from `from` to `to` per second over `over_secs`, then holding.
    Ramp {
        /// Starting rate.
        from: f64,
        /// Final rate.
        to: f64,
        /// Seconds to get there.
        over_secs: f64,
    },
}

impl Load {
    /// A short label, e.g. `c=64`, `rate=200/s poisson`.
    pub fn label(&self) -> String {
        match self {
            Load::Concurrency { n } => format!("c={n}"),
            Load::Rate { per_sec, arrival } => {
                let a = match arrival {
                    Arrival::Constant => "constant".to_owned(),
                    Arrival::Poisson => "poisson".to_owned(),
                    Arrival::Gamma { shape } => format!("gamma(k={shape})"),
                };
                format!("rate={per_sec}/s {a}")
            }
            Load::Ramp {
                from,
                to,
                over_secs,
            } => format!("ramp {from}→{to}/s over {over_secs}s"),
        }
    }
}

/// Scheduled send times of an open-loop load, as offsets from the start.
#[derive(Debug)]
pub struct Arrivals {
    load: Load,
    rng: SmallRng,
    next: f64,
}

impl Arrivals {
    /// Arrivals for an open-loop load (`None` for a closed loop).
    pub fn new(load: Load, seed: u64) -> Option<Self> {
        match load {
            Load::Concurrency { .. } => None,
            _ => Some(Self {
                load,
                rng: SmallRng::seed_from_u64(seed),
                next: 0.0,
            }),
        }
    }

    fn gap(&mut self, rate: f64) -> f64 {
        if rate <= 0.0 || !rate.is_finite() {
            return f64::INFINITY;
        }
        let arrival = match self.load {
            Load::Rate { arrival, .. } => arrival,
            _ => Arrival::Constant,
        };
        match arrival {
            Arrival::Constant => 1.0 / rate,
            Arrival::Poisson => Exp::new(rate).map_or(1.0 / rate, |d| d.sample(&mut self.rng)),
            Arrival::Gamma { shape } => Gamma::new(shape.max(1e-3), 1.0 / (shape.max(1e-3) * rate))
                .map_or(1.0 / rate, |d| d.sample(&mut self.rng)),
        }
    }
}

impl Iterator for Arrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = self.next;
        let rate = match self.load {
            Load::Rate { per_sec, .. } => per_sec,
            Load::Ramp {
                from,
                to,
                over_secs,
            } => {
                let f = if over_secs > 0.0 {
                    (at / over_secs).min(1.0)
                } else {
                    1.0
                };
                (from + (to - from) * f).max(1e-3)
            }
            Load::Concurrency { .. } => return None,
        };
        self.next += self.gap(rate);
        Duration::try_from_secs_f64(at).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(load: Load, n: usize) -> Vec<f64> {
        Arrivals::new(load, 7)
            .unwrap()
            .take(n)
            .map(|d| d.as_secs_f64())
            .collect()
    }

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let t = take(
            Load::Rate {
                per_sec: 100.0,
                arrival: Arrival::Constant,
            },
            5,
        );
        for (i, at) in t.iter().enumerate() {
            assert!((at - i as f64 * 0.01).abs() < 1e-9);
        }
    }

    #[test]
    fn poisson_and_gamma_keep_the_mean_rate_and_differ_in_burstiness() {
        let n = 20_000;
        let cv = |t: &[f64]| {
            let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
            (mean, var.sqrt() / mean)
        };
        let (mean_p, cv_p) = cv(&take(
            Load::Rate {
                per_sec: 50.0,
                arrival: Arrival::Poisson,
            },
            n,
        ));
        let (mean_g, cv_g) = cv(&take(
            Load::Rate {
                per_sec: 50.0,
                arrival: Arrival::Gamma { shape: 0.25 },
            },
            n,
        ));
        assert!((mean_p - 0.02).abs() < 0.001 && (mean_g - 0.02).abs() < 0.001);
        // Exponential gaps have a coefficient of variation of 1, gamma(k) of 1/sqrt(k) = 2.
        assert!((cv_p - 1.0).abs() < 0.05, "{cv_p}");
        assert!((cv_g - 2.0).abs() < 0.15, "{cv_g}");
    }

    #[test]
    fn a_ramp_speeds_up_then_holds() {
        let t = take(
            Load::Ramp {
                from: 10.0,
                to: 100.0,
                over_secs: 10.0,
            },
            2_000,
        );
        let first_gap = t[1] - t[0];
        let last_gap = t[1_999] - t[1_998];
        assert!((first_gap - 0.1).abs() < 1e-9);
        assert!((last_gap - 0.01).abs() < 1e-9);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let a = take(
            Load::Rate {
                per_sec: 10.0,
                arrival: Arrival::Poisson,
            },
            100,
        );
        let b = take(
            Load::Rate {
                per_sec: 10.0,
                arrival: Arrival::Poisson,
            },
            100,
        );
        assert_eq!(a, b);
    }
}
