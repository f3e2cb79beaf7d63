//! Prompt-array mode (`run --array N`): up to N requests of one task sent as one legacy
//! `/v1/completions` request whose `prompt` is an array, as vLLM, SGLang and llama.cpp's server
//! take it — each prompt its own sequence, decoded side by side, answered by index.
//!
//! Legacy completions read text, not messages, so each conversation is written out in the
//! model's chat template ([`PromptTemplate`]: the endpoint's `prompt_template`). Everything
//! else is the ordinary path: each conversation is its own ledger request, its answer checked,
//! re-asked, re-run or given up on as if it had been sent alone. The one usage the server
//! reports for the whole array is shared out among its prompts (prompt tokens by each
//! prompt's length, completion tokens by each answer's), so the ledger's requests add up to
//! exactly what was billed.

use std::sync::Arc;

use pagemill_client::{
    ChatRequest, Client, Cost, Count, ErrorClass, Exchange, FailureKind, Message, Outcome,
    RequestError, Usage,
};

use super::FormatMode;
use super::exec::{Job, Shared, failed};
use crate::store::StoreError;

/// End-of-turn markers a Jinja template may use, which end an answer.
const TURN_ENDS: [&str; 5] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<end_of_turn>",
    "<|end|>",
    "</s>",
];

/// How a conversation is written as one prompt.
pub struct PromptTemplate {
    form: Form,
    stop: Vec<String>,
}

enum Form {
    ChatMl,
    Llama3,
    Jinja(Box<minijinja::Environment<'static>>),
}

impl std::fmt::Debug for PromptTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match self.form {
            Form::ChatMl => "chatml",
            Form::Llama3 => "llama3",
            Form::Jinja(_) => "jinja",
        };
        f.debug_struct("PromptTemplate")
            .field("form", &form)
            .field("stop", &self.stop)
            .finish()
    }
}

impl PromptTemplate {
    /// `chatml`, `llama3`, or a Jinja chat template (Hugging Face's: `messages`,
    /// `add_generation_prompt`, `bos_token`, `eos_token`, `raise_exception`); refused when
    /// it does not parse or cannot write a system and a user message.
    pub fn new(spec: &str) -> Result<Self, String> {
        let (form, stop) = match spec.trim() {
            "chatml" => (Form::ChatMl, vec!["<|im_end|>".to_owned()]),
            "llama3" => (Form::Llama3, vec!["<|eot_id|>".to_owned()]),
            source if source.contains("{{") || source.contains("{%") => {
                let mut env = minijinja::Environment::new();
                env.add_function(
                    "raise_exception",
                    |msg: String| -> Result<String, minijinja::Error> {
                        Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            msg,
                        ))
                    },
                );
                env.add_template_owned("chat", source.to_owned())
                    .map_err(|e| format!("the prompt template does not parse: {e}"))?;
                let stop = TURN_ENDS
                    .iter()
                    .filter(|m| source.contains(*m))
                    .map(|m| (*m).to_owned())
                    .collect();
                (Form::Jinja(Box::new(env)), stop)
            }
            other => {
                return Err(format!(
                    "prompt template `{other}`: expected chatml, llama3 or a Jinja chat template"
                ));
            }
        };
        let template = Self { form, stop };
        template.render(&[Message::system("s"), Message::user("u")])?;
        Ok(template)
    }

    /// The conversation as one prompt, ending where the assistant's answer starts.
    pub fn render(&self, messages: &[Message]) -> Result<String, String> {
        let mut out = String::new();
        match &self.form {
            Form::ChatMl => {
                for m in messages {
                    out.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                out.push_str("<|im_start|>assistant\n");
            }
            Form::Llama3 => {
                out.push_str("<|begin_of_text|>");
                for m in messages {
                    out.push_str(&format!(
                        "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                        m.role, m.content
                    ));
                }
                out.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
            }
            Form::Jinja(env) => {
                let msgs: Vec<minijinja::Value> = messages
                    .iter()
                    .map(|m| minijinja::context! { role => m.role, content => m.content })
                    .collect();
                out = env
                    .get_template("chat")
                    .and_then(|t| {
                        t.render(minijinja::context! {
                            messages => msgs,
                            add_generation_prompt => true,
                            bos_token => "",
                            eos_token => "",
                        })
                    })
                    .map_err(|e| format!("the prompt template failed: {e}"))?;
            }
        }
        Ok(out)
    }

    /// The stop sequences that end an answer written in this template.
    pub fn stop(&self) -> &[String] {
        &self.stop
    }
}

