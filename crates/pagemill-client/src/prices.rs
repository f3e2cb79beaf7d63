//! Where an endpoint's prices come from: its configuration, else the price table that ships
//! with pagemill (`data/prices.toml`: model × provider, each entry with its source and the
//! month it was read), else a table the user imported from LiteLLM's file
//! (`$XDG_CONFIG_HOME/pagemill/prices.toml`, consulted first). Every cost carries its
//! [`PriceSource`], and what is not known stays unknown: a custom server (a self-hosted vLLM)
//! is never priced as if it were a provider.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::{Endpoint, Prices};

/// The table that ships with pagemill.
const BUILTIN: &str = include_str!("../data/prices.toml");

/// One model at one provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The provider (`openai`, `anthropic`, `google`, `groq`, …).
    pub provider: String,
    /// The model name as the provider's API takes it.
    pub model: String,
    /// Uncached prompt tokens, USD per 1M.
    pub input: f64,
    /// Prompt tokens served from cache (the input price when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to cache (the input price when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Generated tokens (reasoning included).
    pub output: f64,
    /// Fraction taken off through the provider's batch API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_discount: Option<f64>,
    /// The context window, in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// Where the figures were read.
    pub source: String,
    /// When (`YYYY-MM` or a date).
    pub as_of: String,
}

/// A price table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Its entries.
    #[serde(default, rename = "model")]
    pub entries: Vec<Entry>,
}

/// Why a price table cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("price table `{origin}`: {why}")]
pub struct TableError {
    /// The file.
    pub origin: String,
    /// What is wrong.
    pub why: String,
}

impl Entry {
    /// Its prices, as an endpoint holds them.
    pub fn prices(&self) -> Prices {
        Prices {
            input: Some(self.input),
            cached_input: self.cached_input,
            cache_write: self.cache_write,
            output: Some(self.output),
            batch_discount: self.batch_discount,
        }
    }
}

impl Table {
    /// Parses a table (TOML, `[[model]]` entries, each with input and output prices).
    pub fn parse(text: &str, origin: &str) -> Result<Self, TableError> {
        toml::from_str(text).map_err(|e| TableError {
            origin: origin.to_owned(),
            why: e.to_string(),
        })
    }

    /// The table that ships with pagemill.
    pub fn builtin() -> &'static Table {
        static TABLE: OnceLock<Table> = OnceLock::new();
        // The file is pagemill's own and a test parses it: an error here is a build gone
        // wrong, and pricing from no table (unknown costs) is the safe answer to it.
        TABLE.get_or_init(|| Table::parse(BUILTIN, "data/prices.toml").unwrap_or_default())
    }

    /// The user's imported table, if there is one (an unreadable one is reported by
    /// `pagemill prices`, and ignored here: its entries would only have overridden ours).
    pub fn user() -> Option<&'static Table> {
        static TABLE: OnceLock<Option<Table>> = OnceLock::new();
        TABLE
            .get_or_init(|| {
                let path = user_table_path()?;
                let text = std::fs::read_to_string(&path).ok()?;
                Table::parse(&text, &path.display().to_string()).ok()
            })
            .as_ref()
    }

    /// The entry for `model` at `provider`: the exact name, else the longest entry name the
    /// model extends with a version (`gpt-4o-mini-2024-07-18`, `claude-3-5-haiku-20241022`,
    /// `-latest`; not `gpt-4o-audio-preview`, which is another model with other prices),
    /// looked up as given and without a routing prefix (`openai/gpt-4o-mini`).
    pub fn lookup(&self, provider: &str, model: &str) -> Option<&Entry> {
        let model = model.trim().to_ascii_lowercase();
        let bare = model.rsplit('/').next().unwrap_or(&model).to_owned();
        let of_provider = || self.entries.iter().filter(|e| e.provider == provider);
        for name in [model.as_str(), bare.as_str()] {
            if let Some(e) = of_provider().find(|e| e.model.to_ascii_lowercase() == name) {
                return Some(e);
            }
        }
        of_provider()
            .filter(|e| {
                let key = e.model.to_ascii_lowercase();
                [&model, &bare].iter().any(|m| {
                    m.strip_prefix(key.as_str())
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(is_version)
                })
            })
            .max_by_key(|e| e.model.len())
    }
}

/// A version suffix of a model name: a date (`2024-07-18`, `20241022`, `0613`) or `latest`.
fn is_version(s: &str) -> bool {
    let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = s.split('-').collect();
    match parts[..] {
        ["latest"] => true,
        [d] => digits(d, 8) || digits(d, 4),
        [y, m, d] => digits(y, 4) && digits(m, 2) && digits(d, 2),
        _ => false,
    }
}

/// Where `pagemill prices import` writes and lookups read the user's table.
pub fn user_table_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("pagemill").join("prices.toml"))
}

