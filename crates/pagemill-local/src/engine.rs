//! The inference engine: one GGUF model through llama.cpp, `slots` contexts (each with its own
//! KV cache) on their own threads, fed from one first-come-first-served queue — so requests
//! wait their turn instead of starving behind a global lock, and each slot keeps the tokens of
//! its last prompt to reuse the longest common prefix with the next (real prompt caching:
//! those tokens are not evaluated again, and are reported as cached).
//!
//! llama.cpp contexts are not `Send`: each is created inside its slot's thread (one at a time;
//! creating contexts in parallel is unsound upstream) and never leaves it. The model is loaded
//! once and kept for the life of the process.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

/// How the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// The GGUF file.
    pub model: PathBuf,
    /// CPU threads per slot (llama.cpp collapses when its threads share cores with other work:
    /// keep this at 1 unless the machine is otherwise idle).
    pub threads: i32,
    /// Requests decoded at once, each in its own context.
    pub slots: usize,
    /// Context length per slot (capped at the model's training context).
    pub n_ctx: u32,
    /// Prompt tokens evaluated per step.
    pub n_batch: u32,
}

impl EngineConfig {
    /// Defaults for `model`: 1 thread, 1 slot, 8,192 tokens of context.
    pub fn new(model: impl Into<PathBuf>) -> Self {
        Self {
            model: model.into(),
            threads: 1,
            slots: 1,
            n_ctx: 8192,
            n_batch: 512,
        }
    }
}

/// A generation request.
#[derive(Debug)]
pub struct Job {
    /// `(role, content)` pairs, rendered with the model's own chat template.
    pub messages: Vec<(String, String)>,
    /// The messages' contents are the prompt itself, sent as they are (legacy completions):
    /// no chat template.
    pub raw: bool,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// 0 (or below) for greedy decoding.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: f32,
    /// Sampling seed.
    pub seed: u32,
    /// Stop sequences (not included in the answer).
    pub stop: Vec<String>,
    /// A GBNF grammar the answer must follow.
    pub grammar: Option<String>,
    /// Keep generating past end-of-generation tokens, to exactly `max_tokens` (benchmarks).
    pub ignore_eos: bool,
    /// Where the answer goes.
    pub events: UnboundedSender<Event>,
}

/// What a job produces, in order: `Started`, `Text`…, then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Prompt evaluated.
    Started {
        /// Prompt tokens.
        prompt_tokens: u32,
        /// Of which reused from the slot's KV cache.
        cached_tokens: u32,
    },
    /// Answer text (whole UTF-8 characters).
    Text(String),
    /// Finished.
    Done {
        /// `stop` (end of sequence or a stop sequence) or `length`.
        finish_reason: &'static str,
        /// Tokens generated.
        completion_tokens: u32,
        /// Their ids, in order (to compare with other llama.cpp builds token for token).
        tokens: Vec<i32>,
    },
    /// Could not run.
    Failed {
        /// HTTP status to report.
        status: u16,
        /// Why.
        message: String,
    },
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp's backend failed.
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    /// The model did not load.
    #[error("cannot load the model `{path}`: {why}")]
    Model {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A slot's context could not be created.
    #[error("cannot create a context: {0}")]
    Context(String),
    /// This CPU lacks instructions the build's llama.cpp was compiled with.
    #[error(
        "this CPU lacks {missing}, which this build of the local model needs ({needed}). Build \
         pagemill on this machine for it (RUSTFLAGS=\"-C target-cpu=native\"), or use a remote \
         endpoint (-e NAME)"
    )]
    Cpu {
        /// What the CPU lacks.
        missing: String,
        /// Everything the build needs.
        needed: String,
    },
}

/// What the model is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Name served as the model id (the file's stem).
    pub id: String,
    /// Context length per slot.
    pub n_ctx: u32,
    /// Slots.
    pub slots: usize,
    /// The chat template the GGUF carries (Jinja), if any: what a client writing its own
    /// prompts for `/v1/completions` must follow.
    pub chat_template: Option<String>,
}

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// A running engine. Dropping it does not stop its threads; the process owns them.
#[derive(Clone)]
pub struct Engine {
    queue: Arc<Queue>,
    info: ModelInfo,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish()
    }
}

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    // Before llama.cpp runs a single instruction: ggml's initialisation already uses F16C.
    let missing = crate::cpu::missing();
    if !missing.is_empty() {
        return Err(EngineError::Cpu {
            missing: missing.join(", "),
            needed: crate::cpu::needed().to_owned(),
        });
    }
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = LlamaBackend::init().map_err(|e| e.to_string())?;
            b.void_logs();
            Ok(b)
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

