//! `pagemill eval` proven exact: the simulator answers from gold with errors drawn at set
//! rates and tells what it answered for each gold entity and field (`GET /sim/gold`); the
//! scores `pagemill eval` prints must be exactly what those answers give.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pagemill_client::{Client, Endpoint};
use pagemill_sim::gold::{GoldMode, Outcome, Truth};
use pagemill_sim::{Profile, Sim, SimHandle};
use serde_json::{Value, json};

use crate::common::config;
use crate::common::{assert_follows, pagemill, repo, tempdir};
use crate::run::quick;

/// The example documents, copied beside the test (the gold names them by file name).
fn example_docs(dir: &Path) -> PathBuf {
    let docs = dir.join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    for name in [
        "river-survey.txt",
        "supply-agreement.md",
        "board-minutes.html",
    ] {
        std::fs::copy(repo(&format!("examples/docs/{name}")), docs.join(name)).unwrap();
    }
    docs
}

async fn gold_sim(gold: &str, seed: u64) -> SimHandle {
    let mut p = quick(Profile::fast_local());
    p.seed = seed;
    p.gold = Some(GoldMode {
        file: repo(gold),
        drop: 0.2,
        retype: 0.15,
        shift: 0.15,
        metadata: 0.4,
    });
    Sim::start(p).await.unwrap()
}

async fn root_get(sim: &SimHandle, path: &str) -> Value {
    let base = sim.base_url().trim_end_matches("/v1").to_owned();
    let mut ep = Endpoint::new("root", base, "m");
    ep.retry.max_attempts = 1;
    let (status, v) = Client::new(ep).unwrap().get_json(path).await.unwrap();
    assert_eq!(status, 200, "{v}");
    v
}

/// The counts the answers give (see `pagemill_sim::gold` for what each outcome answers).
fn expected_entities(t: &Truth) -> Value {
    let n = |o: Outcome| t.count(o) as u64;
    let (kept, retyped, shifted) = (n(Outcome::Kept), n(Outcome::Retyped), n(Outcome::Shifted));
    let all = t.entities.len() as u64;
    let counts = |tp: u64, fp: u64| json!({"tp": tp, "fp": fp, "fn": all - tp});
    let mut by_type: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for e in &t.entities {
        let c = by_type.entry(e.kind.clone()).or_default();
        match e.outcome {
            Outcome::Kept => c.0 += 1,
            _ => c.2 += 1,
        }
        match e.outcome {
            Outcome::Retyped => {
                let to = e.answered_type.clone().unwrap();
                by_type.entry(to).or_default().1 += 1;
            }
            Outcome::Shifted => by_type.entry(e.kind.clone()).or_default().1 += 1,
            _ => {}
        }
    }
    let by_type: BTreeMap<String, Value> = by_type
        .into_iter()
        .map(|(k, (tp, fp, fn_))| (k, json!({"tp": tp, "fp": fp, "fn": fn_})))
        .collect();
    json!({
        "strict": counts(kept, retyped + shifted),
        "relaxed": counts(kept + shifted, retyped),
        "type_blind": counts(kept + retyped, shifted),
        "by_type": by_type,
    })
}

/// Mean normalized score per metadata field: 1 kept; a corrupted string 0; a list less its
/// last of n elements, set F1 2(n−1)/(2n−1).
fn expected_metadata(t: &Truth) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for f in &t.metadata {
        let score = match (f.outcome, &f.gold) {
            (Outcome::Kept, _) => 1.0,
            (_, Value::Array(a)) if a.len() >= 2 => {
                let n = a.len() as f64;
                2.0 * (n - 1.0) / (2.0 * n - 1.0)
            }
            _ => 0.0,
        };
        let s = sums.entry(f.field.clone()).or_default();
        s.0 += score;
        s.1 += 1.0;
    }
    sums.into_iter().map(|(k, (s, n))| (k, s / n)).collect()
}

