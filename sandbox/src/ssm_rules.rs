//! SSM's checks of Automation requests that come from its API model (patterns, lengths, list limits)
//! and its documented rules, apart from the handlers in `ssm` so each stays readable. Every refusal
//! is worded as SSM's request validation words it: "1 validation error detected: Value ... at
//! 'member' failed to satisfy constraint: ...".

use serde_json::Value;
use std::collections::BTreeMap;

use crate::wire::AwsError;

/// The model's TagKey, with the reservation of the `aws:` prefix (any case) that SSM enforces on
/// tags a caller sets: AWS keeps those keys for itself.
const TAG_KEY_PATTERN: &str = r"^(?!^(?i)aws:)(?=^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$).*$";

pub(crate) fn validation(message: &str) -> AwsError {
    AwsError::client(
        "ValidationException",
        format!("1 validation error detected: {message}"),
    )
}

pub(crate) fn pattern_error(field: &str, value: &str, pattern: &str) -> AwsError {
    validation(&format!("Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// StartAutomationExecution's Tags: at most 5 (the API reference), each key 1 to 128 and each value
/// 0 to 256 characters of the model's pattern, and no key in AWS's reserved `aws:` namespace.
pub(crate) fn start_tags(req: &Value) -> Result<Vec<(String, String)>, AwsError> {
    // Key and Value are both required members of the model's Tag (a Value may be empty, not absent).
    if let Some(n) = req["Tags"].as_array().and_then(|a| {
        a.iter()
            .position(|t| !t["Key"].is_string() || !t["Value"].is_string())
    }) {
        let member = if req["Tags"][n]["Key"].is_string() {
            "value"
        } else {
            "key"
        };
        return Err(validation(&format!(
            "Value null at 'tags.{}.member.{member}' failed to satisfy constraint: Member must not be null",
            n + 1
        )));
    }
    let tags: Vec<(String, String)> = req["Tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["Key"].as_str().unwrap_or_default().to_owned(),
                        t["Value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let tag_re = regex::Regex::new(r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$").expect("pattern");
    for (i, (key, value)) in tags.iter().enumerate() {
        let n = i + 1;
        if key.is_empty() || key.chars().count() > 128 {
            return Err(validation(&format!("Value '{key}' at 'tags.{n}.member.key' failed to satisfy constraint: Member must have length between 1 and 128")));
        }
        if value.chars().count() > 256 {
            return Err(validation(&format!("Value at 'tags.{n}.member.value' failed to satisfy constraint: Member must have length less than or equal to 256")));
        }
        // The regex crate has no look-around, so the reserved prefix is checked on its own.
        let reserved = key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:"));
        if reserved || !tag_re.is_match(key) {
            return Err(pattern_error(
                &format!("tags.{n}.member.key"),
                key,
                TAG_KEY_PATTERN,
            ));
        }
        if !tag_re.is_match(value) {
            return Err(pattern_error(
                &format!("tags.{n}.member.value"),
                value,
                tag_re.as_str(),
            ));
        }
    }
    if tags.len() > 5 {
        return Err(AwsError::client(
            "ValidationException",
            "At most 5 tags can be added when starting an automation.",
        ));
    }
    Ok(tags)
}

/// StartAutomationExecution's Targets: at most one Target (the model's AutomationTargets), its Key
/// 1 to 163 characters of the model's pattern (no '+', unlike tags) and at most 50 Values.
pub(crate) fn start_targets(req: &Value) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    targets_at(&req["Targets"], "targets")
}

/// A list of the model's AutomationTargets at `path` (the request's Targets, or a TargetLocation's).
pub(crate) fn targets_at(list: &Value, path: &str) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    let list = list.as_array().cloned().unwrap_or_default();
    if list.len() > 1 {
        return Err(validation(&format!(
            "Value at '{path}' failed to satisfy constraint: Member must have length less than or equal to 1 (got {})",
            list.len()
        )));
    }
    let key_re = regex::Regex::new(
        r"^[\p{L}\p{Z}\p{N}_.:/=\-@]*$|resource-groups:ResourceTypeFilters|resource-groups:Name",
    )
    .expect("pattern");
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let n = i + 1;
        let key = t["Key"].as_str().unwrap_or_default().to_owned();
        if key.is_empty() || key.chars().count() > 163 || !key_re.is_match(&key) {
            return Err(pattern_error(
                &format!("{path}.{n}.member.key"),
                &key,
                key_re.as_str(),
            ));
        }
        let values = strings(&t["Values"]);
        if values.len() > 50 {
            return Err(validation(&format!(
                "Value '[{}]' at '{path}.{n}.member.values' failed to satisfy constraint: Member must have length less than or equal to 50",
                values.join(", ")
            )));
        }
        out.push((key, values));
    }
    Ok(out)
}

/// A rate-controlled start names its target parameter in TargetParameterName and lets SSM fill it in
/// from Targets for each child; SSM refuses a value for that same parameter in Parameters, since each
/// child's value would be ambiguous.
pub(crate) fn target_not_in_parameters(
    target_parameter_name: Option<&str>,
    parameters: &BTreeMap<String, Vec<String>>,
) -> Result<(), AwsError> {
    match target_parameter_name {
        Some(name) if parameters.contains_key(name) => Err(AwsError::client(
            "InvalidAutomationExecutionParametersException",
            format!("The parameter {name} is the TargetParameterName of this execution and cannot also be given in Parameters; SSM sets it from Targets for each target."),
        )),
        _ => Ok(()),
    }
}

/// DescribeAutomationExecutions' Filters as the model bounds them: 1 to 10 filters, each with 1 to
/// 10 values of 1 to 150 characters.
pub(crate) fn execution_filters(req: &Value) -> Result<Vec<(String, Vec<String>)>, AwsError> {
    let Some(list) = req.get("Filters").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() || list.len() > 10 {
        return Err(validation(&format!(
            "Value at 'filters' failed to satisfy constraint: Member must have length {} (got {})",
            if list.is_empty() {
                "greater than or equal to 1"
            } else {
                "less than or equal to 10"
            },
            list.len()
        )));
    }
    let mut out = Vec::new();
    for (i, f) in list.iter().enumerate() {
        let n = i + 1;
        let key = f["Key"].as_str().unwrap_or_default().to_owned();
        let values = strings(&f["Values"]);
        if values.is_empty() || values.len() > 10 {
            return Err(validation(&format!(
                "Value '[{}]' at 'filters.{n}.member.values' failed to satisfy constraint: Member must have length {}",
                values.join(", "),
                if values.is_empty() {
                    "greater than or equal to 1"
                } else {
                    "less than or equal to 10"
                }
            )));
        }
        if values.iter().any(|v| v.is_empty() || v.chars().count() > 150) {
            return Err(validation(&format!(
                "Value '[{}]' at 'filters.{n}.member.values' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 150, Member must have length greater than or equal to 1]",
                values.join(", ")
            )));
        }
        out.push((key, values));
    }
    Ok(out)
}

/// StopAutomationExecution's Type: `Cancel` (the default) or `Complete`, the model's StopType.
pub(crate) fn stop_type(req: &Value) -> Result<&str, AwsError> {
    match req.get("Type").and_then(Value::as_str) {
        None => Ok("Cancel"),
        Some(t @ ("Cancel" | "Complete")) => Ok(t),
        Some(other) => Err(validation(&format!("Value '{other}' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [Complete, Cancel]"))),
    }
}

/// Every AWS Region name, from botocore's endpoints.json (all partitions): a location's Regions must
/// name real Regions. A real Region the sandbox does not play fails that location when it runs, as a
/// Region not enabled for the account does in AWS.
const AWS_REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "cn-north-1",
    "cn-northwest-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-iso-east-1",
    "us-iso-west-1",
    "us-isob-east-1",
    "us-isob-west-1",
    "eu-isoe-west-1",
    "us-isof-east-1",
    "us-isof-south-1",
    "eusc-de-east-1",
];

