//! One normalized [`Usage`] from every provider dialect, with the source of each number.
//!
//! Dialects:
//! - OpenAI: `prompt_tokens` includes `prompt_tokens_details.cached_tokens`; reasoning tokens
//!   (`completion_tokens_details.reasoning_tokens`) are included in `completion_tokens`.
//! - DeepSeek: `prompt_cache_hit_tokens` + `prompt_cache_miss_tokens` = `prompt_tokens`.
//! - OpenAI Responses API: `input_tokens` *includes* `input_tokens_details.cached_tokens`;
//!   `output_tokens` includes `output_tokens_details.reasoning_tokens`.
//! - Anthropic-style: `input_tokens` excludes `cache_read_input_tokens` and
//!   `cache_creation_input_tokens`; we add them back so `prompt` always means every prompt token.
//! - No details: `cached_prompt` is *unreported* (`None`), never 0 — a server that does not say
//!   is not a server that cached nothing.
//!
//! When a server sends no usage at all, [`Tokenizer`] counts the text we sent and received and
//! the numbers are marked [`Source::Tokenizer`].

use serde::{Deserialize, Serialize};

use crate::wire::{Message, RawUsage};

/// Where a token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The server's `usage` object.
    Server,
    /// Counted by pagemill with a tokenizer (an estimate when it is not the model's own).
    Tokenizer,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Server => "server",
            Source::Tokenizer => "tokenizer",
        })
    }
}

/// A token count and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Number of tokens.
    pub tokens: u64,
    /// Who counted them.
    pub source: Source,
}

impl Count {
    /// A count from the server.
    pub fn server(tokens: u64) -> Self {
        Self {
            tokens,
            source: Source::Server,
        }
    }

    /// A count from our tokenizer.
    pub fn tokenizer(tokens: u64) -> Self {
        Self {
            tokens,
            source: Source::Tokenizer,
        }
    }
}

/// Token usage of one request; `None` means unreported, never zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every prompt token, cached or not.
    pub prompt: Option<Count>,
    /// Prompt tokens served from the provider's cache (part of `prompt`).
    pub cached_prompt: Option<Count>,
    /// Prompt tokens written to the provider's cache (part of `prompt`).
    pub cache_write: Option<Count>,
    /// Generated tokens, reasoning included.
    pub completion: Option<Count>,
    /// Reasoning tokens (part of `completion`).
    pub reasoning: Option<Count>,
}

impl Usage {
    /// Normalizes a provider's usage object.
    pub fn from_raw(raw: &RawUsage) -> Self {
        let server = |n: Option<u64>| n.map(Count::server);
        let details = raw.prompt_tokens_details.as_ref();
        let anthropic_cache =
            raw.cache_read_input_tokens.is_some() || raw.cache_creation_input_tokens.is_some();

        let responses = raw.input_tokens_details.is_some() || raw.output_tokens_details.is_some();
        let (prompt, cached, write) = if responses && raw.prompt_tokens.is_none() {
            // Responses API: input_tokens includes the cached ones.
            let cached = raw
                .input_tokens_details
                .as_ref()
                .and_then(|d| d.cached_tokens);
            (raw.input_tokens, cached, None)
        } else if raw.prompt_tokens.is_none() && raw.input_tokens.is_some() {
            // Anthropic-style: input_tokens excludes both cache counts.
            let input = raw.input_tokens.unwrap_or(0);
            let read = raw.cache_read_input_tokens;
            let creation = raw.cache_creation_input_tokens;
            let total = input
                .saturating_add(read.unwrap_or(0))
                .saturating_add(creation.unwrap_or(0));
            let (read, creation) = if anthropic_cache {
                (Some(read.unwrap_or(0)), Some(creation.unwrap_or(0)))
            } else {
                (None, None)
            };
            (Some(total), read, creation)
        } else if raw.prompt_cache_hit_tokens.is_some() || raw.prompt_cache_miss_tokens.is_some() {
            // DeepSeek: hit + miss = prompt.
            let hit = raw.prompt_cache_hit_tokens.unwrap_or(0);
            let miss = raw.prompt_cache_miss_tokens.unwrap_or(0);
            let prompt = raw.prompt_tokens.unwrap_or(hit.saturating_add(miss));
            (Some(prompt), Some(hit), None)
        } else {
            let cached = details.and_then(|d| d.cached_tokens);
            let write = details.and_then(|d| d.cache_write_tokens);
            // Some servers put Anthropic-style cache fields next to OpenAI's prompt_tokens;
            // there prompt_tokens already includes them.
            let cached = cached.or(raw.cache_read_input_tokens);
            let write = write.or(raw.cache_creation_input_tokens);
            (raw.prompt_tokens, cached, write)
        };
        let completion = raw.completion_tokens.or(raw.output_tokens);
        Self {
            prompt: server(prompt),
            cached_prompt: server(cached),
            cache_write: server(write),
            completion: server(completion),
            reasoning: server(
                raw.completion_tokens_details
                    .as_ref()
                    .or(raw.output_tokens_details.as_ref())
                    .and_then(|d| d.reasoning_tokens),
            ),
        }
    }