fn eval(dir: &Path, cfg: &Path, gold: &str, extra: &[&str]) -> Value {
    let o = pagemill(dir)
        .arg("--config")
        .arg(cfg)
        .arg("eval")
        .arg(repo(gold))
        .arg("docs")
        .args(["-e", "gold", "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_follows("eval-report.schema.json", &v);
    v
}

/// `pagemill eval GOLD docs -e gold EXTRA` against a gold simulator: the simulator, the
/// directory, the config, the report and what the simulator answered (every kind of error
/// drawn).
async fn gold_eval(
    name: &str,
    gold: &str,
    seed: u64,
    extra: &[&str],
) -> (SimHandle, PathBuf, PathBuf, Value, Truth) {
    let sim = gold_sim(gold, seed).await;
    let dir = tempdir(name);
    example_docs(&dir);
    let cfg = config(&dir, "p.toml", "gold", &sim.base_url(), "");
    let v = eval(&dir, &cfg, gold, extra);
    let truth: Truth = serde_json::from_value(root_get(&sim, "sim/gold").await).unwrap();
    for o in [
        Outcome::Kept,
        Outcome::Dropped,
        Outcome::Retyped,
        Outcome::Shifted,
    ] {
        assert!(truth.count(o) > 0, "no {o:?}: {truth:#?}");
    }
    (sim, dir, cfg, v, truth)
}

fn check(report: &Value, truth: &Truth, level: &str) {
    let want = expected_entities(truth);
    let e = &report["entities"];
    assert_eq!(e["level"], level);
    for form in ["strict", "relaxed", "type_blind", "by_type"] {
        assert_eq!(e[form], want[form], "{form}: {e:#}");
    }
    if level == "mention" {
        let (kept, shifted) = (truth.count(Outcome::Kept), truth.count(Outcome::Shifted));
        assert_eq!(e["offsets"], json!([kept + shifted, kept]));
    }
    for (field, mean) in expected_metadata(truth) {
        let got = report["metadata"][&field]["normalized"].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-9, "{field}: {got} against {mean}");
    }
    // Reference summaries come back as written.
    let s = &report["summaries"];
    assert_eq!(s["unanswered"], 0, "{s}");
    assert_eq!(s["rouge"]["rouge_l"], 1.0, "{s}");
}

/// Mention level (gold with page and offsets), two pack sizes: both score exactly what the
/// simulator answered, and a second eval reuses every finished unit without a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_scores_exactly_what_the_gold_simulator_answered_by_mention() {
    let gold = "testdata/gold/examples-mentions.jsonl";
    let (sim, dir, cfg, v, truth) =
        gold_eval("eval-gold-mentions", gold, 3, &["--pack", "1,4"]).await;
    assert_eq!(truth.count(Outcome::Unasked), 0);
    assert!(
        truth
            .metadata
            .iter()
            .any(|f| f.outcome == Outcome::Corrupted)
    );
    let configs = v["configurations"].as_array().unwrap();
    assert_eq!(configs.len(), 2);
    for c in configs {
        check(&c["report"], &truth, "mention");
        assert!(
            c["report"]["run"]["prompt_tokens_per_page"]
                .as_f64()
                .unwrap()
                > 0.0
        );
    }
    assert_eq!(configs[0]["setting"]["pack"], "1");
    assert_eq!(configs[1]["setting"]["pack"], "4");
    // Same answers in any pack: no difference on any metric, and three documents are too
    // few to tell one anyway.
    for d in v["differences"].as_array().unwrap() {
        assert_eq!(
            (d["low"].as_f64(), d["high"].as_f64()),
            (Some(0.0), Some(0.0)),
            "{d}"
        );
        assert_eq!(d["verdict"], "too_few_documents");
    }
    // Each configuration's results are where `report` and `eval --results` read them.
    let results = configs[1]["setting"]["results"].as_str().unwrap();
    assert!(
        dir.join(results).join("run-summary.json").exists(),
        "{results}"
    );

    report_shows_the_errors(&dir, &truth);

    let chats = |log: Value| {
        log.as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["route"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("/chat/completions")
            })
            .count()
    };
    let requests = chats(root_get(&sim, "sim/log").await);
    assert!(requests > 0);
    let again = eval(&dir, &cfg, gold, &["--pack", "1,4"]);
    assert_eq!(
        chats(root_get(&sim, "sim/log").await),
        requests,
        "a second eval pays for nothing"
    );
    for (a, b) in configs
        .iter()
        .zip(again["configurations"].as_array().unwrap())
    {
        assert_eq!(a["report"]["entities"], b["report"]["entities"]);
        assert_eq!(
            a["report"]["run"]["prompt_tokens_per_page"],
            b["report"]["run"]["prompt_tokens_per_page"],
            "what the results cost is read from the ledger, not from what this eval spent"
        );
    }
}

