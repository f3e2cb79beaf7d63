//! `pagemill report`: figures checked against the ledger they come from, hostile document text
//! kept inert, terminal views, clear refusals, and the HTML opened in headless Chromium.
//!
//! One fixture serves every test: two runs on real documents of `testdata/` plus a hostile
//! one (a flaky simulator, then a clean one with other prompt versions) and a bench sweep.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pagemill_pipeline::store::{Ledger, RequestRow, Store};
use pagemill_sim::{Profile, Sim};
use serde_json::{Value, json};

use crate::common::data;
use crate::common::{pagemill, schema, tempdir};
use crate::run::quick;

/// Text no report may run, load or pass to a terminal.
const HOSTILE: &str = "Memo from <script>window.__pwned=1;alert('x')</script> Acme Corp.\n\
Signed \"><img src=x onerror=\"window.__pwned=2\"> by Ada Lovelace in London on 3 May 2024.\n\
Payment of $5,000 to </pre><svg onload=window.__pwned=3></svg> Globex Inc under the Data Act.\n\
See <a href=\"javascript:window.__pwned=4\">this</a> and ' onmouseover='window.__pwned=5' x='.\n\
Terminal: \u{1b}[31mred\u{1b}[0m and \u{1b}]0;owned\u{7}.\n";

/// A file name that breaks out of attributes if anything forgets to escape it.
const HOSTILE_NAME: &str = "memo\"><img src=x onerror=alert(7)>.txt";

