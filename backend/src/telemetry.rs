//! Logging: `tracing` to stderr, filtered by `RUST_LOG` (default: info for our crates, warn for the rest).

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,backend=info,imds_console=info,sandbox=info,tower_http=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
