//! What ingest makes: a [`Document`] of [`Page`]s, with the [`Heading`]s its format marked.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Hints;
use crate::sections::Section;

/// What a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    /// PDF.
    Pdf,
    /// HTML.
    Html,
    /// Markdown.
    Markdown,
    /// Plain text.
    Text,
    /// Word (OOXML).
    Docx,
}

/// How readable a page's text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// Enough ordinary text.
    Ok,
    /// Little or no text: likely a scan that needs OCR, or a figure.
    NeedsOcr,
    /// Text that is mostly not words (bad font encodings): needs OCR to be useful.
    Garbled,
    /// Extraction failed; see the page's `failure`.
    Failed,
}

/// One page of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based page number.
    pub number: u32,
    /// The page's text (headers and footers removed, hyphenation at line ends joined).
    pub text: String,
    /// Byte range of this page in [`Document::text`].
    pub range: (usize, usize),
    /// Characters on the page.
    pub chars: usize,
    /// Readability.
    pub quality: Quality,
    /// Why extraction failed, if it did.
    pub failure: Option<String>,
    /// Header and footer lines found on most pages and removed from `text`.
    pub furniture: Vec<String>,
}

/// A heading the format marked (HTML `h1`–`h6`, Markdown `#`, DOCX heading styles) or the text
/// shows (numbered headings such as `2.1 Title` in PDFs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heading {
    /// Title text.
    pub title: String,
    /// 1 for top level.
    pub level: u8,
    /// Byte offset in [`Document::text`] where the heading's line starts.
    pub offset: usize,
}

/// A document, ready for the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// Content hash of the file's bytes (BLAKE3, hex): the same file has the same id anywhere.
    pub id: String,
    /// Where it came from.
    pub path: PathBuf,
    /// Detected type.
    pub kind: DocKind,
    /// Text encoding found (text formats), e.g. `utf-8`, `utf-16le`, `windows-1252 (detected)`,
    /// `iso-8859-2 (declared)`.
    pub encoding: Option<String>,
    /// All page texts, joined by a blank line; every range points into this.
    pub text: String,
    /// Pages, in order.
    pub pages: Vec<Page>,
    /// Headings, in order.
    pub headings: Vec<Heading>,
    /// Sections: a partition of `text` (every character in exactly one).
    pub sections: Vec<Section>,
    /// Things the reader should know (limits hit, encodings guessed, pages failed).
    pub warnings: Vec<String>,
    /// Metadata candidates from the file's form (PDF properties, first-page layout, HTML
    /// `<title>`), for the metadata task to choose among.
    #[serde(default)]
    pub hints: Hints,
}

impl Document {
    /// Writes each page's text to `dir/<name>-<id>/page-0001.txt`…, to read what a model will
    /// see; returns the directory.
    pub fn dump_pages(&self, dir: &std::path::Path) -> std::io::Result<PathBuf> {
        let named = |p: &std::path::Path, e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("`{}`: {e}", p.display()))
        };
        let stem = self
            .path
            .file_stem()
            .map_or_else(|| "document".into(), |s| s.to_string_lossy().into_owned());
        let sub = dir.join(format!("{stem}-{}", &self.id[..self.id.len().min(12)]));
        std::fs::create_dir_all(&sub).map_err(|e| named(&sub, e))?;
        for p in &self.pages {
            let f = sub.join(format!("page-{:04}.txt", p.number));
            std::fs::write(&f, &p.text).map_err(|e| named(&f, e))?;
        }
        Ok(sub)
    }
}