struct Fixture {
    dir: PathBuf,
    ledger: PathBuf,
    bench: PathBuf,
    html: PathBuf,
    json: Value,
    requests: Vec<RequestRow>,
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (flaky, clean) = rt.block_on(async {
            let mut p = quick(Profile::flaky());
            p.seed = 7;
            (
                Sim::start(p).await.unwrap(),
                Sim::start(Profile::instant()).await.unwrap(),
            )
        });
        let dir = tempdir("report");
        let docs = dir.join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(HOSTILE_NAME), HOSTILE.repeat(3)).unwrap();
        std::fs::write(
            dir.join("p.toml"),
            format!(
                "[[endpoint]]\nname = \"flaky\"\nbase_url = \"{}\"\nmodel = \"sim-model\"\n\
                 prices = {{ input = 0.15, cached_input = 0.075, output = 0.60 }}\n\
                 [endpoint.retry]\nbase_delay_ms = 5\nmax_delay_ms = 100\n\n\
                 [[endpoint]]\nname = \"clean\"\nbase_url = \"{}\"\nmodel = \"sim-model\"\n\
                 prices = {{ input = 0.20, cached_input = 0.05, output = 0.80 }}\n",
                flaky.base_url(),
                clean.base_url()
            ),
        )
        .unwrap();
        let inputs = [
            docs.join(HOSTILE_NAME),
            data("pdf/zoo.pdf"),
            data("html/ch01.en.html"),
        ];
        let run = |endpoint: &str, extra: &[&str]| {
            let out = pagemill(&dir)
                .args(["--config", "p.toml", "run"])
                .args(&inputs)
                .args(["-e", endpoint, "-o", "out", "--format", "json", "-q"])
                .args(extra)
                .output()
                .unwrap();
            ok(&out, "run");
        };
        run("flaky", &[]);
        // New prompt versions: fewer entity types (a shorter prompt), shorter summaries.
        run(
            "clean",
            &[
                "--entity-types",
                "person,organization,location",
                "--summary-max-words",
                "30",
            ],
        );
        let bench = dir.join("bench.json");
        let out = pagemill(&dir)
            .args(["--config", "p.toml", "bench", "-e", "clean", "-e", "flaky"])
            .args(["--workload", "shared-prefix", "--sweep-concurrency", "1,2"])
            .args([
                "-n",
                "16",
                "--repeat",
                "2",
                "--pages-per-day",
                "10000",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        ok(&out, "bench");
        std::fs::write(&bench, &out.stdout).unwrap();
        let ledger = dir.join("out/ledger.sqlite");
        let out = pagemill(&dir)
            .args([
                "report",
                "out/ledger.sqlite",
                "bench.json",
                "-o",
                "report.html",
            ])
            .args(["--pages-per-day", "10000"])
            .output()
            .unwrap();
        ok(&out, "report");
        let out = pagemill(&dir)
            .args([
                "report",
                "out/ledger.sqlite",
                "bench.json",
                "--format",
                "json",
            ])
            .args(["--pages-per-day", "10000"])
            .output()
            .unwrap();
        ok(&out, "report --format json");
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        let requests = Ledger::open(&ledger).unwrap().requests().unwrap();
        drop((flaky, clean));
        rt.shutdown_timeout(Duration::from_secs(5));
        Fixture {
            html: dir.join("report.html"),
            dir,
            ledger,
            bench,
            json,
            requests,
        }
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn report_json_matches_its_schema_and_the_ledger() {
    let f = fixture();
    let r = &f.json;
    let errors: Vec<String> = schema("report.schema.json")
        .iter_errors(r)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let bench = schema("bench-report.schema.json");
    for b in r["benchmarks"].as_array().unwrap() {
        assert!(bench.is_valid(&b["report"]), "bench report as read back");
    }

    let runs = &r["runs"];
    let t = &runs["totals"];
    let reqs = &f.requests;
    assert_eq!(t["requests"], reqs.len());
    assert_eq!(t["runs"], 2);
    let states: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["finished", "finished"]);
    let cost: u64 = reqs.iter().filter_map(|r| r.end.cost_pico).sum();
    assert!(close(t["cost_usd"].as_f64().unwrap(), cost as f64 / 1e12));
    let day_cost: f64 = runs["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(close(day_cost, cost as f64 / 1e12), "days add up");
    let pages = t["pages"].as_f64().unwrap();
    assert!(pages > 0.0);
    assert!(close(
        t["cost_per_page_usd"].as_f64().unwrap(),
        cost as f64 / 1e12 / pages
    ));
    let p = &runs["projection"];
    assert!(close(
        p["per_month_usd"].as_f64().unwrap(),
        t["cost_per_page_usd"].as_f64().unwrap() * 10_000.0 * 30.0
    ));
    let prompt: u64 = reqs.iter().filter_map(|r| r.end.prompt_tokens).sum();
    assert_eq!(t["prompt_tokens"], prompt);

    // Each run's requests, tokens and cost are its own.
    for run in runs["runs"].as_array().unwrap() {
        let mine: Vec<&RequestRow> = reqs.iter().filter(|r| r.run_id == run["id"]).collect();
        assert!(!mine.is_empty());
        assert_eq!(run["requests"], mine.len());
        let c: u64 = mine.iter().filter_map(|r| r.end.cost_pico).sum();
        assert!(close(run["cost_usd"].as_f64().unwrap(), c as f64 / 1e12));
    }

    // Two versions of the entities and summary prompts, the second compared to the first;
    // fewer entity types make a shorter entities prompt.
    let prompts = runs["prompts"].as_array().unwrap();
    for task in ["entities", "summary"] {
        let versions: Vec<&Value> = prompts.iter().filter(|p| p["task"] == task).collect();
        assert_eq!(versions.len(), 2, "{task}: {versions:#?}");
        assert!(versions[0]["change_vs_previous"].is_null());
        assert!(versions[1]["change_vs_previous"].is_number());
        let n: u64 = reqs
            .iter()
            .filter(|r| r.task == task)
            .filter(|r| r.prompt_version == versions[1]["prompt_version"].as_str().unwrap())
            .count() as u64;
        assert_eq!(versions[1]["requests"], n);
    }
    let ent: Vec<&Value> = prompts.iter().filter(|p| p["task"] == "entities").collect();
    assert!(
        ent[1]["prefix_tokens"].as_u64() < ent[0]["prefix_tokens"].as_u64(),
        "{ent:#?}"
    );
    assert_eq!(
        runs["prompt_runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["task"] == "entities")
            .count(),
        2
    );

    // Latency counts are the successful requests of each endpoint; errors match the ledger.
    for e in runs["endpoints"].as_array().unwrap() {
        let name = e["endpoint"].as_str().unwrap();
        let ok = reqs
            .iter()
            .filter(|r| r.endpoint == name && r.end.ok)
            .count();
        assert_eq!(e["ok"], ok);
        assert_eq!(e["ttft_ms"]["count"], ok, "{name}");
        let over: u64 = e["over_time"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .sum();
        assert_eq!(over, ok as u64);
    }
    let retried: usize = reqs.iter().map(|r| r.end.retried_errors.len()).sum();
    let failed = reqs.iter().filter(|r| r.status == "failed").count();
    assert!(retried + failed > 0, "the flaky endpoint made some errors");
    let (mut seen_retried, mut seen_failed) = (0, 0);
    for e in runs["errors"].as_array().unwrap() {
        seen_retried += e["retried_attempts"].as_u64().unwrap() as usize;
        if e["class"] != "interrupted" {
            seen_failed += e["final_failures"].as_u64().unwrap() as usize;
        }
    }
    assert_eq!((seen_retried, seen_failed), (retried, failed));
    assert_eq!(runs["retries"]["client_retries"], retried as u64);
    let repeats = runs["retries"]["repeat_cost_usd"].as_f64().unwrap();
    assert!(repeats <= t["cost_usd"].as_f64().unwrap());

    // Documents: the newest results, with offsets that point at the mention's text.
    let docs = r["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 3);
    let mut checked = 0;
    for d in docs {
        for p in d["pages"].as_array().unwrap() {
            let text: Vec<char> = p["text"].as_str().unwrap().chars().collect();
            for m in p["mentions"].as_array().unwrap() {
                if let (Some(s), Some(e)) = (m["start"].as_u64(), m["end"].as_u64()) {
                    let found: String = text[s as usize..e as usize].iter().collect();
                    if m["grounding"] == "exact" {
                        assert_eq!(found, m["text"].as_str().unwrap());
                    }
                    checked += 1;
                }
                // The second run asked for three types only: its results are the ones shown.
                assert!(
                    ["person", "organization", "location"].contains(&m["kind"].as_str().unwrap()),
                    "{m}"
                );
            }
        }
    }
    assert!(checked > 10);

    // Bench: the CDF is a distribution (quantiles rise, values do not fall).
    let target = &r["benchmarks"][0]["report"]["points"][0]["targets"][0];
    let cdf = target["latency_cdf_ms"]["ttft_answer"].as_array().unwrap();
    assert_eq!(cdf.len(), 102);
    for w in cdf.windows(2) {
        assert!(w[0][0].as_f64() <= w[1][0].as_f64());
        assert!(w[0][1].as_f64() < w[1][1].as_f64());
    }
    assert_eq!(
        cdf[50][0].as_f64().unwrap(),
        target["latency_ms"]["ttft_answer"]["p50"].as_f64().unwrap()
    );
}

#[test]
fn hostile_document_text_is_shown_not_run() {
    let f = fixture();
    let html = std::fs::read_to_string(&f.html).unwrap();
    let page = scraper::Html::parse_document(&html);
    let all = scraper::Selector::parse("*").unwrap();
    let mut scripts = 0;
    for el in page.select(&all) {
        let name = el.value().name();
        assert!(
            !["img", "iframe", "object", "embed", "link", "form", "base"].contains(&name),
            "no <{name}> from document text"
        );
        if name == "script" {
            scripts += 1;
            assert!(el.value().attr("src").is_none());
        }
        if name == "svg" {
            assert!(el.value().attr("onload").is_none());
        }
        for (attr, value) in el.value().attrs() {
            assert!(
                !attr.starts_with("on"),
                "<{name} {attr}=…> from document text"
            );
            assert!(!value.contains("javascript:"), "{attr}={value}");
            if attr == "src" || attr == "href" {
                assert!(value.starts_with('#'), "nothing fetched: {attr}={value}");
            }
        }
    }
    assert_eq!(scripts, 1, "only the report's own script");
    // The hostile text is there, as text, with its file name.
    let text: String = page.root_element().text().collect();
    assert!(text.contains("<script>window.__pwned=1;alert('x')</script>"));
    assert!(text.contains("<img src=x onerror=\"window.__pwned=2\">"));
    assert!(text.contains(HOSTILE_NAME));
    // And the page forbids what escaping already prevents: no network, only its own script.
    let csp = scraper::Selector::parse("meta[http-equiv=Content-Security-Policy]").unwrap();
    let policy = page
        .select(&csp)
        .next()
        .and_then(|m| m.value().attr("content"))
        .unwrap();
    assert!(policy.starts_with("default-src 'none'"), "{policy}");
    assert!(policy.contains("script-src 'sha256-"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
}

#[test]
fn terminal_views_show_the_same_figures() {
    let f = fixture();
    let out = pagemill(&f.dir)
        .args([
            "report",
            "out/ledger.sqlite",
            "bench.json",
            "--format",
            "text",
        ])
        .output()
        .unwrap();
    ok(&out, "report --terminal");
    let text = String::from_utf8(out.stdout).unwrap();
    let t = &f.json["runs"]["totals"];
    let per_page = pagemill_report::fmt::usd(t["cost_per_page_usd"].as_f64().unwrap());
    assert!(text.contains(&format!("per page {per_page}")), "{text}");
    for heading in [
        "Runs",
        "Tokens per page by task and prompt version",
        "Latency by endpoint",
        "Documents",
        "Bench ",
    ] {
        assert!(text.contains(heading), "{heading}: {text}");
    }
    for p in f.json["runs"]["prompts"].as_array().unwrap() {
        assert!(text.contains(p["prompt_version"].as_str().unwrap()));
    }
    assert!(
        !text.contains('\u{1b}'),
        "no escape sequences from documents"
    );

    let out = pagemill(&f.dir)
        .args([
            "report",
            "out/ledger.sqlite",
            "--format",
            "text",
            "--document",
            "memo",
        ])
        .output()
        .unwrap();
    ok(&out, "report --terminal --document");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(HOSTILE_NAME));
    assert!(text.contains("]{"), "mentions marked: {text}");
    assert!(
        text.contains("\\u{1b}[31mred"),
        "escape shown inert: {text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\u{7}'));
}

#[test]
fn report_refuses_what_it_cannot_read_and_reads_a_ledger_in_use() {
    let f = fixture();
    let dir = tempdir("report-refusals");
    let err = |args: &[&str]| {
        let out = pagemill(&dir).arg("report").args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(err(&[]).contains("no inputs given"));
    std::fs::write(dir.join("junk.json"), "{\"not\": \"a bench report\"}").unwrap();
    assert!(err(&["junk.json"]).contains("`junk.json` is not a pagemill bench or eval report"));
    assert!(err(&["missing.json"]).contains("cannot read `missing.json`"));
    let ledger = f.ledger.to_str().unwrap();
    assert!(err(&[ledger, ledger]).contains("one ledger at a time"));
    assert!(
        err(&[ledger, "--document", "no-such-doc"]).contains("no document in the ledger matches")
    );

    // A run holds the ledger: the report still reads it, and changes nothing.
    let held = Ledger::open(&f.ledger).unwrap();
    let before = std::fs::read(&f.ledger).unwrap();
    let out = pagemill(&dir)
        .args(["report", ledger, "--format", "json", "-o", "r.json"])
        .output()
        .unwrap();
    ok(&out, "report on a held ledger");
    let unchanged = std::fs::read(&f.ledger).unwrap() == before;
    drop(held);
    assert!(unchanged, "the report wrote to the ledger");
    let r: Value = serde_json::from_slice(&std::fs::read(dir.join("r.json")).unwrap()).unwrap();
    assert_eq!(r["runs"]["totals"], f.json["runs"]["totals"]);
    let _ = &f.bench;
}

#[test]
fn bench_reports_alone_make_a_report_of_their_own() {
    let f = fixture();
    let out = pagemill(&f.dir)
        .args(["report", "bench.json", "bench.json", "--format", "json"])
        .output()
        .unwrap();
    ok(&out, "report of bench files");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["runs"].is_null());
    assert_eq!(r["documents"], json!([]));
    assert_eq!(r["benchmarks"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["benchmarks"][0]["report"],
        f.json["benchmarks"][0]["report"]
    );

    let out = pagemill(&f.dir)
        .args(["report", "bench.json", "-o", "-"])
        .output()
        .unwrap();
    ok(&out, "report of a bench file to stdout");
    let html = String::from_utf8(out.stdout).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("id=\"bench\"") && !html.contains("id=\"runs\""));
    assert!(html.contains("TTFT distribution (CDF)"));
}

// ---- headless Chromium, over the DevTools protocol ----

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PAGEMILL_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Kills the browser when the test ends, however it ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    fn read(&mut self) -> Value {
        loop {
            match self.ws.read().expect("DevTools connection") {
                tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                tungstenite::Message::Close(_) => panic!("browser closed the connection"),
                _ => {}
            }
        }
    }

    pub(crate) fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.read();
            if m["id"] == id {
                assert!(m["error"].is_null(), "{method}: {}", m["error"]);
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    fn wait_for(&mut self, method: &str, deadline: Instant) {
        while !self.events.iter().any(|e| e["method"] == method) {
            assert!(Instant::now() < deadline, "no {method} in time");
            let m = self.read();
            self.events.push(m);
        }
    }

    pub(crate) fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expr}: {r}");
        r["result"]["value"].clone()
    }
}

pub(crate) fn artifacts() -> PathBuf {
    std::env::var_os("PAGEMILL_ARTIFACTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../artifacts"),
        PathBuf::from,
    )
}

const CHECKS: &str = r#"(() => {
  const charts = [...document.querySelectorAll('figure.chart')];
  const drawn = charts.filter(f => f.dataset.kind !== 'empty').map(f => {
    const svg = f.querySelector('svg');
    const box = svg.getBoundingClientRect();
    const lines = [...svg.querySelectorAll('g.series path')].filter(p => p.getTotalLength() > 0).length;
    const bars = [...svg.querySelectorAll('g.series rect')].filter(r => r.getBBox().width > 0).length;
    const dots = [...svg.querySelectorAll('g.series circle')].filter(c => c.getBBox().width > 0).length;
    const stroke = [...svg.querySelectorAll('g.series path')].map(p => getComputedStyle(p).stroke)[0] || null;
    return {title: f.querySelector('figcaption').textContent, kind: f.dataset.kind, w: box.width, h: box.height, lines, bars, dots, stroke};
  });
  return {ready: document.documentElement.dataset.ready || null, pwned: window.__pwned === undefined ? null : String(window.__pwned),
          charts: charts.length, drawn, scripts: document.scripts.length};
})()"#;

const INTERACT: &str = r#"(() => {
  const fig = [...document.querySelectorAll('figure.chart[data-kind=line]')][0];
  const key = fig.querySelector('.legend .key');
  const i = key.dataset.series;
  key.click();
  const hidden = fig.querySelector('g.series[data-series="' + i + '"]').classList.contains('hidden');
  const table = document.getElementById('runs-table');
  const th = table.tHead.rows[0].cells[3];
  th.click(); th.click();
  const col = [...table.tBodies[0].rows].map(r => Number(r.cells[3].dataset.v));
  const box = document.querySelector('.filters input[data-type=person]');
  box.click();
  return {hidden, pressed: key.getAttribute('aria-pressed'), sort: th.getAttribute('aria-sort'), col,
          filtered: document.body.classList.contains('hide-t-person')};
})()"#;

