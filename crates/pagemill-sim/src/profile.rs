//! How a simulated provider behaves: latency, prompt cache, rate limits, faults, framing,
//! content and batch settings. Profiles are TOML files or named presets (plain functions).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A simulated provider's behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Name shown in logs.
    pub name: String,
    /// Seed of every random choice (jitter, faults, content), so a run can be repeated.
    pub seed: u64,
    /// Model name listed and answered as.
    pub model: String,
    /// Timing.
    pub latency: Latency,
    /// Prompt-cache emulation.
    pub cache: Cache,
    /// Rate limits.
    pub rate_limits: RateLimits,
    /// Injected faults.
    pub faults: Faults,
    /// Stream framing quirks applied to every stream.
    pub framing: FramingQuirks,
    /// What answers contain.
    pub content: Content,
    /// The batch API.
    pub batch: Batch,
    /// The network between client and server: round trips, TLS, connection limits.
    pub network: Network,
    /// Answers from a gold file, with errors at set rates (`pagemill eval`'s honest tests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<crate::gold::GoldMode>,
    /// The model of pagemill's price table this simulator is priced like, so a demo on the
    /// built-in `sim` endpoint shows real-looking costs (labelled simulated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priced_like: Option<String>,
}

/// The network between the client and the simulated provider. On loopback a connection costs
/// ~0.2 ms and a request no flight time, so connection reuse shows no effect; these put back
/// what a real network costs, by sleeping (never spinning), and the log records what was spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// Round-trip time, ms (0: loopback as it is). Every request pays one (its flight there
    /// and its answer's flight back); a new connection pays its handshakes too.
    pub rtt_ms: f64,
    /// Up to this much more a round trip, uniformly at random, ms.
    pub rtt_jitter_ms: f64,
    /// Real TLS (`"1.2"` or `"1.3"`, with a certificate the simulator makes at start and
    /// `https://` URLs; clients trust it through `ca_file`), or `"none"`. A new connection's
    /// handshakes take one round trip for TCP, one more for TLS 1.3 and two for TLS 1.2.
    pub tls: TlsVersion,
    /// Offer HTTP/2 by ALPN on TLS connections (plain connections speak it by prior
    /// knowledge either way).
    pub http2: bool,
    /// Extra wait before a new connection's first answer, ms: the first bytes of a cold
    /// connection crawl while TCP's slow start opens its window.
    pub slow_start_ms: f64,
    /// Close a kept-alive connection idle this long, ms (0: never), as providers' load
    /// balancers do.
    pub idle_timeout_ms: u64,
    /// Close a connection after this many requests (0: no limit); the last answer says
    /// `Connection: close`.
    pub max_requests_per_connection: u64,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            rtt_ms: 0.0,
            rtt_jitter_ms: 0.0,
            tls: TlsVersion::None,
            http2: false,
            slow_start_ms: 0.0,
            idle_timeout_ms: 0,
            max_requests_per_connection: 0,
        }
    }
}

impl Network {
    /// Round trips a new connection's handshakes take before its first request can go out.
    pub fn handshake_round_trips(&self) -> u32 {
        1 + match self.tls {
            TlsVersion::None => 0,
            TlsVersion::Tls13 => 1,
            TlsVersion::Tls12 => 2,
        }
    }
}

/// Which TLS a simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// Plain HTTP.
    #[serde(rename = "none")]
    None,
    /// TLS 1.2 (two round trips of handshake).
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 (one round trip of handshake).
    #[serde(rename = "1.3")]
    Tls13,
}

/// The latency model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Latency {
    /// Fixed part of the time to first token, in milliseconds.
    pub ttft_base_ms: f64,
    /// Up to this much more, uniformly at random, in milliseconds.
    pub ttft_jitter_ms: f64,
    /// Uncached prompt tokens processed per second (0: prefill is free).
    pub prefill_tokens_per_sec: f64,
    /// Tokens one stream decodes per second when alone.
    pub decode_tokens_per_sec: f64,
    /// Tokens per second shared by all streams: with n streams, each gets at most 1/n of it.
    pub aggregate_tokens_per_sec: f64,
    /// Tokens sent per streamed chunk (more than one mimics batched or speculative decoding).
    pub tokens_per_chunk: u32,
    /// Requests served at once; more wait in a queue.
    pub max_concurrency: usize,
    /// Send `: keep-alive` comments this often while a stream waits (0: never).
    pub keepalive_ms: u64,
    /// Write every SSE event on its own, as vLLM and llama-server write each token, even when
    /// nothing paces the stream (otherwise an unpaced answer goes out in one write, and a
    /// stream behind its schedule catches up in one): the case a client meets in production,
    /// one read and one wakeup an event.
    pub write_each_event: bool,
}

