//! Two-person approval: which starts need a second person (a policy admins set), and the approvals
//! themselves. A held start is recorded, not sent; another operator or admin approves it (it is sent
//! then) or rejects it, with a comment; the requester cannot approve their own; it expires unanswered.

use serde::{Deserialize, Serialize};

use crate::params::ValidationErrors;

/// `GET/PUT /api/v1/approval-policy`. Nothing needs approval by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct ApprovalPolicy {
    /// Targets carrying any of these tags (`Key=value`) need approval, e.g. `Env=prod`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Runs on more than this many instances need approval.
    #[serde(default)]
    pub more_than_instances: Option<usize>,
    /// Runs that override the readiness check (IMDSv1 still in use) need approval.
    #[serde(default)]
    pub overrides: bool,
    /// Hours an approval waits before it expires (1 to 720).
    #[serde(default = "default_expiry")]
    pub expires_after_hours: u32,
}

fn default_expiry() -> u32 {
    24
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        ApprovalPolicy {
            tags: Vec::new(),
            more_than_instances: None,
            overrides: false,
            expires_after_hours: default_expiry(),
        }
    }
}

impl ApprovalPolicy {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        for (i, t) in self.tags.iter().enumerate() {
            let ok = t.split_once('=').is_some_and(|(k, v)| {
                !k.trim().is_empty() && !v.trim().is_empty() && k.len() <= 128 && v.len() <= 256
            });
            if !ok {
                errors.push(format!("tags[{i}]"), "a tag as Key=value, such as Env=prod");
            }
        }
        if !(1..=720).contains(&self.expires_after_hours) {
            errors.push("expires_after_hours", "1 to 720 hours (30 days)");
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Why a start on `targets` (their tags) needs approval, or None.
    pub fn needs_approval<'a>(
        &self,
        targets: impl Iterator<Item = &'a std::collections::BTreeMap<String, String>>,
        count: usize,
        overridden: bool,
    ) -> Option<String> {
        let mut why = Vec::new();
        let tagged: Vec<&String> = {
            let all: Vec<_> = targets.collect();
            self.tags
                .iter()
                .filter(|t| {
                    let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
                    all.iter()
                        .any(|tags| tags.get(k.trim()).is_some_and(|x| x == v.trim()))
                })
                .collect()
        };
        if !tagged.is_empty() {
            why.push(format!(
                "targets tagged {}",
                tagged.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(n) = self.more_than_instances.filter(|n| count > *n) {
            why.push(format!("{count} instances (more than {n})"));
        }
        if self.overrides && overridden {
            why.push("an override of the readiness check".to_owned());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// One approval, as `GET /api/v1/approvals` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApprovalView {
    /// The held start's record ID.
    pub approval_id: i64,
    /// Why it needs a second person.
    pub why: String,
    pub requester: String,
    /// Everyone who caused this start: the requester and, for a plan's wave, whoever created, started
    /// or resumed the plan. None of them may approve it.
    #[serde(default)]
    pub requesters: Vec<String>,
    pub created_at: String,
    pub expires_at: String,
    /// pending, approved, rejected, expired.
    pub status: String,
    pub decided_by: Option<String>,
    /// How the approver authenticated: session (a password they chose), token (one they made) or
    /// sso.
    #[serde(default)]
    pub decided_via: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    /// What would run: account, region, targets, parameters, and its plan wave if any.
    pub account: String,
    pub region: String,
    pub targets: Option<String>,
    pub instance_id: Option<String>,
    pub instance_count: usize,
    pub override_reason: Option<String>,
    pub execution_id: Option<String>,
    /// What the start would send: its parameters (a `MetadataAccess` of `disabled` turns the
    /// endpoint, and with it the instance role's credentials, off), targets and places.
    #[serde(default)]
    pub start: Option<crate::StartPlan>,
    /// The requester's review when they asked, instance by instance: options now and after, IMDSv1
    /// calls, warnings (at most [`REVIEW_ROWS`]; `instance_count` says how many there are).
    #[serde(default)]
    pub review: Vec<crate::api::PreviewTarget>,
    /// For a plan's wave: the plan's name and the wave's.
    #[serde(default)]
    pub plan_wave: Option<String>,
}

/// How many instances of a held start's review are kept with it (the first ones, riskiest first).
pub const REVIEW_ROWS: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalView>,
}

/// `POST /api/v1/approvals/{id}/approve|reject`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct DecisionRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_policy_says_why_a_start_needs_a_second_person() {
        let policy = ApprovalPolicy {
            tags: vec!["Env=prod".into()],
            more_than_instances: Some(10),
            overrides: true,
            expires_after_hours: 24,
        };
        let prod: BTreeMap<String, String> = [("Env".to_owned(), "prod".to_owned())].into();
        let dev: BTreeMap<String, String> = [("Env".to_owned(), "dev".to_owned())].into();
        assert_eq!(policy.needs_approval([&dev].into_iter(), 3, false), None);
        assert_eq!(
            policy
                .needs_approval([&dev, &prod].into_iter(), 12, true)
                .unwrap(),
            "targets tagged Env=prod; 12 instances (more than 10); an override of the readiness check"
        );
        let bad = ApprovalPolicy {
            tags: vec!["prod".into()],
            expires_after_hours: 0,
            ..policy
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["tags[0]", "expires_after_hours"]);
    }
}
