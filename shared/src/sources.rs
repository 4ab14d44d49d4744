//! Sources of new IMDSv1 instances: the account's instance metadata defaults, launch templates, Auto
//! Scaling groups and AMIs, per account and region; their fixes, and the rules of which source lets
//! a new instance allow IMDSv1.

use serde::{Deserialize, Serialize};

use crate::params::{AccountId, Region, ValidationErrors, MIN_OVERRIDE_REASON};

/// What kind of thing launches instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    AccountDefault,
    LaunchTemplate,
    AutoScalingGroup,
    Image,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::AccountDefault => "account_default",
            SourceKind::LaunchTemplate => "launch_template",
            SourceKind::AutoScalingGroup => "auto_scaling_group",
            SourceKind::Image => "image",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SourceKind::AccountDefault => "Account default",
            SourceKind::LaunchTemplate => "Launch template",
            SourceKind::AutoScalingGroup => "Auto Scaling group",
            SourceKind::Image => "AMI",
        }
    }

    fn parse(s: &str) -> Option<SourceKind> {
        [
            SourceKind::AccountDefault,
            SourceKind::LaunchTemplate,
            SourceKind::AutoScalingGroup,
            SourceKind::Image,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A source's ID: `kind:account:region` for the account default, `kind:account:region:resource`
/// for the rest (a template ID, a group name, an AMI ID). Stable across readings, so a link or a
/// script keeps working.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub kind: SourceKind,
    pub account: String,
    pub region: String,
    /// Empty for the account default.
    pub resource: String,
}

impl SourceId {
    pub fn parse(raw: &str) -> Result<SourceId, String> {
        let bad = || {
            format!(
                "'{raw}' is not a source ID: kind:account:region[:resource], kind one of account_default, \
                 launch_template, auto_scaling_group, image (GET /api/v1/sources lists them)"
            )
        };
        let mut parts = raw.splitn(4, ':');
        let kind = parts.next().and_then(SourceKind::parse).ok_or_else(bad)?;
        let account = parts.next().ok_or_else(bad)?;
        let region = parts.next().ok_or_else(bad)?;
        let resource = parts.next().unwrap_or_default();
        AccountId::parse(account).map_err(|m| format!("{}: {m}", bad()))?;
        Region::parse(region).map_err(|m| format!("{}: {m}", bad()))?;
        if (kind == SourceKind::AccountDefault) != resource.is_empty() {
            return Err(bad());
        }
        Ok(SourceId {
            kind,
            account: account.to_owned(),
            region: region.to_owned(),
            resource: resource.to_owned(),
        })
    }
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.kind.as_str(), self.account, self.region)?;
        if !self.resource.is_empty() {
            write!(f, ":{}", self.resource)?;
        }
        Ok(())
    }
}

/// The account's instance metadata defaults in one region; None is "no preference".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MetadataDefaults {
    pub http_tokens: Option<String>,
    pub http_put_response_hop_limit: Option<i32>,
    /// "enabled": EC2 refuses launches that do not require tokens.
    pub http_tokens_enforced: Option<String>,
    /// "account", or "declarative-policy" when the organisation's declarative policy fixes them.
    pub managed_by: String,
    pub managed_exception_message: Option<String>,
}

/// A launch template version's metadata options; None: left out (the account default, then the AMI).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TemplateOptions {
    pub version: i64,
    pub http_tokens: Option<String>,
    pub http_put_response_hop_limit: Option<i32>,
    pub http_endpoint: Option<String>,
    pub image_id: Option<String>,
}

/// The state a fix changes and a revert restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceState {
    AccountDefault(MetadataDefaults),
    LaunchTemplate {
        default_version: i64,
        latest_version: i64,
        /// The default version's options.
        options: TemplateOptions,
    },
}

/// How a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum SourcePosture {
    /// New instances from it require tokens.
    RequiresTokens,
    /// New instances from it allow IMDSv1.
    AllowsImdsv1,
    /// The account enforces tokens at launch and this source asks for optional: its launches fail.
    LaunchRefused,
}