/// Contexts are created one at a time (see the module notes).
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

impl Engine {
    /// Loads the model and starts the slots; returns once every slot has its context.
    pub fn start(config: &EngineConfig) -> Result<Self, EngineError> {
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &config.model, &LlamaModelParams::default())
                .map_err(|e| EngineError::Model {
                    path: config.model.clone(),
                    why: e.to_string(),
                })?;
        let model: &'static LlamaModel = Box::leak(Box::new(model));
        let template = Template::of(model);
        let n_ctx = config.n_ctx.min(model.n_ctx_train()).max(256);
        let info = ModelInfo {
            id: model_id(&config.model),
            n_ctx,
            slots: config.slots.max(1),
            chat_template: model
                .chat_template(None)
                .ok()
                .and_then(|t| t.to_string().ok()),
        };
        let queue = Arc::new(Queue {
            jobs: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        for i in 0..info.slots {
            let queue = Arc::clone(&queue);
            let template = Arc::clone(&template);
            let started = started_tx.clone();
            let params = SlotParams {
                threads: config.threads.max(1),
                n_ctx,
                n_batch: config.n_batch.max(32),
            };
            std::thread::Builder::new()
                .name(format!("llama-slot-{i}"))
                .spawn(move || slot(model, backend, template, params, &queue, &started))
                .map_err(|e| EngineError::Context(e.to_string()))?;
        }
        drop(started_tx);
        for _ in 0..info.slots {
            match started_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(EngineError::Context(e)),
                Err(_) => return Err(EngineError::Context("a slot thread died".into())),
            }
        }
        Ok(Self { queue, info })
    }

    /// The model served.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Queues a job (first come, first served).
    pub fn submit(&self, job: Job) {
        let mut q = self.queue.jobs.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(job);
        drop(q);
        self.queue.ready.notify_one();
    }

    /// Jobs waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.queue.jobs.lock().map_or(0, |q| q.len())
    }
}

/// The model's name: its file stem.
pub fn model_id(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "local".into(), |s| s.to_string_lossy().into_owned())
}

#[derive(Debug, Clone, Copy)]
struct SlotParams {
    threads: i32,
    n_ctx: u32,
    n_batch: u32,
}

fn slot(
    model: &'static LlamaModel,
    backend: &'static LlamaBackend,
    template: Arc<Template>,
    p: SlotParams,
    queue: &Queue,
    started: &std::sync::mpsc::Sender<Result<(), String>>,
) {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(p.n_ctx))
        .with_n_batch(p.n_batch)
        .with_n_ubatch(p.n_batch)
        .with_n_threads(p.threads)
        .with_n_threads_batch(p.threads);
    let ctx = {
        let _one_at_a_time = CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
        model.new_context(backend, params)
    };
    let mut ctx = match ctx {
        Ok(c) => {
            let _ = started.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = started.send(Err(e.to_string()));
            return;
        }
    };
    // The tokens whose keys and values are in this slot's cache, in order.
    let mut cached: Vec<LlamaToken> = Vec::new();
    let mut batch = LlamaBatch::new(p.n_batch as usize, 1);
    loop {
        let job = {
            let mut q = queue.jobs.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(j) = q.pop_front() {
                    break j;
                }
                q = queue.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        if job.events.is_closed() {
            continue; // the client went away while it waited
        }
        let events = job.events.clone();
        if let Err((status, message)) =
            run_job(model, &template, &mut ctx, &mut batch, &mut cached, p, job)
        {
            // A failed decode may leave the cache in any state: start afresh next time.
            ctx.clear_kv_cache();
            cached.clear();
            let _ = events.send(Event::Failed { status, message });
        }
    }
}

type JobError = (u16, String);

/// The model's chat template, from its GGUF: rendered as Jinja (as upstream's llama-server
/// does by default), falling back to llama.cpp's built-in template matcher when the Jinja
/// cannot be rendered, and to plain `role: content` lines when the GGUF has no template.
struct Template {
    builtin: Option<LlamaChatTemplate>,
    jinja: Option<minijinja::Environment<'static>>,
    bos: String,
    eos: String,
}

