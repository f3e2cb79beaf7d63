//! Type detection from content: magic bytes first, the extension only to tell Markdown from
//! plain text. Binary data is refused with what it looked like.

use std::path::Path;

use super::DocKind;

/// The type of a file, or why it is not one we read.
pub fn detect(path: &Path, bytes: &[u8]) -> Result<DocKind, String> {
    let head = &bytes[..bytes.len().min(1024)];
    if find(head, b"%PDF-").is_some() {
        return Ok(DocKind::Pdf);
    }
    if bytes.starts_with(b"PK\x03\x04") {
        if find(bytes, b"word/document.xml").is_some() {
            return Ok(DocKind::Docx);
        }
        return Err("a zip archive that is not a Word document".into());
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    // An empty file named as a binary format (a failed download) is no empty text document.
    if bytes.is_empty() && matches!(ext.as_str(), "pdf" | "docx") {
        return Err(format!("an empty file (0 bytes) named `.{ext}`"));
    }
    if !looks_textual(bytes) {
        let claimed = if ext.is_empty() {
            String::new()
        } else {
            format!(" despite its `.{ext}` name")
        };
        return Err(format!("binary data{claimed}"));
    }
    let lower: String = String::from_utf8_lossy(head)
        .trim_start_matches('\u{feff}')
        .trim_start()
        .chars()
        .take(200)
        .collect::<String>()
        .to_ascii_lowercase();
    if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || (lower.starts_with("<?xml") && lower.contains("<html"))
    {
        return Ok(DocKind::Html);
    }
    Ok(match ext.as_str() {
        "md" | "markdown" | "mdown" => DocKind::Markdown,
        "html" | "htm" | "xhtml" => DocKind::Html,
        _ => DocKind::Text,
    })
}

/// Text in some encoding we read: UTF-16 with a BOM, or bytes with few control characters.
fn looks_textual(bytes: &[u8]) -> bool {
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return true;
    }
    let sample = &bytes[..bytes.len().min(8192)];
    if sample.is_empty() {
        return true;
    }
    let bad = sample
        .iter()
        .filter(|&&b| b == 0 || (b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c | 0x1b)))
        .count();
    bad * 100 < sample.len()
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_decides_not_the_name() {
        let p = |n: &str| std::path::PathBuf::from(n);
        assert_eq!(detect(&p("a.txt"), b"%PDF-1.7\n..."), Ok(DocKind::Pdf));
        assert_eq!(
            detect(&p("a.pdf"), b"<!DOCTYPE html><p>x"),
            Ok(DocKind::Html)
        );
        assert_eq!(detect(&p("notes"), b"# Title\nbody"), Ok(DocKind::Text));
        assert_eq!(
            detect(&p("notes.md"), b"# Title\nbody"),
            Ok(DocKind::Markdown)
        );
        assert!(
            detect(&p("x.pdf"), &[0u8, 1, 2, 3, 0, 0, 7, 8].repeat(100))
                .unwrap_err()
                .contains("`.pdf`")
        );
        assert!(detect(&p("x.zip"), b"PK\x03\x04rest").is_err());
        assert_eq!(
            detect(&p("x.pdf"), b""),
            Err("an empty file (0 bytes) named `.pdf`".into())
        );
        assert_eq!(detect(&p("x.txt"), b""), Ok(DocKind::Text));
        assert_eq!(
            detect(&p("u16.txt"), &[0xFF, 0xFE, b'h', 0]),
            Ok(DocKind::Text)
        );
    }
}