impl SourcePosture {
    pub fn label(self) -> &'static str {
        match self {
            SourcePosture::RequiresTokens => "requires IMDSv2",
            SourcePosture::AllowsImdsv1 => "allows IMDSv1",
            SourcePosture::LaunchRefused => "launches refused",
        }
    }
}

/// One source, as `GET /api/v1/sources` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceView {
    pub id: String,
    pub kind: SourceKind,
    pub account: String,
    pub region: String,
    /// The template's or group's name, the AMI's name, or "Instance metadata defaults".
    pub name: String,
    /// lt-..., the group name, ami-...; empty for the account default.
    pub resource_id: String,
    pub posture: SourcePosture,
    /// Why, in a sentence (which setting decides, and where it comes from).
    pub detail: String,
    /// Current instances that came from it, and how many of those still call IMDSv1.
    pub instances: usize,
    pub imdsv1_instances: usize,
    /// Templates: the groups launching from it; groups: their template; AMIs: the templates using it.
    pub related: Vec<String>,
    /// Whether the console can fix it here, and otherwise what to do instead.
    pub fixable: bool,
    pub advice: Option<String>,
    pub state: Option<SourceState>,
}

/// When each account and region was read, and why one could not be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourcePlace {
    pub account: String,
    pub region: String,
    pub as_of: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourcesView {
    pub sources: Vec<SourceView>,
    pub places: Vec<SourcePlace>,
    /// Sources that let new instances allow IMDSv1 (or whose launches are refused).
    pub to_fix: usize,
}

/// `POST /api/v1/sources/{id}/preview` and `/fix`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "strict-requests", serde(deny_unknown_fields))]
pub struct SourceFixRequest {
    /// The hop limit of new instances (1-64); absent keeps the current one.
    #[serde(default)]
    pub hop_limit: Option<i64>,
    /// Account defaults only: also refuse launches that do not require tokens (HttpTokensEnforced).
    #[serde(default)]
    pub enforce_at_launch: bool,
    /// Why it is safe to fix while instances from the source still call IMDSv1.
    #[serde(default)]
    pub override_reason: Option<String>,
}

impl SourceFixRequest {
    /// Checks the fields; returns the hop limit and the trimmed reason.
    pub fn validate(&self) -> Result<(Option<u8>, Option<String>), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let hop = match self.hop_limit {
            None => None,
            Some(h) if (1..=64).contains(&h) => Some(h as u8),
            Some(_) => {
                errors.push(
                    "hop_limit",
                    "must be a whole number from 1 to 64 (leave it out to keep the current hop limit)",
                );
                None
            }
        };
        let reason = match self.override_reason.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(r) if crate::params::check_plain_text(r).is_err() => {
                errors.push("override_reason", crate::params::check_plain_text(r).unwrap_err());
                None
            }
            Some(r) if r.chars().count() >= MIN_OVERRIDE_REASON && r.chars().count() <= 1000 => {
                Some(r.to_owned())
            }
            Some(_) => {
                errors.push(
                    "override_reason",
                    format!("write why it is safe to proceed ({MIN_OVERRIDE_REASON} to 1,000 characters); it is recorded with the fix"),
                );
                None
            }
        };
        if errors.is_empty() {
            Ok((hop, reason))
        } else {
            Err(errors)
        }
    }
}

/// What a fix would do, before it does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceFixPreview {
    pub source_id: String,
    /// The source that is changed: a group's fix changes its launch template.
    pub fixes: String,
    /// Each change, in words: "HttpTokens: optional → required".
    pub changes: Vec<String>,
    pub before: SourceState,
    pub after: SourceState,
    /// Groups that launch from it, and sources whose launches would be refused once enforced.
    pub groups: Vec<String>,
    pub refused_after: Vec<String>,
    /// Instances from it still calling IMDSv1: the fix needs an override reason while any do.
    pub imdsv1_instances: Vec<crate::api::InstanceUsage>,
    pub needs_override: bool,
    /// Where a declarative policy manages the defaults: nothing is changed here; this text is for
    /// the organisation's administrators.
    pub managed_by_policy: bool,
    pub policy_text: Option<String>,
    /// What the fix makes impossible while it stays, in sentences (enforcing IMDSv2 at launch stops
    /// every rollback to optional tokens in the account and Region).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A fix as the audit store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceFix {
    pub fix_id: String,
    pub source_id: String,
    pub kind: SourceKind,
    pub account: String,
    pub region: String,
    pub requester: String,
    pub created_at: String,
    pub override_reason: Option<String>,
    pub prior: SourceState,
    pub applied: Option<SourceState>,
    /// sending, applied, failed, reverted.
    pub status: String,
    /// A failed fix: why. A reverted one: what the revert left changed (a version EC2 would not
    /// delete, or one made after the fix that groups on `$Latest` launch).
    pub error: Option<String>,
    pub reverted_by: Option<String>,
    pub reverted_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SourceFixes {
    pub fixes: Vec<SourceFix>,
}

