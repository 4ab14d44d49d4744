//! CloudWatch GetMetricData in rpcv2Cbor, the protocol current aws-sdk-cloudwatch speaks, for the
//! AWS/EC2 IMDS metrics MetadataNoToken and MetadataNoTokenRejected by InstanceId.

use axum::response::Response;
use ciborium::Value as Cbor;

use crate::wire::{ok_cbor, AwsError};
use crate::Sandbox;

/// CloudWatch's limit of queries in one GetMetricData call.
const MAX_QUERIES: usize = 500;

fn get<'a>(map: &'a Cbor, key: &str) -> Option<&'a Cbor> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
}

fn text<'a>(map: &'a Cbor, key: &str) -> Option<&'a str> {
    get(map, key)?.as_text()
}

/// Epoch seconds from a CBOR timestamp (tag 1 around an integer or float) or a bare number.
fn epoch_ms(v: &Cbor) -> Option<u64> {
    let inner = match v {
        Cbor::Tag(1, inner) => inner.as_ref(),
        other => other,
    };
    match inner {
        Cbor::Integer(i) => i128::from(*i).try_into().ok().map(|s: u64| s * 1000),
        Cbor::Float(f) => Some((*f * 1000.0) as u64),
        _ => None,
    }
}

fn t(s: &str) -> Cbor {
    Cbor::Text(s.to_owned())
}

pub(crate) fn handle(sb: &Sandbox, region: &str, op: &str, body: &[u8]) -> Result<Response, AwsError> {
    if op != "GetMetricData" {
        return Err(AwsError::client(
            "UnknownOperationException",
            format!("The sandbox does not implement CloudWatch {op}."),
        ));
    }
    let req: Cbor = ciborium::from_reader(body)
        .map_err(|e| AwsError::client("SerializationException", format!("Malformed CBOR body: {e}")))?;
    let start = get(&req, "StartTime")
        .and_then(epoch_ms)
        .ok_or_else(|| AwsError::client("InvalidParameterValue", "StartTime is required."))?;
    let end = get(&req, "EndTime")
        .and_then(epoch_ms)
        .ok_or_else(|| AwsError::client("InvalidParameterValue", "EndTime is required."))?;
    if end <= start {
        return Err(AwsError::client(
            "InvalidParameterValue",
            "The parameter StartTime must be less than the parameter EndTime.",
        ));
    }
    let queries = get(&req, "MetricDataQueries")
        .and_then(Cbor::as_array)
        .cloned()
        .unwrap_or_default();
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        return Err(AwsError::client(
            "InvalidParameterValue",
            format!(
                "MetricDataQueries must contain between 1 and {MAX_QUERIES} queries; {} were given.",
                queries.len()
            ),
        ));
    }
    let world = sb.world();
    let mut results = Vec::new();
    for q in &queries {
        let id = text(q, "Id").unwrap_or_default().to_owned();
        let stat = get(q, "MetricStat").ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Query {id}: the sandbox answers MetricStat queries only."),
            )
        })?;
        let metric = get(stat, "Metric").cloned().unwrap_or(Cbor::Null);
        let name = text(&metric, "MetricName").unwrap_or_default().to_owned();
        let namespace = text(&metric, "Namespace").unwrap_or_default();
        let period = get(stat, "Period")
            .and_then(|p| p.as_integer())
            .and_then(|i| u64::try_from(i128::from(i)).ok())
            .unwrap_or(300)
            .max(60);
        let instance = get(&metric, "Dimensions")
            .and_then(Cbor::as_array)
            .and_then(|dims| dims.iter().find(|d| text(d, "Name") == Some("InstanceId")))
            .and_then(|d| text(d, "Value"))
            .unwrap_or_default();
        let rejected = match (namespace, name.as_str()) {
            ("AWS/EC2", "MetadataNoToken") => Some(false),
            ("AWS/EC2", "MetadataNoTokenRejected") => Some(true),
            _ => None,
        };
        let mut stamps = Vec::new();
        let mut values = Vec::new();
        if let (Some(rejected), Some(inst)) = (rejected, world.fleet.get(region, instance)) {
            // Newest first (TimestampDescending, CloudWatch's default order).
            let mut bucket_end = end;
            while bucket_end > start {
                let bucket_start = bucket_end.saturating_sub(period * 1000).max(start);
                if inst.state == "running" {
                    stamps.push(Cbor::Tag(
                        1,
                        Box::new(Cbor::Integer((bucket_start / 1000).into())),
                    ));
                    values.push(Cbor::Float(inst.imdsv1_calls(bucket_start, bucket_end, rejected)));
                }
                bucket_end = bucket_start;
            }
        }
        results.push(Cbor::Map(vec![
            (t("Id"), t(&id)),
            (t("Label"), t(&name)),
            (t("Timestamps"), Cbor::Array(stamps)),
            (t("Values"), Cbor::Array(values)),
            (t("StatusCode"), t("Complete")),
        ]));
    }
    ok_cbor(&Cbor::Map(vec![
        (t("MetricDataResults"), Cbor::Array(results)),
        (t("Messages"), Cbor::Array(vec![])),
    ]))
}
