//! Sections: the document's text cut at its headings, then long sections split to a token
//! budget at paragraph (else sentence, else word) boundaries. The sections partition the text:
//! every byte belongs to exactly one, so nothing is summarized twice or never.

use pagemill_client::Tokenizer;
use serde::{Deserialize, Serialize};

use crate::ingest::{Heading, Page};

/// One section of a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// Number within the document, from 1.
    pub id: u32,
    /// The heading's title (the document's first words when text comes before any heading).
    pub title: String,
    /// Heading level (0 for text before the first heading).
    pub level: u8,
    /// Byte range in the document's text.
    pub range: (usize, usize),
    /// First and last page it touches.
    pub pages: (u32, u32),
    /// `(k, n)` when a long section was split into `n` parts and this is part `k`.
    pub part: Option<(u32, u32)>,
}

/// Most characters of a section title: a heading longer than this is cut (with `…`).
pub const TITLE_CHARS: usize = 120;

/// Most characters of the title of text before any heading (its first words): text with no
/// spaces (Chinese, Japanese) has no "first eight words", so characters bound it too.
pub const LEAD_CHARS: usize = 80;

/// `s` in at most `max` characters: cut at the last space in its final quarter if there is
/// one (else at a character), with `…` after.
pub fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let at_space = cut
        .rfind(char::is_whitespace)
        .filter(|&i| cut[..i].chars().count() >= max * 3 / 4);
    let kept = at_space.map_or(cut.as_str(), |i| &cut[..i]).trim_end();
    format!("{kept}…")
}

/// Whether `c` ends a sentence by itself, with no space after it (CJK full stops and marks).
fn ends_sentence_alone(c: char) -> bool {
    matches!(c, '。' | '！' | '？' | '｡' | '．' | '；')
}

/// Ranges that tile `s`, one sentence each: a sentence ends after `.`, `!` or `?` followed by
/// white space (which stays with it), or after `。！？｡．；`, which need none.
pub fn sentences(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let after = i + c.len_utf8();
        let ends = ends_sentence_alone(c)
            || (matches!(c, '.' | '!' | '?')
                && chars.peek().is_some_and(|(_, n)| n.is_whitespace()));
        if ends {
            let mut end = after;
            while let Some(&(j, n)) = chars.peek() {
                if !n.is_whitespace() {
                    break;
                }
                end = j + n.len_utf8();
                chars.next();
            }
            out.push((start, end));
            start = end;
        }
    }
    if start < s.len() || out.is_empty() {
        out.push((start, s.len()));
    }
    out
}

/// Cuts `text` into sections at `headings`, splitting any longer than `budget` tokens.
pub fn cut(text: &str, pages: &[Page], headings: &[Heading], budget: u64) -> Vec<Section> {
    let tokenizer = Tokenizer::o200k();
    let mut bounds: Vec<(usize, String, u8)> = headings
        .iter()
        .filter(|h| h.offset < text.len() && text.is_char_boundary(h.offset))
        .map(|h| (h.offset, h.title.clone(), h.level))
        .collect();
    bounds.sort_by_key(|b| b.0);
    bounds.dedup_by_key(|b| b.0);
    for b in &mut bounds {
        b.1 = bounded(&b.1, TITLE_CHARS);
    }
    if bounds.first().is_none_or(|b| b.0 > 0) {
        let lead: String = text
            .split_whitespace()
            .take(8)
            .collect::<Vec<_>>()
            .join(" ");
        bounds.insert(0, (0, bounded(&lead, LEAD_CHARS), 0));
    }
    let mut out = Vec::new();
    for (i, (start, title, level)) in bounds.iter().enumerate() {
        let end = bounds.get(i + 1).map_or(text.len(), |b| b.0);
        if end <= *start {
            continue;
        }
        let parts = split(&tokenizer, text, *start, end, budget.max(50));
        let n = parts.len() as u32;
        for (k, (a, b)) in parts.into_iter().enumerate() {
            out.push(Section {
                id: out.len() as u32 + 1,
                title: title.clone(),
                level: *level,
                range: (a, b),
                pages: page_span(pages, a, b),
                part: (n > 1).then_some((k as u32 + 1, n)),
            });
        }
    }
    out
}

