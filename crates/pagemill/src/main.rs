//! `pagemill`: parse arguments, build the runtime, run the command, map errors to exit codes.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pagemill::cli::Cli::parse();
    pagemill::init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match runtime.block_on(pagemill::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = pagemill::hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::from(2)
        }
    }
}
