//! Where a run's results go on disk: one JSON file per document, named the same on every run
//! of the same inputs, each written whole or not at all.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The files documents' results are written to, in their order (`(path, id)` of each): each
/// its name and the start of its id; when two inputs would share one (`a/x.txt` and
/// `b/x.txt`, same bytes), each also gets the start of its path's hash, so every input has
/// its own file, named the same on every run of the same inputs.
pub fn result_files<'a>(
    out: &Path,
    docs: impl Iterator<Item = (&'a str, &'a str)> + Clone,
) -> Vec<PathBuf> {
    let plain: Vec<PathBuf> = docs
        .clone()
        .map(|(p, id)| result_file(out, p, id))
        .collect();
    let mut uses: HashMap<&PathBuf, usize> = HashMap::new();
    for f in &plain {
        *uses.entry(f).or_default() += 1;
    }
    plain
        .iter()
        .zip(docs)
        .map(|(file, (path, _))| {
            if uses[file] < 2 {
                return file.clone();
            }
            let tag = &crate::run::plan::hash(path)[..6];
            let name = file
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let stem = name.strip_suffix(".json").unwrap_or(&name);
            file.with_file_name(format!("{stem}.{tag}.json"))
        })
        .collect()
}

/// The file a document's result is written to: its name (characters other than letters,
/// digits, `-`, `_` and `.` replaced) and the start of its id.
pub fn result_file(out: &Path, path: &str, id: &str) -> PathBuf {
    let stem = Path::new(path)
        .file_name()
        .map_or_else(|| "document".into(), |s| s.to_string_lossy().into_owned());
    let safe: String = stem
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.join(format!("{safe}.{}.json", &id[..id.len().min(8)]))
}

/// Writes a run's results into `dir`: one JSON file per document ([`result_files`]) and
/// `run-summary.json`. Returns the document files, in the documents' order.
pub fn write_results(
    dir: &Path,
    documents: &[super::DocumentResult],
    summary: &super::RunSummary,
) -> std::io::Result<Vec<PathBuf>> {
    let files = result_files(
        dir,
        documents.iter().map(|d| (d.path.as_str(), d.id.as_str())),
    );
    for (d, file) in documents.iter().zip(&files) {
        write_atomic(file, &serde_json::to_vec_pretty(d)?)?;
    }
    write_atomic(
        &dir.join(SUMMARY_FILE),
        &serde_json::to_vec_pretty(summary)?,
    )?;
    Ok(files)
}

/// The run summary's file name in a results directory.
pub const SUMMARY_FILE: &str = "run-summary.json";

/// Writes through a temporary file and a rename, so a killed run never leaves half a file.
/// The temporary file is created new (`O_EXCL`: never through a link or a file someone
/// planted), named for this process, and removed if the write fails. Errors name the file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let named = |what: &str, p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} `{}`: {e}", p.display()))
    };
    // Created here or not at all: a name that exists already is someone else's, left alone.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| named("creating", &tmp, e))?;
    if let Err(e) = file.write_all(bytes) {
        drop(file);
        let _ = std::fs::remove_file(&tmp);
        return Err(named("writing", &tmp, e));
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        named("writing", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_gets_its_own_file_named_the_same_each_run() {
        let out = Path::new("out");
        let docs = [
            ("a/x.txt", "0123456789"),
            ("b/x.txt", "0123456789"),
            ("c/y z.txt", "ab"),
        ];
        let files = result_files(out, docs.iter().copied());
        assert_eq!(files[2], out.join("y_z.txt.ab.json"));
        assert_ne!(
            files[0], files[1],
            "same name, same bytes: told apart by path"
        );
        assert!(
            files[0]
                .to_string_lossy()
                .starts_with("out/x.txt.01234567.")
        );
        assert_eq!(files, result_files(out, docs.iter().copied()), "stable");
    }
}
