//! Many inputs at once: files, directories and globs read on as many threads as there are
//! cores, each file's failure (a reader's panic included) costing that file only. `run`,
//! `quote`, `ingest`, `eval` and bench's pages workload all read through [`read_all`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Document, IngestError, Limits, expand_inputs, ingest_path};

/// What [`read_all`] read, in input order, and what it could not, with why.
#[derive(Debug, Default)]
pub struct Read {
    /// The documents read.
    pub docs: Vec<Document>,
    /// Inputs that could not be read: the path (empty when the input itself was bad, such as a
    /// glob that matches nothing) and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Reads `inputs` (files, directories recursively, globs) with `limits`. Blocking: call it
/// from a blocking thread in async code.
pub fn read_all(inputs: &[PathBuf], limits: &Limits) -> Read {
    let (files, problems) = expand_inputs(inputs);
    let mut read = Read {
        skipped: problems.into_iter().map(|p| (PathBuf::new(), p)).collect(),
        ..Read::default()
    };
    for (path, r) in files.iter().zip(in_parallel(&files, limits)) {
        match r {
            Ok(d) => read.docs.push(d),
            Err(e) => read.skipped.push((path.clone(), e.to_string())),
        }
    }
    read
}

/// One result per file, in order.
fn in_parallel(files: &[PathBuf], limits: &Limits) -> Vec<Result<Document, IngestError>> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<Document, IngestError>>>> =
        Mutex::new((0..files.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = files.get(i) else { break };
                    let r = guarded(path, limits);
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(r);
                    }
                }
            });
        }
    });
    let slots = slots.into_inner().unwrap_or_else(|e| e.into_inner());
    files
        .iter()
        .zip(slots)
        .map(|(path, r)| {
            r.unwrap_or_else(|| {
                Err(IngestError::Broken {
                    path: path.clone(),
                    why: "not read".into(),
                })
            })
        })
        .collect()
}

/// One file, where a reader bug costs that file, not the run.
fn guarded(path: &Path, limits: &Limits) -> Result<Document, IngestError> {
    std::panic::catch_unwind(|| ingest_path(path, limits)).unwrap_or_else(|_| {
        Err(IngestError::Broken {
            path: path.to_path_buf(),
            why: "the reader panicked (a bug: please report it with the file)".into(),
        })
    })
}

/// What `pagemill ingest --format json` prints (`schemas/ingest.schema.json`): each document's
/// pages (without their text), headings, sections, warnings and metadata candidates, and the
/// inputs skipped with why.
pub fn listing(docs: &[Document], skipped: &[(PathBuf, String)]) -> serde_json::Value {
    #[derive(serde::Serialize)]
    struct PageJson<'a> {
        number: u32,
        chars: usize,
        quality: super::Quality,
        failure: &'a Option<String>,
        range: (usize, usize),
        furniture: &'a [String],
    }
    let doc = |d: &Document| {
        serde_json::json!({
            "id": d.id,
            "path": d.path,
            "kind": d.kind,
            "encoding": d.encoding,
            "chars": d.text.chars().count(),
            "pages": d.pages.iter().map(|p| PageJson {
                number: p.number, chars: p.chars, quality: p.quality, failure: &p.failure,
                range: p.range, furniture: &p.furniture,
            }).collect::<Vec<_>>(),
            "headings": d.headings,
            "sections": d.sections,
            "warnings": d.warnings,
            "metadata_candidates": d.hints,
        })
    };
    serde_json::json!({
        "schema_version": 1,
        "documents": docs.iter().map(doc).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|(p, why)| serde_json::json!({"path": p, "reason": why})).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_input_order_and_says_what_it_skipped() {
        let dir = std::env::temp_dir().join(format!("pagemill-read-all-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let names = ["c.txt", "a.txt", "b.md"];
        for (i, n) in names.iter().enumerate() {
            std::fs::write(dir.join(n), format!("Document {i}.\n\nSome text here.")).unwrap();
        }
        std::fs::write(dir.join("empty.pdf"), b"").unwrap();
        let mut inputs: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        inputs.push(dir.join("empty.pdf"));
        inputs.push(dir.join("missing.txt"));
        let read = read_all(&inputs, &Limits::default());
        let got: Vec<_> = read
            .docs
            .iter()
            .map(|d| d.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            got,
            ["a.txt", "b.md", "c.txt"],
            "sorted, deduplicated inputs"
        );
        assert_eq!(read.skipped.len(), 2, "{:?}", read.skipped);
        assert!(
            read.skipped
                .iter()
                .any(|(_, why)| why.contains("missing.txt"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
