//! What a benchmark sends: synthetic prompts of an exact token length, shared-prefix prompts
//! (to measure caching), or the pages of real documents.
//!
//! Prompts are exact under the client's tokenizer: a synthetic prompt of N tokens is N tokens as
//! `Tokenizer::count_messages` counts them (message framing included), and the report compares
//! that with what the server says it received. Every synthetic request starts with its own
//! fixed-width number, so no two share a cacheable prefix by accident.

use pagemill_client::{ChatRequest, Message, Tokenizer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// One request of a workload.
#[derive(Debug, Clone)]
pub struct Item {
    /// The request (without model: the endpoint fills it in).
    pub request: ChatRequest,
    /// Prompt tokens by our tokenizer, when the workload is sized in tokens.
    pub input_tokens: u64,
    /// Pages of source material this request covers (for cost per page).
    pub pages: f64,
}

/// How many distinct prompt bodies are prepared; requests cycle through them, each with its
/// own unique head.
const POOL: usize = 64;

/// A workload: a way to produce the i-th request.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Short name for reports.
    pub name: String,
    kind: Kind,
    /// `max_tokens` of every request.
    pub output_tokens: u32,
    /// Ask the server to ignore end-of-sequence (exact output lengths).
    pub ignore_eos: bool,
    /// Stream answers.
    pub stream: bool,
    /// Fixed sampling temperature, if any.
    pub temperature: Option<f32>,
}

#[derive(Debug, Clone)]
enum Kind {
    /// `bodies[i % POOL]` after a unique head; `head_tokens + body tokens + framing = input`.
    Synthetic { bodies: Vec<String>, input: u64 },
    /// System prefix `i % prefixes`, user message = unique head + suffix body.
    SharedPrefix {
        prefixes: Vec<String>,
        suffixes: Vec<String>,
        input: u64,
    },
    /// Fixed messages, cycled (pages of documents; experiment variants; a replayed ledger):
    /// messages, prompt tokens, pages, and the item's own `max_tokens` if it has one.
    Fixed {
        items: Vec<(Vec<Message>, u64, f64, Option<u32>)>,
    },
    /// Prompt arrays, cycled: each item's prompts go in one legacy completions request; its
    /// prompt tokens and the prompts it carries (its pages).
    Prompts { items: Vec<(Vec<String>, u64)> },
}

/// One recorded request, as replayed by [`Workload::replay`].
#[derive(Debug, Clone, PartialEq)]
pub struct Replayed {
    /// Requests with the same key share a system prefix (the prompt version).
    pub prefix_key: String,
    /// Tokens of that prefix.
    pub prefix_tokens: u64,
    /// Prompt tokens of the request.
    pub prompt_tokens: u64,
    /// Completion tokens it produced.
    pub completion_tokens: u64,
    /// Pages it covered.
    pub pages: f64,
}

/// The tokenizer workloads are sized with.
pub fn tokenizer() -> Tokenizer {
    Tokenizer::o200k()
}

fn head(i: u64) -> String {
    // Nine digits are always three tokens, so every head has the same length.
    format!("Request {:09}:", i % 1_000_000_000)
}

fn words(rng: &mut SmallRng, n: usize) -> String {
    let mut s = String::with_capacity(n * 6);
    for _ in 0..n {
        s.push(' ');
        let words = pagemill_client::usage::one_token_words();
        s.push_str(words[rng.random_range(0..words.len())]);
    }
    s
}

/// Tokens of a single user message with empty content (role + framing).
fn framing(t: &Tokenizer, messages: &[Message]) -> u64 {
    let empty: Vec<Message> = messages
        .iter()
        .map(|m| Message {
            role: m.role.clone(),
            content: String::new(),
        })
        .collect();
    t.count_messages(&empty)
}

/// Errors building a workload.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The requested size cannot be built.
    #[error("{0}")]
    Size(String),
}

impl Workload {
    fn new(name: String, kind: Kind, output_tokens: u32) -> Self {
        Self {
            name,
            kind,
            output_tokens,
            ignore_eos: false,
            stream: true,
            temperature: None,
        }
    }

