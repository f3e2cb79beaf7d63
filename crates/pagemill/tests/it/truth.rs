//! What a run reports is true to the document: values it cannot find are dropped (counted by
//! reason) or kept flagged, the prompt's worked examples never leak, nonsense dates and amounts
//! are caught, copied summaries and repeated keywords are re-asked once and then flagged, and a
//! looping answer is cancelled mid-stream. Against scripted servers that answer like a small
//! model does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pagemill_sim::script;
use serde_json::{Value, json};

use crate::common::config;
use crate::common::{pagemill, tempdir};

const DOC: &str = "# Supply Agreement\n\nMade on 14 March 2025 between Halvorsen Marine Supplies AS, of Bergen, and Clearwater Fisheries Ltd, of Aberdeen.\n\n## 1. Goods\n\nThe Supplier delivers 2,400 mooring lines to Torry Quay for GBP 186,000.\n\n## 2. Law\n\nThis agreement is governed by the laws of Scotland.\n";

/// The ids of the items in a request's user message.
fn ids(body: &Value) -> Vec<String> {
    let user = body["messages"][1]["content"].as_str().unwrap_or("");
    user.split("<item id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(str::to_owned)
        .collect()
}

fn system(body: &Value) -> &str {
    body["messages"][0]["content"].as_str().unwrap_or("")
}

/// A re-ask carries the earlier answer and the reason after the first two messages.
fn reask_reason(body: &Value) -> Option<String> {
    body["messages"][3]["content"].as_str().map(str::to_owned)
}

/// Answers as a small model does: entities with an example's name, a made-up one and a
/// "date" that is none; one summary for every section; metadata with a party from the
/// prompt's example and a keyword twice.
async fn small_model(reasks: Arc<std::sync::Mutex<Vec<String>>>) -> pagemill_sim::ServerHandle {
    pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), move |req| {
        let body = req.json();
        if let Some(r) = reask_reason(&body) {
            reasks.lock().unwrap().push(r);
        }
        let sys = system(&body);
        let answer = if sys.starts_with("You extract") {
            let items: Vec<Value> = ids(&body)
                .into_iter()
                .map(|id| {
                    json!({"id": id, "entities": [
                        {"text": "Halvorsen Marine Supplies AS", "type": "organization"},
                        {"text": "Bergen", "type": "date"},
                        {"text": "GBP 186,000", "type": "money"},
                        {"text": "Quillfeather Bakery", "type": "organization"},
                        {"text": "Zorblax Holdings", "type": "organization"}
                    ]})
                })
                .collect();
            json!({ "items": items })
        } else if sys.starts_with("You summarize") {
            let items: Vec<Value> = ids(&body)
                .into_iter()
                .map(|id| json!({"id": id, "summary": "The parties agree on the delivery of mooring lines."}))
                .collect();
            json!({ "items": items })
        } else {
            json!({"title": "Supply Agreement", "authors": [], "date": "2025-03-14",
                   "document_type": "contract", "language": "en",
                   "keywords": ["mooring lines", "Mooring lines", "Torry Quay"],
                   "parties": ["Clearwater Fisheries Ltd", "Ilse Varga", "Globex Corporation"]})
        };
        script::completion(&answer.to_string(), None)
    })
    .await
    .unwrap()
}

