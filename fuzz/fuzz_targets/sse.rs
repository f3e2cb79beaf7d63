//! The SSE parser on arbitrary bytes, split into reads at arbitrary points: it must never
//! panic, and splitting must never change what it parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagemill_client::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let Some((&cut_seed, bytes)) = data.split_first() else { return };
    let whole = {
        let mut p = SseParser::with_limit(4096);
        let mut out = Vec::new();
        let a = p.feed(bytes, &mut out);
        let b = p.finish(&mut out);
        (a.is_ok() && b.is_ok()).then_some(out)
    };
    let split = {
        let mut p = SseParser::with_limit(4096);
        let mut out = Vec::new();
        let step = usize::from(cut_seed).max(1);
        let mut ok = true;
        for piece in bytes.chunks(step) {
            ok &= p.feed(piece, &mut out).is_ok();
        }
        ok &= p.finish(&mut out).is_ok();
        ok.then_some(out)
    };
    if let (Some(w), Some(s)) = (whole, split) {
        assert_eq!(w, s);
    }
});
