//! Drift alarms: a run's figures against the same figures of the runs on its ledger over the
//! trailing 7 days. Token counts creep up when someone edits a prompt or turns packing off,
//! the cached share falls when a prompt prefix stops being byte-stable, providers start
//! failing: each moves a figure the ledger already keeps, so a move beyond its threshold is
//! told at the end of the run (and kept in its summary, which `report` reads).
//!
//! Runs are weighted by their pages (tokens a page, cached share) or requests (error rate, p95
//! latency);
//! runs with fewer than [`MIN_REQUESTS`] requests say too little and are left out, and so is a
//! run that small itself.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Requests a run needs to count, here and in the history.
pub const MIN_REQUESTS: u64 = 10;

/// The trailing window, in seconds.
pub const WINDOW_SECS: i64 = 7 * 86_400;

/// One figure of a run against the trailing 7 days: an alarm when it moved beyond its
/// threshold (only alarms are kept in a run's summary; the metrics show every figure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Which figure: `prompt_tokens_per_page`, `completion_tokens_per_page`, `cached_share`,
    /// `error_rate`, `latency_p95_ms`.
    pub figure: String,
    /// This run's value.
    pub now: f64,
    /// The trailing 7 days' value.
    pub trailing: f64,
    /// Runs the trailing value is over.
    pub runs: usize,
    /// What moved, in words.
    pub message: String,
    /// It moved beyond its threshold (summaries of older versions kept alarms alone).
    #[serde(default = "alarm_by_default")]
    pub alarm: bool,
}

fn alarm_by_default() -> bool {
    true
}

/// A figure of a run summary (JSON, so summaries of older versions read too), with its weight.
fn figure(s: &Value, name: &str) -> Option<(f64, f64)> {
    let requests = s["requests"].as_u64()?;
    if requests < MIN_REQUESTS {
        return None;
    }
    let pages = s["pages_done"].as_f64().unwrap_or(0.0);
    match name {
        "error_rate" => {
            let failed = s["failed_requests"].as_f64()?;
            Some((failed / requests as f64, requests as f64))
        }
        "latency_p95_ms" => Some((s[name].as_f64()?, requests as f64)),
        _ => Some((s[name].as_f64()?, pages)).filter(|(_, w)| *w > 0.0),
    }
}

/// Which move of a figure is an alarm.
#[derive(Clone, Copy)]
enum Alarm {
    /// Up or down by more than this share of the trailing value (token counts).
    Either(f64),
    /// Down by more than this, absolutely (a share).
    Falls(f64),
    /// Up by more than this, absolutely (a rate).
    Rises(f64),
    /// Up by more than this share of the trailing value and by more than the second figure
    /// absolutely (a latency: faster is no alarm, nor a few milliseconds on a fast endpoint).
    RisesBy(f64, f64),
}

/// The figures of `current` that moved beyond their thresholds against `history` (earlier
/// runs' summaries from the trailing window).
pub fn drift(current: &Value, history: &[Value]) -> Vec<Drift> {
    compare(current, history)
        .into_iter()
        .filter(|d| d.alarm)
        .collect()
}

