//! DOCX (Office Open XML): paragraphs, headings (`Heading1`…, `Title`), tables as ` | `-joined
//! rows, explicit page breaks. Read through `zip` and `quick-xml` within limits on decompressed
//! size (zip bombs), on the declared sizes (which may lie: reads are capped too) and on nesting.

use std::io::Read;

use quick_xml::events::Event;

use super::{Extracted, Limits};

pub(crate) fn extract(bytes: &[u8], limits: &Limits) -> Result<Extracted, String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable DOCX: {e}"))?;
    let declared: u64 = (0..zip.len())
        .filter_map(|i| zip.by_index_raw(i).ok().map(|f| f.size()))
        .sum();
    if declared > limits.max_decompressed_bytes {
        return Err(format!(
            "decompresses to {declared} bytes, over the {}-byte limit (a zip bomb?)",
            limits.max_decompressed_bytes
        ));
    }
    let mut xml = Vec::new();
    {
        let file = zip
            .by_name("word/document.xml")
            .map_err(|e| format!("not a DOCX: word/document.xml: {e}"))?;
        // Declared sizes can lie: cap what is actually inflated as well.
        file.take(limits.max_decompressed_bytes + 1)
            .read_to_end(&mut xml)
            .map_err(|e| format!("corrupt DOCX: {e}"))?;
    }
    if xml.len() as u64 > limits.max_decompressed_bytes {
        return Err(format!(
            "document.xml inflates past the {}-byte limit (a zip bomb?)",
            limits.max_decompressed_bytes
        ));
    }
    let (text, headings, page_breaks, too_deep) = parse(&xml, limits.max_depth)?;
    let mut ex = Extracted {
        encoding: Some("utf-8".into()),
        ..Extracted::default()
    };
    if too_deep {
        ex.warnings.push(format!(
            "XML nested deeper than {} was left out",
            limits.max_depth
        ));
    }
    // Explicit page breaks make pages; without them, pages of the configured size.
    let ranges: Vec<(usize, usize)> = if page_breaks.is_empty() {
        super::text::paginate_ranges(&text, limits.text_page_chars)
    } else {
        let mut r = Vec::new();
        let mut start = 0;
        for &b in page_breaks.iter().chain(std::iter::once(&text.len())) {
            if b > start || r.is_empty() {
                r.push((start, b));
            }
            start = b;
        }
        r
    };
    ex.headings = super::place_headings(&ranges, headings);
    ex.pages = ranges
        .iter()
        .map(|&(a, b)| (text[a..b].trim_matches('\n').to_owned(), None))
        .collect();
    // Headings were placed against untrimmed pages; trimming only removes leading line ends,
    // so shift offsets accordingly.
    for h in &mut ex.headings {
        let (a, b) = ranges[h.0.min(ranges.len() - 1)];
        let lead = text[a..b].len() - text[a..b].trim_start_matches('\n').len();
        h.1 = h.1.saturating_sub(lead);
    }
    Ok(ex)
}

type Parsed = (String, Vec<(usize, String, u8)>, Vec<usize>, bool);

