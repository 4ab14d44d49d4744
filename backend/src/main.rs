//! The `imds-console` binary: parse the command line, set up telemetry, run the chosen command.

use clap::Parser;

/// See the note on `mimalloc` in Cargo.toml.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The data directory holds password hashes, sessions and the audit trail: every file this process
    // creates (the database, its WAL, the sandbox's state) is for its own user only.
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
    let args = match backend::config_file::with_config_file(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("imds-console: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let cli = backend::config::Cli::parse_from(args);
    backend::telemetry::init(cli.log_format);
    match backend::startup::run_command(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imds-console: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
