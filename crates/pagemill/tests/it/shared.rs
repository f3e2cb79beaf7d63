//! Runs sharing one PostgreSQL ledger (a schema of their own on the test server): the same
//! results as SQLite, and many workers — some killed with SIGKILL — finishing every unit
//! once.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use pagemill_sim::{Profile, Sim};

use crate::common::{PgSchema, config, pagemill, tempdir};
use crate::run::{results, run, subset, summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_postgres_gives_what_it_gives_on_sqlite_and_a_rerun_pays_nothing() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let pg = PgSchema::new("same");
    let dir = tempdir("shared-same");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let docs = subset();
    let lite = run(&dir, &cfg, &docs, "lite", &[]);
    assert_eq!(
        lite.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&lite.stderr)
    );
    let out = run(&dir, &cfg, &docs, "pg", &["--store", &pg.url]);
    let s = summary(&out);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert_eq!(results(&dir.join("pg")), results(&dir.join("lite")));

    // The ledger is in the database: a rerun (from another folder) finds every unit done.
    let again = run(&dir, &cfg, &docs, "elsewhere", &["--store", &pg.url]);
    let s2 = summary(&again);
    assert_eq!(s2["requests"], 0, "{s2}");
    assert_eq!(results(&dir.join("elsewhere")), results(&dir.join("lite")));
    let done: i64 = pg.with(|c| {
        c.query_one("SELECT COUNT(*) FROM units WHERE status = 'done'", &[])
            .unwrap()
            .get(0)
    });
    let units: u64 = ["entities", "summary", "metadata"]
        .iter()
        .map(|t| s["tasks"][t]["units"].as_u64().unwrap())
        .sum();
    assert_eq!(done as u64, units);
    // `report` reads the PostgreSQL ledger as it reads SQLite: the same documents and pages.
    let report = |ledger: &str| -> serde_json::Value {
        let out = pagemill(&dir)
            .args(["report", ledger, "--format", "json", "-o", "-"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (from_pg, from_lite) = (report(&pg.url), report("lite/ledger.sqlite"));
    let shown = |r: &serde_json::Value| -> Vec<(String, usize)> {
        r["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["path"].to_string(),
                    d["pages"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    };
    assert!(!shown(&from_pg).is_empty());
    assert_eq!(shown(&from_pg), shown(&from_lite));
    assert!(from_pg["runs"].is_object(), "{}", from_pg["runs"]);
    // What the run shows of the store hides nothing it should not and shows no password.
    let text = pagemill(&dir)
        .arg("--config")
        .arg(&cfg)
        .args(["run", "-o", "t", "-q", "--store"])
        .arg(
            pg.url
                .replace("postgres://postgres@", "postgres://postgres:hunter2@"),
        )
        .args(&docs)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&text.stdout),
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(all.contains("postgres:***@"), "{all}");
    assert!(!all.contains("hunter2"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_two_killed_finish_every_unit_once() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let pg = PgSchema::new("workers");
    let dir = tempdir("shared-workers");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let docs = subset();
    // Planned once (twice, as two submitters would: it plans once), worked by four workers.
    for _ in 0..2 {
        let planned = run(&dir, &cfg, &docs, "plan", &["--store", &pg.url, "--plan"]);
        assert_eq!(
            planned.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&planned.stderr)
        );
        assert_eq!(summary(&planned)["requests"], 0);
    }
    assert!(sim.log().is_empty(), "planning sends nothing");
    let mut workers: Vec<std::process::Child> = (0..4)
        .map(|_| {
            pagemill(&dir)
                .arg("--config")
                .arg(&cfg)
                .arg("worker")
                .args(["--store", &pg.url, "--lease", "2s", "--concurrency", "2"])
                .args(["--exit-when-done", "--poll", "200ms"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill two of them mid-run, at points the simulator's own count of requests picks (a
    // different point each run: seeded by the clock).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let kills = [(0usize, 15 + seed % 40), (1usize, 80 + seed % 60)];
    let killed: Vec<String> = kills
        .iter()
        .map(|&(who, _)| format!("-{}-", workers[who].id()))
        .collect();
    for (who, at) in kills {
        let mut waited = 0;
        while sim.log().len() < at && waited < 60_000 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            waited += 2;
        }
        workers[who].kill().unwrap();
        workers[who].wait().unwrap();
    }
    let mut survivors = Vec::new();
    for w in workers.drain(..).skip(2) {
        let out = tokio::task::spawn_blocking(move || w.wait_with_output().unwrap())
            .await
            .unwrap();
        survivors.push(out);
    }
    for out in &survivors {
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{said}");
        assert!(said.contains("the store holds nothing to do"), "{said}");
    }

    // Every unit done, with exactly one result (the unit key is the results' primary key:
    // one row each is the schema's promise; all of them there is the workers').
    let (units, done, results_n): (i64, i64, i64) = pg.with(|c| {
        let r = c
            .query_one(
                "SELECT (SELECT COUNT(*) FROM units), (SELECT COUNT(*) FROM units WHERE status = 'done'),
                        (SELECT COUNT(*) FROM results)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    });
    assert!(units > 100, "{units}");
    assert_eq!((done, results_n), (units, units), "every unit done once");

    // No unit paid twice except those in flight at the kills: a unit two runs sent in
    // requests the simulator answered must have been in one of a killed worker's, which died
    // before committing it. (Within one run a unit may go out again by design: alone when a
    // pack's answer missed it, re-asked when its answer was unusable.)
    let answered: HashSet<i64> = sim
        .log()
        .iter()
        .filter(|e| e.path().ends_with("/chat/completions"))
        .filter_map(|e| e.request_id.as_deref()?.parse().ok())
        .collect();
    let rows: Vec<(i64, String, String, String)> = pg.with(|c| {
        c.query(
            "SELECT id, run_id, status, unit_keys FROM requests ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    });
    let is_killed = |run: &str| killed.iter().any(|k| run.contains(k.as_str()));
    let mut paid: HashMap<String, HashSet<&str>> = HashMap::new();
    for (id, run, _, keys) in &rows {
        if answered.contains(id) {
            for k in serde_json::from_str::<Vec<String>>(keys).unwrap() {
                paid.entry(k).or_default().insert(run.as_str());
            }
        }
    }
    let twice: Vec<_> = paid
        .iter()
        .filter(|(_, runs)| runs.len() > 1 && !runs.iter().any(|r| is_killed(r)))
        .collect();
    assert!(
        twice.is_empty(),
        "paid by two runs, neither killed: {twice:?}"
    );
    let redone = paid.values().filter(|runs| runs.len() > 1).count();
    // A killed worker had at most its 2 requests in flight (packs of up to 16 items) and the
    // units of answers it had not committed yet.
    assert!(redone <= 2 * 2 * 16, "{redone}");
    eprintln!("units two runs paid for, each a killed worker's unfinished: {redone}");
    let unfinished = rows
        .iter()
        .filter(|r| r.2 == "sent" || r.2 == "interrupted")
        .count();
    assert!(
        unfinished <= 2 * 2,
        "at most each killed worker's concurrency: {unfinished}"
    );

    // And a run over the same documents has nothing to pay for: it writes the results.
    let last = run(&dir, &cfg, &docs, "last", &["--store", &pg.url]);
    let s = summary(&last);
    assert_eq!(
        (s["requests"].as_u64(), s["pages_pending"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(last.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_refuses_what_it_cannot_work_on_and_leaves_other_configurations_work() {
    let sim = Sim::start(Profile::instant()).await.unwrap();
    let pg = PgSchema::new("refuse");
    let dir = tempdir("shared-refuse");
    let cfg = config(&dir, "p.toml", "sim", &sim.base_url(), "");
    let worker = |args: &[&str]| {
        pagemill(&dir)
            .arg("--config")
            .arg(&cfg)
            .arg("worker")
            .args(args)
            .output()
            .unwrap()
    };
    let said = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let no_store = worker(&["--exit-when-done"]);
    assert_ne!(no_store.status.code(), Some(0));
    assert!(
        said(&no_store).contains("needs a shared store"),
        "{}",
        said(&no_store)
    );
    let sqlite = worker(&["--store", "x.sqlite", "--exit-when-done"]);
    assert!(
        said(&sqlite).contains("needs a shared store"),
        "{}",
        said(&sqlite)
    );
    let doc = crate::common::data("text/licenses/MIT.txt");
    let inputs = pagemill(&dir)
        .arg("--config")
        .arg(&cfg)
        .arg("worker")
        .arg(&doc)
        .args(["--store", &pg.url])
        .output()
        .unwrap();
    assert!(
        said(&inputs).contains("give no inputs"),
        "{}",
        said(&inputs)
    );

    // Planned for summaries only; a worker set up for entities finds nothing of its own.
    let planned = run(
        &dir,
        &cfg,
        &[doc],
        "plan",
        &["--store", &pg.url, "--plan", "--tasks", "summary"],
    );
    assert_eq!(planned.status.code(), Some(0), "{}", said(&planned));
    let other = worker(&[
        "--store",
        &pg.url,
        "--tasks",
        "entities",
        "--exit-when-done",
    ]);
    assert_eq!(other.status.code(), Some(0), "{}", said(&other));
    assert!(
        said(&other).contains("not this worker's to do"),
        "{}",
        said(&other)
    );
    assert!(sim.log().is_empty(), "it sent nothing");
    let mine = worker(&["--store", &pg.url, "--tasks", "summary", "--exit-when-done"]);
    assert_eq!(mine.status.code(), Some(0), "{}", said(&mine));
    assert!(!sim.log().is_empty());
    let left: i64 = pg.with(|c| {
        c.query_one("SELECT COUNT(*) FROM units WHERE status <> 'done'", &[])
            .unwrap()
            .get(0)
    });
    assert_eq!(left, 0);
}