    /// Prompts of exactly `input_tokens` tokens, each unique from its first tokens on.
    pub fn synthetic(
        input_tokens: u64,
        output_tokens: u32,
        seed: u64,
    ) -> Result<Self, WorkloadError> {
        let t = tokenizer();
        let overhead = framing(&t, &[Message::user("")]) + t.count(&head(0));
        let body = input_tokens.checked_sub(overhead).ok_or_else(|| {
            WorkloadError::Size(format!(
                "input of {input_tokens} tokens is below the {overhead} a request needs at least"
            ))
        })?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let bodies = (0..POOL).map(|_| words(&mut rng, body as usize)).collect();
        Ok(Self::new(
            format!("synthetic-{input_tokens}in-{output_tokens}out"),
            Kind::Synthetic {
                bodies,
                input: input_tokens,
            },
            output_tokens,
        ))
    }

    /// `prefixes` distinct system prefixes of `prefix_tokens` tokens each, then a unique user
    /// suffix, `suffix_tokens` long.
    pub fn shared_prefix(
        prefixes: usize,
        prefix_tokens: u64,
        suffix_tokens: u64,
        output_tokens: u32,
        seed: u64,
    ) -> Result<Self, WorkloadError> {
        let t = tokenizer();
        let suffix_body = suffix_tokens
            .checked_sub(t.count(&head(0)))
            .ok_or_else(|| {
                WorkloadError::Size(format!(
                    "suffix of {suffix_tokens} tokens is below the request head's {}",
                    t.count(&head(0))
                ))
            })?;
        let mut rng = SmallRng::seed_from_u64(seed);
        // Each prefix starts with its own number so prefixes never share blocks.
        let prefixes: Vec<String> = (0..prefixes.max(1))
            .map(|p| {
                let lead = format!("Prefix {p:06}:");
                let n = prefix_tokens.saturating_sub(t.count(&lead));
                format!("{lead}{}", words(&mut rng, n as usize))
            })
            .collect();
        let suffixes = (0..POOL)
            .map(|_| words(&mut rng, suffix_body as usize))
            .collect();
        let mut w = Self::new(
            format!(
                "shared-prefix-{}x{prefix_tokens}+{suffix_tokens}",
                prefixes.len()
            ),
            Kind::SharedPrefix {
                prefixes,
                suffixes,
                input: 0,
            },
            output_tokens,
        );
        // Every item has the same length: measure one.
        let input = t.count_messages(&w.item(0).request.messages);
        if let Kind::SharedPrefix { input: i, .. } = &mut w.kind {
            *i = input;
        }
        Ok(w)
    }

    /// Pages of documents (from `pagemill ingest`), each sent with `instruction` as the system
    /// prompt; a page longer than `page_tokens` is cut at paragraph boundaries first.
    pub fn pages(
        pages: &[String],
        page_tokens: u64,
        instruction: &str,
        output_tokens: u32,
    ) -> Result<Self, WorkloadError> {
        let t = tokenizer();
        let mut items = Vec::new();
        for text in pages.iter().filter(|p| !p.trim().is_empty()) {
            for page in split_pages(&t, text, page_tokens) {
                let messages = vec![Message::system(instruction), Message::user(page)];
                let n = t.count_messages(&messages);
                items.push((messages, n, 1.0, None));
            }
        }
        if items.is_empty() {
            return Err(WorkloadError::Size("the documents hold no text".into()));
        }
        Ok(Self::new(
            format!("pages-{}", items.len()),
            Kind::Fixed { items },
            output_tokens,
        ))
    }

