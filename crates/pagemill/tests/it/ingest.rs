//! Ingest on the real documents of `testdata/`, and on hostile input.

use std::path::Path;

use pagemill_pipeline::ingest::{DocKind, Document, Limits, Quality, ingest_bytes, ingest_path};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::common::{data, pagemill, tempdir};

fn doc(rel: &str) -> Document {
    ingest_path(&data(rel), &Limits::default()).unwrap()
}

fn assert_partition(d: &Document) {
    let s = &d.sections;
    assert_eq!(s.first().unwrap().range.0, 0, "{}", d.path.display());
    assert_eq!(s.last().unwrap().range.1, d.text.len());
    for w in s.windows(2) {
        assert_eq!(
            w[0].range.1,
            w[1].range.0,
            "sections tile the text of {}",
            d.path.display()
        );
    }
    for p in &d.pages {
        assert_eq!(&d.text[p.range.0..p.range.1], p.text);
    }
}

#[test]
fn every_pdf_has_the_page_count_pdfinfo_reports() {
    // pdfinfo on these files (and testdata/README.md) says:
    for (file, pages) in [
        ("fhs-3.0.pdf", 50),
        ("lmtest-intro.pdf", 5),
        ("party.pdf", 18),
        ("sandwich.pdf", 21),
        ("strucchange-intro.pdf", 17),
        ("zoo.pdf", 30),
    ] {
        let d = doc(&format!("pdf/{file}"));
        assert_eq!(d.kind, DocKind::Pdf);
        assert_eq!(d.pages.len(), pages, "{file}");
        assert!(d.pages.iter().all(|p| p.failure.is_none()), "{file}");
        assert_partition(&d);
    }
}

#[test]
fn numbered_sections_of_papers_are_found_at_their_levels() {
    let zoo = doc("pdf/zoo.pdf");
    let titles: Vec<(&str, u8)> = zoo
        .headings
        .iter()
        .map(|h| (h.title.as_str(), h.level))
        .collect();
    for expected in [
        ("Introduction", 1),
        ("The class \"zoo\" and its methods", 1),
        ("Creation of \"zoo\" objects", 2),
        ("Summary and outlook", 1),
    ] {
        assert!(titles.contains(&expected), "{expected:?} not in {titles:?}");
    }
    // Known text on a known page, running headers gone.
    assert!(
        zoo.pages[0]
            .text
            .contains("zoo: An S3 Class and Methods for Indexed")
    );
    let sandwich = doc("pdf/sandwich.pdf");
    assert!(
        sandwich
            .headings
            .iter()
            .any(|h| h.title == "Dealing with heteroskedasticity" && h.level == 2)
    );
    let removed: Vec<&String> = sandwich.pages.iter().flat_map(|p| &p.furniture).collect();
    assert!(
        removed
            .iter()
            .any(|l| l.contains("Econometric Computing with HC and HAC")),
        "running title removed"
    );
    assert!(
        !sandwich.pages[4]
            .text
            .contains("Econometric Computing with HC and HAC Covariance Matrix Estimators")
    );
    let fhs = doc("pdf/fhs-3.0.pdf");
    assert!(fhs.headings.iter().any(|h| h.level >= 3), "deep numbering");
    // A figure-only page is flagged, not silently empty.
    assert_eq!(zoo.pages[27].quality, Quality::NeedsOcr);
}

#[test]
fn html_chapters_keep_headings_and_drop_navigation() {
    let d = doc("html/ch01.en.html");
    assert_eq!(d.kind, DocKind::Html);
    assert_eq!(d.headings[0].title, "Chapter 1. GNU/Linux tutorials");
    assert!(
        d.headings
            .iter()
            .any(|h| h.title == "1.1.1. The shell prompt" && h.level == 3)
    );
    assert!(!d.text.contains("Prev"), "navigation header left out");
    assert!(d.text.contains("shell prompt"));
    assert!(
        !d.text.contains("&amp;") && !d.text.contains("&lt;"),
        "entities decoded"
    );
    assert_partition(&d);
}

#[test]
fn one_line_speeches_become_pages_at_sentence_boundaries() {
    let path = data("text/sotu/1861_abraham_lincoln_r.txt");
    let raw = std::fs::read_to_string(&path).unwrap();
    let d = ingest_path(&path, &Limits::default()).unwrap();
    assert!(d.pages.len() > 5);
    for p in &d.pages[..d.pages.len() - 1] {
        assert!(p.chars <= 3_000);
        assert!(
            p.text.ends_with(['.', '?', '!', '"', ';', ':'])
                || p.text.ends_with(char::is_alphanumeric),
            "{:?}",
            &p.text[p.text.len() - 20..]
        );
    }
    let words: usize = d
        .pages
        .iter()
        .map(|p| p.text.split_whitespace().count())
        .sum();
    assert_eq!(words, raw.split_whitespace().count(), "nothing lost");
    assert_partition(&d);
}

