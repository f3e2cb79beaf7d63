//! Endpoints: where requests go, what they cost, how fast they may be sent.
//!
//! Read from `pagemill.toml` (`[[endpoint]]` tables) or, with no file, from `OPENAI_API_KEY` and
//! `OPENAI_BASE_URL`. API keys are read from the environment variable an endpoint names and are
//! held in an [`ApiKey`], whose `Debug` and `Display` never show it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ClientError;
use crate::pricing::Prices;

/// The base URL of OpenAI's API, used when `OPENAI_API_KEY` is set without `OPENAI_BASE_URL`.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The configuration file looked for in the working directory.
pub const CONFIG_FILE: &str = "pagemill.toml";

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key, and registers it so outside text is cleaned of it
    /// ([`crate::secrets`]).
    pub fn new(key: impl Into<String>) -> Self {
        let key = key.into();
        crate::secrets::register(&key);
        Self(key)
    }

    /// The key itself, for the one place that needs it: the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Rate and concurrency limits of an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (prompt + max completion of each request).
    pub tokens_per_minute: Option<u64>,
    /// Requests in flight at once.
    pub max_concurrency: Option<usize>,
}

/// How requests reach an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransportConfig {
    /// Speak HTTP/2 only, every request multiplexed on one connection (ALPN `h2` over TLS,
    /// prior knowledge over plain HTTP); a server without HTTP/2 then fails to connect.
    pub http2: bool,
    /// Open a new connection for every request (for keep-alive A/B comparisons).
    pub fresh_connections: bool,
    /// How long an idle pooled connection is kept, in seconds.
    pub pool_idle_timeout_secs: f64,
    /// Bound on establishing a connection (TCP and TLS), in seconds.
    pub connect_timeout_secs: f64,
    /// Bound on the whole request, in seconds.
    pub request_timeout_secs: f64,
    /// Bound on silence between two reads of the response body, in seconds.
    pub idle_timeout_secs: f64,
    /// Also trust the certificates in this PEM file: a private CA, or the self-signed one a
    /// `pagemill sim` with TLS writes (`--ca-out`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// The same, as PEM text set by code (the in-process simulator); never read from a file.
    #[serde(skip)]
    pub ca_pem: Option<String>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            http2: false,
            fresh_connections: false,
            pool_idle_timeout_secs: 90.0,
            connect_timeout_secs: 10.0,
            request_timeout_secs: 600.0,
            idle_timeout_secs: 120.0,
            ca_file: None,
            ca_pem: None,
        }
    }
}

/// Retry policy of an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// First backoff delay, in milliseconds (doubles each time, with jitter).
    pub base_delay_ms: u64,
    /// Longest single delay, in milliseconds (a longer `Retry-After` is still honoured).
    pub max_delay_ms: u64,
    /// Give up once this much time has passed since the first attempt, in seconds.
    pub max_elapsed_secs: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            max_elapsed_secs: 300.0,
        }
    }
}

