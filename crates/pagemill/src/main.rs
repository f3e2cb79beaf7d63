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
            return std::process::ExitCode::from(pagemill::exit::INTERNAL);
        }
    };
    // Run the command as a task on the runtime, not on this thread: with the collector of a
    // benchmark on the main thread, every record crossed threads and woke it (38% of a core
    // went to context switches at 29K requests/s).
    let result = runtime.block_on(async {
        match tokio::spawn(pagemill::run(cli)).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::Error::new(e).context("the command's task failed (a bug)")),
        }
    });
    match result {
        Ok(code) => code,
        // The reader went away (`pagemill report --format json | head`): end quietly, as Unix
        // tools do.
        Err(e) if pagemill::is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(hint) = pagemill::hint_for(&e) {
                eprintln!("hint: {hint}");
            }
            std::process::ExitCode::from(pagemill::exit_code_for(&e))
        }
    }
}