/// One conversation of an array, once started.
struct Started {
    job: Job,
    rid: i64,
    format: FormatMode,
}

impl Shared {
    /// Takes as many more jobs like `first` (its task, its endpoint) as an array holds and
    /// sends them together; alone, `first` goes the usual way. Every job taken here beyond
    /// `first` is marked over here; `first` is the caller's to mark.
    pub(crate) async fn process_gathered(
        &self,
        first: Job,
        template: &PromptTemplate,
    ) -> Result<(), StoreError> {
        let mut jobs = Vec::with_capacity(self.opts.array);
        while jobs.len() + 1 < self.opts.array {
            match self.take_like(&first) {
                Some(j) => jobs.push(j),
                None => break,
            }
        }
        if jobs.is_empty() {
            // Nothing to share an array with: the usual request.
            return self.process(first).await;
        }
        let extra = jobs.len();
        jobs.insert(0, first);
        let r = self.process_array(jobs, template).await;
        for _ in 0..extra {
            self.job_over();
        }
        r
    }

    /// Sends `jobs` (one task, one endpoint) as one prompt array and routes each answer as
    /// if it had come alone.
    async fn process_array(
        &self,
        jobs: Vec<Job>,
        template: &PromptTemplate,
    ) -> Result<(), StoreError> {
        let mut started: Vec<Started> = Vec::with_capacity(jobs.len());
        let mut requests: Vec<ChatRequest> = Vec::with_capacity(jobs.len());
        let mut prompts: Vec<String> = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let Some((req, rid, format)) = self.start(&mut job)? else {
                continue;
            };
            match template.render(&req.messages) {
                Ok(prompt) => {
                    started.push(Started { job, rid, format });
                    requests.push(req);
                    prompts.push(prompt);
                }
                Err(e) => {
                    let e = RequestError::new(FailureKind::Malformed, ErrorClass::Permanent, e);
                    self.finish(job, rid, format, &failed(e))?;
                }
            }
        }
        let Some(first) = requests.first() else {
            return Ok(());
        };
        let client = Arc::clone(&self.endpoints[started[0].job.endpoint]);
        // One format for the array: a schema narrowed to each request's items (which differ)
        // gives way to the task's own.
        let response_format = if requests
            .iter()
            .all(|r| r.response_format == first.response_format)
        {
            first.response_format.clone()
        } else {
            self.tasks
                .get(started[0].job.kind)
                .map(crate::tasks::Task::response_format)
        };
        let req = ChatRequest {
            model: first.model.clone(),
            prompts,
            max_tokens: requests.iter().filter_map(|r| r.max_tokens).max(),
            temperature: first.temperature,
            seed: first.seed,
            stop: template.stop().to_vec(),
            stream: first.stream,
            response_format,
            ..ChatRequest::default()
        };
        self.progress
            .arrays
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = started
            .iter()
            .map(|s| s.rid.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let outcome = client.chat_tagged(&req, false, Some(&tag)).await;
        let shares = share_out(&client, &outcome, &req.prompts);
        for (s, outcome) in started.into_iter().zip(shares) {
            self.finish(s.job, s.rid, s.format, &outcome)?;
        }
        Ok(())
    }
}