/// The members of TargetLocation `n` that the model bounds beyond Accounts: ExecutionRoleName (1 to
/// 64 characters of `[\w+=,.@/-]+`), Regions (real AWS Region names) and ExcludeAccounts (1 to 5000
/// account IDs or OU IDs). Returns the exclusions.
pub(crate) fn location_members(loc: &Value, n: usize) -> Result<Vec<String>, AwsError> {
    if let Some(role) = loc.get("ExecutionRoleName").filter(|v| !v.is_null()) {
        let role = role.as_str().unwrap_or_default();
        let role_re = regex::Regex::new(r"^[\w+=,.@/-]+$").expect("pattern");
        if role.is_empty() || role.chars().count() > 64 {
            return Err(validation(&format!("Value '{role}' at 'targetLocations.{n}.member.executionRoleName' failed to satisfy constraint: Member must have length between 1 and 64")));
        }
        if !role_re.is_match(role) {
            return Err(pattern_error(
                &format!("targetLocations.{n}.member.executionRoleName"),
                role,
                r"[\w+=,.@/-]+",
            ));
        }
    }
    if let Some(bad) = strings(&loc["Regions"])
        .into_iter()
        .find(|r| !AWS_REGIONS.contains(&r.as_str()))
    {
        return Err(AwsError::client(
            "InvalidTarget",
            format!("Region {bad} in targetLocations.{n} is not an AWS Region; Region names are lower case, such as us-east-1."),
        ));
    }
    let Some(excluded) = loc.get("ExcludeAccounts").filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let excluded = strings(excluded);
    if excluded.is_empty() || excluded.len() > 5000 {
        return Err(validation(&format!(
            "Value at 'targetLocations.{n}.member.excludeAccounts' failed to satisfy constraint: Member must have length between 1 and 5000 (got {})",
            excluded.len()
        )));
    }
    let exclude_re = regex::Regex::new(r"^((ou-[a-z0-9]{4,32}-[a-z0-9]{8,32})|(\d{12}))$").expect("pattern");
    if let Some(bad) = excluded
        .iter()
        .find(|a| !exclude_re.is_match(a) || a.len() < 6 || a.len() > 68)
    {
        return Err(pattern_error(
            &format!("targetLocations.{n}.member.excludeAccounts"),
            bad,
            exclude_re.as_str(),
        ));
    }
    Ok(excluded)
}

