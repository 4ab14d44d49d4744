//! Wall-clock time in the forms the protocols use: epoch seconds (JSON, CBOR) and ISO 8601 (XML, filters).

use std::time::{SystemTime, UNIX_EPOCH};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Epoch seconds with milliseconds, as SSM sends timestamps.
pub(crate) fn epoch_secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// `2026-11-26T13:00:00.000Z`, as EC2 writes launchTime.
pub(crate) fn iso(ms: u64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an ISO 8601 / RFC 3339 time or epoch seconds into epoch milliseconds.
pub(crate) fn parse_time(raw: &str) -> Option<u64> {
    if let Ok(secs) = raw.parse::<f64>() {
        return Some((secs * 1000.0) as u64);
    }
    let t = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}