/// The prompt cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cache {
    /// Cache prompt prefixes at all.
    pub enabled: bool,
    /// How cached tokens are reported.
    pub dialect: CacheDialect,
    /// Tokens per hashed block.
    pub block_tokens: usize,
    /// A prefix shorter than this is never served from cache.
    pub min_prefix_tokens: usize,
    /// Blocks kept (least recently used ones are evicted).
    pub capacity_blocks: usize,
}

/// The usage dialect a provider reports cached tokens in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheDialect {
    /// `prompt_tokens_details.cached_tokens`.
    Openai,
    /// `prompt_cache_hit_tokens` / `prompt_cache_miss_tokens`.
    Deepseek,
    /// `input_tokens` (uncached) + `cache_read_input_tokens` + `cache_creation_input_tokens`.
    Anthropic,
    /// Cached tokens are not reported at all.
    None,
}

/// Rate limits, replenished continuously.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// Requests per minute (0: unlimited).
    pub requests_per_minute: u64,
    /// Tokens per minute, prompt + `max_tokens` (0: unlimited).
    pub tokens_per_minute: u64,
    /// Refuse everything with 429 `insufficient_quota`.
    pub insufficient_quota: bool,
}

/// Faults: each drawn with its probability per chat request, unless the script says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Probability of a 429 with `Retry-After` (as a provider's burst limit answers).
    pub status_429: f64,
    /// The `Retry-After` of a 429 fault, in milliseconds.
    pub retry_after_ms: u64,
    /// Probability of a 500.
    pub status_500: f64,
    /// Probability of a 502.
    pub status_502: f64,
    /// Probability of a 503.
    pub status_503: f64,
    /// Probability of closing the connection before headers.
    pub reset_before_headers: f64,
    /// Probability of breaking the connection halfway through the answer.
    pub reset_mid_stream: f64,
    /// Probability of ending the stream halfway with no usage and no `[DONE]`.
    pub truncated: f64,
    /// Probability of one chunk of broken JSON halfway.
    pub malformed_chunk: f64,
    /// Probability of headers delayed by `slow_headers_ms`.
    pub slow_headers: f64,
    /// The delay of a slow-headers fault, in milliseconds.
    pub slow_headers_ms: u64,
    /// Fault names for the first chat requests, in order (`ok` for none); after the script,
    /// the probabilities apply. Names: `status_429`, `status_500`, `status_502`, `status_503`,
    /// `reset_before_headers`, `reset_mid_stream`, `truncated`, `malformed_chunk`,
    /// `slow_headers`, `crlf`, `no_space`, `multiline_data`, `split_utf8`, `late_end`,
    /// `close_after_stream`, `ok`.
    pub script: Vec<String>,
}

/// Framing quirks of event streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FramingQuirks {
    /// CRLF line ends.
    pub crlf: bool,
    /// `data:x` without the space.
    pub no_space: bool,
    /// Each JSON event split over several `data:` lines.
    pub multiline_data: bool,
    /// Multibyte UTF-8 characters split across two writes.
    pub split_utf8: bool,
    /// The body ends in a separate, later write after `[DONE]` (llama-server's framing).
    pub late_end: bool,
    /// The connection closes as soon as a streamed body has ended, though its head did not say
    /// `Connection: close` (llama-server's, through cpp-httplib).
    pub close_after_stream: bool,
}

/// What answers contain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Content {
    /// Answer length when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
    /// Without `ignore_eos`, stop after a length drawn from this range (inclusive) when it is
    /// shorter than `max_tokens`; unset: always answer `max_tokens` tokens.
    pub natural_tokens: Option<[u32; 2]>,
    /// Probability that a JSON answer is sloppy: broken JSON, or items missing or repeated.
    pub sloppy: f64,
    /// A reasoning model: reasoning of a length drawn from this range (inclusive) before every
    /// answer, paced like the answer, counted in the completion and reported as reasoning
    /// tokens (except by Anthropic, which does not say). A request with reasoning effort
    /// `none` gets none.
    pub reasoning_tokens: Option<[u32; 2]>,
    /// How reasoning is sent in chat completions.
    pub reasoning_style: ReasoningStyle,
}

