//! A Server-Sent Events parser that follows the WHATWG `text/event-stream` rules.
//!
//! Written here rather than taken from a crate because we need three things the SSE crates we
//! looked at do not give together: it works on raw byte chunks as they arrive (so the caller can
//! timestamp each chunk before any parsing), it surfaces `:` comments (keep-alives are part of a
//! request's timeline), and it is tolerant where providers stray from the spec (a stream that
//! ends without the final blank line) while bounding memory on hostile input.
//!
//! What the spec asks, and what this does:
//! - lines end with CRLF, LF or a lone CR, also when the CR and LF arrive in different reads;
//! - bytes are buffered until a line is complete, so UTF-8 sequences split across reads decode
//!   correctly; invalid UTF-8 becomes U+FFFD, never a panic; a leading BOM is dropped;
//! - `field:value` with at most one space after the colon removed (`data:x` and `data: x` agree);
//! - several `data` lines join with `\n`; `event` names the event; `id` and `retry` are kept;
//! - a line starting with `:` is a comment; an empty line dispatches the event, and an event
//!   with no data is not dispatched.

use std::borrow::Cow;

/// The longest line or event the parser buffers before it gives up (16 MiB).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 << 20;

/// One thing read from an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A dispatched event.
    Event(SseEvent),
    /// A `:` comment line, such as `: keep-alive`, without the colon and one leading space.
    Comment(String),
    /// A `retry:` field with a valid number of milliseconds.
    Retry(u64),
}

/// An event: the `data` lines joined by `\n`, its `event` name and last `id` seen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` name, `None` for the default `message`.
    pub event: Option<String>,
    /// The data lines joined by `\n` (no trailing newline).
    pub data: String,
    /// The last event id seen on the stream, if any.
    pub id: Option<String>,
    /// False when the stream ended before the blank line that should end this event.
    pub terminated: bool,
}

/// The stream broke a limit the parser enforces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event stream line or event longer than {limit} bytes")]
pub struct SseTooLong {
    /// The limit that was exceeded.
    pub limit: usize,
}

