//! EC2 rules the sandbox was kinder than: the filter limits of every Describe call, the refusal of
//! changes to a launch template a service manages (`Operator.Managed`), and the `Warning` a
//! CreateLaunchTemplateVersion answers for data that names no valid AMI or snapshot.

use std::collections::BTreeMap;

use crate::launch::LaunchTemplate;
use crate::wire::AwsError;

type Params<'a> = BTreeMap<&'a str, &'a str>;

/// EC2 takes at most 50 filters in one request, and at most 200 values in one filter (the EC2 API
/// reference's "Filter" and DescribeInstances pages).
const MAX_FILTERS: usize = 50;
const MAX_FILTER_VALUES: usize = 200;

/// The filter limits of a Describe call: FilterLimitExceeded past them.
pub(crate) fn filter_limits(p: &Params<'_>) -> Result<(), AwsError> {
    let filters = (1..)
        .take_while(|i| p.contains_key(format!("Filter.{i}.Name").as_str()))
        .count();
    if filters > MAX_FILTERS {
        return Err(AwsError::client(
            "FilterLimitExceeded",
            format!("The request has {filters} filters; at most {MAX_FILTERS} are allowed in one request."),
        ));
    }
    for i in 1..=filters {
        let prefix = format!("Filter.{i}.Value.");
        let values = p.keys().filter(|k| k.starts_with(&prefix)).count();
        if values > MAX_FILTER_VALUES {
            let name = p
                .get(format!("Filter.{i}.Name").as_str())
                .copied()
                .unwrap_or_default();
            return Err(AwsError::client(
                "FilterLimitExceeded",
                format!("The filter '{name}' has {values} values; at most {MAX_FILTER_VALUES} are allowed in one filter."),
            ));
        }
    }
    Ok(())
}

/// A template a service manages belongs to that service: EC2 refuses the account's own changes to it
/// (new versions, a new default, deleted versions). AWS documents the rule, not the error code; the
/// sandbox answers EC2's OperationNotPermitted.
pub(crate) fn refuse_if_managed(t: &LaunchTemplate, action: &str) -> Result<(), AwsError> {
    match &t.operator {
        Some(principal) => Err(AwsError::client(
            "OperationNotPermitted",
            format!(
                "The launch template {} is managed by {principal} and cannot be changed with {action}; change it through {principal}.",
                t.id
            ),
        )),
        None => Ok(()),
    }
}

/// Whether an ID is `prefix` and 8 or 17 hexadecimal digits (EC2's resource ID forms).
fn well_formed(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|r| matches!(r.len(), 8 | 17) && r.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The `<warning>` of a CreateLaunchTemplateVersion answer: EC2 does not fully validate a launch
/// template's data, and reports what names no valid AMI or snapshot as warnings (the version is
/// still created). Empty when there is nothing to warn about.
pub(crate) fn version_warning(p: &Params<'_>, image_exists: impl Fn(&str) -> bool) -> String {
    let mut errors: Vec<(String, String)> = Vec::new();
    if let Some(image) = p.get("LaunchTemplateData.ImageId") {
        // An SSM parameter (`resolve:ssm:...`) is resolved at launch, not here.
        if !image.starts_with("resolve:ssm:") {
            if !well_formed(image, "ami-") {
                errors.push((
                    "InvalidAMIID.Malformed".into(),
                    format!("The image ID '{image}' is malformed"),
                ));
            } else if !image_exists(image) {
                errors.push((
                    "InvalidAMIID.NotFound".into(),
                    format!("The image id '[{image}]' does not exist"),
                ));
            }
        }
    }
    for (key, snapshot) in p {
        if key.starts_with("LaunchTemplateData.BlockDeviceMapping.")
            && key.ends_with(".Ebs.SnapshotId")
            && !well_formed(snapshot, "snap-")
        {
            errors.push((
                "InvalidSnapshotID.Malformed".into(),
                format!("The snapshot ID '{snapshot}' is malformed"),
            ));
        }
    }
    if errors.is_empty() {
        return String::new();
    }
    let items: String = errors
        .iter()
        .map(|(code, message)| {
            format!(
                "<item><code>{code}</code><message>{}</message></item>",
                crate::ec2::esc(message)
            )
        })
        .collect();
    format!("<warning><errorSet>{items}</errorSet></warning>")
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_ids_have_eight_or_seventeen_hex_digits() {
        assert!(super::well_formed("ami-0123456789abcdef0", "ami-"));
        assert!(super::well_formed("snap-01234567", "snap-"));
        assert!(!super::well_formed("ami-123", "ami-"));
        assert!(!super::well_formed("snap-bad", "snap-"));
    }
}