#[test]
fn licenses_and_encodings() {
    let gpl = doc("text/licenses/GPL-3.0-only.txt");
    assert_eq!(gpl.encoding.as_deref(), Some("utf-8"));
    assert_partition(&gpl);
    let dir = tempdir("ingest-enc");
    let latin = dir.join("latin.txt");
    std::fs::write(&latin, b"Caf\xe9 au lait, na\xefve r\xe9sum\xe9.").unwrap();
    let d = ingest_path(&latin, &Limits::default()).unwrap();
    assert_eq!(d.text, "Café au lait, naïve résumé.");
    assert_eq!(d.encoding.as_deref(), Some("windows-1252 (detected)"));
    assert!(d.warnings.iter().any(|w| w.contains("windows-1252")));
}

#[test]
fn truncated_and_corrupted_pdfs_give_reasons_not_crashes() {
    let original = std::fs::read(data("pdf/strucchange-intro.pdf")).unwrap();
    let mut rng = SmallRng::seed_from_u64(42);
    let limits = Limits {
        pdf_base_secs: 10.0,
        pdf_secs_per_page: 1.0,
        ..Limits::default()
    };
    for round in 0..12 {
        let mut bytes = original.clone();
        if round % 2 == 0 {
            bytes.truncate(rng.random_range(100..original.len()));
        } else {
            for _ in 0..50 {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= rng.random::<u8>() | 1;
            }
        }
        match ingest_bytes(Path::new("hostile.pdf"), &bytes, &limits) {
            Ok(d) => {
                // Whatever was readable is kept; whatever failed says why.
                for p in &d.pages {
                    assert!(p.quality != Quality::Failed || p.failure.is_some());
                }
                assert_partition(&d);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

#[test]
fn binary_garbage_named_pdf_and_a_zip_bomb_are_refused_with_reasons() {
    let mut rng = SmallRng::seed_from_u64(7);
    let garbage: Vec<u8> = (0..50_000).map(|_| rng.random()).collect();
    let err = ingest_bytes(Path::new("report.pdf"), &garbage, &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("binary data despite its `.pdf` name"), "{err}");

    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("word/document.xml", opts).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..100 {
        w.write_all(&chunk).unwrap();
    }
    let bomb = w.finish().unwrap().into_inner();
    let limits = Limits {
        max_decompressed_bytes: 32 << 20,
        ..Limits::default()
    };
    let err = ingest_bytes(Path::new("bomb.docx"), &bomb, &limits)
        .unwrap_err()
        .to_string();
    assert!(err.contains("zip bomb"), "{err}");
}

#[test]
fn deeply_nested_html_is_bounded() {
    let html = format!(
        "<html><body><p>before</p>{}<p>inside</p>{}<p>after</p></body></html>",
        "<div>".repeat(50_000),
        "</div>".repeat(50_000)
    );
    let d = ingest_bytes(Path::new("deep.html"), html.as_bytes(), &Limits::default()).unwrap();
    assert!(d.text.contains("before"));
    assert!(d.warnings.iter().any(|w| w.contains("nested deeper")));
}

#[test]
fn the_cli_json_follows_its_schema_and_dump_writes_pages() {
    let dir = tempdir("ingest-cli");
    let dump = dir.join("pages");
    std::fs::write(dir.join("garbage.pdf"), [0u8, 159, 146, 150].repeat(500)).unwrap();
    let out = pagemill(&dir)
        .args(["ingest", "--format", "json", "--dump"])
        .arg(&dump)
        .arg(data("pdf/lmtest-intro.pdf"))
        .arg(data("html/ch05.en.html"))
        .arg(data("text/licenses"))
        .arg(dir.join("garbage.pdf"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a skipped input makes the exit code 1"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    crate::common::assert_follows("ingest.schema.json", &v);
    assert_eq!(v["documents"].as_array().unwrap().len(), 32);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1);
    let lmtest = v["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "pdf")
        .unwrap();
    // The metadata candidates from the PDF's first-page layout are shown.
    let titles = lmtest["metadata_candidates"]["titles"].as_array().unwrap();
    assert!(
        titles.iter().any(|t| t
            .as_str()
            .unwrap()
            .contains("Diagnostic Checking in Regression Relationships")),
        "{titles:?}"
    );
    let id = lmtest["id"].as_str().unwrap();
    let page1 =
        std::fs::read_to_string(dump.join(format!("lmtest-intro-{}/page-0001.txt", &id[..12])))
            .unwrap();
    assert!(page1.contains("Diagnostic Checking in Regression Relationships"));
}