impl Template {
    fn of(model: &LlamaModel) -> Arc<Self> {
        let builtin = model.chat_template(None).ok();
        let jinja = builtin
            .as_ref()
            .and_then(|t| t.to_string().ok())
            .and_then(|source| {
                let mut env = minijinja::Environment::new();
                minijinja_contrib::add_to_environment(&mut env);
                env.set_unknown_method_callback(
                    minijinja_contrib::pycompat::unknown_method_callback,
                );
                env.add_function(
                    "raise_exception",
                    |msg: String| -> Result<String, minijinja::Error> {
                        Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            msg,
                        ))
                    },
                );
                env.add_template_owned("chat", source).ok()?;
                Some(env)
            });
        let vocab = model.vocab();
        let text = |t: LlamaToken| {
            String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned()
        };
        Arc::new(Self {
            bos: text(vocab.bos()),
            eos: text(vocab.eos()),
            builtin,
            jinja,
        })
    }

    fn render(
        &self,
        model: &LlamaModel,
        messages: &[(String, String)],
    ) -> Result<String, JobError> {
        if let Some(env) = &self.jinja {
            let msgs: Vec<minijinja::Value> = messages
                .iter()
                .map(|(r, c)| minijinja::context! { role => r, content => c })
                .collect();
            let rendered = env.get_template("chat").and_then(|t| {
                t.render(minijinja::context! {
                    messages => msgs,
                    add_generation_prompt => true,
                    bos_token => self.bos,
                    eos_token => self.eos,
                })
            });
            match rendered {
                Ok(text) => return Ok(text),
                Err(e) => tracing::debug!("chat template (Jinja) failed, using llama.cpp's: {e}"),
            }
        }
        let Some(template) = &self.builtin else {
            let mut s = String::new();
            for (role, content) in messages {
                s.push_str(&format!("{role}: {content}\n"));
            }
            s.push_str("assistant: ");
            return Ok(s);
        };
        let chat = messages
            .iter()
            .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| (400, format!("a message cannot be used: {e}")))?;
        model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| (500, format!("the model's chat template failed: {e}")))
    }
}

/// The job's prompt, rendered with the model's chat template and tokenized; refused when empty
/// or longer than the context.
fn prompt_tokens(
    model: &LlamaModel,
    template: &Template,
    job: &Job,
    n_ctx: usize,
) -> Result<Vec<LlamaToken>, JobError> {
    let prompt = if job.raw {
        job.messages.iter().map(|m| m.1.as_str()).collect()
    } else {
        template.render(model, &job.messages)?
    };
    let vocab = model.vocab();
    let tokens = vocab.tokenize(prompt.as_bytes(), vocab.should_add_bos(), true);
    if tokens.is_empty() {
        return Err((400, "the prompt is empty".into()));
    }
    if tokens.len() >= n_ctx {
        return Err((
            400,
            format!(
                "This model's maximum context length is {n_ctx} tokens. However, your messages resulted in {} tokens.",
                tokens.len()
            ),
        ));
    }
    Ok(tokens)
}

/// Evaluates the prompt, reusing the longest prefix the slot's KV cache shares with it (at
/// least the last prompt token is evaluated, for its logits); returns the tokens reused.
fn prefill(
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    cached: &mut Vec<LlamaToken>,
    tokens: &[LlamaToken],
    n_batch: usize,
) -> Result<usize, JobError> {
    let common = cached
        .iter()
        .zip(tokens)
        .take_while(|(a, b)| a == b)
        .count()
        .min(tokens.len() - 1);
    if common < cached.len() {
        let _ = ctx.clear_kv_cache_seq(Some(0), Some(common as u32), None);
        cached.truncate(common);
    }
    let mut pos = common;
    for chunk in tokens[common..].chunks(n_batch) {
        batch.clear();
        for (i, t) in chunk.iter().enumerate() {
            let last = pos + i == tokens.len() - 1;
            batch
                .add(*t, (pos + i) as i32, &[0], last)
                .map_err(|e| (500, e.to_string()))?;
        }
        ctx.decode(batch)
            .map_err(|e| (500, format!("decode: {e}")))?;
        cached.extend_from_slice(chunk);
        pos += chunk.len();
    }
    Ok(common)
}