    /// Fills counts the server did not report with tokenizer counts of the text exchanged.
    /// `cached_prompt` stays unreported: a tokenizer cannot know what a provider cached.
    pub fn fill_from_tokenizer(
        &mut self,
        tokenizer: &Tokenizer,
        messages: &[Message],
        answer: &str,
        reasoning: &str,
    ) {
        if self.prompt.is_none() {
            self.prompt = Some(Count::tokenizer(tokenizer.count_messages(messages)));
        }
        if self.completion.is_none() {
            let n = tokenizer.count(answer) + tokenizer.count(reasoning);
            self.completion = Some(Count::tokenizer(n));
        }
        if self.reasoning.is_none() && !reasoning.is_empty() {
            self.reasoning = Some(Count::tokenizer(tokenizer.count(reasoning)));
        }
    }

    /// Prompt tokens not served from cache (all of them when caching is unreported).
    pub fn uncached_prompt(&self) -> Option<u64> {
        let prompt = self.prompt?.tokens;
        let cached = self.cached_prompt.map_or(0, |c| c.tokens);
        Some(prompt.saturating_sub(cached))
    }
}

/// A client-side tokenizer, used when a server reports no usage, and to size prompts: a
/// tiktoken encoding, or a Hugging Face `tokenizer.json` (the model's own, for open models).
#[derive(Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    name: String,
}

#[derive(Clone)]
enum TokenizerKind {
    Tiktoken(&'static tiktoken_rs::CoreBPE),
    HuggingFace(std::sync::Arc<tokenizers::Tokenizer>),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("name", &self.name)
            .finish()
    }
}

impl Tokenizer {
    /// The `o200k_base` encoding (GPT-4o family and later).
    pub fn o200k() -> Self {
        Self {
            kind: TokenizerKind::Tiktoken(tiktoken_rs::o200k_base_singleton()),
            name: "o200k_base".into(),
        }
    }

    /// The `cl100k_base` encoding (GPT-4, GPT-3.5).
    pub fn cl100k() -> Self {
        Self {
            kind: TokenizerKind::Tiktoken(tiktoken_rs::cl100k_base_singleton()),
            name: "cl100k_base".into(),
        }
    }

