//! Sign-in throttling: failed sign-ins counted per address, per user and per pair, in the store so
//! every replica counts the same and a restart forgives no one.

use super::*;

/// Failed sign-ins, counted so that guessing slows down while the owner of the right password is not
/// kept out:
/// - per user *and* address, and per address: past `FREE_ATTEMPTS` failures in the window, each failure
///   locks for twice as long (1 s, 2 s, 4 s, ... up to 15 min); a locked pair or address gets 429 even
///   with the right password, so a guesser cannot test passwords faster by waiting out nothing;
/// - per user from every address: past `USER_FREE_ATTEMPTS`, each attempt on that user is answered only
///   after a growing delay (at most `MAX_USER_DELAY_MS`), never refused, so someone elsewhere who
///   knows the password still gets in.
///
/// Behind a trusted proxy the address is the client's, from the proxy's header, so one abuser does not
/// lock out everyone who shares the proxy.
/// Kept in the store, so that every replica counts the same failures and a restart does not forgive
/// a guesser.
#[derive(Clone)]
pub struct LoginThrottle {
    store: Store,
}

/// A key's failures in its window, as the store keeps them.
pub use store::Failures;

/// Failures allowed per user-and-address or per address in a window before sign-in locks.
const FREE_ATTEMPTS: u32 = 5;
/// Failures on one user, from anywhere, before each attempt on it is slowed.
const USER_FREE_ATTEMPTS: u32 = 10;
pub const LOGIN_WINDOW_MS: i64 = 15 * 60 * 1000;
const MAX_LOCK_MS: i64 = 15 * 60 * 1000;
pub(super) const MAX_USER_DELAY_MS: i64 = 5_000;

/// What a sign-in attempt may do now.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginGate {
    /// Check the password, after this many milliseconds.
    Proceed { delay_ms: i64 },
    /// Refuse for this long; repeated refusals aggregate under `audit_key`.
    Locked { wait_ms: i64, audit_key: String },
}

fn pair_key(user: &str, addr: &str) -> String {
    format!("pair:{user}\n{addr}")
}

impl LoginThrottle {
    pub fn new(store: Store) -> LoginThrottle {
        LoginThrottle { store }
    }

    /// Whether `user` may try a password from `addr` now.
    pub async fn gate(&self, user: &str, addr: &str, now: i64) -> Result<LoginGate, AppError> {
        let addr_key = format!("addr:{addr}");
        let pair = pair_key(user, addr);
        let user_key = format!("user:{user}");
        let known = self
            .store
            .login_failures(&[&addr_key, &pair, &user_key], now - LOGIN_WINDOW_MS)
            .await?;
        let live = |key: &str| known.iter().find(|(k, _)| k == key).map(|(_, f)| *f);
        let addr_wait = live(&addr_key).map_or(0, |f| (f.locked_until_ms - now).max(0));
        let pair_wait = live(&pair).map_or(0, |f| (f.locked_until_ms - now).max(0));
        if addr_wait > 0 || pair_wait > 0 {
            let audit_key = if addr_wait > 0 { addr_key } else { pair };
            return Ok(LoginGate::Locked {
                wait_ms: addr_wait.max(pair_wait),
                audit_key,
            });
        }
        let user_failures = live(&user_key).map_or(0, |f| f.count);
        let delay_ms = if user_failures >= USER_FREE_ATTEMPTS {
            (250i64 << (user_failures - USER_FREE_ATTEMPTS).min(10)).min(MAX_USER_DELAY_MS)
        } else {
            0
        };
        Ok(LoginGate::Proceed { delay_ms })
    }

    /// Counts a failure against the pair, the address and the user (each counted in one statement,
    /// so replicas counting at once lose none), and locks a pair or address past its free attempts.
    pub async fn failed(&self, user: &str, addr: &str, now: i64) -> Result<(), AppError> {
        for (key, locks) in [
            (pair_key(user, addr), true),
            (format!("addr:{addr}"), true),
            (format!("user:{user}"), false),
        ] {
            let count = self.store.count_login_failure(&key, now, LOGIN_WINDOW_MS).await?;
            if locks && count >= FREE_ATTEMPTS {
                let lock = (1000i64 << (count - FREE_ATTEMPTS).min(20)).min(MAX_LOCK_MS);
                self.store.lock_login(&key, now + lock).await?;
            }
        }
        Ok(())
    }

    /// A right password clears that user's counts (the address's stay: a guesser who owns one account
    /// must not reset their address by signing in to it).
    pub async fn succeeded(&self, user: &str, addr: &str) -> Result<(), AppError> {
        Ok(self
            .store
            .forget_login_failures(&[&pair_key(user, addr), &format!("user:{user}")])
            .await?)
    }

    /// The audit row that already counts throttled attempts under `key` in this window, if any.
    pub async fn throttled_row(&self, key: &str, now: i64) -> Result<Option<i64>, AppError> {
        Ok(self.store.throttled_row(key, now - LOGIN_WINDOW_MS).await?)
    }

    pub async fn note_throttled_row(&self, key: &str, row: i64, now: i64) -> Result<(), AppError> {
        Ok(self.store.note_throttled_row(key, row, now).await?)
    }
}
