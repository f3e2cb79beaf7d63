//! Plain text: decoding (UTF-8, UTF-16 with a BOM, else the legacy encoding `chardetng` finds
//! most likely — windows-1252, ISO-8859-2, Shift_JIS, … — reported) and paging (form
//! feeds are page breaks; otherwise pages of about `text_page_chars` at paragraph, then
//! sentence, boundaries).

use super::{Extracted, Limits};

/// Decodes text bytes, saying which encoding was used.
pub fn decode(bytes: &[u8]) -> (String, &'static str) {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return (String::from_utf8_lossy(rest).into_owned(), "utf-8 (bom)");
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        let units = rest
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]));
        return (
            char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect(),
            "utf-16le",
        );
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        let units = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]));
        return (
            char::decode_utf16(units)
                .map(|c| c.unwrap_or('\u{FFFD}'))
                .collect(),
            "utf-16be",
        );
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), "utf-8"),
        // Not UTF-8: the legacy encoding the bytes most likely are (reading them as Latin-1
        // made cp1252's curly quotes and dashes control characters).
        Err(_) => {
            let mut detector = chardetng::EncodingDetector::new();
            detector.feed(bytes, true);
            let encoding = detector.guess(None, true);
            let (text, _, _) = encoding.decode(bytes);
            (text.into_owned(), detected_name(encoding))
        }
    }
}

/// How a detected encoding is reported: its WHATWG name, lower-case, marked as detected.
fn detected_name(e: &'static encoding_rs::Encoding) -> &'static str {
    match e.name() {
        "windows-1252" => "windows-1252 (detected)",
        "windows-1250" => "windows-1250 (detected)",
        "windows-1251" => "windows-1251 (detected)",
        "ISO-8859-2" => "iso-8859-2 (detected)",
        "ISO-8859-15" => "iso-8859-15 (detected)",
        "KOI8-R" => "koi8-r (detected)",
        "Shift_JIS" => "shift_jis (detected)",
        "EUC-JP" => "euc-jp (detected)",
        "GBK" => "gbk (detected)",
        "Big5" => "big5 (detected)",
        "EUC-KR" => "euc-kr (detected)",
        _ => "legacy encoding (detected)",
    }
}

/// Normalizes line ends to `\n`.
pub fn normalize(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Plain text: pages by form feed, else by size.
pub(crate) fn extract(bytes: &[u8], limits: &Limits) -> Extracted {
    let (text, encoding) = decode(bytes);
    let text = normalize(&text);
    let pages = if text.contains('\u{c}') {
        text.split('\u{c}')
            .map(|p| p.trim_matches('\n').to_owned())
            .collect()
    } else {
        paginate(&text, limits.text_page_chars)
    };
    let mut ex = Extracted {
        pages: pages.into_iter().map(|p| (p, None)).collect(),
        encoding: Some(encoding.to_owned()),
        ..Extracted::default()
    };
    if encoding.ends_with("(detected)") {
        ex.warnings.push(format!(
            "not valid UTF-8: read as {}",
            encoding.trim_end_matches(" (detected)")
        ));
    }
    // Plain text has no markup: its structure is its numbering (`1. Scope`, `2.1 Terms`).
    for (page, (t, _)) in ex.pages.iter().enumerate() {
        ex.headings.extend(
            super::headings::numbered_headings(t)
                .into_iter()
                .map(|(o, title, l)| (page, o, title, l)),
        );
    }
    ex
}

/// Pages of at most about `size` characters, cut at a blank line, else a line end, else a
/// sentence end, else a space — never inside a word unless a "word" is longer than a page.
pub fn paginate(text: &str, size: usize) -> Vec<String> {
    paginate_ranges(text, size)
        .into_iter()
        .map(|(a, b)| text[a..b].to_owned())
        .collect()
}

/// The byte ranges of [`paginate`]'s pages in `text` (line breaks between pages excluded).
pub fn paginate_ranges(text: &str, size: usize) -> Vec<(usize, usize)> {
    let size = size.max(100);
    let mut pages = Vec::new();
    let mut pos = text.len() - text.trim_start_matches('\n').len();
    let end_all = text.trim_end().len();
    while pos < end_all {
        let rest = &text[pos..end_all];
        if rest.chars().count() <= size {
            pages.push((pos, end_all));
            break;
        }
        let limit = rest.char_indices().nth(size).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..limit];
        let floor = limit / 2;
        let cut = [
            window.rfind("\n\n").map(|i| i + 2),
            window.rfind('\n').map(|i| i + 1),
            window.rfind(". ").map(|i| i + 2),
            window.rfind(' ').map(|i| i + 1),
        ]
        .into_iter()
        .flatten()
        .find(|&i| i > floor)
        .unwrap_or(limit);
        let page_end = pos + rest[..cut].trim_end().len();
        pages.push((pos, page_end));
        pos += cut;
        pos += text[pos..].len() - text[pos..].trim_start_matches('\n').len();
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_read_and_named() {
        assert_eq!(decode("héllo".as_bytes()), ("héllo".into(), "utf-8"));
        assert_eq!(
            decode(&[0xEF, 0xBB, 0xBF, b'a']),
            ("a".into(), "utf-8 (bom)")
        );
        let utf16le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(decode(&utf16le), ("hé".into(), "utf-16le"));
        let utf16be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain("hé".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decode(&utf16be), ("hé".into(), "utf-16be"));
        assert_eq!(
            decode(&[b'c', b'a', b'f', 0xE9]),
            ("café".into(), "windows-1252 (detected)")
        );
        // cp1252's curly quotes and dashes, which Latin-1 reads as control characters.
        let cp1252 = b"\x93Hello,\x94 she said \x96 it\x92s 20\x80 a caf\xe9 cr\xe8me.";
        assert_eq!(
            decode(cp1252),
            (
                "\u{201c}Hello,\u{201d} she said \u{2013} it\u{2019}s 20\u{20ac} a café crème."
                    .into(),
                "windows-1252 (detected)"
            )
        );
        // Central European text is not read as Western.
        let (pl, enc) = decode(
            &encoding_rs::ISO_8859_2
                .encode("Zażółć gęślą jaźń. Łódź i Kraków, żółw.")
                .0,
        );
        assert_eq!(enc, "iso-8859-2 (detected)", "{pl}");
        assert!(pl.contains("Łódź"), "{pl}");
    }

    #[test]
    fn form_feeds_are_page_breaks() {
        let ex = extract(b"one\x0ctwo\r\nlines\x0cthree", &Limits::default());
        let pages: Vec<&str> = ex.pages.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(pages, ["one", "two\nlines", "three"]);
    }

    #[test]
    fn one_long_line_is_cut_at_sentences_and_nothing_is_lost() {
        let text = "This is a sentence about the union. ".repeat(200);
        let pages = paginate(&text, 1_000);
        assert!(pages.len() >= 7);
        for p in &pages {
            assert!(p.chars().count() <= 1_000);
            assert!(p.ends_with('.'), "{p:?}");
        }
        let joined: String = pages.join(" ");
        assert_eq!(
            joined.split_whitespace().count(),
            text.split_whitespace().count()
        );
    }
}