pub use crate::dialect::provider_of;

/// Where an endpoint's prices come from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum PriceSource {
    /// Nowhere: costs are unknown.
    #[default]
    Unknown,
    /// The endpoint's `prices` in the configuration.
    Config,
    /// A price table's entry.
    Table {
        /// The entry's provider.
        provider: String,
        /// The entry's model.
        model: String,
        /// When its figures were read.
        as_of: String,
        /// True for the user's imported table.
        imported: bool,
    },
    /// The simulator, priced like a real model so demos show real-looking costs.
    Simulated {
        /// The model it is priced like.
        like: String,
        /// When that model's figures were read.
        as_of: String,
    },
    /// The embedded local model: no per-token charge.
    Local,
}

impl std::fmt::Display for PriceSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown (no prices)"),
            Self::Config => f.write_str("configuration"),
            Self::Table {
                provider,
                model,
                as_of,
                imported,
            } => write!(
                f,
                "{} table: {model} at {provider}, as of {as_of}",
                if *imported { "imported" } else { "price" }
            ),
            Self::Simulated { like, as_of } => {
                write!(f, "simulated: priced like {like}, as of {as_of}")
            }
            Self::Local => f.write_str("local model: no per-token charge"),
        }
    }
}

/// The table entry that prices `ep` (its `provider`, else the one its base URL names), from
/// the user's table first.
pub fn entry_for(ep: &Endpoint) -> Option<(&'static Entry, bool)> {
    let provider = ep
        .provider
        .as_deref()
        .or_else(|| provider_of(&ep.base_url))?;
    if let Some(e) = Table::user().and_then(|t| t.lookup(provider, &ep.model)) {
        return Some((e, true));
    }
    Table::builtin()
        .lookup(provider, &ep.model)
        .map(|e| (e, false))
}

/// Fills in `ep`'s prices and says where they come from: the configuration's when it has
/// them, else the table's, else unknown.
pub fn resolve(ep: &mut Endpoint) {
    if ep.prices.is_known() {
        ep.price_source = PriceSource::Config;
        return;
    }
    match entry_for(ep) {
        Some((e, imported)) => {
            ep.prices = e.prices();
            ep.price_source = PriceSource::Table {
                provider: e.provider.clone(),
                model: e.model.clone(),
                as_of: e.as_of.clone(),
                imported,
            };
        }
        None => ep.price_source = PriceSource::Unknown,
    }
}

/// Prices `ep` like the table's `like` model (any provider's), as a simulator: `false` when
/// the table has no such model.
pub fn simulate(ep: &mut Endpoint, like: &str) -> bool {
    let Some(e) = Table::builtin()
        .entries
        .iter()
        .find(|e| e.model.eq_ignore_ascii_case(like))
    else {
        return false;
    };
    ep.prices = e.prices();
    ep.price_source = PriceSource::Simulated {
        like: e.model.clone(),
        as_of: e.as_of.clone(),
    };
    true
}

/// Reads LiteLLM's `model_prices_and_context_window.json`: its chat models with per-token
/// input and output prices, converted to USD per 1M tokens; `as_of` is when it was imported.
pub fn import_litellm(json: &str, as_of: &str) -> Result<Table, TableError> {
    let bad = |why: String| TableError {
        origin: "LiteLLM file".into(),
        why,
    };
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    let models = v
        .as_object()
        .ok_or_else(|| bad("not a JSON object of models".into()))?;
    let per_m = |x: &serde_json::Value| {
        // Per token → per 1M tokens, rounded off the float noise (3e-07 × 1e6 = 0.30000000000000004).
        x.as_f64().map(|p| (p * 1e6 * 1e6).round() / 1e6)
    };
    let mut table = Table::default();
    for (name, m) in models {
        if m["mode"].as_str() != Some("chat") {
            continue;
        }
        let (Some(input), Some(output)) = (
            per_m(&m["input_cost_per_token"]),
            per_m(&m["output_cost_per_token"]),
        ) else {
            continue;
        };
        let litellm = m["litellm_provider"].as_str().unwrap_or("unknown");
        let provider = match litellm {
            "gemini" | "vertex_ai-language-models" => "google",
            "together_ai" => "together",
            "fireworks_ai" => "fireworks",
            other => other,
        };
        let model = name
            .strip_prefix(&format!("{litellm}/"))
            .unwrap_or(name)
            .to_owned();
        table.entries.push(Entry {
            provider: provider.to_owned(),
            model,
            input,
            output,
            cached_input: per_m(&m["cache_read_input_token_cost"]),
            cache_write: per_m(&m["cache_creation_input_token_cost"]),
            batch_discount: None,
            context_window: m["max_input_tokens"].as_u64(),
            source: "LiteLLM model_prices_and_context_window.json".into(),
            as_of: as_of.to_owned(),
        });
    }
    table
        .entries
        .sort_by(|a, b| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)));
    Ok(table)
}