fn run_job(
    model: &LlamaModel,
    template: &Template,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    cached: &mut Vec<LlamaToken>,
    p: SlotParams,
    job: Job,
) -> Result<(), JobError> {
    let tokens = prompt_tokens(model, template, &job, p.n_ctx as usize)?;
    let n_ctx = p.n_ctx as usize;
    let vocab = model.vocab();
    let mut sampler = sampler(model, &job)?;
    let common = prefill(ctx, batch, cached, &tokens, p.n_batch as usize)?;
    let mut pos = tokens.len();
    let _ = job.events.send(Event::Started {
        prompt_tokens: tokens.len() as u32,
        cached_tokens: common as u32,
    });

    let budget = (job.max_tokens as usize).min(n_ctx - tokens.len());
    let mut out = TextOut::new(&job.stop);
    let mut generated: Vec<LlamaToken> = Vec::new();
    let mut finish = "length";
    let mut piece = Vec::with_capacity(16);
    // Runaway handling: tokens of a detected loop are kept out for a few steps.
    let mut banned: std::collections::HashSet<LlamaToken> = Default::default();
    let mut ban_steps = 0;
    let mut loop_from = 0;
    let mut interventions = 0;
    while generated.len() < budget {
        if job.events.is_closed() {
            finish = "cancelled";
            break;
        }
        let idx = batch.n_tokens() - 1;
        let token = if ban_steps > 0 {
            ban_steps -= 1;
            avoiding(&mut sampler, ctx, idx, &banned).unwrap_or_else(|| sampler.sample(ctx, idx))
        } else {
            sampler.sample(ctx, idx)
        };
        if vocab.is_eog(token) && !job.ignore_eos {
            finish = "stop";
            break;
        }
        generated.push(token);
        piece.clear();
        vocab.token_to_piece_into(token, &mut piece, false, None);
        if let Some(text) = out.push(&piece)
            && !text.is_empty()
        {
            let _ = job.events.send(Event::Text(text));
        }
        if out.stopped {
            finish = "stop";
            break;
        }
        if let Some(period) = runaway(&generated[loop_from..]) {
            // Under a grammar, cutting would leave broken JSON: keep the loop's tokens out for
            // a while, so the grammar's way out (close the string, end the array) wins. A few
            // tries, then cut.
            if job.grammar.is_some() && interventions < MAX_INTERVENTIONS {
                interventions += 1;
                banned = generated[generated.len() - period..]
                    .iter()
                    .copied()
                    .collect();
                ban_steps = period.max(8);
                loop_from = generated.len();
                tracing::debug!(period, "runaway repetition: steering out of the loop");
            } else {
                tracing::debug!("runaway repetition: answer cut");
                break;
            }
        }
        if generated.len() >= budget {
            break;
        }
        batch.clear();
        batch
            .add(token, pos as i32, &[0], true)
            .map_err(|e| (500, e.to_string()))?;
        ctx.decode(batch)
            .map_err(|e| (500, format!("decode: {e}")))?;
        cached.push(token);
        pos += 1;
    }
    if let Some(rest) = out.finish()
        && !rest.is_empty()
    {
        let _ = job.events.send(Event::Text(rest));
    }
    let _ = job.events.send(Event::Done {
        finish_reason: if finish == "cancelled" {
            "stop"
        } else {
            finish
        },
        completion_tokens: generated.len() as u32,
        tokens: generated.iter().map(|t| t.0).collect(),
    });
    Ok(())
}