/// Entity level (gold without offsets): the set of (text, type) per document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_scores_exactly_what_the_gold_simulator_answered_by_entity() {
    let (_sim, _dir, _cfg, v, truth) =
        gold_eval("eval-gold-entities", "testdata/gold/examples.jsonl", 5, &[]).await;
    check(&v, &truth, "entity");
}

/// The mention gold sits at its offsets in the pages `pagemill ingest` makes of the example
/// documents, and says the same entities as the entity gold.
#[test]
fn the_mention_gold_sits_at_its_offsets_in_the_ingested_pages() {
    let dir = tempdir("eval-gold-offsets");
    let o = pagemill(&dir)
        .arg("ingest")
        .arg(repo("examples/docs"))
        .args(["--dump", "pages"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = std::fs::read_to_string(repo("testdata/gold/examples-mentions.jsonl")).unwrap();
    let mentions = pagemill_pipeline::eval::gold::parse(&text).unwrap();
    let entities = pagemill_pipeline::eval::gold::parse(
        &std::fs::read_to_string(repo("testdata/gold/examples.jsonl")).unwrap(),
    )
    .unwrap();
    assert_eq!(mentions.len(), 3);
    let mut count = 0;
    for (g, e) in mentions.iter().zip(&entities) {
        assert_eq!(g.document, e.document);
        let path = g.document.path.as_deref().unwrap();
        let stem = Path::new(path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let page_dir = std::fs::read_dir(dir.join("pages"))
            .unwrap()
            .map(|d| d.unwrap().path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{stem}-"))
            })
            .unwrap();
        let mut set = std::collections::BTreeSet::new();
        for m in g.entities.as_ref().unwrap() {
            let (page, start, end) = m.span().expect("every mention has its offsets");
            let page_text =
                std::fs::read_to_string(page_dir.join(format!("page-{page:04}.txt"))).unwrap();
            let at: String = page_text.chars().skip(start).take(end - start).collect();
            assert_eq!(
                squash(&at),
                squash(&m.text),
                "{path} p{page} {start}..{end}"
            );
            set.insert((squash(&m.text).to_lowercase(), m.kind.clone()));
            count += 1;
        }
        let want: std::collections::BTreeSet<_> = e
            .entities
            .as_ref()
            .unwrap()
            .iter()
            .map(|x| (squash(&x.text).to_lowercase(), x.kind.clone()))
            .collect();
        assert_eq!(set, want, "{path}: the two gold files disagree");
    }
    assert_eq!(count, 71);
}

const EVAL_CHECKS: &str = r##"(() => {
  const fig = document.querySelector('#eval figure.chart[data-kind=scatter]');
  const dots = fig ? [...fig.querySelectorAll('circle.pt')].filter(c => c.getBBox().width > 0).length : 0;
  const marks = [...document.querySelectorAll('#eval mark.err')];
  const by = {};
  for (const m of marks) {
    const k = [...m.classList].find(c => c.startsWith('err-'));
    by[k] = (by[k] || 0) + 1;
  }
  const colours = new Set(marks.map(m => getComputedStyle(m).backgroundColor));
  return {dots, marks: marks.length, by, colours: colours.size,
          rows: document.querySelectorAll('#eval table.configs tbody tr').length,
          nav: !!document.querySelector('nav a[href="#eval"]')};
})()"##;

