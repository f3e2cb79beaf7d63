//! Ingest: files → [`Document`]s of pages, with the structure (headings) each format offers.
//!
//! The type is detected from content (magic bytes), not only the extension; an unknown type is
//! reported and skipped, never guessed. A document that fails keeps every page that worked and
//! records why the others did not. Nothing here panics on a file's bytes.

pub mod detect;
pub mod docx;
pub mod hints;
pub mod html;
pub mod markdown;
pub mod pdf;
pub mod text;

mod document;
pub mod headings;
mod read;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::sections;
pub use document::{DocKind, Document, Heading, Page, Quality};
pub use hints::Hints;
pub use read::{Read, listing, read_all};

/// Why a file could not be ingested at all.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Reading failed.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a type we read.
    #[error("`{path}`: unknown type ({why}); skipped")]
    Unknown {
        /// The file.
        path: PathBuf,
        /// What it looked like.
        why: String,
    },
    /// Over a configured limit.
    #[error("`{path}`: {what}")]
    Limit {
        /// The file.
        path: PathBuf,
        /// Which limit.
        what: String,
    },
    /// The format's parser refused the whole file.
    #[error("`{path}`: {why}")]
    Broken {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Bounds on what one file may cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// Largest file read, in bytes.
    pub max_file_bytes: u64,
    /// Most pages kept per document.
    pub max_pages: u32,
    /// Largest decompressed size of a container (DOCX), in bytes.
    pub max_decompressed_bytes: u64,
    /// Deepest element nesting walked (HTML, DOCX XML).
    pub max_depth: usize,
    /// Characters per page when plain text has no form feeds.
    pub text_page_chars: usize,
    /// Seconds a PDF may take, plus `pdf_secs_per_page` for each page.
    pub pdf_base_secs: f64,
    /// See `pdf_base_secs`.
    pub pdf_secs_per_page: f64,
    /// Tokens a section may hold before it is split.
    pub section_tokens: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 256 << 20,
            max_pages: 10_000,
            max_decompressed_bytes: 512 << 20,
            max_depth: 256,
            text_page_chars: 3_000,
            pdf_base_secs: 10.0,
            pdf_secs_per_page: 2.0,
            section_tokens: 2_000,
        }
    }
}

/// Raw pages and headings from one format's reader, before assembly.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    /// (text, failure) per page.
    pub pages: Vec<(String, Option<String>)>,
    /// (page index, byte offset in that page's text, title, level).
    pub headings: Vec<(usize, usize, String, u8)>,
    pub encoding: Option<String>,
    pub warnings: Vec<String>,
    /// Set by readers that already removed headers/footers or should not have them detected.
    pub furniture: Vec<Vec<String>>,
    /// Metadata candidates from the file's form.
    pub hints: Hints,
}

/// Places headings found at offsets of a whole text onto the pages cut from it (`ranges`):
/// `(page index, offset in page, title, level)`. A heading in a gap between pages goes to the
/// next page.
pub(crate) fn place_headings(
    ranges: &[(usize, usize)],
    headings: Vec<(usize, String, u8)>,
) -> Vec<(usize, usize, String, u8)> {
    headings
        .into_iter()
        .map(|(start, title, level)| {
            let page = ranges
                .iter()
                .position(|&(_, e)| start < e)
                .unwrap_or(ranges.len().saturating_sub(1));
            let off = start.saturating_sub(ranges.get(page).map_or(0, |r| r.0));
            (page, off, title, level)
        })
        .collect()
}

/// Expands inputs: files as they are, directories recursively, globs; sorted, deduplicated.
pub fn expand_inputs(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<String>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for input in inputs {
        let s = input.to_string_lossy();
        if s.contains(['*', '?', '[']) {
            match glob::glob(&s) {
                Ok(paths) => files.extend(paths.flatten().filter(|p| p.is_file())),
                Err(e) => problems.push(format!("bad glob `{s}`: {e}")),
            }
        } else {
            match std::fs::metadata(input) {
                Ok(m) if m.is_dir() => walk(input, &mut files, &mut problems, 0),
                Ok(m) if m.is_file() => files.push(input.clone()),
                Ok(_) => problems.push(not_regular(input)),
                Err(e) => problems.push(unreadable(input, &e)),
            }
        }
    }
    files.sort();
    files.dedup();
    (files, problems)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, problems: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        problems.push(format!("`{}`: directories nested too deep", dir.display()));
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("`{}`: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, problems, depth + 1),
            Ok(t) if t.is_file() => files.push(path),
            // A link to a file is read; a link to a directory is not followed (it could loop).
            Ok(t) if t.is_symlink() => match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => files.push(path),
                Ok(m) if m.is_dir() => problems.push(format!(
                    "`{}`: a symbolic link to a directory, not followed (name the directory itself to read it)",
                    path.display()
                )),
                Ok(_) => problems.push(not_regular(&path)),
                Err(e) => problems.push(unreadable(&path, &e)),
            },
            Ok(_) => problems.push(not_regular(&path)),
            Err(e) => problems.push(unreadable(&path, &e)),
        }
    }
}

/// Why a path that exists is not read: it is a FIFO, socket or device.
fn not_regular(path: &Path) -> String {
    format!(
        "`{}`: not a regular file (a FIFO, socket or device), not read",
        path.display()
    )
}

/// Why a path could not be looked at, telling a broken link from a missing file.
fn unreadable(path: &Path, e: &std::io::Error) -> String {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match e.kind() {
        std::io::ErrorKind::NotFound if link => format!(
            "`{}`: a broken symbolic link (its target does not exist)",
            path.display()
        ),
        std::io::ErrorKind::NotFound => {
            format!("`{}`: no such file or directory", path.display())
        }
        _ => format!("`{}`: {e}", path.display()),
    }
}