/// How a simulated reasoning model's reasoning reaches a chat completions client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasoningStyle {
    /// In `reasoning_content` deltas (DeepSeek, vLLM and SGLang with a reasoning parser); the
    /// Messages API's `thinking` blocks and the Responses API's reasoning summary.
    #[default]
    Field,
    /// In the answer text inside `<think>…</think>`, as servers without a reasoning parser send
    /// it (reasoning tokens then go unreported).
    ThinkTags,
}

/// The batch API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batch {
    /// Time from submission to completion, in milliseconds.
    pub completion_delay_ms: u64,
    /// Probability that one line of a batch fails.
    pub failure_rate: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            ttft_base_ms: 20.0,
            ttft_jitter_ms: 0.0,
            prefill_tokens_per_sec: 0.0,
            decode_tokens_per_sec: 200.0,
            aggregate_tokens_per_sec: 0.0,
            tokens_per_chunk: 1,
            max_concurrency: 1024,
            keepalive_ms: 0,
            write_each_event: false,
        }
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            enabled: true,
            dialect: CacheDialect::Openai,
            block_tokens: 128,
            min_prefix_tokens: 1024,
            capacity_blocks: 1 << 20,
        }
    }
}

impl Default for Content {
    fn default() -> Self {
        Self {
            default_max_tokens: 32,
            natural_tokens: None,
            sloppy: 0.0,
            reasoning_tokens: None,
            reasoning_style: ReasoningStyle::Field,
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            completion_delay_ms: 1_000,
            failure_rate: 0.0,
        }
    }
}

impl Default for Profile {
    fn default() -> Self {
        Self::fast_local()
    }
}

/// Names of the presets, for help texts.
pub const PRESETS: &[&str] = &[
    "fast-local",
    "instant",
    "wire",
    "hosted",
    "slow",
    "flaky",
    "throttled",
];

impl Profile {
    /// A local inference server: 20 ms to first token, 200 tokens/s a stream, 4,000 tokens/s
    /// shared, a small-block prefix cache (vLLM-style) with no minimum worth mentioning.
    pub fn fast_local() -> Self {
        Self {
            name: "fast-local".into(),
            seed: 0,
            model: "sim-model".into(),
            latency: Latency {
                ttft_base_ms: 20.0,
                ttft_jitter_ms: 0.0,
                prefill_tokens_per_sec: 20_000.0,
                decode_tokens_per_sec: 200.0,
                aggregate_tokens_per_sec: 4_000.0,
                tokens_per_chunk: 1,
                max_concurrency: 256,
                keepalive_ms: 0,
                write_each_event: false,
            },
            cache: Cache {
                block_tokens: 16,
                min_prefix_tokens: 16,
                ..Cache::default()
            },
            rate_limits: RateLimits::default(),
            faults: Faults::default(),
            framing: FramingQuirks::default(),
            content: Content::default(),
            batch: Batch::default(),
            network: Network::default(),
            gold: None,
            priced_like: Some("gpt-4o-mini".into()),
        }
    }

    /// No delays at all: for tests and for measuring the client itself.
    pub fn instant() -> Self {
        let mut p = Self::fast_local();
        p.name = "instant".into();
        p.latency = Latency {
            ttft_base_ms: 0.0,
            prefill_tokens_per_sec: 0.0,
            decode_tokens_per_sec: 0.0,
            aggregate_tokens_per_sec: 0.0,
            max_concurrency: 1 << 20,
            ..Latency::default()
        };
        p.batch.completion_delay_ms = 0;
        p
    }

    /// No delays, every event its own write: a client's throughput as against a real server
    /// on a fast network (`bench` figures).
    pub fn wire() -> Self {
        let mut p = Self::instant();
        p.name = "wire".into();
        p.latency.write_each_event = true;
        p
    }

    /// A hosted API: ~300 ms to first token with jitter, 60 tokens/s a stream, OpenAI-style
    /// caching (1,024-token minimum, 128-token blocks).
    pub fn hosted() -> Self {
        Self {
            name: "hosted".into(),
            latency: Latency {
                ttft_base_ms: 250.0,
                ttft_jitter_ms: 100.0,
                prefill_tokens_per_sec: 10_000.0,
                decode_tokens_per_sec: 60.0,
                aggregate_tokens_per_sec: 0.0,
                tokens_per_chunk: 1,
                max_concurrency: 4_096,
                keepalive_ms: 0,
                write_each_event: false,
            },
            cache: Cache::default(),
            // A provider across the internet: ~40 ms away, TLS 1.3, a cold connection's
            // first bytes slowed by slow start, idle connections closed after a minute.
            network: Network {
                rtt_ms: 40.0,
                rtt_jitter_ms: 4.0,
                tls: TlsVersion::Tls13,
                http2: true,
                slow_start_ms: 10.0,
                idle_timeout_ms: 60_000,
                max_requests_per_connection: 0,
            },
            ..Self::fast_local()
        }
    }