fn run(dir: &std::path::Path, cfg: &std::path::Path, out: &str, extra: &[&str]) -> Value {
    let o = pagemill(dir)
        .arg("--config")
        .arg(cfg)
        .args([
            "run",
            "agreement.md",
            "-o",
            out,
            "--format",
            "json",
            "-q",
            "--pack",
            "4",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.code() == Some(0),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    let s: Value = serde_json::from_slice(&o.stdout).unwrap();
    s
}

fn result(dir: &std::path::Path, out: &str) -> Value {
    let path = std::fs::read_dir(dir.join(out))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("agreement.md.")
        })
        .unwrap();
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_document_backs_is_reported_and_the_rest_is_counted() {
    let dir = tempdir("truth");
    std::fs::write(dir.join("agreement.md"), DOC).unwrap();
    let reasks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = small_model(Arc::clone(&reasks)).await;
    let cfg = config(&dir, "p.toml", "small", &server.base_url(), "");

    let s = run(&dir, &cfg, "out", &["--no-stream"]);
    let d = result(&dir, "out");
    assert_eq!(d["complete"], true, "{d}");

    // Entities: the grounded organization and amount stay; the rest is counted by reason.
    let kept: Vec<(&str, &str)> = d["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["text"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert!(
        kept.contains(&("Halvorsen Marine Supplies AS", "organization")),
        "{kept:?}"
    );
    assert!(kept.contains(&("GBP 186,000", "money")), "{kept:?}");
    for gone in ["Bergen", "Quillfeather Bakery", "Zorblax Holdings"] {
        assert!(
            kept.iter().all(|(t, _)| *t != gone),
            "{gone} kept: {kept:?}"
        );
    }
    let pages = d["pages"].as_array().unwrap().len() as u64;
    let dropped = &d["dropped"];
    assert_eq!(dropped["not_a_date"], pages, "{dropped}");
    assert_eq!(
        dropped["from_example"].as_u64().unwrap(),
        pages + 1,
        "{dropped}"
    );
    assert_eq!(
        dropped["ungrounded"].as_u64().unwrap(),
        pages + 1,
        "{dropped}"
    );
    assert_eq!(
        s["dropped"], *dropped,
        "the summary adds the documents' counts"
    );

    // Metadata: grounded values with offsets; the example's party and an invented one gone.
    let m = &d["metadata"];
    assert_eq!(m["parties"], json!(["Clearwater Fisheries Ltd"]), "{m}");
    assert_eq!(
        m["keywords"],
        json!(["mooring lines", "Torry Quay"]),
        "repeats removed"
    );
    let g = d["metadata_grounding"].as_array().unwrap();
    let date = g.iter().find(|x| x["field"] == "date").unwrap();
    assert_eq!(date["source_text"], "14 March 2025");
    assert_eq!(date["page"], 1);
    let title = g.iter().find(|x| x["field"] == "title").unwrap();
    assert_eq!(
        (title["start"].as_u64(), title["grounding"].as_str()),
        (Some(2), Some("exact"))
    );
    assert!(g.iter().all(|x| x["grounding"] != "none"), "{g:?}");

    // Copies and repeats: re-asked once with the reason, then kept with a flag.
    let reasons = reasks.lock().unwrap().clone();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("values repeat in keywords")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("repeats, nearly word for word")),
        "{reasons:?}"
    );
    assert_eq!(
        d["metadata_flags"][0],
        "repeated values removed: keywords (\"mooring lines\" ×2)"
    );
    // One sentence for every section: a copy, or about what the section does not say.
    let sections = d["sections"].as_array().unwrap();
    let flags: Vec<&str> = sections.iter().filter_map(|s| s["flag"].as_str()).collect();
    assert_eq!(flags.len(), sections.len(), "{sections:?}");
    assert!(
        flags
            .iter()
            .any(|f| f.starts_with("near-identical to the summary of section"))
    );
    assert!(
        flags
            .iter()
            .any(|f| f.starts_with("mostly words the section does not contain"))
    );

    // keep-flagged keeps what is not backed, flagged, and still never an example's value.
    let s2 = run(
        &dir,
        &cfg,
        "out",
        &["--no-stream", "--ungrounded", "keep-flagged"],
    );
    assert_eq!(s2["requests"], 0, "changing the policy costs no request");
    let d = result(&dir, "out");
    let mentions: Vec<&Value> = d["entities"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["mentions"].as_array().unwrap())
        .collect();
    assert!(
        mentions
            .iter()
            .any(|m| m["text"] == "Bergen" && m["flag"] == "not_a_date")
    );
    assert!(
        mentions
            .iter()
            .any(|m| m["text"] == "Zorblax Holdings" && m["grounding"] == "none")
    );
    assert!(mentions.iter().all(|m| m["text"] != "Quillfeather Bakery"));
    assert_eq!(
        d["metadata"]["parties"],
        json!(["Clearwater Fisheries Ltd", "Globex Corporation"])
    );
    assert_eq!(d["dropped"], json!({"from_example": pages + 1}));
}