    /// The shape of a recorded run, replayed: one request per recorded request, in order, with
    /// its prompt length (a system prefix shared by requests of the same prompt version, of the
    /// recorded prefix length, then a unique part) and its completion length as `max_tokens`
    /// (send with `ignore_eos` for exact lengths). Endpoints then see the real traffic's sizes
    /// and caching opportunities, without the documents.
    pub fn replay(requests: &[Replayed], seed: u64) -> Result<Self, WorkloadError> {
        let t = tokenizer();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut prefixes: std::collections::HashMap<&str, String> = Default::default();
        let overhead = framing(&t, &[Message::system(""), Message::user("")]) + t.count(&head(0));
        let mut items = Vec::new();
        for (i, r) in requests.iter().enumerate() {
            let prefix_tokens = r
                .prefix_tokens
                .min(r.prompt_tokens.saturating_sub(overhead));
            let prefix = prefixes
                .entry(&r.prefix_key)
                .or_insert_with(|| {
                    let lead = format!("Prompt {}:", r.prefix_key);
                    let n = prefix_tokens.saturating_sub(t.count(&lead));
                    format!("{lead}{}", words(&mut rng, n as usize))
                })
                .clone();
            let rest = r.prompt_tokens.saturating_sub(overhead + t.count(&prefix)) as usize;
            let messages = vec![
                Message::system(prefix),
                Message::user(format!("{}{}", head(i as u64), words(&mut rng, rest))),
            ];
            let n = t.count_messages(&messages);
            let max = u32::try_from(r.completion_tokens.max(1)).unwrap_or(u32::MAX);
            items.push((messages, n, r.pages, Some(max)));
        }
        if items.is_empty() {
            return Err(WorkloadError::Size(
                "the ledger holds no finished request to replay".into(),
            ));
        }
        let mut w = Self::new(format!("replay-{}", items.len()), Kind::Fixed { items }, 0);
        w.ignore_eos = true;
        Ok(w)
    }

    /// A workload of fixed conversations, cycled (for experiments).
    pub fn fixed(
        name: impl Into<String>,
        conversations: Vec<(Vec<Message>, f64)>,
        output_tokens: u32,
    ) -> Self {
        let t = tokenizer();
        let items = conversations
            .into_iter()
            .map(|(m, pages)| {
                let n = t.count_messages(&m);
                (m, n, pages, None)
            })
            .collect();
        Self::new(name.into(), Kind::Fixed { items }, output_tokens)
    }

    /// Prompt arrays: each request sends one item's prompts (one sequence a prompt, answered
    /// each with up to `output_tokens`) to `/v1/completions`.
    pub fn prompt_arrays(
        name: impl Into<String>,
        items: Vec<Vec<String>>,
        output_tokens: u32,
    ) -> Self {
        let t = tokenizer();
        let items = items
            .into_iter()
            .map(|prompts| {
                let tokens = prompts
                    .iter()
                    .map(|p| t.count_messages(&[Message::user(p.clone())]))
                    .sum();
                (prompts, tokens)
            })
            .collect();
        Self::new(name.into(), Kind::Prompts { items }, output_tokens)
    }

    /// The i-th request.
    pub fn item(&self, i: u64) -> Item {
        if let Kind::Prompts { items } = &self.kind {
            let (prompts, tokens) = &items[(i as usize) % items.len()];
            return Item {
                request: ChatRequest {
                    prompts: prompts.clone(),
                    max_tokens: Some(self.output_tokens),
                    stream: self.stream,
                    ignore_eos: self.ignore_eos.then_some(true),
                    temperature: self.temperature,
                    ..ChatRequest::default()
                },
                input_tokens: *tokens,
                pages: prompts.len() as f64,
            };
        }
        let (messages, input_tokens, pages, max_tokens) = match &self.kind {
            Kind::Synthetic { bodies, input } => {
                let body = &bodies[(i as usize) % bodies.len()];
                (
                    vec![Message::user(format!("{}{body}", head(i)))],
                    *input,
                    1.0,
                    None,
                )
            }
            Kind::SharedPrefix {
                prefixes,
                suffixes,
                input,
            } => {
                let prefix = &prefixes[(i as usize) % prefixes.len()];
                let suffix = &suffixes[(i as usize) % suffixes.len()];
                (
                    vec![
                        Message::system(prefix.clone()),
                        Message::user(format!("{}{suffix}", head(i))),
                    ],
                    *input,
                    1.0,
                    None,
                )
            }
            Kind::Fixed { items } => {
                let (m, n, pages, max) = &items[(i as usize) % items.len()];
                (m.clone(), *n, *pages, *max)
            }
            Kind::Prompts { .. } => (Vec::new(), 0, 0.0, None),
        };
        let request = ChatRequest {
            messages,
            max_tokens: Some(max_tokens.unwrap_or(self.output_tokens)),
            stream: self.stream,
            ignore_eos: self.ignore_eos.then_some(true),
            temperature: self.temperature,
            ..ChatRequest::default()
        };
        Item {
            request,
            input_tokens,
            pages,
        }
    }
}

