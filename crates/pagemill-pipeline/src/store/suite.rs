//! The ledger's semantics, checked against every [`Store`]: the same tests run on SQLite and
//! on a real PostgreSQL server (`PAGEMILL_TEST_POSTGRES`, else `postgres://postgres@127.0.0.1:5432/test`),
//! each in a schema of its own that is dropped afterwards. Then what only a shared store has:
//! leases that lapse, two runs at once, late commits, migrations.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

/// One ledger, as each backend keeps it: opened again by the same name, removed at the end.
trait Backend {
    /// Opens the ledger for a run.
    fn open(&self) -> Box<dyn Store>;
    /// Ends a run as kill -9 does: nothing cleaned up, nothing given back.
    fn kill(&self, store: Box<dyn Store>);
}

struct Sqlite(PathBuf);

impl Sqlite {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("pagemill-suite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.join("ledger.sqlite"))
    }
}

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(Ledger::open(&self.0).unwrap())
    }
    fn kill(&self, store: Box<dyn Store>) {
        // `Ledger` does nothing on drop but let go of its file lock, as a dead process does.
        drop(store);
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The server the tests use.
pub(crate) fn test_url() -> String {
    std::env::var("PAGEMILL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own on the test server, dropped at the end.
pub(crate) struct Pg {
    pub(crate) schema: String,
}

impl Pg {
    pub(crate) fn new(name: &str) -> Self {
        let schema = format!("pm_{name}_{}", std::process::id());
        let mut c = ::postgres::Client::connect(&test_url(), ::postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at {} (set PAGEMILL_TEST_POSTGRES; .ci/run starts one): {e}",
                super::postgres::redact_url(&test_url())
            )
        });
        c.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
        Self { schema }
    }

    /// A run on this schema whose leases last `lease` (zero: no heartbeat, lapsed at once).
    pub(crate) fn open_with(&self, lease: Duration) -> PgLedger {
        let mut config: ::postgres::Config = test_url().parse().unwrap();
        config.options(&format!("-c search_path={}", self.schema));
        PgLedger::open_config(config, format!("test schema {}", self.schema), lease).unwrap()
    }
}

impl Backend for Pg {
    /// Runs with no heartbeat whose leases lapse at once: a killed one's units are free to
    /// the next that asks, with no waiting (the live-lease cases are the tests below).
    fn open(&self) -> Box<dyn Store> {
        Box::new(self.open_with(Duration::ZERO))
    }
    fn kill(&self, store: Box<dyn Store>) {
        // Nothing given back: the connection stays open until the test ends, as a hung
        // process's would.
        std::mem::forget(store);
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Ok(mut c) = ::postgres::Client::connect(&test_url(), ::postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

fn spec(target: &str) -> UnitSpec {
    UnitSpec {
        document_id: doc().id,
        task: "entities".into(),
        target: target.into(),
        content_hash: format!("hash-of-{target}"),
        prompt_version: "entities-v1".into(),
        model: "m".into(),
        schema_hash: "s".into(),
        variant: String::new(),
    }
}

fn doc() -> crate::ingest::Document {
    crate::ingest::ingest_bytes(
        std::path::Path::new("a.txt"),
        b"First page.\n\nIt has two paragraphs.",
        &crate::ingest::Limits::default(),
    )
    .unwrap()
}

fn status(s: &dyn Store, key: &str) -> Option<UnitStatus> {
    s.units(&[key.to_owned()])
        .unwrap()
        .first()
        .map(|u| u.status)
}

fn result(s: &dyn Store, key: &str) -> Option<serde_json::Value> {
    s.units(&[key.to_owned()])
        .unwrap()
        .into_iter()
        .next()
        .and_then(|u| u.result)
}

/// Opens a run and plans `units` (the document recorded first).
fn planned(b: &dyn Backend, units: &[UnitSpec], replan: Replan) -> (Box<dyn Store>, Vec<String>) {
    let mut s = b.open();
    s.record_document(&doc(), "text").unwrap();
    let todo = s.plan(units, replan).unwrap();
    (s, todo)
}

fn finished_work_is_never_redone_and_force_redoes_it(b: &dyn Backend) {
    let units = [spec("page:1"), spec("page:2")];
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    assert_eq!(todo, [units[0].key(), units[1].key()], "in the order given");
    assert_eq!(s.lease(&todo[..1]).unwrap(), todo[..1]);
    s.complete(&todo[0], &serde_json::json!({"entities": []}), None)
        .unwrap();
    drop(s);
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    assert_eq!(
        todo,
        [units[1].key()],
        "the finished unit is not planned again"
    );
    assert_eq!(
        result(&*s, &units[0].key()),
        Some(serde_json::json!({"entities": []}))
    );
    assert_eq!(s.plan(&units, Replan::Force).unwrap().len(), 2);
    assert_eq!(result(&*s, &units[0].key()), None);
    assert_eq!(status(&*s, &units[0].key()), Some(UnitStatus::Pending));
}

fn a_commit_is_idempotent_and_the_first_result_stands(b: &dyn Backend) {
    let units = [spec("page:1")];
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    s.lease(&todo).unwrap();
    let first = serde_json::json!({"entities": [{"text": "First"}]});
    s.complete(&todo[0], &first, None).unwrap();
    s.complete(&todo[0], &first, None).unwrap();
    s.complete(&todo[0], &serde_json::json!({"entities": []}), None)
        .unwrap();
    assert_eq!(result(&*s, &todo[0]), Some(first));
    // A failure after the result (a late worker's) does not undo it.
    s.fail(&todo[0], "late", false).unwrap();
    assert_eq!(status(&*s, &todo[0]), Some(UnitStatus::Done));
}

fn failures_of_the_endpoint_are_retried_and_others_on_request(b: &dyn Backend) {
    let units = [spec("page:1"), spec("page:2"), spec("page:3")];
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    s.lease(&todo).unwrap();
    s.fail(&todo[0], "HTTP 503 (after 4 rounds of retries)", true)
        .unwrap();
    s.fail(&todo[1], "invalid JSON (after 2 re-asks)", false)
        .unwrap();
    s.complete(&todo[2], &serde_json::json!({}), None).unwrap();
    let failed = s.units(&todo[1..2]).unwrap();
    assert_eq!(
        failed[0].reason.as_deref(),
        Some("invalid JSON (after 2 re-asks)")
    );
    drop(s);
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    assert_eq!(
        todo,
        [units[0].key()],
        "the endpoint's failure is tried again"
    );
    assert_eq!(status(&*s, &units[1].key()), Some(UnitStatus::Failed));
    assert_eq!(
        s.plan(&units, Replan::RetryFailed).unwrap(),
        [units[0].key(), units[1].key()],
        "asked to, every failed unit is tried again; the finished one still is not"
    );
}

fn a_killed_run_loses_nothing_finished_and_its_units_go_back(b: &dyn Backend) {
    let units = [spec("page:1"), spec("page:2")];
    let (mut s, todo) = planned(b, &units, Replan::Resume);
    s.run_started(&["sim".into()]).unwrap();
    s.lease(&todo).unwrap();
    let r = s
        .request_started("sim", "entities", "entities-v1", 300, &todo)
        .unwrap();
    s.complete(&todo[0], &serde_json::json!({"ok": 1}), Some(r))
        .unwrap();
    b.kill(s);
    let (s, again) = planned(b, &units, Replan::Resume);
    assert_eq!(again, [units[1].key()], "the unit it held is still to do");
    assert_eq!(s.lease(&again).unwrap(), again, "and another run takes it");
    let requests = s.requests().unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].status, "interrupted",
        "what it paid for is on record"
    );
    let done = s.units(&todo[..1]).unwrap();
    assert_eq!(done[0].request_id, Some(r));
}

fn requests_runs_and_spending_are_recorded(b: &dyn Backend) {
    let units = [spec("page:1")];
    let (s, todo) = planned(b, &units, Replan::Resume);
    s.run_started(&["a".into(), "b".into()]).unwrap();
    let id = s
        .request_started("a", "entities", "entities-v1", 300, &todo)
        .unwrap();
    let end = RequestEnd {
        ok: false,
        error_class: Some("transient".into()),
        error: Some("HTTP 503".into()),
        prompt_tokens: Some(100),
        cached_tokens: None,
        completion_tokens: Some(5),
        cost_pico: Some(7_000),
        timeline: Some("{}".into()),
        retries: 2,
        retried_errors: vec!["transient".into(), "throttled".into()],
        retried_messages: vec!["reset".into(), "429".into()],
    };
    s.request_finished(id, &end).unwrap();
    let rows = s.requests().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].status, "failed");
    assert_eq!(rows[0].end, end);
    assert_eq!(rows[0].prefix_tokens, Some(300));
    assert_eq!(rows[0].unit_keys, todo);
    assert_eq!(rows[0].run_id, s.run_id());
    assert!(rows[0].finished_at.is_some());
    assert_eq!(s.spent_since(0).unwrap(), (7_000, 105));
    let later = s
        .request_started("b", "entities", "entities-v1", 300, &todo)
        .unwrap();
    let recent = s.recent_requests(1).unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].id, later, "the latest");
    assert_eq!(s.recent_requests(10).unwrap().len(), 2);
    assert_eq!(s.spent_since(unix_now() + 10).unwrap(), (0, 0));
    s.run_finished("{\"pages\": 1}").unwrap();
    drop(s);
    let s = b.open();
    assert_eq!(
        s.run_summaries_since(0).unwrap(),
        ["{\"pages\": 1}"],
        "another run reads the finished one's summary"
    );
    assert!(s.run_summaries_since(unix_now() + 10).unwrap().is_empty());
}

macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Sqlite::new(stringify!($name))) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::Pg::new(stringify!($name))) })*
        }
    };
}

on_every_store!(
    finished_work_is_never_redone_and_force_redoes_it,
    a_commit_is_idempotent_and_the_first_result_stands,
    failures_of_the_endpoint_are_retried_and_others_on_request,
    a_killed_run_loses_nothing_finished_and_its_units_go_back,
    requests_runs_and_spending_are_recorded,
);

// What only a shared store has.

#[test]
fn two_runs_at_once_split_the_units_and_a_lapsed_lease_is_taken_over() {
    let pg = Pg::new("split");
    let units = [spec("page:1"), spec("page:2"), spec("page:3")];
    let mut a = pg.open_with(Duration::from_secs(60));
    a.record_document(&doc(), "text").unwrap();
    let keys = a.plan(&units, Replan::Resume).unwrap();
    let mut b = pg.open_with(Duration::from_secs(60));
    assert_eq!(
        b.plan(&units, Replan::Resume).unwrap(),
        keys,
        "planning twice plans once"
    );
    assert_eq!(a.lease(&keys[..2]).unwrap(), keys[..2]);
    assert_eq!(
        b.lease(&keys).unwrap(),
        keys[2..],
        "what another live run holds is left out"
    );
    assert_eq!(
        a.lease(&keys[..1]).unwrap(),
        keys[..1],
        "a run's own lease is its"
    );
    a.release(&keys[..1]).unwrap();
    assert_eq!(b.lease(&keys[..1]).unwrap(), keys[..1], "given back, taken");

    // A run whose lease lapsed (no heartbeat) loses its units to the next that asks; its late
    // commit records nothing.
    let c = pg.open_with(Duration::ZERO);
    let more = [spec("page:4")];
    let mut c: Box<dyn Store> = Box::new(c);
    let k = c.plan(&more, Replan::Resume).unwrap();
    assert_eq!(c.lease(&k).unwrap(), k);
    assert_eq!(b.lease(&k).unwrap(), k, "the lapsed lease is taken over");
    b.complete(&k[0], &serde_json::json!({"by": "b"}), None)
        .unwrap();
    c.complete(&k[0], &serde_json::json!({"by": "c"}), None)
        .unwrap();
    assert_eq!(result(&b, &k[0]), Some(serde_json::json!({"by": "b"})));
    let rows = b.units(&k).unwrap();
    assert_eq!(rows[0].attempts, 2, "leased twice");
    drop(a);
    // A run that ends gives back what it still held.
    assert_eq!(b.lease(&keys[1..2]).unwrap(), keys[1..2]);
}