    /// A Hugging Face `tokenizer.json`.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer `{}`: {e}", path.display()))?;
        Ok(Self {
            kind: TokenizerKind::HuggingFace(std::sync::Arc::new(t)),
            name: path.display().to_string(),
        })
    }

    /// The tokenizer named in configuration: `o200k_base`, `cl100k_base`, or a path to a
    /// `tokenizer.json`.
    pub fn by_name(name: &str) -> Result<Self, String> {
        match name {
            "o200k_base" | "o200k" => Ok(Self::o200k()),
            "cl100k_base" | "cl100k" => Ok(Self::cl100k()),
            path if path.ends_with(".json") => Self::from_file(std::path::Path::new(path)),
            other => Err(format!(
                "unknown tokenizer `{other}` (use o200k_base, cl100k_base or a tokenizer.json path)"
            )),
        }
    }

    /// The tokenizer's name (an encoding name or a file path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokens in a text.
    pub fn count(&self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        match &self.kind {
            TokenizerKind::Tiktoken(bpe) => bpe.encode_ordinary(text).len() as u64,
            // Encoding only fails on inputs the tokenizer cannot represent at all; such text
            // is then counted at the usual ~4 bytes a token rather than as nothing.
            TokenizerKind::HuggingFace(t) => t
                .encode_fast(text, false)
                .map_or(text.len().div_ceil(4) as u64, |e| e.len() as u64),
        }
    }

    /// Tokens of a chat prompt: the messages plus the chat format's framing (3 tokens a message
    /// and 3 to prime the answer, as OpenAI's chat format counts them).
    pub fn count_messages(&self, messages: &[Message]) -> u64 {
        let framing = 3 * messages.len() as u64 + 3;
        messages
            .iter()
            .map(|m| self.count(&m.role) + self.count(&m.content))
            .sum::<u64>()
            + framing
    }
}