/// One OpenAI-compatible endpoint.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Name used on the command line and in reports.
    pub name: String,
    /// Base URL up to and including the version, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model name sent in requests.
    pub model: String,
    /// Environment variable holding the API key; none for local servers.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The key, read from `api_key_env` when the configuration is loaded.
    #[serde(skip)]
    pub api_key: Option<ApiKey>,
    /// Prices in USD per 1M tokens; from the price table when not given (see
    /// [`crate::prices`]).
    #[serde(default)]
    pub prices: Prices,
    /// The provider, for the price table (`openai`, `anthropic`, `google`, `groq`, …): known
    /// from the base URL for the hosted APIs, to be named for others.
    #[serde(default)]
    pub provider: Option<String>,
    /// Where `prices` come from (filled in when the configuration is loaded).
    #[serde(skip)]
    pub price_source: crate::prices::PriceSource,
    /// The API spoken (`chat`, `responses`, `anthropic`); the provider's when not given (see
    /// [`crate::dialect`]).
    #[serde(default)]
    pub api: Option<crate::dialect::Api>,
    /// How the key is sent (`bearer`, `x-api-key`, `api-key`); the provider's when not given.
    #[serde(default)]
    pub auth: Option<crate::dialect::Auth>,
    /// Query parameters added to every URL (Azure's `api-version`; the provider's are added
    /// when not given).
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// How hard a reasoning model thinks (`minimal`, `low`, `medium`, `high`), sent in the API's
    /// own way; the model's default when not given.
    #[serde(default)]
    pub reasoning_effort: Option<crate::wire::ReasoningEffort>,
    /// Rate and concurrency limits.
    #[serde(default)]
    pub limits: Limits,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra body parameters merged into every request (request fields win).
    #[serde(default)]
    pub body: Map<String, Value>,
    /// Transport settings.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Retry settings.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Client-side tokenizer for servers that report no usage: `o200k_base` (default),
    /// `cl100k_base`, or the path of a Hugging Face `tokenizer.json`.
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// Send `prompt_cache_key` (OpenAI's routing hint for its prompt cache) with pipeline
    /// requests; off by default because strict servers refuse unknown parameters.
    #[serde(default)]
    pub prompt_cache_key: bool,
    /// Narrow the answer schema of each pipeline request to that request (exactly its item
    /// count, only its item ids). A big help to local constrained decoding; off by default
    /// because providers that compile schemas pay for every new one.
    #[serde(default)]
    pub per_request_schema: bool,
    /// How the pipeline prompts this endpoint's model: `standard`, or `small` for models of a
    /// few hundred million parameters (smaller packs, tighter answer bounds).
    #[serde(default)]
    pub prompt_profile: PromptProfile,
    /// How a conversation is written as one prompt, for `run --array` (legacy completions
    /// take text, not messages): `chatml` (`<|im_start|>role` … `<|im_end|>`: Qwen, SmolLM and
    /// many more), `llama3`, or a Jinja chat template as Hugging Face tokenizers carry them
    /// (`messages`, `add_generation_prompt`). The local model's comes from its GGUF.
    #[serde(default)]
    pub prompt_template: Option<String>,
}

/// How the pipeline prompts a model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptProfile {
    /// Packs of up to 16 items, today's bounds.
    #[default]
    Standard,
    /// A tiny model: few items a request, tight bounds on what an answer may hold.
    Small,
}

impl Endpoint {
    /// The tokenizer this endpoint's counts and quotes use: the one it names, else o200k.
    pub fn tokenizer(&self) -> Result<crate::Tokenizer, ClientError> {
        match self.tokenizer.as_deref() {
            None => Ok(crate::Tokenizer::o200k()),
            Some(name) => crate::Tokenizer::by_name(name).map_err(|message| ClientError::Config {
                origin: format!("endpoint `{}`", self.name),
                message,
            }),
        }
    }
}

impl std::str::FromStr for PromptProfile {
    type Err = String;

    /// `default` (or `standard`) or `small`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "default" | "standard" => Ok(Self::Standard),
            "small" => Ok(Self::Small),
            other => Err(format!(
                "prompt profile `{other}`: expected default or small"
            )),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_header(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key_env", &self.api_key_env)
            .field("api_key", &self.api_key)
            .field("prices", &self.prices)
            .field("price_source", &self.price_source)
            .field("api", &self.api)
            .field("auth", &self.auth)
            .field("query", &self.query)
            .field("reasoning_effort", &self.reasoning_effort)
            .field("limits", &self.limits)
            .field("headers", &headers)
            .field("body", &self.body)
            .field("transport", &self.transport)
            .field("retry", &self.retry)
            .field("tokenizer", &self.tokenizer)
            .field("prompt_cache_key", &self.prompt_cache_key)
            .field("per_request_schema", &self.per_request_schema)
            .field("prompt_template", &self.prompt_template)
            .field("prompt_profile", &self.prompt_profile)
            .finish()
    }
}

