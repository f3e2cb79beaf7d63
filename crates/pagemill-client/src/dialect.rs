//! How an endpoint speaks: which API (OpenAI chat completions, OpenAI's Responses API or
//! Anthropic's Messages API), how it authenticates, what it adds to every request, and where
//! its streams carry usage. Hosted providers' quirks are data (`data/providers.toml`), not code
//! paths: a [`Dialect`] is looked up by the endpoint's provider, and the endpoint's own keys
//! override it.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Endpoint;

/// The table that ships with pagemill.
const BUILTIN: &str = include_str!("../data/providers.toml");

/// The API an endpoint is spoken to in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// OpenAI chat completions (`POST chat/completions`), what nearly every server speaks.
    #[default]
    Chat,
    /// OpenAI's Responses API (`POST responses`).
    Responses,
    /// Anthropic's Messages API (`POST messages`).
    Anthropic,
}

impl Api {
    /// The path under the base URL a request goes to.
    pub fn path(self) -> &'static str {
        match self {
            Api::Chat => "chat/completions",
            Api::Responses => "responses",
            Api::Anthropic => "messages",
        }
    }

    /// Its name in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            Api::Chat => "chat",
            Api::Responses => "responses",
            Api::Anthropic => "anthropic",
        }
    }
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Api {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "chat" | "openai" => Ok(Api::Chat),
            "responses" => Ok(Api::Responses),
            "anthropic" | "messages" => Ok(Api::Anthropic),
            other => Err(format!(
                "api `{other}`: expected chat, responses or anthropic"
            )),
        }
    }
}

/// How the API key is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// `Authorization: Bearer KEY`.
    #[default]
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
    /// `api-key: KEY` (Azure OpenAI).
    ApiKey,
}

impl Auth {
    /// The header that carries the key, and its value.
    pub fn header(self, key: &str) -> (&'static str, String) {
        match self {
            Auth::Bearer => ("authorization", format!("Bearer {key}")),
            Auth::XApiKey => ("x-api-key", key.to_owned()),
            Auth::ApiKey => ("api-key", key.to_owned()),
        }
    }
}

/// Where a stream's usage comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamUsage {
    /// In a last chunk when `stream_options.include_usage` asks for it (OpenAI's way).
    #[default]
    Requested,
    /// In the last chunk, unasked; `stream_options` is not sent.
    Always,
    /// Running totals in every chunk, the last one final.
    EveryChunk,
    /// Nowhere: a stream's counts come from the tokenizer.
    Never,
}

/// One provider's way of speaking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dialect {
    /// The provider (`openai`, `anthropic`, …), or `openai-compatible` for unknown servers.
    pub name: String,
    /// Hosts of its base URLs (a leading `.` matches any host ending so).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The API spoken.
    #[serde(default)]
    pub api: Api,
    /// How the key is sent.
    #[serde(default)]
    pub auth: Auth,
    /// Headers sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query parameters added to every URL.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Where a stream's usage comes.
    #[serde(default)]
    pub stream_usage: StreamUsage,
    /// Other places in a chunk where usage is found (dotted paths, e.g. `x_groq.usage`).
    #[serde(default)]
    pub usage_paths: Vec<String>,
    /// What is different about it.
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Default, Deserialize)]
struct Table {
    #[serde(default)]
    provider: Vec<Dialect>,
}

/// The dialects that ship with pagemill.
pub fn table() -> &'static [Dialect] {
    static TABLE: OnceLock<Vec<Dialect>> = OnceLock::new();
    // The file is pagemill's own and a test parses it: an error here is a build gone wrong,
    // and plain chat completions (no table) is the safe answer to it.
    TABLE.get_or_init(|| {
        toml::from_str::<Table>(BUILTIN)
            .map(|t| t.provider)
            .unwrap_or_default()
    })
}