/// Incremental parser: feed it byte chunks as they arrive, collect items.
#[derive(Debug)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The previous chunk ended in CR, so a leading LF in the next one ends nothing.
    after_cr: bool,
    /// No line has been processed yet (a BOM may start the first one).
    at_start: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
    last_id: Option<String>,
    max_bytes: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default size limit.
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses lines and events longer than `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            data: String::new(),
            has_data: false,
            event: None,
            last_id: None,
            max_bytes,
        }
    }

    /// Parses one chunk, pushing every item it completes onto `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseTooLong> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = chunk.split_at(pos);
            let is_cr = tail[0] == b'\r';
            chunk = &tail[1..];
            if is_cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            if self.line.is_empty() {
                self.check_len(head.len())?;
                self.process_line(head, out)?;
            } else {
                self.check_len(self.line.len() + head.len())?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                self.process_line(&line, out)?;
                line.clear();
                self.line = line;
            }
        }
        self.check_len(self.line.len() + chunk.len())?;
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the stream: a pending line is processed and a pending event is returned with
    /// `terminated: false` (the spec would drop it; providers that omit the last blank line are
    /// common enough that the caller should decide).
    pub fn finish(&mut self, out: &mut Vec<SseItem>) -> Result<(), SseTooLong> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out)?;
        }
        if self.has_data {
            let event = self.take_event(false);
            out.push(SseItem::Event(event));
        }
        Ok(())
    }

    fn check_len(&self, len: usize) -> Result<(), SseTooLong> {
        if len > self.max_bytes || self.data.len() > self.max_bytes {
            Err(SseTooLong {
                limit: self.max_bytes,
            })
        } else {
            Ok(())
        }
    }

    fn process_line(&mut self, mut line: &[u8], out: &mut Vec<SseItem>) -> Result<(), SseTooLong> {
        if self.at_start {
            self.at_start = false;
            if let Some(rest) = line.strip_prefix(b"\xEF\xBB\xBF") {
                line = rest;
            }
        }
        if line.is_empty() {
            if self.has_data {
                let event = self.take_event(true);
                out.push(SseItem::Event(event));
            } else {
                self.event = None;
            }
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(b":") {
            let comment = comment.strip_prefix(b" ").unwrap_or(comment);
            out.push(SseItem::Comment(
                String::from_utf8_lossy(comment).into_owned(),
            ));
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                // Valid UTF-8 is the rule; checking it first is much faster than the lossy path.
                match std::str::from_utf8(value) {
                    Ok(text) => self.data.push_str(text),
                    Err(_) => self.data.push_str(&String::from_utf8_lossy(value)),
                }
                self.has_data = true;
                self.check_len(0)?;
            }
            b"event" => self.event = Some(lossy(value).into_owned()),
            b"id" if !value.contains(&0) => self.last_id = Some(lossy(value).into_owned()),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so parsing fails only on overflow; ignore such a field.
                if let Ok(ms) = lossy(value).parse() {
                    out.push(SseItem::Retry(ms));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn take_event(&mut self, terminated: bool) -> SseEvent {
        self.has_data = false;
        SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
            terminated,
        }
    }
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).unwrap();
        }
        parser.finish(&mut out).unwrap();
        out
    }

    fn event(data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: None,
            data: data.to_owned(),
            id: None,
            terminated: true,
        })
    }

    /// Every fixture, with what it must parse to.
    fn fixtures() -> Vec<(&'static str, Vec<u8>, Vec<SseItem>)> {
        let openai = b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n".to_vec();
        let expect_openai = vec![event("{\"a\":1}"), event("{\"b\":2}"), event("[DONE]")];
        vec![
            ("lf", openai.clone(), expect_openai.clone()),
            (
                "crlf",
                String::from_utf8(openai.clone())
                    .unwrap()
                    .replace('\n', "\r\n")
                    .into_bytes(),
                expect_openai.clone(),
            ),
            (
                "cr",
                String::from_utf8(openai.clone())
                    .unwrap()
                    .replace('\n', "\r")
                    .into_bytes(),
                expect_openai.clone(),
            ),
            (
                "no-space",
                b"data:{\"a\":1}\n\ndata:{\"b\":2}\n\ndata:[DONE]\n\n".to_vec(),
                expect_openai,
            ),
            (
                "multi-line-data",
                b"data: line one\ndata:line two\ndata:  indented\n\n".to_vec(),
                vec![event("line one\nline two\n indented")],
            ),
            (
                "comments-and-event-names",
                b": keep-alive\n\nevent: message_start\ndata: {}\n\n:ping\nevent: error\ndata: x\nid: 7\nretry: 1500\n\n"
                    .to_vec(),
                vec![
                    SseItem::Comment("keep-alive".into()),
                    SseItem::Event(SseEvent {
                        event: Some("message_start".into()),
                        data: "{}".into(),
                        id: None,
                        terminated: true,
                    }),
                    SseItem::Comment("ping".into()),
                    SseItem::Retry(1500),
                    SseItem::Event(SseEvent {
                        event: Some("error".into()),
                        data: "x".into(),
                        id: Some("7".into()),
                        terminated: true,
                    }),
                ],
            ),
            (
                "utf8-multibyte",
                "data: {\"content\":\"héllo — 日本語 🎉\"}\n\n".as_bytes().to_vec(),
                vec![event("{\"content\":\"héllo — 日本語 🎉\"}")],
            ),
            (
                "bom-and-mixed-endings",
                b"\xEF\xBB\xBFdata: a\r\n\rdata: b\n\r\ndata: c\r\r".to_vec(),
                vec![event("a"), event("b"), event("c")],
            ),
            (
                "event-without-data-is-not-dispatched",
                b"event: nothing\n\ndata: after\n\n".to_vec(),
                vec![event("after")],
            ),
            (
                "field-without-colon-and-unknown-fields",
                b"data\nfoo: bar\n\n".to_vec(),
                vec![event("")],
            ),
            (
                "missing-final-blank-line",
                b"data: one\n\ndata: [DONE]".to_vec(),
                vec![
                    event("one"),
                    SseItem::Event(SseEvent {
                        event: None,
                        data: "[DONE]".into(),
                        id: None,
                        terminated: false,
                    }),
                ],
            ),
        ]
    }

    #[test]
    fn every_fixture_parses_whole() {
        for (name, bytes, expected) in fixtures() {
            assert_eq!(parse_chunks(&[&bytes]), expected, "fixture {name}");
        }
    }

    #[test]
    fn every_fixture_split_at_every_byte_boundary() {
        for (name, bytes, expected) in fixtures() {
            for cut in 0..=bytes.len() {
                let (a, b) = bytes.split_at(cut);
                assert_eq!(
                    parse_chunks(&[a, b]),
                    expected,
                    "fixture {name} cut at {cut}"
                );
            }
            // And at every pair of boundaries, which puts a lone CR and its LF in different
            // reads with something in between, and splits multibyte characters twice.
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    let got = parse_chunks(&[&bytes[..i], &bytes[i..j], &bytes[j..]]);
                    assert_eq!(got, expected, "fixture {name} cut at {i} and {j}");
                }
            }
        }
    }

    #[test]
    fn every_fixture_byte_by_byte() {
        for (name, bytes, expected) in fixtures() {
            let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(parse_chunks(&chunks), expected, "fixture {name}");
        }
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let got = parse_chunks(&[b"data: a\xFF\xFEb\n\n"]);
        assert_eq!(got, vec![event("a\u{FFFD}\u{FFFD}b")]);
    }

    #[test]
    fn overlong_lines_are_refused_not_buffered_forever() {
        let mut parser = SseParser::with_limit(64);
        let mut out = Vec::new();
        assert!(parser.feed(&[b'x'; 40], &mut out).is_ok());
        assert_eq!(
            parser.feed(&[b'x'; 40], &mut out),
            Err(SseTooLong { limit: 64 })
        );
        // The limit holds whether a long line arrives in one read or in many.
        assert!(
            SseParser::with_limit(64)
                .feed(&[b'x'; 80], &mut out)
                .is_err()
        );
        let mut parser = SseParser::with_limit(64);
        let many_data_lines = b"data: 0123456789\n".repeat(10);
        assert!(parser.feed(&many_data_lines, &mut out).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        // A cheap in-tree stand-in for the cargo-fuzz target (fuzz/fuzz_targets/sse.rs).
        use rand::{Rng, SeedableRng, rngs::SmallRng};
        let mut rng = SmallRng::seed_from_u64(7);
        let alphabet = b"data:event :\r\n\xEF\xBB\xBF\xFFid retry0123[DONE]";
        for _ in 0..2_000 {
            let len = rng.random_range(0..200);
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let mut parser = SseParser::with_limit(128);
            let mut out = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = rng.random_range(1..=rest.len());
                let _ = parser.feed(&rest[..n], &mut out);
                rest = &rest[n..];
            }
            let _ = parser.finish(&mut out);
        }
    }
}
