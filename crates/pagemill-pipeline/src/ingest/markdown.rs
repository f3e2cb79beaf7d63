//! Markdown: the text as written, with ATX (`## Title`) and setext (`Title` over `===`)
//! headings as structure; `#` lines inside fenced code are not headings.

use super::{Extracted, Limits};

pub(crate) fn extract(bytes: &[u8], limits: &Limits) -> Extracted {
    let mut ex = super::text::extract(bytes, limits);
    ex.headings.clear();
    for (page, (text, _)) in ex.pages.iter().enumerate() {
        ex.headings.extend(
            headings(text)
                .into_iter()
                .map(|(off, t, l)| (page, off, t, l)),
        );
    }
    ex
}

/// `(byte offset of the line, title, level)` of every heading.
pub fn headings(text: &str) -> Vec<(usize, String, u8)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    let mut offset = 0;
    let mut prev: Option<(usize, &str)> = None;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end_matches('\n');
        let t = l.trim_start();
        if let Some(f) = fence {
            if t.starts_with(f) {
                fence = None;
            }
        } else if t.starts_with("```") || t.starts_with("~~~") {
            fence = Some(&t[..3]);
        } else if let Some(level) = atx_level(t) {
            let title = t[level..].trim().trim_end_matches('#').trim();
            if !title.is_empty() {
                out.push((offset, title.to_owned(), level as u8));
            }
        } else if let Some((poff, ptext)) =
            prev.filter(|(_, p)| !p.trim().is_empty() && l.len() >= 2)
        {
            if l.chars().all(|c| c == '=') {
                out.push((poff, ptext.trim().to_owned(), 1));
            } else if l.chars().all(|c| c == '-') && l.len() >= 3 {
                out.push((poff, ptext.trim().to_owned(), 2));
            }
        }
        prev = Some((offset, l));
        offset += line.len();
    }
    out
}

fn atx_level(t: &str) -> Option<usize> {
    let n = t.bytes().take_while(|&b| b == b'#').count();
    ((1..=6).contains(&n) && t[n..].starts_with(' ')).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atx_setext_and_fences() {
        let md = "# Top\n\ntext\n\n## Sub ##\n```\n# not a heading\n```\nUnder\n=====\nAlso\n---\n#nospace\n";
        let h: Vec<(String, u8)> = headings(md).into_iter().map(|(_, t, l)| (t, l)).collect();
        assert_eq!(
            h,
            [
                ("Top".into(), 1),
                ("Sub".into(), 2),
                ("Under".into(), 1),
                ("Also".into(), 2)
            ]
        );
        assert_eq!(&md[headings(md)[1].0..][..6], "## Sub");
    }
}
