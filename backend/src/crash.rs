//! Crash points for the crash-safety tests: with `IMDS_CONSOLE_CRASH_AT=<point>` the process aborts at
//! that point of a start, as abruptly as SIGKILL (no destructors, no flush), so tests can prove that
//! a restart neither loses nor duplicates the run. Unset, this costs one cached comparison.

use std::sync::OnceLock;

fn configured() -> Option<&'static str> {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    AT.get_or_init(|| {
        std::env::var("IMDS_CONSOLE_CRASH_AT")
            .ok()
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

/// Aborts the process when `name` is the configured crash point.
pub fn point(name: &str) {
    if configured() == Some(name) {
        eprintln!("imds-console: crashing at {name} (IMDS_CONSOLE_CRASH_AT)");
        std::process::abort();
    }
}