/// One outcome per prompt of an array's `outcome`: each prompt's answer and finish reason,
/// its share of the usage and cost. A failure is every prompt's; failed attempts (and what
/// they were billed) are the first prompt's, so the shares add up to the whole.
fn share_out<P: AsRef<str>>(client: &Client, outcome: &Outcome, prompts: &[P]) -> Vec<Outcome> {
    let n = prompts.len();
    let last = &outcome.last;
    let count = |t: &str| client.tokenizer().count(t);
    let prompt_w: Vec<u64> = prompts.iter().map(|p| count(p.as_ref())).collect();
    let answer_w: Vec<u64> = (0..n).map(|i| count(last.choice(i).0)).collect();
    let u = &last.usage;
    let split = |c: Option<Count>, w: &[u64]| -> Vec<Option<Count>> {
        match c {
            Some(c) => apportion(c.tokens, w)
                .into_iter()
                .map(|tokens| {
                    Some(Count {
                        tokens,
                        source: c.source,
                    })
                })
                .collect(),
            None => vec![None; n],
        }
    };
    // Prompt tokens as their uncached, cached and written parts, each shared by length, so
    // no prompt's parts exceed its whole.
    let parts = |c: Option<Count>| c.map_or(0, |c| c.tokens);
    let cached = split(u.cached_prompt, &prompt_w);
    let write = split(u.cache_write, &prompt_w);
    let uncached = u.prompt.map(|p| Count {
        tokens: p
            .tokens
            .saturating_sub(parts(u.cached_prompt) + parts(u.cache_write)),
        source: p.source,
    });
    let uncached = split(uncached, &prompt_w);
    let completion = split(u.completion, &answer_w);
    let reasoning = split(u.reasoning, &answer_w);
    let note = format!("one of {n} prompts of an array: its usage is a share of the array's");
    (0..n)
        .map(|i| {
            let (content, finish) = last.choice(i);
            let prompt = u.prompt.map(|p| Count {
                tokens: [uncached[i], cached[i], write[i]]
                    .iter()
                    .map(|c| parts(*c))
                    .sum(),
                source: p.source,
            });
            let usage = Usage {
                prompt,
                cached_prompt: cached[i],
                cache_write: write[i],
                completion: completion[i],
                reasoning: reasoning[i],
            };
            let cost: Option<Cost> = last
                .cost
                .as_ref()
                .and_then(|_| client.endpoint().prices.cost(&usage));
            let mut notes = last.notes.clone();
            notes.push(note.clone());
            Outcome {
                last: Exchange {
                    content: content.to_owned(),
                    finish_reason: finish.map(str::to_owned),
                    choices: Vec::new(),
                    choice_finish: Vec::new(),
                    usage,
                    cost,
                    notes,
                    ..last.clone()
                },
                retried: if i == 0 {
                    outcome.retried.clone()
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// `total` shared in proportion to `weights`, the remainders to the largest fractions, so the
/// shares add up to `total` exactly; equal shares when every weight is 0.
fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let equal = vec![1u64; n];
    let w: &[u64] = if weights.iter().all(|&x| x == 0) {
        &equal
    } else {
        weights
    };
    let sum: u128 = w.iter().map(|&x| u128::from(x)).sum();
    let exact: Vec<(u64, u128)> = w
        .iter()
        .map(|&x| {
            let p = u128::from(total) * u128::from(x);
            ((p / sum) as u64, p % sum)
        })
        .collect();
    let mut shares: Vec<u64> = exact.iter().map(|e| e.0).collect();
    let short = total - shares.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(short as usize) {
        shares[i] += 1;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_whole_and_follow_the_weights() {
        assert_eq!(apportion(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(apportion(100, &[3, 1]), vec![75, 25]);
        assert_eq!(apportion(7, &[0, 0]), vec![4, 3]);
        assert_eq!(apportion(0, &[5, 9]), vec![0, 0]);
        let w = [17, 4, 230, 1, 88];
        for total in [0, 1, 999, 123_457] {
            assert_eq!(apportion(total, &w).iter().sum::<u64>(), total);
        }
    }

    fn client() -> Client {
        let mut ep = pagemill_client::Endpoint::new("e", "http://127.0.0.1:9/v1", "m");
        ep.prices = pagemill_client::Prices {
            input: Some(1.0),
            output: Some(4.0),
            ..pagemill_client::Prices::default()
        };
        Client::new(ep).unwrap()
    }

    #[test]
    fn each_prompt_gets_its_answer_and_a_share_of_the_bill_that_adds_up() {
        let client = client();
        let usage = Usage {
            prompt: Some(Count::server(1000)),
            cached_prompt: Some(Count::server(400)),
            completion: Some(Count::server(90)),
            ..Usage::default()
        };
        let last = Exchange {
            content: "first answer".into(),
            finish_reason: Some("stop".into()),
            choices: vec![
                "first answer".into(),
                "a second, longer answer than that".into(),
            ],
            choice_finish: vec![None, Some("length".into())],
            cost: client.endpoint().prices.cost(&usage),
            usage,
            ..Exchange::default()
        };
        let whole = last.cost.unwrap().total.0;
        let outcome = Outcome {
            last,
            retried: vec![],
        };
        let shares = share_out(
            &client,
            &outcome,
            &[
                "a short prompt",
                "a much longer prompt, with more words in it",
            ],
        );
        assert_eq!(shares[0].last.content, "first answer");
        assert_eq!(shares[1].last.finish_reason.as_deref(), Some("length"));
        let total = |f: fn(&Usage) -> Option<Count>| -> u64 {
            shares
                .iter()
                .map(|o| f(&o.last.usage).unwrap().tokens)
                .sum()
        };
        assert_eq!(total(|u| u.prompt), 1000);
        assert_eq!(total(|u| u.cached_prompt), 400);
        assert_eq!(total(|u| u.completion), 90);
        let cost: u64 = shares.iter().map(|o| o.last.cost.unwrap().total.0).sum();
        assert_eq!(cost, whole);
        let (a, b) = (&shares[0].last.usage, &shares[1].last.usage);
        assert!(
            a.prompt.unwrap().tokens < b.prompt.unwrap().tokens,
            "by length"
        );
        assert!(
            a.completion.unwrap().tokens < b.completion.unwrap().tokens,
            "by answer"
        );
    }

    #[test]
    fn a_failed_array_fails_every_prompt_and_bills_its_retries_once() {
        let client = client();
        let e = RequestError::new(FailureKind::Status, ErrorClass::Transient, "503");
        let billed = Exchange {
            error: Some(e.clone()),
            usage: Usage {
                prompt: Some(Count::server(10)),
                completion: Some(Count::server(0)),
                ..Usage::default()
            },
            ..Exchange::default()
        };
        let outcome = Outcome {
            last: Exchange {
                error: Some(e),
                ..Exchange::default()
            },
            retried: vec![billed],
        };
        let shares = share_out(&client, &outcome, &["a", "b", "c"]);
        assert_eq!(shares.len(), 3);
        assert!(shares.iter().all(|o| o.last.error.is_some()));
        assert_eq!(shares[0].retried.len(), 1);
        assert!(shares[1].retried.is_empty() && shares[2].retried.is_empty());
    }

    #[test]
    fn chatml_writes_the_conversation_up_to_the_answer() {
        let t = PromptTemplate::new("chatml").unwrap();
        let p = t
            .render(&[Message::system("Be brief."), Message::user("Hi")])
            .unwrap();
        assert_eq!(
            p,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.stop(), ["<|im_end|>"]);
    }

    #[test]
    fn a_jinja_template_renders_as_chatml_does_and_finds_its_turn_end() {
        // SmolLM2's template, as its GGUF carries it.
        let source = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let jinja = PromptTemplate::new(source).unwrap();
        let chatml = PromptTemplate::new("chatml").unwrap();
        let msgs = [Message::system("Be brief."), Message::user("Hi")];
        assert_eq!(jinja.render(&msgs).unwrap(), chatml.render(&msgs).unwrap());
        assert_eq!(jinja.stop(), ["<|im_end|>"]);
    }

    #[test]
    fn templates_that_cannot_write_a_conversation_are_refused() {
        assert!(PromptTemplate::new("alpaca").is_err());
        assert!(PromptTemplate::new("{% for m in messages %}").is_err());
        let raises = "{{ raise_exception('system messages are not supported') }}";
        let e = PromptTemplate::new(raises).unwrap_err();
        assert!(e.contains("system messages are not supported"), "{e}");
    }
}
