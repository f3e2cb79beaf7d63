//! Headings a text shows without markup: numbered lines such as `2.1 Title` (PDF text, plain
//! text). Formats that mark headings (HTML, Markdown, DOCX) find their own.

/// Numbered headings: a short line `1 Title`, `2.1. Title`, `10.3.2 Title` (the title starts
/// with a capital, has at most 12 words, does not end like a sentence, and is no
/// table-of-contents line with a trailing page number).
pub fn numbered_headings(text: &str) -> Vec<(usize, String, u8)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((title, level)) = numbered(line.trim_end()) {
            out.push((offset, title, level));
        }
        offset += line.len();
    }
    out
}

fn numbered(line: &str) -> Option<(String, u8)> {
    let t = line.trim_start();
    let num_len = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, rest) = t.split_at(num_len);
    let parts: Vec<&str> = num.trim_end_matches('.').split('.').collect();
    if parts.is_empty() || parts.len() > 5 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
        return None;
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let title = rest.trim();
    let first = title.chars().next()?;
    let words = title.split_whitespace().count();
    let toc = title.contains("....") || title.contains(". . .");
    let ends_like_sentence = title.ends_with(['.', ',', ';', ':']);
    let letters = title.chars().filter(|c| c.is_alphabetic()).count();
    if !(first.is_uppercase() || first == '"' || first == '“')
        || words > 12
        || toc
        || ends_like_sentence
        || letters < 3
    {
        return None;
    }
    Some((title.to_owned(), parts.len() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_headings_and_what_is_not_one() {
        let text = "1. Introduction\nSome text.\n2.1 Computational details\n3 The class \"zoo\" and its methods\n\
                    1. The function computes the value of the thing.\n2000 Q1\n4 Results ........ 12\n12.3.4.5 Deep Heading\n";
        let h: Vec<(String, u8)> = numbered_headings(text)
            .into_iter()
            .map(|(_, t, l)| (t, l))
            .collect();
        assert_eq!(
            h,
            [
                ("Introduction".into(), 1),
                ("Computational details".into(), 2),
                ("The class \"zoo\" and its methods".into(), 1),
                ("Deep Heading".into(), 4)
            ]
        );
    }
}
