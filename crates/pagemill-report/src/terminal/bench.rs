//! A benchmark's results as terminal tables: what `pagemill bench` prints when it finishes and
//! what `pagemill report --format text` shows of a bench file. One table per load point, a line
//! of token and connection accounting per target, paired comparisons, agreement, the timing
//! check against a simulator's log, and the client's check on itself.

use std::fmt::Write as _;

use pagemill_bench::results::{BenchResults, Point, TargetResults};

use super::{right, table};
use crate::fmt::{count, inert, load, ms, num, opt, pct, signed, usd};

/// The whole benchmark.
pub fn render(r: &BenchResults) -> String {
    let mut s = String::new();
    for p in &r.points {
        point(&mut s, r, p);
    }
    if let Some(a) = &r.agreement {
        for row in &a.endpoints {
            let _ = writeln!(
                s,
                "agreement with {} over {} prompts: {} exact {}{}",
                inert(&a.reference),
                a.prompts,
                inert(&row.name),
                pct(row.exact_match_rate),
                row.json_field_agreement
                    .map_or_else(String::new, |f| format!(", JSON fields {}", pct(f)))
            );
        }
    }
    if let Some(t) = &r.truth {
        let _ = writeln!(
            s,
            "timing truth vs the simulator's log: {} requests, {} chunks; receive − send p50 {} µs, p99 {} µs; TTFT difference p50 {} µs, p99 {} µs; {} causality violations",
            count(t.matched),
            count(t.chunks),
            num(t.chunk_delay_us.p50),
            num(t.chunk_delay_us.p99),
            num(t.ttft_delta_us.p50),
            num(t.ttft_delta_us.p99),
            t.causality_violations
        );
        if t.connect_delta_us.count > 0 || t.ttft_delta_new_us.count > 0 {
            let _ = writeln!(
                s,
                "  TTFT difference on new connections p50 {} µs, p99 {} µs; on reused p50 {} µs, p99 {} µs; connect − server handshake p50 {} µs, p99 {} µs ({} TLS connections)",
                num(t.ttft_delta_new_us.p50),
                num(t.ttft_delta_new_us.p99),
                num(t.ttft_delta_reused_us.p50),
                num(t.ttft_delta_reused_us.p99),
                num(t.connect_delta_us.p50),
                num(t.connect_delta_us.p99),
                count(t.connect_delta_us.count)
            );
        }
    }
    let sc = &r.self_check;
    let _ = writeln!(
        s,
        "client: lag p50 {} p99 {}, to the wire p50 {} p99 {}, CPU {} s over {} s ({} µs/request, {} µs/event), peak memory {} MiB",
        ms(sc.lag_ms.p50),
        ms(sc.lag_ms.p99),
        ms(sc.write_lag_ms.p50),
        ms(sc.write_lag_ms.p99),
        num(sc.cpu_s),
        num(sc.wall_s),
        num(sc.cpu_per_request_us),
        num(sc.cpu_per_event_us),
        num(sc.peak_rss_bytes as f64 / f64::from(1u32 << 20))
    );
    if !sc.per_core.is_empty() {
        let cores: Vec<String> = sc
            .per_core
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{i}: {} requests, {:.0}% busy, {} µs/request, {} stalls",
                    count(c.requests),
                    c.busy * 100.0,
                    num(c.cpu_per_request_us),
                    c.stalls
                )
            })
            .collect();
        let _ = writeln!(s, "client cores · {}", cores.join(" · "));
    }
    for w in &sc.warnings {
        let _ = writeln!(s, "warning: {}", inert(w));
    }
    if r.interrupted {
        s.push_str("interrupted: partial results\n");
    }
    s
}

/// `p50 / p99` of one latency.
fn pair(t: &TargetResults, key: &str) -> String {
    t.latency_ms.get(key).filter(|p| p.count > 0).map_or_else(
        || crate::fmt::NONE.to_owned(),
        |p| format!("{} / {}", ms(p.p50), ms(p.p99)),
    )
}

