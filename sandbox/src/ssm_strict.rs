//! StartAutomationExecution checks beyond the model's shapes: a TargetLocation's Regions must be of
//! the partition the request was sent to (AWS partitions share no Regions), and tag keys must not
//! repeat (AWS documents no code for that; the sandbox answers SSM's ValidationException).

use serde_json::Value;

use crate::wire::AwsError;

/// The partition a Region name belongs to (botocore's endpoints.json: each partition's
/// `regionRegex`).
pub(crate) fn partition_of_region(region: &str) -> &'static str {
    const PREFIXES: [(&str, &str); 7] = [
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-isof-", "aws-iso-f"),
        ("us-iso-", "aws-iso"),
        ("eu-isoe-", "aws-iso-e"),
        ("eusc-", "aws-eusc"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| region.starts_with(prefix))
        .map_or("aws", |(_, partition)| partition)
}

/// The checks of a start request that the model's shapes do not carry.
pub(crate) fn start_checks(req: &Value, partition: &str) -> Result<(), AwsError> {
    for (n, loc) in req["TargetLocations"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let regions = loc["Regions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        for region in regions {
            let theirs = partition_of_region(region);
            if theirs != partition {
                return Err(AwsError::client(
                    "InvalidTarget",
                    format!(
                        "Region {region} in targetLocations.{} is in the {theirs} partition; this request was sent to the {partition} partition, whose Regions are the only ones it can target.",
                        n + 1
                    ),
                ));
            }
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for key in req["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["Key"].as_str())
    {
        if seen.contains(&key) {
            return Err(AwsError::client(
                "ValidationException",
                format!("1 validation error detected: the tag key {key} appears more than once in Tags; each key may be given once."),
            ));
        }
        seen.push(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn regions_belong_to_their_partitions() {
        for (region, partition) in [
            ("us-east-1", "aws"),
            ("cn-north-1", "aws-cn"),
            ("us-gov-west-1", "aws-us-gov"),
            ("us-iso-east-1", "aws-iso"),
            ("us-isob-east-1", "aws-iso-b"),
            ("us-isof-south-1", "aws-iso-f"),
            ("eu-isoe-west-1", "aws-iso-e"),
            ("eusc-de-east-1", "aws-eusc"),
        ] {
            assert_eq!(super::partition_of_region(region), partition, "{region}");
        }
    }
}