/// A page open in headless Chromium, with everything it logged.
pub(crate) struct Opened {
    pub(crate) cdp: Cdp,
    pub(crate) url: String,
    _browser: Browser,
}

impl Opened {
    /// Console errors, exceptions, dialogs and fetches of anything but the page itself, since
    /// it opened.
    pub(crate) fn problems(&mut self) -> Vec<String> {
        // Events that arrived while we evaluated.
        self.cdp
            .call("Runtime.evaluate", json!({"expression": "1"}));
        let mut problems = Vec::new();
        for e in &self.cdp.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Runtime.exceptionThrown" => {
                    problems.push(format!("exception: {}", p["exceptionDetails"]))
                }
                "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "warning" => {
                    problems.push(format!("console.{}: {}", p["type"], p["args"]))
                }
                "Log.entryAdded"
                    if p["entry"]["level"] == "error" || p["entry"]["level"] == "warning" =>
                {
                    problems.push(format!("log: {}", p["entry"]["text"]))
                }
                "Page.javascriptDialogOpening" => {
                    problems.push(format!("dialog: {}", p["message"]))
                }
                "Network.requestWillBeSent" if p["request"]["url"] != json!(self.url) => {
                    problems.push(format!("fetched: {}", p["request"]["url"]))
                }
                _ => {}
            }
        }
        problems
    }
}

