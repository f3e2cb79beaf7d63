//! `pagemill chat`: one prompt, the answer, and one line of truth about it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_client::endpoint::PromptProfile;
use pagemill_client::{ChatRequest, Client, Exchange, Message};

use crate::cli::{ChatArgs, Format, GlobalArgs};
use crate::settings;
use pagemill_report::fmt;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: ChatArgs) -> anyhow::Result<ExitCode> {
    let wanted: Vec<String> = args.endpoint.iter().cloned().collect();
    let resolved = settings::resolve(global, &wanted).await?;
    let endpoint = resolved
        .endpoints
        .into_iter()
        .next()
        .ok_or(pagemill_client::ClientError::NoEndpoint)?;
    let client = Client::new(endpoint)?;

    let mut req = ChatRequest::default();
    if let Some(system) = &args.system {
        req.messages.push(Message::system(system.clone()));
    }
    req.messages.push(Message::user(args.prompt.clone()));
    req.max_tokens = args.max_tokens;
    // A tiny model sampled at a server's default temperature (0.8 for llama.cpp) answers
    // "What is the capital of France?" with "the United States"; greedy, with "Paris".
    let small = client.endpoint().prompt_profile == PromptProfile::Small;
    req.temperature = args.temperature.or(small.then_some(0.0));
    req.stream = !args.no_stream;
    // A looping answer is cut when it loops, not at max_tokens.
    req.cancel_loops = req.stream;

    let outcome = client.chat(&req).await;
    let ex = &outcome.last;
    let mut stdout = std::io::stdout().lock();
    if args.format == Format::Json {
        let record = serde_json::json!({
            "endpoint": client.endpoint().name,
            "attempts": outcome.retried.len() + 1,
            "exchange": ex,
            "ttft_ms": ex.timeline.ttft().map(|d| d.as_secs_f64() * 1e3),
            "total_ms": ex.timeline.total().map(|d| d.as_secs_f64() * 1e3),
            "decode_tokens_per_sec": ex.decode_tokens_per_sec(),
            "e2e_tokens_per_sec": ex.e2e_tokens_per_sec(),
            "cost_usd": ex.cost.map(|c| c.total.dollars()),
        });
        serde_json::to_writer_pretty(&mut stdout, &record).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        if !ex.reasoning.is_empty() {
            eprintln!("[reasoning] {}", ex.reasoning);
        }
        writeln!(stdout, "{}", ex.content)?;
        if let Some(why) = &ex.cancelled {
            eprintln!("(answer cut: {why})");
        }
        eprintln!("{}", summary_line(ex, outcome.retried.len()));
    }
    match &ex.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: endpoint `{}`: {e}", client.endpoint().name);
            Ok(ExitCode::from(crate::exit::ENDPOINT))
        }
    }
}

/// `ttft 21.3 ms · total 190.2 ms · prompt 12 (server) · …` — the line under the answer.
pub fn summary_line(ex: &Exchange, retries: usize) -> String {
    let conn = match ex.timeline.connection {
        Some(c) if c.reused => "connection reused".to_owned(),
        Some(c) => format!(
            "new connection ({})",
            fmt::opt_duration(c.connect_ns.map(std::time::Duration::from_nanos))
        ),
        None => "connection n/a".to_owned(),
    };
    let mut parts = vec![
        format!("ttft {}", fmt::opt_duration(ex.timeline.ttft())),
        format!("total {}", fmt::opt_duration(ex.timeline.total())),
        format!("prompt {}", fmt::tokens(ex.usage.prompt)),
        format!("cached {}", fmt::tokens(ex.usage.cached_prompt)),
        format!("completion {}", fmt::tokens(ex.usage.completion)),
        format!("decode {}", fmt::rate(ex.decode_tokens_per_sec())),
        format!("e2e {}", fmt::rate(ex.e2e_tokens_per_sec())),
        conn,
        format!("cost {}", fmt::cost(ex.cost.map(|c| c.total))),
    ];
    if ex.cost.is_some_and(|c| c.cached_unreported) {
        parts.push("(cache unreported: cost is an upper bound)".into());
    }
    if retries > 0 {
        parts.push(format!("{retries} retries"));
    }
    parts.join(" · ")
}