/// The host of a base URL, lowercased.
fn host(base_url: &str) -> String {
    base_url
        .split("://")
        .nth(1)
        .unwrap_or(base_url)
        .split(['/', ':', '?'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The provider a base URL belongs to, for the hosted APIs the table knows.
pub fn provider_of(base_url: &str) -> Option<&'static str> {
    let host = host(base_url);
    table()
        .iter()
        .find(|d| {
            d.hosts.iter().any(|h| match h.strip_prefix('.') {
                Some(suffix) => host.ends_with(&format!(".{suffix}")),
                None => host == *h,
            })
        })
        .map(|d| d.name.as_str())
}

impl Dialect {
    /// The dialect of a named provider in the table.
    pub fn named(provider: &str) -> Option<&'static Dialect> {
        table().iter().find(|d| d.name == provider)
    }

    /// What an endpoint speaks: its provider's dialect (named, or known from the base URL),
    /// else plain chat completions; the endpoint's `api`, `auth`, `headers` and `query` win.
    pub fn of(endpoint: &Endpoint) -> Dialect {
        let provider = endpoint
            .provider
            .as_deref()
            .or_else(|| provider_of(&endpoint.base_url));
        let known = provider.and_then(Dialect::named);
        let mut d = known.cloned().unwrap_or_else(|| Dialect {
            name: provider.unwrap_or("openai-compatible").to_owned(),
            ..Dialect::default()
        });
        if let Some(api) = endpoint.api {
            if api != d.api {
                // Another API of the same provider (OpenAI's Responses API): its auth stays, the
                // stream usage is the API's own.
                d.stream_usage = StreamUsage::default();
            }
            if known.is_none() && api == Api::Anthropic {
                // A server of no known provider speaking the Messages API takes its key as
                // that API does.
                d.auth = Auth::XApiKey;
            }
            d.api = api;
        }
        if let Some(auth) = endpoint.auth {
            d.auth = auth;
        }
        for (k, v) in &endpoint.query {
            d.query.insert(k.clone(), v.clone());
        }
        // Header names are case-insensitive: the endpoint's own replace the dialect's.
        d.headers
            .retain(|k, _| !endpoint.headers.keys().any(|h| h.eq_ignore_ascii_case(k)));
        if d.api == Api::Anthropic && !d.headers.contains_key("anthropic-version") {
            let set = endpoint
                .headers
                .keys()
                .any(|h| h.eq_ignore_ascii_case("anthropic-version"));
            if !set {
                d.headers
                    .insert("anthropic-version".into(), ANTHROPIC_VERSION.into());
            }
        }
        d
    }

    /// Whether a streaming chat request should carry `stream_options.include_usage`.
    pub fn asks_stream_usage(&self) -> bool {
        self.api == Api::Chat && self.stream_usage == StreamUsage::Requested
    }
}

/// The `anthropic-version` sent when neither the table nor the endpoint names one.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_names_each_provider_once() {
        let t: Table = toml::from_str(BUILTIN).unwrap();
        assert!(t.provider.len() >= 9);
        let mut names: Vec<_> = t.provider.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), t.provider.len());
        assert!(t.provider.iter().all(|d| !d.hosts.is_empty()));
    }

    #[test]
    fn providers_are_known_from_their_hosts() {
        assert_eq!(provider_of("https://api.openai.com/v1"), Some("openai"));
        assert_eq!(
            provider_of("https://api.anthropic.com/v1"),
            Some("anthropic")
        );
        assert_eq!(
            provider_of("https://my-res.openai.azure.com/openai/deployments/gpt4o"),
            Some("azure")
        );
        assert_eq!(provider_of("https://openai.azure.com.evil.example/"), None);
        assert_eq!(provider_of("http://127.0.0.1:8000/v1"), None);
    }

    #[test]
    fn an_endpoint_overrides_its_providers_dialect() {
        let mut ep = Endpoint::new("a", "https://api.anthropic.com/v1", "claude-3-5-haiku");
        let d = Dialect::of(&ep);
        assert_eq!((d.api, d.auth), (Api::Anthropic, Auth::XApiKey));
        assert_eq!(d.headers["anthropic-version"], "2023-06-01");
        ep.headers
            .insert("Anthropic-Version".into(), "2099-01-01".into());
        assert!(Dialect::of(&ep).headers.is_empty());

        let mut local = Endpoint::new("l", "http://127.0.0.1:9/v1", "m");
        assert_eq!(Dialect::of(&local).api, Api::Chat);
        assert!(Dialect::of(&local).asks_stream_usage());
        local.api = Some(Api::Anthropic);
        let d = Dialect::of(&local);
        assert_eq!(d.api, Api::Anthropic);
        assert_eq!(d.auth, Auth::XApiKey);
        assert_eq!(d.headers["anthropic-version"], ANTHROPIC_VERSION);

        let azure = Endpoint::new("z", "https://r.openai.azure.com/openai/deployments/d", "m");
        let d = Dialect::of(&azure);
        assert_eq!(d.auth, Auth::ApiKey);
        assert!(d.query.contains_key("api-version"));
    }
}