/// StartAutomationExecution's Mode (the model's ExecutionMode: `Auto` or `Interactive`), and
/// Interactive mode and TargetLocationsURL, which the sandbox does not emulate: it refuses them
/// rather than run a start that would ignore them.
pub(crate) fn start_mode_and_url(req: &Value) -> Result<(), AwsError> {
    if let Some(mode) = req.get("Mode").filter(|v| !v.is_null()) {
        let mode = mode.as_str().unwrap_or_default();
        if !matches!(mode, "Auto" | "Interactive") {
            return Err(validation(&format!("Value '{mode}' at 'mode' failed to satisfy constraint: Member must satisfy enum value set: [Auto, Interactive]")));
        }
        // An Interactive run waits for SendAutomationSignal at each step, which the sandbox does
        // not emulate; running it as Auto would hide that.
        if mode == "Interactive" {
            return Err(AwsError::client(
                "InvalidAutomationExecutionParametersException",
                "The sandbox does not emulate Interactive mode (SendAutomationSignal); start the run in Auto mode.",
            ));
        }
    }
    if req.get("TargetLocationsURL").is_some_and(|v| !v.is_null()) {
        return Err(AwsError::client(
            "InvalidAutomationExecutionParametersException",
            "The sandbox does not emulate TargetLocationsURL; list the locations in TargetLocations instead.",
        ));
    }
    Ok(())
}