/// `pagemill report LEDGER eval-report.json`: the eval section in headless Chromium — a point a
/// configuration, and every error the simulator made marked in its page (two configurations,
/// so each twice).
fn report_shows_the_errors(dir: &Path, truth: &Truth) {
    let o = pagemill(dir)
        .args([
            "report",
            "eval-out/ledger.sqlite",
            "eval-out/eval-report.json",
        ])
        .args(["-o", "eval.html"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pagemill(dir)
        .args([
            "report",
            "eval-out/ledger.sqlite",
            "eval-out/eval-report.json",
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_follows("report.schema.json", &json);

    // The terminal view has the same table, with the errors counted.
    let o = pagemill(dir)
        .args([
            "report",
            "eval-out/ledger.sqlite",
            "eval-out/eval-report.json",
        ])
        .args(["--format", "text"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Quality against gold"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("pack 1"))
        .unwrap_or_else(|| panic!("{text}"));
    let dropped = truth.count(Outcome::Dropped).to_string();
    assert!(row.split_whitespace().any(|w| w == dropped), "{row}");

    let mut opened = crate::report::open_in_chromium(&dir.join("eval.html"), dir);
    let seen = opened.cdp.eval(EVAL_CHECKS);
    let top = opened
        .cdp
        .eval("document.getElementById('eval').getBoundingClientRect().top + window.scrollY");
    let shot = opened.cdp.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true,
               "clip": {"x": 0, "y": top, "width": 1280, "height": 2400, "scale": 1}}),
    );
    let artifacts = crate::report::artifacts();
    std::fs::create_dir_all(&artifacts).unwrap();
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    std::fs::write(artifacts.join("eval-report-screenshot.png"), png).unwrap();
    let problems = opened.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(seen["dots"], 2, "{seen}");
    assert_eq!(seen["rows"], 2, "{seen}");
    assert_eq!(seen["nav"], true);
    let twice = |o: Outcome| json!(2 * truth.count(o));
    assert_eq!(seen["by"]["err-missed"], twice(Outcome::Dropped), "{seen}");
    assert_eq!(
        seen["by"]["err-wrong_type"],
        twice(Outcome::Retyped),
        "{seen}"
    );
    assert_eq!(
        seen["by"]["err-wrong_span"],
        twice(Outcome::Shifted),
        "{seen}"
    );
    assert_eq!(seen["by"].get("err-spurious"), None, "{seen}");
    assert_eq!(seen["colours"], 3, "each kind its own colour: {seen}");
}

/// The vignettes' gold (title, authors, abstract) is what their first pages print: the title
/// and every author in page 1's text (party's title is printed without a text layer: it is in
/// the PDF's properties, which ingest reads as a title candidate), and the abstract's words
/// there (the text layer drops the `fi` and `fl` ligatures the gold restores: only such words
/// may be missing).
#[test]
fn the_vignette_gold_is_printed_on_their_first_pages() {
    let dir = tempdir("eval-gold-vignettes");
    let text = std::fs::read_to_string(repo("testdata/gold/vignettes.jsonl")).unwrap();
    let gold = pagemill_pipeline::eval::gold::parse(&text).unwrap();
    assert_eq!(gold.len(), 5);

    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let mut abstracts = 0;
    for (line, g) in text.lines().zip(&gold) {
        assert_follows("gold.schema.json", &serde_json::from_str(line).unwrap());
        let path = g.document.path.as_deref().unwrap();
        let out = dir.join(Path::new(path).file_stem().unwrap());
        let o = pagemill(&dir)
            .arg("ingest")
            .arg(repo(path))
            .arg("--dump")
            .arg(&out)
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let ingested: Value = serde_json::from_slice(&o.stdout).unwrap();
        let candidates = ingested["documents"][0]["metadata_candidates"]["titles"].clone();
        let page_dir = std::fs::read_dir(&out)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let page = words(&std::fs::read_to_string(page_dir.join("page-0001.txt")).unwrap());
        let joined = format!(" {} ", page.join(" "));
        let m = g.metadata.as_ref().unwrap();
        let mut printed = vec![m["title"].as_str().unwrap()];
        printed.extend(
            m["authors"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str),
        );
        for p in printed {
            let in_text = joined.contains(&format!(" {} ", words(p).join(" ")));
            let candidate = candidates.as_array().into_iter().flatten().any(|c| c == p);
            assert!(in_text || candidate, "{path}: {p:?} is not on page 1");
        }
        for s in g.summaries.iter().flatten() {
            let have: std::collections::HashSet<&String> = page.iter().collect();
            let w = words(&s.text);
            let missing: Vec<&String> = w.iter().filter(|x| !have.contains(x)).collect();
            // Only words whose `fi` or `fl` ligature the text layer lost.
            assert!(
                missing.iter().all(|m| m.contains("fi") || m.contains("fl")),
                "{path}: {missing:?}"
            );
            assert!(missing.len() * 10 <= w.len(), "{path}: {missing:?}");
            abstracts += 1;
        }
    }
    assert_eq!(abstracts, 4, "lmtest's first page has no abstract");
}

/// As a user runs it: `pagemill eval GOLD DOCS -e sim --sim-profile FILE` with a `[gold]`
/// section (its file named relative to the profile) and no errors drawn. Every answer is
/// right, so every score is 1 — which holds only while the pipeline keeps whole answers of
/// dense pages, reads every currency code and grounds nested names where they stand.
#[test]
fn a_perfect_answerer_scores_one_through_the_whole_pipeline() {
    let dir = tempdir("eval-gold-perfect");
    example_docs(&dir);
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::copy(
        repo("testdata/gold/examples-mentions.jsonl"),
        profiles.join("gold.jsonl"),
    )
    .unwrap();
    std::fs::write(
        profiles.join("gold.toml"),
        "name = \"gold\"\n[latency]\nttft_base_ms = 0.0\ndecode_tokens_per_sec = 0.0\n\
         aggregate_tokens_per_sec = 0.0\n[gold]\nfile = \"gold.jsonl\"\n",
    )
    .unwrap();
    let o = pagemill(&dir)
        .arg("eval")
        .arg(repo("testdata/gold/examples-mentions.jsonl"))
        .arg("docs")
        .args(["-e", "sim", "--sim-profile", "profiles/gold.toml"])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_follows("eval-report.schema.json", &r);
    assert_eq!(r["entities"]["strict"], json!({"tp": 71, "fp": 0, "fn": 0}));
    assert_eq!(r["entities"]["offsets"], json!([71, 71]));
    for (field, m) in r["metadata"].as_object().unwrap() {
        assert_eq!(m["exact"], 1.0, "{field}");
    }
    assert_eq!(r["summaries"]["rouge"]["rouge_l"], 1.0);
    assert_eq!(r["run"]["complete_documents"], 3);
    for d in r["documents"].as_array().unwrap() {
        assert_eq!(d["errors"], json!([]), "{}", d["document"]);
    }
}

/// A metadata-only run spreads its tokens over every page of its documents (it once divided
/// them by one page: the entities pages it did not do).
#[test]
fn a_run_without_entities_counts_tokens_over_every_page() {
    let dir = tempdir("eval-metadata-pages");
    example_docs(&dir);
    let o = pagemill(&dir)
        .args([
            "run", "docs", "-e", "sim", "--tasks", "metadata", "--format", "json", "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["pages"], 4);
    let prompt = s["tasks"]["metadata"]["prompt_tokens"].as_f64().unwrap();
    let per_page = s["prompt_tokens_per_page"].as_f64().unwrap();
    assert!(
        (per_page - prompt / 4.0).abs() < 0.01,
        "{per_page} against {prompt} / 4"
    );
}

/// Eval on a shared PostgreSQL ledger: each configuration a run of its own there, scored as on
/// SQLite; a second eval pays for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_on_a_postgres_ledger_scores_as_on_sqlite_and_reuses_its_units() {
    let gold = "testdata/gold/examples-mentions.jsonl";
    let sim = gold_sim(gold, 11).await;
    let pg = crate::common::PgSchema::new("eval");
    let dir = tempdir("eval-postgres");
    example_docs(&dir);
    let cfg = config(&dir, "p.toml", "gold", &sim.base_url(), "");
    let lite = eval(&dir, &cfg, gold, &["--pack", "1,4", "-o", "lite"]);
    let sent = sim.log().len();
    let on_pg = eval(
        &dir,
        &cfg,
        gold,
        &["--pack", "1,4", "-o", "pg", "--store", &pg.url],
    );
    assert!(sim.log().len() > sent, "the shared ledger starts empty");
    let scores = |v: &Value, part: &str| -> Vec<Value> {
        let configs = v["configurations"].as_array().unwrap();
        assert_eq!(configs.len(), 2);
        configs
            .iter()
            .map(|c| {
                let s = c["report"][part].clone();
                assert!(s.is_object(), "{part}: {s}");
                s
            })
            .collect()
    };
    assert_eq!(scores(&on_pg, "entities"), scores(&lite, "entities"));
    assert_eq!(scores(&on_pg, "metadata"), scores(&lite, "metadata"));
    let sent = sim.log().len();
    let again = eval(
        &dir,
        &cfg,
        gold,
        &["--pack", "1,4", "-o", "pg2", "--store", &pg.url],
    );
    assert_eq!(sim.log().len(), sent, "every unit reused");
    assert_eq!(scores(&again, "entities"), scores(&on_pg, "entities"));
}
