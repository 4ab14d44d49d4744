//! AssumeRole rules beyond the role itself: the session may not outlast the role's
//! MaxSessionDuration, and ExternalId and the session Policy are checked as the STS model and API
//! reference have them.

use crate::wire::AwsError;

/// Every role the sandbox has keeps IAM's default MaxSessionDuration: one hour.
const MAX_SESSION_SECS: u64 = 3_600;

fn validation(message: String) -> AwsError {
    AwsError::client("ValidationError", message)
}

/// DurationSeconds above the role's MaxSessionDuration is refused, in STS's words.
pub(crate) fn within_max_session(duration_secs: u64) -> Result<(), AwsError> {
    if duration_secs > MAX_SESSION_SECS {
        return Err(validation(
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.".into(),
        ));
    }
    Ok(())
}

/// ExternalId: 2 to 1224 characters of `[\w+=,.@:\/-]`. Policy: 1 to 2048 characters of printable
/// Latin-1 and tabs or line breaks, and a JSON document (MalformedPolicyDocument otherwise).
pub(crate) fn external_id_and_policy(
    external_id: Option<&str>,
    policy: Option<&str>,
) -> Result<(), AwsError> {
    if let Some(id) = external_id {
        let len = id.chars().count();
        if !(2..=1224).contains(&len) {
            return Err(validation(format!("1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must have length between 2 and 1224 (got {len})")));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || "+=,.@:/-".contains(c);
        if !id.chars().all(allowed) {
            return Err(validation(format!("1 validation error detected: Value '{id}' at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:\\/-]*")));
        }
    }
    if let Some(policy) = policy {
        let len = policy.chars().count();
        if !(1..=2048).contains(&len) {
            return Err(validation(format!("1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length between 1 and 2048 (got {len})")));
        }
        let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}');
        if !policy.chars().all(allowed) {
            return Err(validation("1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+".into()));
        }
        if !serde_json::from_str::<serde_json::Value>(policy).is_ok_and(|v| v.is_object()) {
            return Err(AwsError::client(
                "MalformedPolicyDocument",
                "The policy is not in the valid JSON format.",
            ));
        }
    }
    Ok(())
}