/// Ingests one file.
pub fn ingest_path(path: &Path, limits: &Limits) -> Result<Document, IngestError> {
    let meta = std::fs::metadata(path).map_err(|source| IngestError::Read {
        path: path.into(),
        source,
    })?;
    if meta.len() > limits.max_file_bytes {
        return Err(IngestError::Limit {
            path: path.into(),
            what: format!(
                "{} bytes is over the {}-byte file limit",
                meta.len(),
                limits.max_file_bytes
            ),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| IngestError::Read {
        path: path.into(),
        source,
    })?;
    ingest_bytes(path, &bytes, limits)
}

/// Ingests a file's bytes (`path` names it and hints at its type).
pub fn ingest_bytes(path: &Path, bytes: &[u8], limits: &Limits) -> Result<Document, IngestError> {
    let kind = detect::detect(path, bytes).map_err(|why| IngestError::Unknown {
        path: path.into(),
        why,
    })?;
    let broken = |why: String| IngestError::Broken {
        path: path.into(),
        why,
    };
    let mut ex = match kind {
        DocKind::Pdf => pdf::extract(bytes, limits).map_err(broken)?,
        DocKind::Html => html::extract(bytes, limits),
        DocKind::Markdown => markdown::extract(bytes, limits),
        DocKind::Text => text::extract(bytes, limits),
        DocKind::Docx => docx::extract(bytes, limits).map_err(broken)?,
    };
    if ex.pages.len() > limits.max_pages as usize {
        ex.warnings.push(format!(
            "{} pages is over the {}-page limit: the rest were not read",
            ex.pages.len(),
            limits.max_pages
        ));
        ex.pages.truncate(limits.max_pages as usize);
    }
    Ok(assemble(path, bytes, kind, ex, limits))
}

/// Joins pages into one text, places headings, rates pages, and cuts sections.
fn assemble(path: &Path, bytes: &[u8], kind: DocKind, ex: Extracted, limits: &Limits) -> Document {
    const SEP: &str = "\n\n";
    let mut text = String::new();
    let mut pages = Vec::with_capacity(ex.pages.len());
    let mut starts = Vec::with_capacity(ex.pages.len());
    for (i, (page_text, failure)) in ex.pages.into_iter().enumerate() {
        if i > 0 {
            text.push_str(SEP);
        }
        let start = text.len();
        starts.push(start);
        text.push_str(&page_text);
        let chars = page_text.chars().count();
        let quality = if failure.is_some() {
            Quality::Failed
        } else {
            rate(&page_text)
        };
        pages.push(Page {
            number: i as u32 + 1,
            range: (start, text.len()),
            chars,
            quality,
            failure,
            furniture: ex.furniture.get(i).cloned().unwrap_or_default(),
            text: page_text,
        });
    }
    let headings: Vec<Heading> = ex
        .headings
        .into_iter()
        .filter_map(|(page, off, title, level)| {
            Some(Heading {
                title,
                level,
                offset: starts.get(page)? + off,
            })
        })
        .collect();
    let mut warnings = ex.warnings;
    let failed = pages
        .iter()
        .filter(|p| p.quality == Quality::Failed)
        .count();
    if failed > 0 {
        warnings.push(format!("{failed} page(s) failed; the others were kept"));
    }
    let sections = sections::cut(&text, &pages, &headings, limits.section_tokens);
    let mut hints = ex.hints;
    // Titles from the form: the top heading of the first page (marked-up formats: a PDF's
    // headings are numbered sections), else, with no title so far, a short first line.
    let first_page_end = pages.first().map_or(0, |p| p.range.1);
    let top = headings
        .iter()
        .filter(|h| kind != DocKind::Pdf && h.offset < first_page_end)
        .min_by_key(|h| (h.level, h.offset))
        .map(|h| h.title.clone());
    if let Some(t) = top {
        hints.add_title(&t);
    }
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .filter(|l| l.split_whitespace().count() <= 16 && !l.ends_with(['.', ',', ';', ':']));
    if let Some(t) = first_line.filter(|_| hints.titles.is_empty()) {
        hints.add_title(t);
    }
    Document {
        id: blake3::hash(bytes).to_hex().to_string(),
        path: path.to_path_buf(),
        kind,
        encoding: ex.encoding,
        text,
        pages,
        headings,
        sections,
        warnings,
        hints,
    }
}

/// Rates a page: little text needs OCR; text that is mostly not letters is garbled.
pub fn rate(text: &str) -> Quality {
    let mut letters = 0usize;
    let mut visible = 0usize;
    let mut odd = 0usize;
    for c in text.chars() {
        if c.is_whitespace() {
            continue;
        }
        visible += 1;
        if c.is_alphabetic() {
            letters += 1;
        }
        if c == '\u{FFFD}'
            || (c.is_control() && c != '\u{c}')
            || ('\u{E000}'..='\u{F8FF}').contains(&c)
        {
            odd += 1;
        }
    }
    if visible < 40 {
        Quality::NeedsOcr
    } else if odd * 10 > visible || letters * 10 < visible * 3 {
        Quality::Garbled
    } else {
        Quality::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_quality_ratings() {
        assert_eq!(rate(""), Quality::NeedsOcr);
        assert_eq!(rate("Figure 3"), Quality::NeedsOcr);
        assert_eq!(
            rate(&"The quick brown fox jumps over the lazy dog. ".repeat(5)),
            Quality::Ok
        );
        assert_eq!(
            rate(&"\u{FFFD}\u{FFFD}\u{E012} ".repeat(30)),
            Quality::Garbled
        );
        assert_eq!(
            rate(&"1234 5678 9012 #### $$$$ ".repeat(10)),
            Quality::Garbled
        );
    }
}