fn point(s: &mut String, r: &BenchResults, p: &Point) {
    // Reasoning models have a first thought before their first answer token: both shown.
    let reasoning = p.targets.iter().any(|tr| {
        let p50 = |k: &str| tr.latency_ms.get(k).filter(|p| p.count > 0).map(|p| p.p50);
        matches!((p50("ttft_content"), p50("ttft_answer")), (Some(c), Some(a)) if c < a)
    });
    let mut header = vec!["target", "ok/err", "req/s", "out tok/s"];
    if reasoning {
        header.push("1st reasoning p50/p99");
    }
    header.extend([
        "TTFT p50/p99",
        "TPOT p50/p99",
        "ITL/token p50/p99",
        "E2E p50/p99",
        "cached",
        "$/request",
        "$/1K pages",
        "$/month",
    ]);
    let mut t = table(&header);
    for tr in &p.targets {
        let errors: u64 = tr.errors.values().sum();
        let mut row = vec![
            inert(&tr.name),
            format!("{}/{}", count(tr.ok), count(errors)),
            num(tr.request_throughput),
            num(tr.output_token_throughput),
        ];
        if reasoning {
            row.push(pair(tr, "ttft_content"));
        }
        row.extend([
            pair(tr, "ttft_answer"),
            pair(tr, "tpot"),
            pair(tr, "itl_token"),
            pair(tr, "e2e"),
            tr.tokens
                .cached_ratio
                .map_or_else(|| "unreported".into(), pct),
            opt(tr.cost.per_request_usd, usd),
            opt(tr.cost.per_1k_pages_usd, usd),
            opt(tr.cost.per_month_usd, usd),
        ]);
        t.add_row(row);
    }
    right(&mut t, 1);
    let _ = writeln!(
        s,
        "\nload {} — workload {}\n{t}",
        load(&p.load),
        inert(&r.workload)
    );
    for tr in &p.targets {
        accounting(s, tr);
    }
    if !p.comparisons.is_empty() {
        let _ = writeln!(
            s,
            "paired comparisons against {} (difference ± 95% confidence half-width):",
            inert(&p.comparisons[0].baseline)
        );
        for c in &p.comparisons {
            let _ = writeln!(
                s,
                "  {}: {} {} ({} → {}) ± {}, {} ({})",
                inert(&c.target),
                c.metric,
                signed(c.difference),
                num(c.baseline_value),
                num(c.target_value),
                num(c.ci95),
                if c.significant {
                    "significant"
                } else {
                    "not significant"
                },
                c.method
            );
        }
    }
}

/// Tokens counted against the server's figures, connections, goodput, errors, per page, and
/// the spread across repeats.
fn accounting(s: &mut String, tr: &TargetResults) {
    let tok = &tr.tokens;
    let per_event = if tok.content_events > 0 {
        tok.output_received as f64 / tok.content_events as f64
    } else {
        0.0
    };
    // The server's prompt count is the one used; where it differs from the tokens pagemill
    // sized the prompts to, say so as the server's difference (another tokenizer), not an error.
    let input = if tok.input_mismatches == 0 {
        String::new()
    } else {
        format!(
            " (the server's count: {} a request against pagemill's on {} requests — another tokenizer)",
            signed(tok.input_discrepancy_mean),
            count(tok.input_mismatches)
        )
    };
    let _ = write!(
        s,
        "  {}: tokens in {}{}, out {}/{} asked ({} short), {} tokens/event, sources server {} / tokenizer {}; connections reused {} new {}",
        inert(&tr.name),
        count(tok.input_counted),
        input,
        count(tok.output_received),
        count(tok.output_requested),
        count(tok.output_short),
        num(per_event),
        count(tok.output_source_server),
        count(tok.output_source_tokenizer),
        count(tr.connections.reused),
        count(tr.connections.new)
    );
    let c = &tr.connections;
    if c.closed_by_server_idle + c.closed_by_server_under_request > 0 {
        let _ = write!(
            s,
            " (closed by the server: {} idle, {} under a request)",
            count(c.closed_by_server_idle),
            count(c.closed_by_server_under_request)
        );
    }
    if tok.cache_written > 0 {
        let _ = write!(s, "; cache written {}", count(tok.cache_written));
    }
    if tok.reasoning > 0 {
        let _ = write!(s, "; of the output, reasoning {}", count(tok.reasoning));
    }
    let _ = write!(s, "; prices: {}", tr.cost.prices_from);
    if let Some(g) = tr.goodput {
        let _ = write!(
            s,
            "; goodput {} req/s ({} within SLO)",
            num(g),
            pct(tr.slo_attainment.unwrap_or(0.0))
        );
    }
    if !tr.errors.is_empty() {
        let e: Vec<String> = tr
            .errors
            .iter()
            .map(|(k, v)| format!("{k} {}", count(*v)))
            .collect();
        let _ = write!(s, "; errors: {}", e.join(", "));
    }
    if let Some(pp) = &tr.per_page {
        let _ = write!(
            s,
            "; per page: {} in / {} out tokens, {}",
            num(pp.input_tokens),
            num(pp.output_tokens),
            ms(pp.e2e_ms)
        );
    }
    s.push('\n');
    for (k, e) in &tr.across_repeats {
        let _ = writeln!(
            s,
            "    {k}: {} ± {} (95% CI, {} runs)",
            num(e.mean),
            num(e.ci95),
            e.n
        );
    }
}