    /// A slow provider: seconds to first token, 15 tokens/s, a queue of 8, keep-alives.
    pub fn slow() -> Self {
        Self {
            name: "slow".into(),
            latency: Latency {
                ttft_base_ms: 1_500.0,
                ttft_jitter_ms: 1_000.0,
                prefill_tokens_per_sec: 2_000.0,
                decode_tokens_per_sec: 15.0,
                aggregate_tokens_per_sec: 60.0,
                tokens_per_chunk: 1,
                max_concurrency: 8,
                keepalive_ms: 1_000,
                write_each_event: false,
            },
            // Plain loopback: fault and limit drills, not network ones.
            network: Network::default(),
            ..Self::hosted()
        }
    }

    /// A hosted API that fails often, in every way.
    pub fn flaky() -> Self {
        Self {
            name: "flaky".into(),
            faults: Faults {
                status_429: 0.0,
                retry_after_ms: 0,
                status_500: 0.02,
                status_502: 0.02,
                status_503: 0.04,
                reset_before_headers: 0.02,
                reset_mid_stream: 0.02,
                truncated: 0.02,
                malformed_chunk: 0.01,
                slow_headers: 0.01,
                slow_headers_ms: 3_000,
                script: Vec::new(),
            },
            // Plain loopback: fault and limit drills, not network ones.
            network: Network::default(),
            ..Self::hosted()
        }
    }

    /// A hosted API with tight limits: 60 requests and 20,000 tokens a minute.
    pub fn throttled() -> Self {
        Self {
            name: "throttled".into(),
            rate_limits: RateLimits {
                requests_per_minute: 60,
                tokens_per_minute: 20_000,
                insufficient_quota: false,
            },
            // Plain loopback: fault and limit drills, not network ones.
            network: Network::default(),
            ..Self::hosted()
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "fast-local" => Self::fast_local(),
            "instant" => Self::instant(),
            "wire" => Self::wire(),
            "hosted" => Self::hosted(),
            "slow" => Self::slow(),
            "flaky" => Self::flaky(),
            "throttled" => Self::throttled(),
            _ => return None,
        })
    }

    /// A preset name, or the path of a TOML profile.
    pub fn load(name_or_path: &str) -> Result<Self, crate::SimError> {
        use crate::SimError;
        if let Some(p) = Self::preset(name_or_path) {
            return Ok(p);
        }
        let text =
            std::fs::read_to_string(name_or_path).map_err(|source| SimError::UnknownProfile {
                name: name_or_path.to_owned(),
                presets: PRESETS.join(", "),
                source,
            })?;
        let mut profile: Self = toml::from_str(&text).map_err(|source| SimError::Profile {
            name: name_or_path.to_owned(),
            source,
        })?;
        // A gold file is named relative to the profile that names it.
        if let (Some(gold), Some(dir)) = (
            &mut profile.gold,
            std::path::Path::new(name_or_path).parent(),
        ) && gold.file.is_relative()
        {
            gold.file = dir.join(&gold.file);
        }
        Ok(profile)
    }

    /// Time to first token before prefill, as a duration.
    pub(crate) fn ms(ms: f64) -> Duration {
        Duration::try_from_secs_f64(ms.max(0.0) / 1e3).unwrap_or(Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_loads_by_name_and_round_trips_through_toml() {
        for name in PRESETS {
            let p = Profile::load(name).unwrap();
            assert_eq!(&p.name, name);
            let text = toml::to_string(&p).unwrap();
            let back: Profile = toml::from_str(&text).unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn a_partial_toml_profile_fills_in_defaults_and_refuses_typos() {
        let p: Profile = toml::from_str(
            "name = 'mine'\n[latency]\ndecode_tokens_per_sec = 50\n[faults]\nscript = ['ok', 'status_503']\n",
        )
        .unwrap();
        assert_eq!(p.latency.decode_tokens_per_sec, 50.0);
        assert_eq!(p.latency.tokens_per_chunk, 1);
        assert_eq!(p.faults.script, ["ok", "status_503"]);
        assert!(toml::from_str::<Profile>("[latency]\ndecode_tps = 5\n").is_err());
        let err = Profile::load("no-such-preset").unwrap_err().to_string();
        assert!(err.contains("fast-local"), "{err}");
    }
}
