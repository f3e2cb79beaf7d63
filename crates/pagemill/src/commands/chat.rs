//! `pagemill chat`: one prompt, the answer, and one line of truth about it.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pagemill_client::endpoint::PromptProfile;
use pagemill_client::{ChatRequest, Client, Message};

use crate::cli::{ChatArgs, Format, GlobalArgs};
use crate::settings;

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
    req.reasoning_effort = args.reasoning_effort;
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
            "api": client.dialect().api,
            "attempts": outcome.retried.len() + 1,
            "exchange": ex,
            "ttft_ms": ex.timeline.ttft().map(|d| d.as_secs_f64() * 1e3),
            "first_reasoning_ms": (ex.timeline.first_content < ex.timeline.first_answer)
                .then(|| ex.timeline.since_scheduled(ex.timeline.first_content))
                .flatten()
                .map(|d| d.as_secs_f64() * 1e3),
            "total_ms": ex.timeline.total().map(|d| d.as_secs_f64() * 1e3),
            "decode_tokens_per_sec": ex.decode_tokens_per_sec(),
            "e2e_tokens_per_sec": ex.e2e_tokens_per_sec(),
            "cost_usd": ex.cost.map(|c| c.total.dollars()),
            "prices_from": client.endpoint().price_source,
        });
        serde_json::to_writer_pretty(&mut stdout, &record).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        if !ex.reasoning.is_empty() {
            eprintln!(
                "[reasoning] {}",
                pagemill_report::fmt::inert_text(&ex.reasoning)
            );
        }
        writeln!(stdout, "{}", ex.content)?;
        if let Some(why) = &ex.cancelled {
            eprintln!("(answer cut: {why})");
        }
        eprintln!(
            "{}",
            pagemill_report::terminal::chat_line(
                ex,
                outcome.retried.len(),
                &client.endpoint().price_source
            )
        );
    }
    match &ex.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: endpoint `{}`: {e}", client.endpoint().name);
            Ok(ExitCode::from(crate::exit::ENDPOINT))
        }
    }
}