/// Writes `table` as TOML to `path`.
pub fn write_table(table: &Table, path: &Path) -> std::io::Result<()> {
    let text = toml::to_string(table)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        format!(
            "# Imported by `pagemill prices import`; consulted before pagemill's own table.\n{text}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_every_entry_says_where_it_comes_from() {
        let t = Table::parse(BUILTIN, "data/prices.toml").unwrap();
        assert!(t.entries.len() >= 20);
        for e in &t.entries {
            assert!(e.source.starts_with("https://"), "{e:?}");
            assert!(e.as_of.len() >= 7, "{e:?}");
            assert!(e.context_window.is_some(), "{e:?}");
        }
        let mut keys: Vec<(&str, &str)> = t
            .entries
            .iter()
            .map(|e| (e.provider.as_str(), e.model.as_str()))
            .collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "one entry per model and provider");
        for provider in ["openai", "anthropic", "google"] {
            assert!(
                t.entries.iter().any(|e| e.provider == provider),
                "{provider}"
            );
        }
    }

    #[test]
    fn lookups_take_dated_versions_and_routing_prefixes_but_never_another_provider() {
        let t = Table::builtin();
        assert_eq!(
            t.lookup("openai", "gpt-4o-mini").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(
            t.lookup("openai", "gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini",
            "the longest match, not gpt-4o"
        );
        assert_eq!(t.lookup("openai", "openai/gpt-4o").unwrap().model, "gpt-4o");
        assert_eq!(
            t.lookup("anthropic", "claude-3-5-haiku-20241022")
                .unwrap()
                .cache_write,
            Some(1.00)
        );
        assert!(t.lookup("openai", "gpt-4o-minimal").is_none());
        assert!(
            t.lookup("openai", "gpt-4o-audio-preview").is_none(),
            "another model, not a version"
        );
        assert_eq!(t.lookup("openai", "gpt-4o-latest").unwrap().model, "gpt-4o");
        assert!(
            t.lookup("groq", "gpt-4o-mini").is_none(),
            "not another provider's price"
        );
    }

    #[test]
    fn configuration_wins_a_known_provider_is_priced_a_custom_server_is_not() {
        let mut ep = Endpoint::new("a", "https://api.openai.com/v1", "gpt-4o-mini-2024-07-18");
        resolve(&mut ep);
        assert_eq!(ep.prices.input, Some(0.15));
        assert!(
            ep.price_source
                .to_string()
                .contains("gpt-4o-mini at openai, as of 2025-08")
        );
        let mut own = Endpoint::new("b", "https://api.openai.com/v1", "gpt-4o");
        own.prices = Prices {
            input: Some(1.0),
            output: Some(2.0),
            ..Prices::default()
        };
        resolve(&mut own);
        assert_eq!(
            (own.prices.input, own.price_source),
            (Some(1.0), PriceSource::Config)
        );
        let mut vllm = Endpoint::new("c", "http://10.0.0.5:8000/v1", "gpt-4o-mini");
        resolve(&mut vllm);
        assert!(!vllm.prices.is_known());
        assert_eq!(vllm.price_source.to_string(), "unknown (no prices)");
        vllm.provider = Some("openai".into());
        resolve(&mut vllm);
        assert!(vllm.prices.is_known(), "a named provider is priced");
    }

    #[test]
    fn litellm_files_import_chat_models_per_million_tokens() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "mode": "one of: chat, embedding"},
            "gpt-4o-mini": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07,
                            "cache_read_input_token_cost": 7.5e-08, "litellm_provider": "openai",
                            "max_input_tokens": 128000, "mode": "chat"},
            "groq/llama-3.1-8b-instant": {"input_cost_per_token": 5e-08, "output_cost_per_token": 8e-08,
                            "litellm_provider": "groq", "mode": "chat"},
            "text-embedding-3-small": {"input_cost_per_token": 2e-08, "litellm_provider": "openai", "mode": "embedding"}
        }"#;
        let t = import_litellm(json, "2026-11-30").unwrap();
        assert_eq!(t.entries.len(), 2);
        let mini = t.lookup("openai", "gpt-4o-mini").unwrap();
        assert_eq!(mini.input, 0.15);
        assert_eq!(mini.output, 0.6);
        assert_eq!(mini.cached_input, Some(0.075));
        assert_eq!(mini.context_window, Some(128000));
        assert_eq!(
            t.lookup("groq", "llama-3.1-8b-instant").unwrap().input,
            0.05
        );
        // What is written reads back the same.
        let text = toml::to_string(&t).unwrap();
        assert_eq!(Table::parse(&text, "x").unwrap(), t);
        assert!(import_litellm("[1, 2]", "x").is_err());
    }
}