/// Opens `html` in headless Chromium (its profile under `dir`) and waits for it to load.
pub(crate) fn open_in_chromium(html: &Path, dir: &Path) -> Opened {
    // A missing browser fails the test, naming what to install: a skip would pass quietly.
    let binary = chromium().unwrap_or_else(|| {
        panic!(
            "this test needs Chromium and found none on PATH (chromium, chromium-browser, \
             google-chrome) nor in PAGEMILL_CHROMIUM. Install it: `./dev test` does \
             (Debian: `apt-get install chromium`, Fedora: `dnf install chromium`, \
             macOS: `brew install --cask chromium`)"
        )
    });
    let profile = dir.join("chromium-profile");
    let mut child = Command::new(&binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let browser = Browser(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("chromium printed its DevTools address");
    let addr = url
        .strip_prefix("ws://")
        .and_then(|u| u.split('/').next())
        .unwrap()
        .to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let (ws, _) = tungstenite::client(url.as_str(), stream).unwrap();
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
        events: Vec::new(),
    };
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
    let attached = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_owned());
    for domain in ["Page", "Runtime", "Log", "Network"] {
        cdp.call(&format!("{domain}.enable"), json!({}));
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    cdp.events.clear();
    let page_url = format!("file://{}", html.canonicalize().unwrap().display());
    cdp.call("Page.navigate", json!({"url": page_url}));
    cdp.wait_for(
        "Page.loadEventFired",
        Instant::now() + Duration::from_secs(60),
    );
    Opened {
        cdp,
        url: page_url,
        _browser: browser,
    }
}

#[test]
fn report_opens_in_headless_chromium_with_charts_and_no_errors() {
    let f = fixture();
    let mut opened = open_in_chromium(&f.html, &f.dir);
    let cdp = &mut opened.cdp;

    let checks = cdp.eval(CHECKS);
    let interact = cdp.eval(INTERACT);
    let metrics = cdp.call("Page.getLayoutMetrics", json!({}));
    let height = metrics["cssContentSize"]["height"]
        .as_f64()
        .unwrap_or(900.0)
        .min(9000.0);
    let shot = cdp.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true,
               "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}}),
    );

    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );
    let dir = artifacts();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("report-screenshot.png"), &png).unwrap();
    std::fs::copy(&f.html, dir.join("report.html")).unwrap();

    // No console errors, no exceptions, no dialogs, nothing fetched but the file itself.
    let problems = opened.problems();
    assert!(problems.is_empty(), "{problems:#?}");

    assert_eq!(checks["ready"], "1", "the script ran: {checks}");
    assert_eq!(checks["pwned"], Value::Null, "no hostile script ran");
    assert_eq!(checks["scripts"], 1);
    let drawn = checks["drawn"].as_array().unwrap();
    assert!(drawn.len() >= 8, "{checks:#}");
    for c in drawn {
        assert!(
            c["w"].as_f64().unwrap() > 300.0 && c["h"].as_f64().unwrap() > 20.0,
            "{c}"
        );
        let marks = c["lines"].as_u64().unwrap()
            + c["bars"].as_u64().unwrap()
            + c["dots"].as_u64().unwrap();
        assert!(marks > 0, "drew something: {c}");
    }
    // Series are coloured by the stylesheet the policy let through.
    let strokes: Vec<&str> = drawn.iter().filter_map(|c| c["stroke"].as_str()).collect();
    assert!(
        strokes
            .iter()
            .all(|s| s.starts_with("rgb(") && *s != "rgb(0, 0, 0)"),
        "{strokes:?}"
    );
    for title in [
        "Prompt tokens per page, by run",
        "Time to first token",
        "TTFT distribution (CDF)",
        "TTFT against load",
    ] {
        assert!(
            drawn.iter().any(|c| c["title"] == title),
            "{title}: {checks:#}"
        );
    }
    assert_eq!(
        interact["hidden"], true,
        "legend hides its series: {interact}"
    );
    assert_eq!(interact["pressed"], "false");
    assert_eq!(interact["sort"], "descending");
    let col: Vec<f64> = interact["col"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(col.windows(2).all(|w| w[0] >= w[1]), "sorted: {col:?}");
    assert_eq!(interact["filtered"], true);
}