fn page_span(pages: &[Page], a: usize, b: usize) -> (u32, u32) {
    let touching: Vec<u32> = pages
        .iter()
        .filter(|p| p.range.0 < b.max(a + 1) && p.range.1 >= a)
        .map(|p| p.number)
        .collect();
    match (touching.first(), touching.last()) {
        (Some(f), Some(l)) => (*f, *l),
        _ => {
            let n = pages
                .iter()
                .rev()
                .find(|p| p.range.0 <= a)
                .map_or(1, |p| p.number);
            (n, n)
        }
    }
}

/// Splits `[start, end)` into contiguous parts of at most about `budget` tokens.
fn split(t: &Tokenizer, text: &str, start: usize, end: usize, budget: u64) -> Vec<(usize, usize)> {
    let body = &text[start..end];
    if body.len() < (budget as usize) * 2 || t.count(body) <= budget {
        return vec![(start, end)];
    }
    // Units: paragraphs; a paragraph over budget becomes sentences; a sentence over budget
    // becomes word runs. Each unit keeps its trailing separator, so units tile the body.
    let mut units: Vec<(usize, usize)> = Vec::new();
    for (a, b) in pieces(body, "\n\n") {
        if t.count(&body[a..b]) <= budget {
            units.push((a, b));
            continue;
        }
        for (c, d) in sentences(&body[a..b]) {
            let (c, d) = (a + c, a + d);
            if t.count(&body[c..d]) <= budget {
                units.push((c, d));
            } else {
                // Runs of words, counted word by word (a word's tokens are nearly additive);
                // text without spaces, character by character.
                let (mut s, mut n) = (c, 0u64);
                for (w0, w1) in words(&body[c..d]) {
                    let wn = t.count(&body[c + w0..c + w1]);
                    if n > 0 && n + wn > budget {
                        units.push((s, c + w0));
                        s = c + w0;
                        n = 0;
                    }
                    n += wn;
                }
                units.push((s, d));
            }
        }
    }
    let mut parts = Vec::new();
    let (mut cur_start, mut cur_tokens) = (0usize, 0u64);
    for (a, b) in units {
        let n = t.count(&body[a..b]);
        if cur_tokens > 0 && cur_tokens + n > budget {
            parts.push((start + cur_start, start + a));
            cur_start = a;
            cur_tokens = 0;
        }
        cur_tokens += n;
    }
    parts.push((start + cur_start, end));
    parts
}

/// Ranges that tile `s`: words with the space after them, or characters where `s` has no
/// spaces.
fn words(s: &str) -> Vec<(usize, usize)> {
    let w = pieces(s, " ");
    if w.len() > 1 {
        return w;
    }
    s.char_indices()
        .map(|(i, c)| (i, i + c.len_utf8()))
        .collect()
}

