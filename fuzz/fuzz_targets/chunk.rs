//! Provider chunk JSON on arbitrary bytes: parsing and usage normalization never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pagemill_client::{ChatResponse, Usage};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<ChatResponse>(data) {
        if let Some(u) = &r.usage {
            let usage = Usage::from_raw(u);
            let _ = usage.uncached_prompt();
        }
    }
    let _ = pagemill_client::wire::ErrorBody::parse(data);
});