#[test]
fn the_heartbeat_keeps_a_live_runs_units_past_the_lease_time() {
    let pg = Pg::new("heartbeat");
    let units = [spec("page:1")];
    // Leases of 1.5 s renewed every 0.5 s: 3.5 s later the live run still holds its unit.
    let mut a = pg.open_with(Duration::from_millis(1_500));
    a.record_document(&doc(), "text").unwrap();
    let keys = a.plan(&units, Replan::Resume).unwrap();
    assert_eq!(a.lease(&keys).unwrap(), keys);
    let b = pg.open_with(Duration::from_secs(60));
    let mut c = ::postgres::Client::connect(&test_url(), ::postgres::NoTls).unwrap();
    // Wait on the database's clock, not ours: until the first lease would have lapsed twice.
    c.execute("SELECT pg_sleep(3.5)", &[]).unwrap();
    assert!(b.lease(&keys).unwrap().is_empty(), "renewed, still held");
    assert!(
        a.round_trips() >= 2 + 4,
        "the heartbeat beat: {}",
        a.round_trips()
    );
}

#[test]
fn migrations_run_once_for_runs_started_together_and_a_newer_schema_is_refused() {
    let pg = Pg::new("migrations");
    let opened: Vec<PgLedger> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| s.spawn(|| pg.open_with(Duration::from_secs(60))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(opened.len(), 4);
    drop(opened);
    let mut c = ::postgres::Client::connect(&test_url(), ::postgres::NoTls).unwrap();
    let n: i64 = c
        .query_one(
            &format!("SELECT COUNT(*) FROM {}.pagemill_migrations", pg.schema),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, MIGRATIONS_KNOWN);
    c.execute(
        &format!(
            "INSERT INTO {}.pagemill_migrations (version, name) VALUES (999, 'from the future')",
            pg.schema
        ),
        &[],
    )
    .unwrap();
    let mut config: ::postgres::Config = test_url().parse().unwrap();
    config.options(&format!("-c search_path={}", pg.schema));
    let err = PgLedger::open_config(config, "s".into(), Duration::ZERO).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "schema version 999, newer than this pagemill's {MIGRATIONS_KNOWN}"
        )),
        "{err}"
    );
}