/// A tiny model's answers are not asked again for their quality (on the embedded model none of
/// those re-asks came back fixed): the same poor answers are flagged at once, in fewer requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_small_profile_poor_answers_are_flagged_without_a_reask() {
    let dir = tempdir("truth-small");
    std::fs::write(dir.join("agreement.md"), DOC).unwrap();
    let reasks = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = small_model(Arc::clone(&reasks)).await;
    let cfg = config(
        &dir,
        "p.toml",
        "small",
        &server.base_url(),
        "prompt_profile = \"small\"",
    );
    let s = run(&dir, &cfg, "out", &["--no-stream"]);
    assert_eq!(s["reasks"], 0, "{s}");
    assert!(reasks.lock().unwrap().is_empty());
    let d = result(&dir, "out");
    assert_eq!(d["complete"], true, "{d}");
    let sections = d["sections"].as_array().unwrap();
    assert!(
        sections.iter().all(|s| s["flag"].is_string()),
        "{sections:?}"
    );
    assert_eq!(
        d["metadata_flags"][0],
        "repeated values removed: keywords (\"mooring lines\" ×2)"
    );
}

/// llama-server's grammar puts `entities` before `id` (keys in alphabetical order): an answer
/// cut in its entities has no id. Alone, it can only be the one item asked for, and its
/// complete entities are kept; before, every such page was dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_answer_without_its_id_still_answers_the_one_item_asked() {
    let dir = tempdir("truth-noid");
    std::fs::write(dir.join("agreement.md"), DOC).unwrap();
    let server = pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), |req| {
        let body = req.json();
        let sys = system(&body);
        let (content, finish) = if sys.starts_with("You extract") {
            let looped = r#"{"items": [{"entities": [{"text": "Halvorsen Marine Supplies AS", "type": "organization"}, {"text": "Bergen", "type": "location"}, {"text": "Bergen", "type": "location"}, {"text": "Bergen", "type": "loc"#;
            (looped.to_owned(), "length")
        } else {
            (json!({"title": "Supply Agreement", "authors": [], "date": null,
                    "document_type": "contract", "language": "en", "keywords": [], "parties": []})
                .to_string(), "stop")
        };
        pagemill_sim::server::Reply::json(
            200,
            &json!({"id": "c", "object": "chat.completion", "model": "sim-model",
                    "choices": [{"index": 0, "finish_reason": finish,
                                 "message": {"role": "assistant", "content": content}}]}),
        )
    })
    .await
    .unwrap();
    let cfg = config(&dir, "p.toml", "small", &server.base_url(), "");
    let s = run(
        &dir,
        &cfg,
        "out",
        &["--no-stream", "--tasks", "entities,metadata"],
    );
    assert_eq!(s["dead_letters"], 0, "{s}");
    let d = result(&dir, "out");
    assert_eq!(d["complete"], true, "{d}");
    let kept: Vec<(&str, usize)> = d["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["text"].as_str().unwrap(),
                e["mentions"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        [("Halvorsen Marine Supplies AS", 1), ("Bergen", 1)],
        "the repeat beyond the page's one Bergen is not kept"
    );
}