fn parse(xml: &[u8], max_depth: usize) -> Result<Parsed, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().trim_text(false);
    let mut out = String::new();
    let mut headings = Vec::new();
    let mut breaks = Vec::new();
    let mut depth = 0usize;
    let mut too_deep = false;
    let mut in_text = false;
    let mut para_start = 0;
    let mut para_level: Option<u8> = None;
    let mut cell_in_row = 0;
    let mut buf = Vec::new();
    loop {
        let ev = reader
            .read_event_into(&mut buf)
            .map_err(|e| format!("corrupt DOCX XML at byte {}: {e}", reader.buffer_position()))?;
        match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > max_depth {
                    too_deep = true;
                    reader
                        .read_to_end_into(e.name(), &mut Vec::new())
                        .map_err(|e| format!("corrupt DOCX XML: {e}"))?;
                    depth -= 1;
                    buf.clear();
                    continue;
                }
                match e.local_name().as_ref() {
                    b"p" => {
                        para_start = out.len();
                        para_level = None;
                    }
                    b"t" => in_text = true,
                    b"tr" => cell_in_row = 0,
                    b"tc" => {
                        if cell_in_row > 0 {
                            out.push_str(" | ");
                        }
                        cell_in_row += 1;
                    }
                    _ => {}
                }
            }
            Event::Empty(e) => match e.local_name().as_ref() {
                b"pStyle" => para_level = style_level(&e),
                b"tab" => out.push('\t'),
                b"br" => {
                    let page = e.attributes().flatten().any(|a| {
                        a.key.local_name().as_ref() == b"type" && a.value.as_ref() == b"page"
                    });
                    if page {
                        breaks.push(out.len());
                    } else {
                        out.push('\n');
                    }
                }
                _ => {}
            },
            Event::Text(t) if in_text => {
                let s = t.decode().map_err(|e| format!("corrupt DOCX text: {e}"))?;
                out.push_str(
                    &quick_xml::escape::unescape(&s).unwrap_or(std::borrow::Cow::Borrowed(&s)),
                );
            }
            Event::GeneralRef(r) if in_text => {
                let name = String::from_utf8_lossy(r.as_ref()).into_owned();
                let ch = match name.as_str() {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = ch {
                    out.push(c);
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                match e.local_name().as_ref() {
                    b"t" => in_text = false,
                    b"p" => {
                        if let Some(level) = para_level {
                            let title = out[para_start..].trim().to_owned();
                            if !title.is_empty() {
                                headings.push((para_start, title, level));
                            }
                        }
                        out.push('\n');
                    }
                    b"tr" => out.push('\n'),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    Ok((out, headings, breaks, too_deep))
}

fn style_level(e: &quick_xml::events::BytesStart<'_>) -> Option<u8> {
    let val = e
        .attributes()
        .flatten()
        .find(|a| a.key.local_name().as_ref() == b"val")?;
    let v = String::from_utf8_lossy(&val.value).to_ascii_lowercase();
    if v == "title" {
        return Some(1);
    }
    v.strip_prefix("heading")
        .and_then(|n| n.trim().parse::<u8>().ok())
        .filter(|l| (1..=9).contains(l))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A minimal DOCX with these body XML paragraphs.
    pub(crate) fn docx(body: &str) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("[Content_Types].xml", opts).unwrap();
        w.write_all(b"<Types/>").unwrap();
        w.start_file("word/document.xml", opts).unwrap();
        write!(w, r#"<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn paragraphs_headings_tables_and_page_breaks() {
        let bytes = docx(
            r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Terms &amp; Conditions</w:t></w:r></w:p>
               <w:p><w:r><w:t xml:space="preserve">The party </w:t></w:r><w:r><w:t>agrees.</w:t></w:r></w:p>
               <w:tbl><w:tr><w:tc><w:p><w:r><w:t>Fee</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>$10</w:t></w:r></w:p></w:tc></w:tr></w:tbl>
               <w:p><w:r><w:br w:type="page"/></w:r></w:p>
               <w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Annex</w:t></w:r></w:p>"#,
        );
        let ex = extract(&bytes, &Limits::default()).unwrap();
        assert_eq!(ex.pages.len(), 2);
        assert!(
            ex.pages[0]
                .0
                .contains("Terms & Conditions\nThe party agrees."),
            "{:?}",
            ex.pages[0].0
        );
        assert!(
            ex.pages[0].0.contains("Fee\n | $10")
                || ex.pages[0].0.contains("Fee | $10")
                || ex.pages[0].0.contains("Fee\n\n | $10"),
            "{:?}",
            ex.pages[0].0
        );
        let h: Vec<(usize, String, u8)> = ex
            .headings
            .iter()
            .map(|h| (h.0, h.2.clone(), h.3))
            .collect();
        assert_eq!(
            h,
            [(0, "Terms & Conditions".into(), 1), (1, "Annex".into(), 2)]
        );
        assert_eq!(&ex.pages[1].0[ex.headings[1].1..][..5], "Annex");
    }

    #[test]
    fn a_zip_bomb_is_refused_by_its_declared_size() {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        w.start_file("word/document.xml", opts).unwrap();
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..64 {
            w.write_all(&zeros).unwrap();
        }
        let bytes = w.finish().unwrap().into_inner();
        assert!(bytes.len() < 1 << 20, "compressed small: {}", bytes.len());
        let limits = Limits {
            max_decompressed_bytes: 16 << 20,
            ..Limits::default()
        };
        let err = extract(&bytes, &limits).unwrap_err();
        assert!(err.contains("zip bomb"), "{err}");
    }
}
