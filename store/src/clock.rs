//! The console's clock: real time, plus an offset that tests move forward to see sessions, tokens and
//! throttling windows expire without waiting for them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Cloning shares the offset, so every part of one console reads the same time.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Now as the store writes times (`2026-12-07T19:26:49.123Z`, see [`crate::rfc3339_ms`]).
    pub fn now_rfc3339(&self) -> String {
        crate::rfc3339_ms(self.now_ms())
    }

    /// Today's date in UTC, `YYYY-MM-DD`, `days_ago` days back.
    pub fn day(&self, days_ago: i64) -> String {
        let ms = self.now_ms() - days_ago * 86_400_000;
        crate::rfc3339_ms(ms).get(..10).unwrap_or_default().to_owned()
    }

    /// Moves this console's time forward (tests only need forward).
    pub fn advance(&self, by: Duration) {
        self.offset_ms.fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_one_handle_moves_every_clone() {
        let a = Clock::default();
        let b = a.clone();
        let before = b.now_ms();
        a.advance(Duration::from_secs(3600));
        assert!(b.now_ms() - before >= 3_600_000);
    }
}