/// The user's configuration file: `$XDG_CONFIG_HOME/pagemill/config.toml`, or
/// `$HOME/.config/pagemill/config.toml`.
fn user_config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("pagemill").join("config.toml"))
}

/// Replaces `${VAR}` in every string of `value` by the variable's value (`$${` is a literal
/// `${`); a variable that is not set is an error naming it.
fn expand_vars(
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), String> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                if rest[..i].ends_with('$') {
                    out.push_str(&rest[..i - 1]);
                    out.push_str("${");
                    rest = &rest[i + 2..];
                    continue;
                }
                out.push_str(&rest[..i]);
                let Some(end) = rest[i..].find('}') else {
                    return Err(format!("`{s}`: `${{` without its `}}`"));
                };
                let name = &rest[i + 2..i + end];
                let v = env(name).ok_or_else(|| {
                    format!(
                        "`${{{name}}}` is used in the configuration but not set in the environment"
                    )
                })?;
                out.push_str(&v);
                rest = &rest[i + end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(a) => {
            for v in a {
                expand_vars(v, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, v) in t.iter_mut() {
                expand_vars(v, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Header names whose values are secrets (keys, tokens, credentials).
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "auth", "token", "secret", "cookie", "credential"]
        .iter()
        .any(|s| n.contains(s))
}

impl Endpoint {
    /// An endpoint with defaults for everything but its address and model.
    pub fn new(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            api_key: None,
            prices: Prices::default(),
            provider: None,
            price_source: crate::prices::PriceSource::Unknown,
            api: None,
            auth: None,
            query: BTreeMap::new(),
            reasoning_effort: None,
            limits: Limits::default(),
            headers: BTreeMap::new(),
            body: Map::new(),
            transport: TransportConfig::default(),
            retry: RetryConfig::default(),
            tokenizer: None,
            prompt_cache_key: false,
            per_request_schema: false,
            prompt_template: None,
            prompt_profile: PromptProfile::Standard,
        }
    }

    /// The URL of a path under the base URL, e.g. `url("chat/completions")`; a query in the
    /// base URL (`…/deployments/d?api-version=…`) goes after the path.
    pub fn url(&self, path: &str) -> String {
        let (base, query) = match self.base_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (self.base_url.as_str(), None),
        };
        let mut url = format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(q);
        }
        url
    }

    /// Reads the key from `api_key_env` through `env` (a stand-in for `std::env::var`).
    pub fn resolve_key(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if let Some(var) = &self.api_key_env {
            self.api_key = env(var).filter(|k| !k.is_empty()).map(ApiKey::new);
        }
    }

    /// Fails when the endpoint names a key variable that is not set.
    pub fn require_key(&self) -> Result<(), ClientError> {
        match (&self.api_key_env, &self.api_key) {
            (Some(var), None) => Err(ClientError::MissingApiKey {
                endpoint: self.name.clone(),
                var: var.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Duration helpers for the transport.
    pub(crate) fn secs(s: f64) -> Duration {
        Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
    }
}

/// The endpoints a run may use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[[endpoint]]` tables.
    #[serde(default)]
    pub endpoint: Vec<Endpoint>,
    /// Where the configuration came from (a path, or the environment).
    #[serde(skip)]
    pub origin: Option<String>,
}

impl Config {
    /// Parses a configuration file's text; keys are read through `env`.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ClientError> {
        let bad = |message: String| ClientError::Config {
            origin: origin.to_owned(),
            message,
        };
        let mut raw: toml::Value = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        expand_vars(&mut raw, env).map_err(bad)?;
        let mut config: Config = raw
            .try_into()
            .map_err(|e: toml::de::Error| bad(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for ep in &mut config.endpoint {
            if !seen.insert(ep.name.clone()) {
                return Err(ClientError::Config {
                    origin: origin.to_owned(),
                    message: format!("endpoint `{}` is defined twice", ep.name),
                });
            }
            if !(ep.base_url.starts_with("http://") || ep.base_url.starts_with("https://")) {
                return Err(ClientError::Config {
                    origin: origin.to_owned(),
                    message: format!(
                        "endpoint `{}`: base_url `{}` must start with http:// or https://",
                        ep.name, ep.base_url
                    ),
                });
            }
            ep.resolve_key(env);
            crate::prices::resolve(ep);
        }
        config.origin = Some(origin.to_owned());
        Ok(config)
    }

    /// The default endpoint from `OPENAI_API_KEY` / `OPENAI_BASE_URL` / `OPENAI_MODEL`, if
    /// either of the first two is set.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        let key = env("OPENAI_API_KEY").filter(|k| !k.is_empty());
        let base = env("OPENAI_BASE_URL").filter(|k| !k.is_empty());
        if key.is_none() && base.is_none() {
            return None;
        }
        let model = env("OPENAI_MODEL").unwrap_or_else(|| "gpt-4o-mini".to_owned());
        let mut ep = Endpoint::new(
            "default",
            base.unwrap_or_else(|| OPENAI_BASE_URL.to_owned()),
            model,
        );
        ep.api_key_env = key.as_ref().map(|_| "OPENAI_API_KEY".to_owned());
        ep.api_key = key.map(ApiKey::new);
        crate::prices::resolve(&mut ep);
        Some(Self {
            endpoint: vec![ep],
            origin: Some("environment (OPENAI_API_KEY / OPENAI_BASE_URL)".to_owned()),
        })
    }

    /// Loads `path`, or else `$PAGEMILL_CONFIG`, or else `./pagemill.toml`, or else
    /// `$XDG_CONFIG_HOME/pagemill/config.toml` (`~/.config/…` when unset), or else the
    /// environment's default endpoint; an empty configuration when there is none of these.
    /// `${VAR}` in any string value is the environment variable's value.
    pub fn load(path: Option<&Path>) -> Result<Self, ClientError> {
        let env = |k: &str| std::env::var(k).ok();
        let given: Option<PathBuf> = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("PAGEMILL_CONFIG").map(PathBuf::from));
        let candidates: Vec<(PathBuf, bool)> = match given {
            Some(p) => vec![(p, true)],
            None => std::iter::once(PathBuf::from(CONFIG_FILE))
                .chain(user_config_file(&env))
                .map(|p| (p, false))
                .collect(),
        };
        for (file, must_exist) in candidates {
            match std::fs::read_to_string(&file) {
                Ok(text) => return Self::parse(&text, &file.display().to_string(), &env),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => continue,
                Err(e) => {
                    return Err(ClientError::Config {
                        origin: file.display().to_string(),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(Self::from_env(&env).unwrap_or_default())
    }

    /// The endpoint called `name`, or the first one when `name` is `None`.
    pub fn get(&self, name: Option<&str>) -> Result<&Endpoint, ClientError> {
        match name {
            Some(n) => self.endpoint.iter().find(|e| e.name == n).ok_or_else(|| {
                ClientError::UnknownEndpoint {
                    name: n.to_owned(),
                    known: self.endpoint.iter().map(|e| e.name.clone()).collect(),
                }
            }),
            None => self.endpoint.first().ok_or(ClientError::NoEndpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[endpoint]]
name = "hosted"
base_url = "https://api.example.com/v1"
model = "small-model"
api_key_env = "HOSTED_KEY"
headers = { "X-Org" = "acme", "X-Api-Key" = "hdr-secret" }
body = { temperature = 0 }
prices = { input = 0.15, cached_input = 0.075, output = 0.6, batch_discount = 0.5 }
limits = { requests_per_minute = 500, tokens_per_minute = 200000, max_concurrency = 16 }
transport = { http2 = true, pool_idle_timeout_secs = 30 }

[[endpoint]]
name = "local"
base_url = "http://127.0.0.1:8080/v1/"
model = "m"
"#;

    fn env(k: &str) -> Option<String> {
        (k == "HOSTED_KEY").then(|| "sk-very-secret-123".to_owned())
    }

    #[test]
    fn parses_every_table_and_reads_the_key() {
        let c = Config::parse(SAMPLE, "pagemill.toml", &env).unwrap();
        let hosted = c.get(Some("hosted")).unwrap();
        assert_eq!(
            hosted.api_key.as_ref().unwrap().expose(),
            "sk-very-secret-123"
        );
        assert_eq!(hosted.prices.cached_input, Some(0.075));
        assert_eq!(hosted.limits.max_concurrency, Some(16));
        assert!(hosted.transport.http2);
        assert_eq!(hosted.transport.pool_idle_timeout_secs, 30.0);
        assert_eq!(hosted.body["temperature"], 0);
        let local = c.get(None).unwrap();
        assert_eq!(local.name, "hosted");
        assert_eq!(
            c.get(Some("local")).unwrap().url("chat/completions"),
            "http://127.0.0.1:8080/v1/chat/completions"
        );
        assert!(c.get(Some("local")).unwrap().require_key().is_ok());
    }

    #[test]
    fn keys_never_print() {
        let c = Config::parse(SAMPLE, "pagemill.toml", &env).unwrap();
        let shown = format!(
            "{c:?} {:?} {}",
            c.endpoint[0],
            c.endpoint[0].api_key.as_ref().unwrap()
        );
        assert!(!shown.contains("sk-very-secret-123"), "{shown}");
        assert!(!shown.contains("hdr-secret"), "{shown}");
        assert!(shown.contains("acme"));
    }

    #[test]
    fn missing_key_is_a_clear_error_naming_the_variable() {
        let c = Config::parse(SAMPLE, "pagemill.toml", &|_| None).unwrap();
        let err = c.get(Some("hosted")).unwrap().require_key().unwrap_err();
        assert_eq!(
            err.to_string(),
            "endpoint `hosted` needs an API key in the environment variable `HOSTED_KEY`, which is not set"
        );
    }

    #[test]
    fn typos_and_duplicates_are_refused() {
        let typo = "[[endpoint]]\nname='a'\nbase_url='http://x'\nmodel='m'\nprices={inptu=1}\n";
        let err = Config::parse(typo, "f.toml", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("inptu"), "{err}");
        let dup = "[[endpoint]]\nname='a'\nbase_url='http://x'\nmodel='m'\n[[endpoint]]\nname='a'\nbase_url='http://y'\nmodel='m'\n";
        let err = Config::parse(dup, "f.toml", &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("defined twice"), "{err}");
        let scheme = "[[endpoint]]\nname='a'\nbase_url='ftp://x'\nmodel='m'\n";
        assert!(Config::parse(scheme, "f.toml", &|_| None).is_err());
    }

    #[test]
    fn variables_in_values_come_from_the_environment() {
        let env = |k: &str| match k {
            "HOST" => Some("gpu-1".to_owned()),
            "ORG" => Some("acme \"quoted\"".to_owned()),
            _ => None,
        };
        let text = "[[endpoint]]\nname='a'\nbase_url='http://${HOST}:8000/v1'\nmodel='m'\n\
                    headers = { X-Org = '${ORG}', X-Literal = '$${HOST}' }\n";
        let c = Config::parse(text, "f.toml", &env).unwrap();
        let ep = &c.endpoint[0];
        assert_eq!(ep.base_url, "http://gpu-1:8000/v1");
        assert_eq!(ep.headers["X-Org"], "acme \"quoted\"");
        assert_eq!(ep.headers["X-Literal"], "${HOST}");
        let err = Config::parse(
            "[[endpoint]]\nname='a'\nbase_url='http://${NOPE}/v1'\nmodel='m'\n",
            "f.toml",
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("${NOPE}") && err.contains("not set"), "{err}");
    }

    #[test]
    fn the_user_configuration_lives_under_xdg_config_home_else_home() {
        let xdg = |k: &str| match k {
            "XDG_CONFIG_HOME" => Some("/x/cfg".to_owned()),
            "HOME" => Some("/home/u".to_owned()),
            _ => None,
        };
        assert_eq!(
            user_config_file(&xdg),
            Some(PathBuf::from("/x/cfg/pagemill/config.toml"))
        );
        let home = |k: &str| (k == "HOME").then(|| "/home/u".to_owned());
        assert_eq!(
            user_config_file(&home),
            Some(PathBuf::from("/home/u/.config/pagemill/config.toml"))
        );
    }

    #[test]
    fn openai_environment_gives_a_default_endpoint() {
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-env".to_owned()),
            _ => None,
        };
        let c = Config::from_env(&env).unwrap();
        let ep = c.get(None).unwrap();
        assert_eq!(ep.base_url, OPENAI_BASE_URL);
        assert_eq!(ep.api_key.as_ref().unwrap().expose(), "sk-env");
        // OpenAI's own API, with the default model: priced from the table, and saying so.
        assert_eq!(ep.prices.input, Some(0.15));
        assert!(matches!(
            ep.price_source,
            crate::prices::PriceSource::Table { .. }
        ));
        let env = |k: &str| (k == "OPENAI_BASE_URL").then(|| "http://127.0.0.1:9/v1".to_owned());
        let c = Config::from_env(&env).unwrap();
        assert!(c.endpoint[0].api_key.is_none());
        assert!(
            !c.endpoint[0].prices.is_known(),
            "no invented prices for another server"
        );
        assert!(Config::from_env(&|_| None).is_none());
    }

    #[test]
    fn unknown_endpoint_lists_the_known_ones() {
        let c = Config::parse(SAMPLE, "pagemill.toml", &env).unwrap();
        let err = c.get(Some("nope")).unwrap_err().to_string();
        assert_eq!(err, "no endpoint named `nope` (known: hosted, local)");
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    use crate::dialect::{Api, Auth, Dialect};

    #[test]
    fn the_shipped_example_configuration_parses_with_one_endpoint_per_provider() {
        let text = include_str!("../../../pagemill.example.toml");
        let c = Config::parse(text, "pagemill.example.toml", &|_| Some("k".into())).unwrap();
        let spoken: Vec<(&str, String, Api, Auth, bool)> = c
            .endpoint
            .iter()
            .map(|ep| {
                let d = Dialect::of(ep);
                let priced = ep.prices.is_known();
                (ep.name.as_str(), d.name, d.api, d.auth, priced)
            })
            .collect();
        let want = [
            ("openai-mini", "openai", Api::Chat, Auth::Bearer, true),
            (
                "openai-responses",
                "openai",
                Api::Responses,
                Auth::Bearer,
                true,
            ),
            (
                "anthropic-haiku",
                "anthropic",
                Api::Anthropic,
                Auth::XApiKey,
                true,
            ),
            ("azure-4o-mini", "azure", Api::Chat, Auth::ApiKey, true),
            ("gemini-flash", "google", Api::Chat, Auth::Bearer, true),
            (
                "deepseek-reasoner",
                "deepseek",
                Api::Chat,
                Auth::Bearer,
                true,
            ),
            ("groq-llama", "groq", Api::Chat, Auth::Bearer, true),
            (
                "local-vllm",
                "openai-compatible",
                Api::Chat,
                Auth::Bearer,
                false,
            ),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(n, p, a, k, priced)| (*n, (*p).to_owned(), *a, *k, *priced))
            .collect();
        assert_eq!(spoken, want);
        assert_eq!(c.endpoint[7].body["top_k"], 20);
        let anthropic = Dialect::of(&c.endpoint[2]);
        assert_eq!(anthropic.headers["anthropic-version"], "2023-06-01");
        assert_eq!(
            c.endpoint[1].reasoning_effort,
            Some(crate::wire::ReasoningEffort::Minimal)
        );
        let azure = Dialect::of(&c.endpoint[3]);
        assert_eq!(azure.query["api-version"], "2024-10-21");
        assert_eq!(
            c.endpoint[3].price_source,
            crate::prices::PriceSource::Config
        );
    }
}
