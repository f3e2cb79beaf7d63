//! Runaway answers: a model stuck repeating itself ("Aer: Aer: Aer: …", the same entity again
//! and again inside a JSON array) until `max_tokens`. Seen with small models on every server
//! that constrains output by a grammar: the grammar keeps the answer well-formed, so nothing
//! stops the loop but the token limit, and every looped token is paid for.
//!
//! [`LoopGuard`] watches a streamed answer and says when its tail is one short unit repeated
//! more often than the prompt could explain: a model may list "Paris" as often as the prompt
//! says it, not more. The client then stops reading (which cancels generation on servers that
//! notice a closed connection) and hands back what came, marked as cancelled.

use std::collections::HashMap;

use crate::wire::Message;

/// Longest repeated unit looked for, in bytes.
const MAX_PERIOD: usize = 256;
/// Fewest repeats, and fewest bytes, before a tail counts as a loop. Generous enough that a
/// server which steers out of loops itself (pagemill's own engine does, after 48 tokens) gets
/// its chance first; a loop left alone runs to `max_tokens`, so this still spares most of it.
const MIN_REPEATS: usize = 6;
const MIN_SPAN: usize = 200;
/// A unit of only spaces and punctuation needs a longer run (JSON may be indented).
const MIN_BLANK_SPAN: usize = 160;
/// Repeats allowed beyond what the prompt explains.
const SLACK: usize = 4;
/// The tail examined, in bytes.
const WINDOW: usize = 4096;
/// Bytes of new content between checks.
const CHECK_EVERY: usize = 24;

/// Watches one answer for loops.
#[derive(Debug, Clone)]
pub struct LoopGuard {
    /// How often each word (lowercase) occurs in the prompt.
    prompt_words: HashMap<String, usize>,
    checked: usize,
}

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The words of a repeated unit that say something: JSON keys (`"text":`) left out, and the
/// unit taken three times over with its first and last word dropped, so a unit cut mid-word
/// (`e": "person"}, {"text": "Washington", "typ`) still yields whole words.
fn content_words(unit: &str) -> Vec<String> {
    let three = unit.repeat(3);
    let mut kept = String::with_capacity(three.len());
    let mut rest = three.as_str();
    while let Some(q) = rest.find('"') {
        kept.push_str(&rest[..q]);
        let after = &rest[q + 1..];
        match after.find('"') {
            Some(close) if after[close + 1..].trim_start().starts_with(':') => {
                kept.push(' ');
                rest = &after[close + 1..];
            }
            _ => {
                kept.push(' ');
                rest = after;
            }
        }
    }
    kept.push_str(rest);
    let mut w: Vec<String> = words(&kept).collect();
    if w.len() >= 2 {
        w.pop();
        w.remove(0);
    }
    w
}

impl LoopGuard {
    /// A guard for an answer to `messages`.
    pub fn new(messages: &[Message]) -> Self {
        let mut prompt_words: HashMap<String, usize> = HashMap::new();
        for m in messages {
            for w in words(&m.content) {
                *prompt_words.entry(w).or_default() += 1;
            }
        }
        Self {
            prompt_words,
            checked: 0,
        }
    }

    /// Checks the answer so far; says what loops when its tail is a runaway.
    pub fn check(&mut self, content: &str) -> Option<String> {
        if content.len() < self.checked + CHECK_EVERY {
            return None;
        }
        self.checked = content.len();
        let mut from = content.len().saturating_sub(WINDOW);
        while !content.is_char_boundary(from) {
            from += 1;
        }
        let tail = &content[from..];
        let b = tail.as_bytes();
        for p in 1..=MAX_PERIOD {
            let need = (MIN_REPEATS * p).max(MIN_SPAN);
            if need > b.len() {
                break;
            }
            let seg = &b[b.len() - need..];
            if !(p..seg.len()).all(|i| seg[i] == seg[i - p]) {
                continue;
            }
            // How far back the period holds.
            let mut span = need;
            while span < b.len() && b[b.len() - span - 1] == b[b.len() - span - 1 + p] {
                span += 1;
            }
            let repeats = span / p;
            let mut start = b.len() - p;
            while !tail.is_char_boundary(start) {
                start -= 1;
            }
            let unit = &tail[start..];
            let unit_words = content_words(unit);
            let explained = if unit_words.is_empty() {
                if span < MIN_BLANK_SPAN {
                    continue;
                }
                0
            } else {
                // The unit's rarest word in the prompt bounds how often the prompt explains it.
                unit_words
                    .iter()
                    .map(|w| self.prompt_words.get(w).copied().unwrap_or(0))
                    .min()
                    .unwrap_or(0)
            };
            if repeats > explained + SLACK {
                let shown: String = unit.chars().take(60).collect();
                return Some(format!("{shown:?} repeated {repeats} times"));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(guard: &mut LoopGuard, answer: &str) -> Option<String> {
        let mut out = None;
        let mut end = 0;
        while end < answer.len() {
            end = (end + 7).min(answer.len());
            while !answer.is_char_boundary(end) {
                end += 1;
            }
            if let Some(why) = guard.check(&answer[..end]) {
                out = Some(why);
                break;
            }
        }
        out
    }

    #[test]
    fn a_looping_title_is_caught_early() {
        let prompt = [Message::user("zoo: An S3 Class and Methods")];
        let mut g = LoopGuard::new(&prompt);
        let answer = format!("{{\"title\": \"{}", "Aer: ".repeat(200));
        let why = feed(&mut g, &answer).expect("a loop");
        assert!(why.contains("Aer"), "{why}");
        assert!(g.checked < 300, "caught within the first 300 bytes of loop");
    }

    #[test]
    fn an_entity_repeated_more_often_than_the_page_says_it_is_a_loop() {
        let page = "Washington wrote to Adams. Washington kept the letter.";
        let entry = "{\"text\": \"Washington\", \"type\": \"person\"}, ";
        let prompt = [Message::system("types: person"), Message::user(page)];
        let fine = format!(
            "{{\"items\": [{{\"id\": \"p1\", \"entities\": [{}]}}]}}",
            entry.repeat(2)
        );
        assert_eq!(feed(&mut LoopGuard::new(&prompt), &fine), None);
        let looping = format!(
            "{{\"items\": [{{\"id\": \"p1\", \"entities\": [{}",
            entry.repeat(40)
        );
        assert!(feed(&mut LoopGuard::new(&prompt), &looping).is_some());
        // The same list where the page really says it ten times is no loop.
        let ten = "Washington person. ".repeat(10);
        let prompt = [Message::user(ten.as_str())];
        let listed = format!("{{\"entities\": [{}]}}", entry.repeat(10));
        assert_eq!(feed(&mut LoopGuard::new(&prompt), &listed), None);
    }

    #[test]
    fn ordinary_answers_and_short_blank_runs_pass() {
        let prompt = [Message::user("The buyer pays within 30 days.")];
        let answer = "{\"items\": [{\"id\": \"s1\", \"summary\": \"The buyer must pay invoices within thirty days of receipt, and late payments bear interest at two percent a month.\"}]}";
        assert_eq!(feed(&mut LoopGuard::new(&prompt), answer), None);
        let indented = format!("{{\n{}\"a\": 1\n}}", " ".repeat(40));
        assert_eq!(feed(&mut LoopGuard::new(&prompt), &indented), None);
        let blank = format!("{{\"a\": {}", " ".repeat(400));
        assert!(feed(&mut LoopGuard::new(&prompt), &blank).is_some());
    }
}
