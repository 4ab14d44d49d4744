//! The `imds-console` binary: parse the command line, set up telemetry, run the chosen command.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = backend::config::Cli::parse();
    backend::telemetry::init();
    match backend::startup::run_command(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imds-console: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