/// The declarative policy text that sets the instance metadata defaults for an organisational unit
/// (EC2 declarative policies, `ec2_attributes.instance_metadata_defaults`). The hop limit is written
/// as AWS's own syntax page writes it, a quoted number (`"@@assign": "4"`). Only the attributes that
/// page lists are written (`http_tokens`, `http_put_response_hop_limit`, `http_endpoint`,
/// `instance_metadata_tags`): it has none for enforcing IMDSv2 at launch, so the preview says so in
/// words (`DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT`) instead of inventing a key AWS would refuse.
pub fn declarative_policy_text(hop_limit: Option<u8>) -> String {
    let hop = hop_limit.map_or(String::new(), |h| {
        format!(",\n        \"http_put_response_hop_limit\": {{ \"@@assign\": \"{h}\" }}")
    });
    format!(
        "{{\n  \"ec2_attributes\": {{\n    \"instance_metadata_defaults\": {{\n        \"http_tokens\": {{ \"@@assign\": \"required\" }}{hop}\n    }}\n  }}\n}}"
    )
}

/// Said beside the policy text when launch enforcement was asked for where a policy manages the defaults.
pub const DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT: &str =
    "The declarative policy syntax for instance metadata defaults (AWS Organizations user guide) has no attribute \
     for enforcing IMDSv2 at launch, so the policy text below only makes new instances require tokens; launches \
     that ask for optional tokens are still allowed while the policy manages these defaults.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_round_trip_and_bad_ones_say_what_is_expected() {
        for raw in [
            "account_default:123456789012:us-east-1",
            "launch_template:123456789012:eu-west-1:lt-0abc",
            "auto_scaling_group:200000000001:us-east-1:web asg/blue",
        ] {
            assert_eq!(SourceId::parse(raw).unwrap().to_string(), raw);
        }
        for bad in [
            "",
            "template:123456789012:us-east-1:lt-1",
            "account_default:12345:us-east-1",
            "account_default:123456789012:us-east-1:extra",
            "image:123456789012:us-east-1",
        ] {
            let e = SourceId::parse(bad).unwrap_err();
            assert!(e.contains("kind:account:region"), "{e}");
        }
    }

    #[test]
    fn a_fix_request_names_its_bad_fields() {
        let ok = SourceFixRequest {
            hop_limit: Some(2),
            enforce_at_launch: true,
            override_reason: Some("  legacy app replaced on Monday ".into()),
        };
        assert_eq!(
            ok.validate().unwrap(),
            (Some(2), Some("legacy app replaced on Monday".into()))
        );
        let bad = SourceFixRequest {
            hop_limit: Some(65),
            enforce_at_launch: false,
            override_reason: Some("ok".into()),
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["hop_limit", "override_reason"]);
    }

    #[test]
    fn the_policy_text_is_json_that_requires_tokens() {
        let text = declarative_policy_text(Some(2));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let d = &v["ec2_attributes"]["instance_metadata_defaults"];
        assert_eq!(d["http_tokens"]["@@assign"], "required");
        assert_eq!(d["http_put_response_hop_limit"]["@@assign"], "2");
        // Only the attributes AWS's syntax page lists: none for launch enforcement.
        let keys: Vec<&String> = d.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["http_put_response_hop_limit", "http_tokens"]);
    }
}
