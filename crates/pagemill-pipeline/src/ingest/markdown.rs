//! Markdown: the text as written, with its headings (ATX `## Title` and setext `Title` over
//! `===`, read by pulldown-cmark) as structure; `#` lines inside code are not headings.

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

/// `(byte offset of the heading, title, level)` of every heading, as CommonMark reads them
/// (pulldown-cmark): ATX and setext headings, not `#` lines in code blocks, HTML blocks or
/// lines without the space; a title is the heading's text with its inline markup removed.
pub fn headings(text: &str) -> Vec<(usize, String, u8)> {
    use pulldown_cmark::{Event, Parser, Tag, TagEnd};
    let mut out = Vec::new();
    let mut open: Option<(usize, u8, String)> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                open = Some((range.start, level as u8, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((offset, level, title)) = open.take() {
                    let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !title.is_empty() {
                        out.push((offset, title, level));
                    }
                }
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some((_, _, title)) = open.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, _, title)) = open.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }
    out
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

    #[test]
    fn commonmark_rules_markup_and_indented_code() {
        let md = "# The *quick* `fox`\n\n    # indented code, not a heading\n\n<div>\n# in html\n</div>\n\n### Last ###\n";
        let h: Vec<(String, u8)> = headings(md).into_iter().map(|(_, t, l)| (t, l)).collect();
        assert_eq!(h, [("The quick fox".into(), 1), ("Last".into(), 3)]);
    }
}