fn sampler(model: &LlamaModel, job: &Job) -> Result<LlamaSampler, JobError> {
    let mut chain = Vec::new();
    if let Some(g) = &job.grammar {
        chain.push(
            LlamaSampler::grammar(model, g, "root")
                .map_err(|e| (400, format!("the answer's grammar is not usable: {e}")))?,
        );
    }
    if job.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        // llama.cpp's default top-k first: top-p alone sorts the whole vocabulary (49K
        // tokens for SmolLM2) every step, which cost 16% of decode speed.
        chain.push(LlamaSampler::top_k(40));
        chain.push(LlamaSampler::top_p(job.top_p.clamp(0.0, 1.0), 1));
        chain.push(LlamaSampler::temp(job.temperature));
        chain.push(LlamaSampler::dist(job.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}

/// Tries to get a grammar-constrained answer out of a loop before it is cut.
const MAX_INTERVENTIONS: u32 = 4;

/// The period when the answer's last 48 tokens are one short sequence (≤ 16 tokens) over and
/// over: a small model looping (`{"text":"","type":"money"}, …`, `B.A.S.B.A.S.…`), which
/// would otherwise run to `max_tokens`.
fn runaway(tokens: &[LlamaToken]) -> Option<usize> {
    const SPAN: usize = 48;
    if tokens.len() < SPAN {
        return None;
    }
    let tail = &tokens[tokens.len() - SPAN..];
    (1..=16).find(|&period| (period..SPAN).all(|i| tail[i] == tail[i - period]))
}

/// Samples with `banned` tokens excluded, if anything the sampler allows is left; accepts the
/// token into the sampler (grammar state) as `sample` would.
fn avoiding(
    sampler: &mut LlamaSampler,
    ctx: &llama_cpp_2::context::LlamaContext<'_>,
    idx: i32,
    banned: &std::collections::HashSet<LlamaToken>,
) -> Option<LlamaToken> {
    let mut arr = ctx.token_data_array_ith(idx);
    for d in &mut arr.data {
        if banned.contains(&d.id()) {
            d.set_logit(f32::NEG_INFINITY);
        }
    }
    sampler.apply(&mut arr);
    let token = arr.selected_token()?;
    let allowed = arr
        .data
        .iter()
        .find(|d| d.id() == token)
        .is_some_and(|d| d.logit().is_finite());
    if !allowed {
        return None;
    }
    sampler.accept(token);
    Some(token)
}

/// Turns token bytes into whole UTF-8 characters and applies stop sequences, holding back
/// text that might be the start of one.
struct TextOut<'a> {
    bytes: Vec<u8>,
    held: String,
    stops: &'a [String],
    stopped: bool,
}

impl<'a> TextOut<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            bytes: Vec::new(),
            held: String::new(),
            stops,
            stopped: false,
        }
    }

    /// Adds a token's bytes; returns the text that can be sent now.
    fn push(&mut self, piece: &[u8]) -> Option<String> {
        self.bytes.extend_from_slice(piece);
        let valid = match std::str::from_utf8(&self.bytes) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(), // an incomplete character
            Err(e) => e.valid_up_to() + e.error_len().unwrap_or(1), // invalid: let it through lossily
        };
        let chunk: Vec<u8> = self.bytes.drain(..valid).collect();
        self.held.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(at) = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            self.held.truncate(at);
            self.stopped = true;
            return Some(std::mem::take(&mut self.held));
        }
        // Hold back the longest tail that could begin a stop sequence.
        let keep = self
            .stops
            .iter()
            .map(|s| {
                (1..s.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&n| s.is_char_boundary(n) && self.held.ends_with(&s[..n]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let rest = self.held.split_off(cut);
        Some(std::mem::replace(&mut self.held, rest))
    }

    /// Whatever is still held, once generation is over.
    fn finish(&mut self) -> Option<String> {
        if self.stopped {
            return None;
        }
        let tail = String::from_utf8_lossy(&self.bytes).into_owned();
        self.bytes.clear();
        self.held.push_str(&tail);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_comes_out_in_whole_characters_and_stops_where_asked() {
        let stops = vec!["</end>".to_string()];
        let mut out = TextOut::new(&stops);
        let euro = "€".as_bytes();
        assert_eq!(out.push(&euro[..1]).as_deref(), Some(""));
        assert_eq!(out.push(&euro[1..]).as_deref(), Some("€"));
        assert_eq!(
            out.push(b"ab</e").as_deref(),
            Some("ab"),
            "held: could be a stop"
        );
        assert_eq!(out.push(b"nd> more").as_deref(), Some(""));
        assert!(out.stopped);
        assert_eq!(out.finish(), None);
        let none: Vec<String> = Vec::new();
        let mut plain = TextOut::new(&none);
        assert_eq!(plain.push(b"x</").as_deref(), Some("x</"));
        assert_eq!(plain.finish().as_deref(), Some(""));
    }

    #[test]
    fn runaway_is_a_short_loop_not_a_long_answer() {
        let t = |v: i32| LlamaToken(v);
        let looping: Vec<_> = (0..60).map(|i| t(i % 12)).collect();
        assert_eq!(runaway(&looping), Some(12));
        let varied: Vec<_> = (0..200).map(t).collect();
        assert_eq!(runaway(&varied), None);
        let short: Vec<_> = (0..40).map(|_| t(1)).collect();
        assert_eq!(runaway(&short), None);
    }
}