/// Streams `{"title": "Aer: Aer: Aer: …` for as long as it is read, the first time; answers
/// properly when asked again.
async fn looping() -> (pagemill_sim::ServerHandle, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let server = pagemill_sim::serve("127.0.0.1:0".parse().unwrap(), move |req| {
        let body = req.json();
        let n = seen.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            let mut pieces = vec!["{\"title\": \""];
            pieces.extend(std::iter::repeat_n("Aer: ", 2000));
            return script::stream(&pieces, None, Duration::ZERO, script::Framing::default());
        }
        let _ = body;
        let answer = json!({"title": "Supply Agreement", "authors": [], "date": null,
                            "document_type": "contract", "language": "en", "keywords": [], "parties": []});
        script::stream(&[&answer.to_string()], None, Duration::ZERO, script::Framing::default())
    })
    .await
    .unwrap();
    (server, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_answer_is_cancelled_mid_stream_and_asked_again() {
    let dir = tempdir("truth-loop");
    std::fs::write(dir.join("agreement.md"), DOC).unwrap();
    let (server, calls) = looping().await;
    let cfg = config(&dir, "p.toml", "small", &server.base_url(), "");
    let s = run(&dir, &cfg, "out", &["--tasks", "metadata"]);
    assert_eq!(s["loops_cancelled"], 1, "{s}");
    let saved = s["loop_tokens_saved"].as_u64().unwrap();
    let spent = s["tasks"]["metadata"]["completion_tokens"]
        .as_u64()
        .unwrap();
    assert!(saved > 200 && spent < 200, "saved {saved}, spent {spent}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let d = result(&dir, "out");
    assert_eq!(d["metadata"]["title"], "Supply Agreement");
}

/// `pagemill eval` scores a finished run against gold with exactly the figures the answers
/// give: the scripted small model keeps 2 of the 8 gold entities and invents none that survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_scores_a_run_against_gold_exactly() {
    let dir = tempdir("truth-eval");
    std::fs::write(dir.join("agreement.md"), DOC).unwrap();
    let server = small_model(Arc::new(std::sync::Mutex::new(Vec::new()))).await;
    let cfg = config(&dir, "p.toml", "small", &server.base_url(), "");
    run(&dir, &cfg, "out", &["--no-stream"]);
    let e = |t: &str, k: &str| json!({"text": t, "type": k});
    let gold = json!({
        "document": {"path": "agreement.md"},
        "entities": [e("Halvorsen Marine Supplies AS", "organization"), e("Clearwater Fisheries Ltd", "organization"),
                     e("Bergen", "location"), e("Aberdeen", "location"), e("Torry Quay", "location"),
                     e("Scotland", "location"), e("14 March 2025", "date"), e("GBP 186,000", "money")],
        "metadata": {"title": "Supply Agreement", "date": "14 March 2025",
                     "parties": ["Halvorsen Marine Supplies AS", "Clearwater Fisheries Ltd"]},
        "summaries": [{"section": "1. Goods", "text": "The Supplier delivers 2,400 mooring lines to Torry Quay for GBP 186,000."}]
    });
    std::fs::write(dir.join("gold.jsonl"), format!("{gold}\n")).unwrap();
    let o = pagemill(&dir)
        .args(["eval", "gold.jsonl", "--results", "out", "--format", "json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    crate::common::assert_follows("eval-report.schema.json", &r);
    assert_eq!(r["unmatched"], json!([]));
    assert_eq!(r["entities"]["level"], "entity");
    assert_eq!(r["entities"]["strict"], json!({"tp": 2, "fp": 0, "fn": 6}));
    assert_eq!(
        r["entities"]["by_type"]["money"],
        json!({"tp": 1, "fp": 0, "fn": 0})
    );
    let m = &r["metadata"];
    assert_eq!(
        (
            m["title"]["exact"].as_f64(),
            m["title"]["normalized"].as_f64()
        ),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(
        (
            m["date"]["exact"].as_f64(),
            m["date"]["normalized"].as_f64()
        ),
        (Some(0.0), Some(1.0))
    );
    assert!((m["parties"]["normalized"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    // "The parties agree on the delivery of mooring lines." against the reference: 3 words
    // shared of 9 and 14.
    let r1 = r["summaries"]["rouge"]["rouge1"].as_f64().unwrap();
    assert!((r1 - 6.0 / 23.0).abs() < 1e-9, "{r1}");
    assert!(r["run"]["prompt_tokens_per_page"].as_f64().unwrap() > 0.0);

    // The text form says the same, and a gold line with no result is named.
    std::fs::write(
        dir.join("gold2.jsonl"),
        format!(
            "{gold}\n{}\n",
            json!({"document": {"path": "missing.pdf"}, "metadata": {"title": "X"}})
        ),
    )
    .unwrap();
    let o = pagemill(&dir)
        .args(["eval", "gold2.jsonl", "--results", "out"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("strict P 1.00 R 0.25"), "{text}");
    assert!(text.contains("no result for: missing.pdf"), "{text}");

    // `eval init` writes what the run found; scored against its own run, it is perfect, and
    // it is not overwritten by accident.
    let init = || {
        pagemill(&dir)
            .args(["eval", "init", "out", "-o", "skeleton.jsonl"])
            .output()
            .unwrap()
    };
    assert!(init().status.success());
    assert!(!init().status.success(), "an existing gold file is kept");
    let o = pagemill(&dir)
        .args([
            "eval",
            "skeleton.jsonl",
            "--results",
            "out",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["entities"]["level"], "mention");
    assert_eq!(r["entities"]["strict"]["fp"], 0);
    assert_eq!(r["entities"]["strict"]["fn"], 0);
    assert!(r["entities"]["strict"]["tp"].as_u64().unwrap() >= 2);
    assert_eq!(r["entities"]["offsets"][0], r["entities"]["offsets"][1]);
    assert!(
        r["metadata"]
            .as_object()
            .unwrap()
            .values()
            .all(|m| m["exact"] == 1.0),
        "{}",
        r["metadata"]
    );
    assert_eq!(r["summaries"]["rouge"]["rouge_l"], 1.0);

    // Gold imported from a CoNLL file (tokens split as that format splits them) and a CSV.
    std::fs::write(
        dir.join("agreement.md.conll"),
        "Halvorsen B-ORG\nMarine I-ORG\nSupplies I-ORG\nAS I-ORG\nof O\nAberdeen B-LOC\n\nGBP B-MONEY\n186 I-MONEY\n, I-MONEY\n000 I-MONEY\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("meta.csv"),
        "path,title,parties\nagreement.md,Supply Agreement,Clearwater Fisheries Ltd\n",
    )
    .unwrap();
    let o = pagemill(&dir)
        .args([
            "eval",
            "import",
            "--conll",
            "agreement.md.conll",
            "--metadata-csv",
            "meta.csv",
            "-o",
            "imported.jsonl",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = pagemill(&dir)
        .args([
            "eval",
            "imported.jsonl",
            "--results",
            "out",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["documents"].as_array().unwrap().len(),
        1,
        "one line per document"
    );
    assert_eq!(r["entities"]["strict"], json!({"tp": 2, "fp": 0, "fn": 1}));
    assert_eq!(r["metadata"]["parties"]["normalized"], 1.0);

    // Two configurations side by side: each against the first, with an interval.
    let o = pagemill(&dir)
        .args([
            "eval",
            "gold.jsonl",
            "--results",
            "out",
            "--results",
            "out",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    crate::common::assert_follows("eval-report.schema.json", &r);
    assert_eq!(r["configurations"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["configurations"][0]["pareto_front"], true,
        "equal runs are both on it"
    );
    let d = &r["differences"][0];
    assert_eq!(
        (d["metric"].as_str(), d["mean"].as_f64(), d["low"].as_f64()),
        (Some("entity_f1"), Some(0.0), Some(0.0))
    );
}

/// The gold shipped for the example documents follows its schema, and every entity and
/// metadata string in it is printed in its document (wrong gold is worse than none).
#[test]
fn the_shipped_gold_follows_its_schema_and_its_documents() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("testdata/gold/examples.jsonl")).unwrap();
    let validator = crate::common::schema("gold.schema.json");
    let gold = pagemill_pipeline::eval::gold::parse(&text).unwrap();
    assert_eq!(gold.len(), 3);
    for (line, g) in text.lines().zip(&gold) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(validator.is_valid(&v), "{line}");
        let path = g.document.path.as_deref().unwrap();
        let raw = std::fs::read_to_string(root.join(path)).unwrap();
        // The words as a reader sees them: no tags, no emphasis marks, one space.
        let mut doc = String::new();
        let mut in_tag = false;
        for c in raw.replace("**", "").replace("&amp;", "&").chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    doc.push(' ');
                }
                c if !in_tag => doc.push(c),
                _ => {}
            }
        }
        let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        for e in g.entities.iter().flatten() {
            assert!(
                doc.contains(&e.text),
                "{path}: {:?} is not in the text",
                e.text
            );
        }
        let m = g.metadata.as_ref().unwrap();
        for v in ["title", "authors", "parties"]
            .iter()
            .filter_map(|f| m.get(*f))
        {
            let values: Vec<&str> = match v {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for s in values {
                assert!(
                    doc.to_lowercase().contains(&s.to_lowercase()),
                    "{path}: {s:?}"
                );
            }
        }
    }
}