/// Common words that are one o200k token each, alone and after a space. Simulated answers and
/// synthetic benchmark prompts are made of them, so their lengths in tokens are exact.
pub fn one_token_words() -> &'static [&'static str] {
    const CANDIDATES: &[&str] = &[
        "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by",
        "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an",
        "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
        "been", "if", "more", "when", "will", "would", "who", "so", "no", "page", "section",
        "report", "market", "value", "data", "model", "time", "year", "state", "order", "court",
        "law", "city", "water",
    ];
    static WORDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let t = Tokenizer::o200k();
        CANDIDATES
            .iter()
            .copied()
            .filter(|w| t.count(w) == 1 && t.count(&format!(" {w}")) == 1)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawUsage {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn openai_dialect_cached_is_part_of_prompt() {
        let u = Usage::from_raw(&raw(
            r#"{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,
               "prompt_tokens_details":{"cached_tokens":1920},
               "completion_tokens_details":{"reasoning_tokens":64}}"#,
        ));
        assert_eq!(u.prompt, Some(Count::server(2006)));
        assert_eq!(u.cached_prompt, Some(Count::server(1920)));
        assert_eq!(u.uncached_prompt(), Some(86));
        assert_eq!(u.completion, Some(Count::server(300)));
        assert_eq!(u.reasoning, Some(Count::server(64)));
        assert_eq!(u.cache_write, None);
    }

    #[test]
    fn deepseek_dialect_hit_and_miss() {
        let u = Usage::from_raw(&raw(r#"{"prompt_tokens":100,"completion_tokens":5,
               "prompt_cache_hit_tokens":64,"prompt_cache_miss_tokens":36}"#));
        assert_eq!(u.prompt, Some(Count::server(100)));
        assert_eq!(u.cached_prompt, Some(Count::server(64)));
        // Without prompt_tokens, hit + miss is the prompt.
        let u = Usage::from_raw(&raw(
            r#"{"prompt_cache_hit_tokens":0,"prompt_cache_miss_tokens":36}"#,
        ));
        assert_eq!(u.prompt, Some(Count::server(36)));
        assert_eq!(u.cached_prompt, Some(Count::server(0)));
    }

    #[test]
    fn anthropic_dialect_cache_counts_are_added_back() {
        let u = Usage::from_raw(&raw(r#"{"input_tokens":50,"output_tokens":20,
               "cache_read_input_tokens":1000,"cache_creation_input_tokens":200}"#));
        assert_eq!(u.prompt, Some(Count::server(1250)));
        assert_eq!(u.cached_prompt, Some(Count::server(1000)));
        assert_eq!(u.cache_write, Some(Count::server(200)));
        assert_eq!(u.completion, Some(Count::server(20)));
        assert_eq!(u.uncached_prompt(), Some(250));
    }

    #[test]
    fn responses_dialect_cached_is_part_of_input() {
        let u = Usage::from_raw(&raw(r#"{"input_tokens":2006,"output_tokens":300,
               "input_tokens_details":{"cached_tokens":1920},
               "output_tokens_details":{"reasoning_tokens":64},"total_tokens":2306}"#));
        assert_eq!(u.prompt, Some(Count::server(2006)));
        assert_eq!(u.cached_prompt, Some(Count::server(1920)));
        assert_eq!(u.completion, Some(Count::server(300)));
        assert_eq!(u.reasoning, Some(Count::server(64)));
    }

    #[test]
    fn anthropic_stream_usage_merges_start_and_end() {
        let mut u = raw(r#"{"input_tokens":50,"cache_read_input_tokens":1000,
               "cache_creation_input_tokens":0,"output_tokens":1}"#);
        u.merge(raw(r#"{"output_tokens":42}"#));
        let u = Usage::from_raw(&u);
        assert_eq!(u.prompt, Some(Count::server(1050)));
        assert_eq!(u.cached_prompt, Some(Count::server(1000)));
        assert_eq!(u.completion, Some(Count::server(42)));
    }

    #[test]
    fn no_details_means_cached_unreported_not_zero() {
        let u = Usage::from_raw(&raw(r#"{"prompt_tokens":10,"completion_tokens":3}"#));
        assert_eq!(u.cached_prompt, None);
        let u = Usage::from_raw(&raw(r#"{"input_tokens":10,"output_tokens":3}"#));
        assert_eq!(u.prompt, Some(Count::server(10)));
        assert_eq!(u.cached_prompt, None);
    }

    #[test]
    fn tokenizer_fills_only_what_is_missing_and_says_so() {
        let t = Tokenizer::o200k();
        let mut u = Usage::from_raw(&raw(r#"{"completion_tokens":3}"#));
        u.fill_from_tokenizer(&t, &[Message::user("Hello there")], "ignored", "");
        assert_eq!(u.prompt.unwrap().source, Source::Tokenizer);
        // role "user" (1) + "Hello there" (2) + framing 3 + 3.
        assert_eq!(u.prompt.unwrap().tokens, 9);
        assert_eq!(u.completion, Some(Count::server(3)));
        assert_eq!(u.cached_prompt, None);
    }

    #[test]
    fn one_token_words_are_one_token_each_and_add_up() {
        let w = one_token_words();
        assert!(w.len() > 40);
        let text: String = w.iter().map(|w| format!(" {w}")).collect();
        assert_eq!(Tokenizer::o200k().count(&text), w.len() as u64);
    }

    #[test]
    fn tokenizer_counts_known_text() {
        let t = Tokenizer::cl100k();
        assert_eq!(t.count("hello world"), 2);
        assert_eq!(t.count(""), 0);
        assert!(Tokenizer::by_name("o200k_base").is_ok());
        assert!(Tokenizer::by_name("nope").is_err());
        let err = Tokenizer::by_name("/nonexistent/tokenizer.json").unwrap_err();
        assert!(err.contains("/nonexistent/tokenizer.json"), "{err}");
    }

    #[test]
    fn a_tokenizer_json_counts_with_its_own_vocabulary() {
        // A tiny word-level tokenizer: every whitespace-separated word is one token.
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"hello":1},
            "unk_token":"[UNK]"}}"#;
        let path = std::env::temp_dir().join(format!("pagemill-tok-{}.json", std::process::id()));
        std::fs::write(&path, json).unwrap();
        let t = Tokenizer::by_name(path.to_str().unwrap()).unwrap();
        assert_eq!(t.count("hello brave new world"), 4);
        std::fs::remove_file(&path).unwrap();
    }
}