const MIGRATIONS_KNOWN: i64 = 2;

#[test]
fn passwords_never_show_in_what_the_store_says() {
    assert_eq!(
        super::postgres::budget_name("https://u:key@api.example.com/v1?key=s3cret", "m"),
        "https://api.example.com/v1 m",
        "a rate budget's name keeps nothing secret"
    );
    assert_eq!(
        super::postgres::redact_url("postgres://pm:s3cret@db.example:5432/ledger?sslmode=require"),
        "postgres://pm:***@db.example:5432/ledger?sslmode=require"
    );
    assert_eq!(
        super::postgres::redact_url("postgresql://db/ledger?user=pm&password=s3cret"),
        "postgresql://db/ledger?user=pm&password=***"
    );
    assert_eq!(
        super::postgres::redact_url("postgres://db/x"),
        "postgres://db/x"
    );
    let err = PgLedger::open("postgres://pm:s3cret@127.0.0.1:1/ledger?connect_timeout=2")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("s3cret") && err.contains("pm:***@"), "{err}");
}

#[test]
fn workers_pace_by_one_rate_budget_or_by_their_share_of_it() {
    let pg = Pg::new("budget");
    let limits = pagemill_client::Limits {
        requests_per_minute: Some(60),
        tokens_per_minute: Some(60_000),
        max_concurrency: None,
    };
    let a = pg.open_with(Duration::from_secs(60));
    let b = pg.open_with(Duration::from_secs(60));
    let (ba, bb) = (
        a.rate_budget("acct", &limits).unwrap(),
        b.rate_budget("acct", &limits).unwrap(),
    );
    // A request a second, a burst of one: the first goes at once; the next, from the other
    // worker, a second after it; the one after that two. (Waits are measured on the
    // database's clock, which moves a little between the statements: hence the ranges.)
    let secs = |d: Duration| d.as_secs_f64();
    assert!(secs(ba.reserve(10)) < 0.05);
    let w2 = secs(bb.reserve(10));
    assert!((0.5..=1.0).contains(&w2), "{w2}");
    let w3 = secs(ba.reserve(10));
    assert!((1.5..=2.0).contains(&w3), "{w3}");
    // Tokens count too: 1,000 a second, a burst of 1,000; 3,000 more must wait 2 s past the
    // requests' turn.
    let fresh = a.rate_budget("tokens", &limits).unwrap();
    assert!(secs(fresh.reserve(1_000)) < 0.05);
    let w = secs(fresh.reserve(3_000));
    assert!((2.5..=3.0).contains(&w), "{w}");
    // Another account's budget is its own; no limits, no budget.
    assert!(secs(a.rate_budget("other", &limits).unwrap().reserve(10)) < 0.05);
    assert!(
        a.rate_budget("free", &pagemill_client::Limits::default())
            .is_none()
    );

    // Dividing instead: two live runs, each paces at half the limit on its own.
    let mut c = pg.open_with(Duration::from_secs(60));
    c.sharing = Sharing::Divide;
    a.run_started(&[]).unwrap();
    c.run_started(&[]).unwrap();
    let mine = c.rate_budget("divided", &limits).unwrap();
    assert!(secs(mine.reserve(10)) < 0.05);
    let w = secs(mine.reserve(10));
    assert!((1.9..=2.0).contains(&w), "half of one a second: {w}");
    // Not shared at all: the run's own limiter paces by the whole limit.
    c.sharing = Sharing::None;
    assert!(c.rate_budget("alone", &limits).is_none());
}
