//! The standing fault drill: the pipeline through each of the simulator's faults in turn. A new
//! fault is one line of [`MATRIX`]. Each must lose no page, pay for no finished unit twice, and
//! name every failure's class. (Kill -9 at random moments, the matrix's last fault, is
//! `run::a_run_killed_at_random_moments_resumes_to_the_same_results_without_paying_twice`:
//! it needs a process to kill.)

use std::collections::HashMap;

use pagemill_pipeline::store::{History, LedgerView};
use pagemill_sim::{Profile, Sim};
use serde_json::Value;

use crate::common::config;
use crate::common::data;
use crate::common::{pagemill, tempdir};
use crate::run::quick;

/// Each fault: its name in the simulator's log, how a profile gets it, the error class the
/// client must file it under (none: it only slows answers down).
type Fault = (&'static str, fn(&mut Profile), Option<&'static str>);
const MATRIX: &[Fault] = &[
    (
        "status_429",
        |p| {
            p.faults.status_429 = 0.1;
            p.faults.retry_after_ms = 20;
        },
        Some("throttled"),
    ),
    (
        "status_503",
        |p| p.faults.status_503 = 0.1,
        Some("transient"),
    ),
    (
        "status_500",
        |p| p.faults.status_500 = 0.1,
        Some("transient"),
    ),
    (
        "reset_before_headers",
        |p| p.faults.reset_before_headers = 0.1,
        Some("transient"),
    ),
    (
        "reset_mid_stream",
        |p| p.faults.reset_mid_stream = 0.1,
        Some("transient"),
    ),
    ("truncated", |p| p.faults.truncated = 0.1, Some("transient")),
    (
        "malformed_chunk",
        |p| p.faults.malformed_chunk = 0.1,
        Some("transient"),
    ),
    (
        "slow_headers",
        |p| {
            p.faults.slow_headers = 0.1;
            p.faults.slow_headers_ms = 300;
        },
        None,
    ),
];

const CLASSES: [&str; 4] = ["transient", "throttled", "permanent", "context_too_long"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_loses_nothing_pays_nothing_twice_and_is_named() {
    let inputs = [
        data("html/ch01.en.html"),
        data("text/licenses/MIT.txt"),
        data("text/licenses/Apache-2.0.txt"),
    ];
    for (name, inject, class) in MATRIX {
        let mut profile = quick(Profile::hosted());
        profile.seed = 11;
        inject(&mut profile);
        let sim = Sim::start(profile).await.unwrap();
        let dir = tempdir(&format!("faults-{name}"));
        let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
        let out = pagemill(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .args(&inputs)
            // One request at a time: requests meet the seeded faults in one order, so each
            // row is the same drill on every run (with several in flight, which request
            // draws which fault depends on timing, and a unit can meet its fault four times).
            .args([
                "-o",
                "out",
                "--format",
                "json",
                "-q",
                "--pack",
                "2",
                "--concurrency",
                "1",
            ])
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        // No page lost.
        assert_eq!(out.status.code(), Some(0), "{name}: {s}");
        for k in ["pages_pending", "pages_failed", "dead_letters"] {
            assert_eq!(s[k], 0, "{name}: {k}");
        }
        // The fault happened, and was filed under its class (and only known classes).
        let injected = sim
            .log()
            .iter()
            .filter(|e| e.fault.as_deref() == Some(*name))
            .count();
        assert!(injected > 0, "{name}: never injected");
        let errors = s["errors"].as_object().unwrap();
        if let Some(class) = class {
            let filed = errors.get(*class).and_then(Value::as_u64).unwrap_or(0);
            assert!(filed > 0, "{name}: not filed as {class}: {errors:?}");
        }
        for k in errors.keys() {
            assert!(CLASSES.contains(&k.as_str()), "{name}: {k}");
        }
        // No finished unit paid twice: after the request that produced a unit's result, no
        // request that succeeded carried it again.
        let view = LedgerView::open(&dir.join("out/ledger.sqlite")).unwrap();
        let produced: HashMap<String, i64> = view
            .units()
            .unwrap()
            .into_iter()
            .filter_map(|u| Some((u.key, u.request_id?)))
            .collect();
        for r in view.requests().unwrap() {
            for k in &r.unit_keys {
                if let Some(&first) = produced.get(k) {
                    assert!(
                        r.id <= first || !r.end.ok,
                        "{name}: unit {k} paid again by request {} after {first}",
                        r.id
                    );
                }
            }
        }
    }
}
