//! The in-process ingest readers (HTML, Markdown, text, DOCX) on arbitrary bytes: no panic, no
//! hang, and sections always tile the text. (PDF runs poppler in a child process; its isolation
//! is tested with corrupted real files in the integration tests.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagemill_pipeline::ingest::{Limits, ingest_bytes};

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    if bytes.windows(5).any(|w| w == b"%PDF-") {
        return;
    }
    let name = ["a.html", "a.md", "a.txt", "a.docx"][usize::from(which) % 4];
    let limits = Limits { max_decompressed_bytes: 1 << 20, section_tokens: 100, ..Limits::default() };
    if let Ok(d) = ingest_bytes(std::path::Path::new(name), bytes, &limits) {
        let mut at = 0;
        for s in &d.sections {
            assert_eq!(s.range.0, at);
            at = s.range.1;
        }
        assert_eq!(at, d.text.len());
    }
});