/// Every figure of `current` that `history` has too, against it: alarms and figures within
/// their thresholds.
pub fn compare(current: &Value, history: &[Value]) -> Vec<Drift> {
    const CHECKS: [(&str, Alarm); 5] = [
        ("prompt_tokens_per_page", Alarm::Either(0.20)),
        ("completion_tokens_per_page", Alarm::Either(0.30)),
        ("cached_share", Alarm::Falls(0.15)),
        ("error_rate", Alarm::Rises(0.05)),
        ("latency_p95_ms", Alarm::RisesBy(0.50, 250.0)),
    ];
    let mut out = Vec::new();
    for (name, alarm) in CHECKS {
        let Some((now, _)) = figure(current, name) else {
            continue;
        };
        let past: Vec<(f64, f64)> = history.iter().filter_map(|s| figure(s, name)).collect();
        let weight: f64 = past.iter().map(|(_, w)| w).sum();
        if past.is_empty() || weight <= 0.0 {
            continue;
        }
        let trailing = past.iter().map(|(v, w)| v * w).sum::<f64>() / weight;
        let moved = now - trailing;
        let beyond = match alarm {
            Alarm::Either(limit) => trailing > 0.0 && (moved / trailing).abs() > limit,
            Alarm::Falls(limit) => -moved > limit,
            Alarm::Rises(limit) => moved > limit,
            Alarm::RisesBy(limit, floor) => {
                trailing > 0.0 && moved / trailing > limit && moved > floor
            }
        };
        let message = match alarm {
            Alarm::Either(limit) | Alarm::RisesBy(limit, _) => format!(
                "{name} {now:.1} against {trailing:.1} over the last 7 days ({:+.0}%, threshold {}{:.0}%)",
                if trailing > 0.0 {
                    moved / trailing * 100.0
                } else {
                    0.0
                },
                if matches!(alarm, Alarm::Either(_)) {
                    "±"
                } else {
                    "+"
                },
                limit * 100.0
            ),
            Alarm::Falls(limit) | Alarm::Rises(limit) => format!(
                "{name} {:.1}% against {:.1}% over the last 7 days ({:+.1} points, threshold {:.0})",
                now * 100.0,
                trailing * 100.0,
                moved * 100.0,
                limit * 100.0
            ),
        };
        out.push(Drift {
            figure: name.to_owned(),
            now,
            trailing,
            runs: past.len(),
            message,
            alarm: beyond,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(prompt: f64, cached: f64, failed: u64) -> Value {
        json!({"requests": 100, "failed_requests": failed, "pages_done": 50,
               "prompt_tokens_per_page": prompt, "completion_tokens_per_page": 80.0,
               "cached_share": cached, "latency_p95_ms": 800.0})
    }

    #[test]
    fn moves_beyond_their_thresholds_are_told_and_steady_runs_are_not() {
        let history = [run(600.0, 0.5, 1), run(620.0, 0.52, 2)];
        assert!(drift(&run(630.0, 0.49, 2), &history).is_empty(), "steady");
        let d = drift(&run(900.0, 0.2, 20), &history);
        let figures: Vec<&str> = d.iter().map(|d| d.figure.as_str()).collect();
        assert_eq!(
            figures,
            ["prompt_tokens_per_page", "cached_share", "error_rate"]
        );
        assert!(d[0].message.contains("+48%"), "{}", d[0].message);
        assert_eq!(d[0].runs, 2);
        // A cached share that rises is no alarm; nor is a small run, or no history.
        assert!(drift(&run(610.0, 0.9, 1), &history).is_empty());
        let mut small = run(900.0, 0.2, 20);
        small["requests"] = json!(3);
        assert!(drift(&small, &history).is_empty());
        assert!(drift(&run(900.0, 0.2, 20), &[]).is_empty());
    }

    #[test]
    fn a_slower_p95_is_an_alarm_and_a_faster_one_is_not() {
        let history = [run(600.0, 0.5, 1), run(600.0, 0.5, 1)];
        let mut slow = run(600.0, 0.5, 1);
        slow["latency_p95_ms"] = json!(1320.0);
        let d = drift(&slow, &history);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].figure, "latency_p95_ms");
        assert!(d[0].message.contains("+65%"), "{}", d[0].message);
        let mut fast = run(600.0, 0.5, 1);
        fast["latency_p95_ms"] = json!(200.0);
        assert!(drift(&fast, &history).is_empty());
        // Doubling a few milliseconds is noise, not a provider slowing down.
        let quick = |ms: f64| {
            let mut r = run(600.0, 0.5, 1);
            r["latency_p95_ms"] = json!(ms);
            r
        };
        assert!(drift(&quick(9.0), &[quick(3.0), quick(4.0)]).is_empty());
        // Every figure is compared, alarms or not: what the metrics show.
        let all = compare(&slow, &history);
        assert_eq!(all.len(), 5);
        assert_eq!(all.iter().filter(|d| d.alarm).count(), 1);
        // Summaries of older versions kept alarms alone, without the flag.
        let old: Drift = serde_json::from_value(json!({"figure": "error_rate", "now": 0.1,
            "trailing": 0.0, "runs": 2, "message": "…"}))
        .unwrap();
        assert!(old.alarm);
    }
}