/// Ranges that tile `s`, each ending just after a `sep` (the last one at the end).
fn pieces(s: &str, sep: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = s[start..].find(sep) {
        let end = start + i + sep.len();
        out.push((start, end));
        start = end;
    }
    if start < s.len() || out.is_empty() {
        out.push((start, s.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Quality;

    /// Chinese prose written for this test: sentences of 20 to 30 characters, no spaces.
    fn chinese(sentences: usize) -> String {
        let base = [
            "这座城市的河流从北向南流过老城区，两岸种满了柳树。",
            "每年春天，人们都会在河边散步，看花开花落！",
            "你知道这条河最早的名字是什么吗？",
            "根据县志的记载，它在明代被称为清水河，后来才改成现在的名字。",
        ];
        (0..sentences).map(|i| base[i % base.len()]).collect()
    }

    #[test]
    fn chinese_text_gets_bounded_titles_and_sentence_cuts() {
        let text = chinese(800);
        let pages = [page(1, 0, text.len())];
        let s = cut(&text, &pages, &[], 600);
        assert!(s.len() > 10, "split into parts: {}", s.len());
        assert_partition(&text, &s);
        assert!(s[0].title.chars().count() <= LEAD_CHARS, "{}", s[0].title);
        assert!(s[0].title.ends_with('…'));
        for sec in &s[..s.len() - 1] {
            let piece = &text[sec.range.0..sec.range.1];
            assert!(
                piece.ends_with(['。', '！', '？']),
                "parts end at sentence ends: …{}",
                piece.chars().rev().take(5).collect::<String>()
            );
        }
    }

    #[test]
    fn sentences_tile_and_know_cjk_marks() {
        let s = "One. Two!  Three? 四。五！六？七 end";
        let parts: Vec<&str> = sentences(s).into_iter().map(|(a, b)| &s[a..b]).collect();
        assert_eq!(
            parts,
            [
                "One. ", "Two!  ", "Three? ", "四。", "五！", "六？", "七 end"
            ]
        );
        assert_eq!(parts.concat(), s);
        assert_eq!(
            sentences("3.14 is pi"),
            [(0, 10)],
            "a point inside a number ends nothing"
        );
    }

    #[test]
    fn titles_are_bounded_in_characters() {
        assert_eq!(bounded("Short title", 120), "Short title");
        let long = "word ".repeat(60);
        let b = bounded(&long, 40);
        assert!(b.chars().count() <= 40 && b.ends_with("word…"), "{b}");
        let cjk = "标".repeat(300);
        assert_eq!(bounded(&cjk, 10), format!("{}…", "标".repeat(9)));
        let h = [Heading {
            title: "长".repeat(500),
            level: 1,
            offset: 0,
        }];
        let text = "长".repeat(500);
        let s = cut(&text, &[page(1, 0, text.len())], &h, 2000);
        assert!(s[0].title.chars().count() <= TITLE_CHARS);
    }

    fn page(n: u32, a: usize, b: usize) -> Page {
        Page {
            number: n,
            text: String::new(),
            range: (a, b),
            chars: b - a,
            quality: Quality::Ok,
            failure: None,
            furniture: vec![],
        }
    }

    fn assert_partition(text: &str, s: &[Section]) {
        assert_eq!(s.first().unwrap().range.0, 0);
        assert_eq!(s.last().unwrap().range.1, text.len());
        for w in s.windows(2) {
            assert_eq!(w[0].range.1, w[1].range.0, "contiguous");
        }
    }

    #[test]
    fn headings_cut_the_text_into_a_partition() {
        let text = "Preface words here.\n\n1 Intro\nIntro body.\n\n2 Method\nMethod body.";
        let h = |t: &str, l| Heading {
            title: t.into(),
            level: l,
            offset: text.find(t).unwrap() - 2,
        };
        let headings = vec![h("Intro", 1), h("Method", 1)];
        let pages = vec![page(1, 0, 40), page(2, 42, text.len())];
        let s = cut(text, &pages, &headings, 2_000);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].level, 0);
        assert_eq!(s[1].title, "Intro");
        assert_eq!(s[2].pages, (2, 2));
        assert_partition(text, &s);
    }

    #[test]
    fn long_sections_split_at_paragraphs_and_sentences_within_budget() {
        let para = "This sentence talks about the regression model. ".repeat(20);
        let text = format!(
            "{para}\n\n{para}\n\n{}",
            "x ".repeat(3_000) + &"One long sentence without an end ".repeat(100)
        );
        let s = cut(&text, &[page(1, 0, text.len())], &[], 300);
        assert!(s.len() > 4);
        assert_partition(&text, &s);
        let t = Tokenizer::o200k();
        for sec in &s {
            let n = t.count(&text[sec.range.0..sec.range.1]);
            assert!(n <= 330, "{n} tokens in {:?}", sec.range);
            assert_eq!(sec.part.unwrap().1, s.len() as u32);
        }
    }
}