/// Splits text into pages of about `budget` tokens at paragraph (else line, else word)
/// boundaries.
pub fn split_pages(t: &Tokenizer, text: &str, budget: u64) -> Vec<String> {
    let mut pages = Vec::new();
    let mut cur = String::new();
    let mut cur_tokens = 0;
    let paragraphs = text.split("\n\n").flat_map(|p| {
        // A paragraph longer than the budget is split at lines, then at words.
        if t.count(p) <= budget {
            vec![p.to_owned()]
        } else {
            let mut parts = Vec::new();
            let mut part = String::new();
            for w in p.split_inclusive(char::is_whitespace) {
                part.push_str(w);
                if part.len() > (budget as usize) * 3 {
                    parts.push(std::mem::take(&mut part));
                }
            }
            if !part.is_empty() {
                parts.push(part);
            }
            parts
        }
    });
    for p in paragraphs {
        let n = t.count(&p);
        if cur_tokens + n > budget && !cur.is_empty() {
            pages.push(std::mem::take(&mut cur));
            cur_tokens = 0;
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(&p);
        cur_tokens += n;
    }
    if !cur.trim().is_empty() {
        pages.push(cur);
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_prompts_are_exactly_the_requested_length_and_unique() {
        let t = tokenizer();
        for n in [16, 100, 1_000] {
            let w = Workload::synthetic(n, 8, 1).unwrap();
            for i in [0, 1, 99, 12_345, 999_999_999] {
                let item = w.item(i);
                assert_eq!(t.count_messages(&item.request.messages), n, "n={n} i={i}");
                assert_eq!(item.input_tokens, n);
            }
            assert_ne!(
                w.item(1).request.messages[0].content[..20],
                w.item(2).request.messages[0].content[..20]
            );
        }
        assert!(Workload::synthetic(5, 8, 1).is_err());
    }

    #[test]
    fn a_replayed_ledger_keeps_each_requests_lengths_and_shared_prefixes() {
        let t = tokenizer();
        let rec = |key: &str, prompt, completion, pages| Replayed {
            prefix_key: key.into(),
            prefix_tokens: 300,
            prompt_tokens: prompt,
            completion_tokens: completion,
            pages,
        };
        let shape = [
            rec("entities-v1-aaa", 2_000, 120, 4.0),
            rec("summary-v1-bbb", 900, 60, 0.0),
            rec("entities-v1-aaa", 1_500, 80, 2.0),
        ];
        let w = Workload::replay(&shape, 1).unwrap();
        for (i, r) in shape.iter().enumerate() {
            let item = w.item(i as u64);
            assert_eq!(
                t.count_messages(&item.request.messages),
                r.prompt_tokens,
                "{i}"
            );
            assert_eq!(item.request.max_tokens, Some(r.completion_tokens as u32));
            assert_eq!(item.pages, r.pages);
            assert_eq!(item.request.ignore_eos, Some(true));
        }
        let (a, b, c) = (w.item(0).request, w.item(1).request, w.item(2).request);
        assert_eq!(
            a.messages[0], c.messages[0],
            "same prompt version, same prefix"
        );
        assert_ne!(a.messages[0], b.messages[0]);
        assert_eq!(t.count(&a.messages[0].content), 300);
        assert!(Workload::replay(&[], 1).is_err());
    }

    #[test]
    fn shared_prefix_prompts_share_exactly_their_prefix() {
        let t = tokenizer();
        let w = Workload::shared_prefix(3, 1_200, 40, 8, 1).unwrap();
        let a = w.item(0).request;
        let b = w.item(3).request;
        let c = w.item(1).request;
        assert_eq!(a.messages[0], b.messages[0]);
        assert_ne!(a.messages[0], c.messages[0]);
        assert_ne!(a.messages[1], b.messages[1]);
        assert_eq!(t.count(&a.messages[0].content), 1_200);
        assert_eq!(t.count_messages(&a.messages), w.item(0).input_tokens);
    }

    #[test]
    fn pages_split_real_text_within_budget() {
        let t = tokenizer();
        let text = (0..200)
            .map(|i| format!("Paragraph {i} talks about the market and the law."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let pages = split_pages(&t, &text, 100);
        assert!(pages.len() > 10);
        for p in &pages {
            assert!(t.count(p) <= 120, "{}", t.count(p));
        }
        assert_eq!(pages.join("\n\n"), text, "no text lost");
    }
}
