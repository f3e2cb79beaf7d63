//! `pagemill doctor`: what each endpoint really supports (`pagemill_client::probe`), as a
//! table or JSON.

use std::io::Write as _;
use std::process::ExitCode;

use pagemill_client::probe::{self, Status};
use serde_json::json;

use crate::cli::{DoctorArgs, Format, GlobalArgs};
use crate::settings;

/// Runs the command.
pub async fn run(global: &GlobalArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let resolved = settings::resolve(global, &args.endpoint).await?;
    let reports = probe::check_all(resolved.endpoints.clone()).await;
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "endpoints": reports }))?
        )?,
        Format::Text => {
            writeln!(out, "endpoints from {}", resolved.origin)?;
            writeln!(out, "{}", pagemill_report::terminal::doctor(&reports))?;
        }
    }
    let unusable = reports
        .iter()
        .any(|r| r.status_of("reachable") == Some(Status::Fail));
    Ok(ExitCode::from(if unusable {
        crate::exit::ENDPOINT
    } else if reports.iter().any(probe::EndpointChecks::failed) {
        crate::exit::INCOMPLETE
    } else {
        crate::exit::SUCCESS
    }))
}
