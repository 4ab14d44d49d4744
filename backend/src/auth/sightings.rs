//! Sign-on users as the console last saw them: when each was last recorded signing in, and the
//! grants their last request carried.

use std::collections::HashMap;
use std::sync::Mutex;

use super::*;

/// When each sign-on user was last recorded as signing in, so the audit trail gets one `sso-login`
/// per user per session length rather than one per request.
#[derive(Default)]
pub struct SsoSightings {
    last: Mutex<HashMap<String, i64>>,
    /// Each sign-on user's grants as their last request carried them: the only word the console has
    /// of what the identity provider gives them now, for acts done later on their behalf (a plan's
    /// next wave, a held start approved).
    grants: Mutex<HashMap<String, Vec<accounts::Grant>>>,
}

impl SsoSightings {
    /// Notes what a sign-on user's request granted them.
    pub fn saw(&self, user: &str, grants: &[accounts::Grant]) {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(user.to_owned(), grants.to_vec());
    }

    /// The grants a sign-on user's last request carried (None: not seen since the console started).
    pub fn last_grants(&self, user: &str) -> Option<Vec<accounts::Grant>> {
        self.grants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(user)
            .cloned()
    }

    /// Whether `user` was not seen within `ttl` (and notes them as seen now).
    pub fn first_in(&self, user: &str, ttl: Duration, now_ms: i64) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = last
            .get(user)
            .is_none_or(|seen| now_ms - seen > ttl.as_millis() as i64);
        if fresh {
            last.insert(user.to_owned(), now_ms);
        }
        fresh
    }
}
