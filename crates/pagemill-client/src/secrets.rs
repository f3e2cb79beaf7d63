//! The secrets this process holds — API keys, values of secret headers — so that text from
//! outside (a provider's error message, a body echoed back) is cleaned of them by value before
//! it is kept or shown, whatever the secret looks like and whatever stands next to it (`=`,
//! `:`, quotes, JSON). Shape-based redaction ([`crate::error::redact`]) stays as a second net
//! for keys pagemill was never given.
//!
//! A process-wide set: every place that keeps outside text (errors, the ledger, results,
//! reports, logs) goes through [`crate::error::redact`], which needs no handle to the client
//! that knew the key. Keys are registered when they are read ([`crate::ApiKey::new`]) and
//! when a client is made with secret headers.

use std::sync::RwLock;

/// Secrets shorter than this are not registered: replacing every occurrence of a short string
/// would blank ordinary words. No provider issues keys that short.
pub const MIN_LEN: usize = 8;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `secret` (and its JSON-escaped form, when that differs) for [`scrub`].
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < MIN_LEN {
        return;
    }
    let mut forms = vec![secret.to_owned()];
    if let Ok(json) = serde_json::to_string(secret) {
        let inner = &json[1..json.len() - 1];
        if inner != secret {
            forms.push(inner.to_owned());
        }
    }
    let mut all = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for f in forms {
        if !all.contains(&f) {
            all.push(f);
        }
    }
    // Longest first, so a secret that contains another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every registered secret replaced by `<redacted>`.
pub fn scrub(text: &str) -> String {
    let all = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_owned();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_removed_whatever_stands_next_to_them() {
        register("opaque-KEY-with:colons");
        register("short");
        for text in [
            "invalid credentials key=opaque-KEY-with:colons",
            "{\"error\":{\"message\":\"bad key 'opaque-KEY-with:colons'\"}}",
            "x-api-key:opaque-KEY-with:colons;",
        ] {
            let clean = scrub(text);
            assert!(!clean.contains("opaque-KEY"), "{clean}");
            assert!(clean.contains("<redacted>"), "{clean}");
        }
        assert_eq!(
            scrub("a short word"),
            "a short word",
            "too short to register"
        );
        // A key with a quote is also found JSON-escaped.
        register("quote\"in-the-key-1");
        assert_eq!(
            scrub("{\"k\":\"quote\\\"in-the-key-1\"}"),
            "{\"k\":\"<redacted>\"}"
        );
    }
}
