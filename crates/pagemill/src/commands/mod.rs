//! One module per command.

pub mod bench;
pub mod chat;
pub mod doctor;
pub mod eval;
pub mod ingest;
pub mod local;
pub mod metrics;
pub mod prices;
pub mod quote;
pub mod report;
pub mod run;
pub mod sim;
pub mod watch;
pub mod worker;

/// A token cancelled by the first Ctrl-C (after saying `what` happens now): `run`, `eval` and
/// `bench` then take no new work, let what is in flight finish, and write their results and
/// ledger as they would at the end. A second Ctrl-C quits at once (exit 130); the ledger still
/// holds every result finished before it.
pub(crate) fn stop_on_ctrl_c(what: &'static str) -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let on_signal = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\n{what} (Ctrl-C again to quit now)");
            on_signal.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    token
}

/// Like [`stop_on_ctrl_c`], and on SIGTERM too (how systemd and Kubernetes stop a service).
pub(crate) fn stop_on_signals(what: &'static str) -> tokio_util::sync::CancellationToken {
    let token = stop_on_ctrl_c(what);
    #[cfg(unix)]
    {
        let on_term = token.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                if term.recv().await.is_some() {
                    eprintln!("\n{what} (SIGTERM)");
                    on_term.cancel();
                }
            });
        }
    }
    token
}

/// The key a server pagemill starts must require, after checking where it listens: beyond
/// loopback with no key is refused unless `--insecure-no-auth`, and any bind beyond loopback is
/// said out loud.
pub(crate) fn server_key(
    ip: std::net::IpAddr,
    exposure: &crate::cli::ExposureArgs,
) -> anyhow::Result<Option<pagemill_client::ApiKey>> {
    let key = match exposure.api_key.as_deref().map(str::trim) {
        Some(k) if k.len() < pagemill_client::secrets::MIN_LEN => anyhow::bail!(
            "--api-key must be at least {} characters",
            pagemill_client::secrets::MIN_LEN
        ),
        Some(k) => Some(pagemill_client::ApiKey::new(k)),
        None => None,
    };
    if !ip.is_loopback() {
        match (&key, exposure.insecure_no_auth) {
            (None, false) => anyhow::bail!(
                "{ip} is reachable beyond this machine and no key is set: give --api-key (or PAGEMILL_SERVE_KEY), or --insecure-no-auth to let anyone who reaches the port use it"
            ),
            (None, true) => eprintln!(
                "warning: listening on {ip} with no key (--insecure-no-auth): anyone who can reach this port can use it"
            ),
            (Some(_), _) => eprintln!(
                "warning: listening on {ip}, beyond this machine; every request needs the key"
            ),
        }
    }
    Ok(key)
}

/// The row writer `--format jsonl|csv` asks for (`None` for text and JSON).
pub(crate) fn row_kind(format: crate::cli::RowFormat) -> Option<pagemill_report::rows::RowKind> {
    use crate::cli::RowFormat;
    use pagemill_report::rows::RowKind;
    match format {
        RowFormat::Jsonl => Some(RowKind::Jsonl),
        RowFormat::Csv => Some(RowKind::Csv),
        RowFormat::Text | RowFormat::Json => None,
    }
}
