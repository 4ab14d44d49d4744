//! CloudWatch in rpcv2Cbor, the protocol current aws-sdk-cloudwatch speaks, and in awsJson1_0, as
//! botocore sends it: GetMetricData for the AWS/EC2 IMDS metrics MetadataNoToken and
//! MetadataNoTokenRejected by InstanceId, and DescribeAlarms (served by `alarms`).

use crate::fleet::Scope;
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

/// One MetricStat query, whichever protocol it came in.
struct Query {
    id: String,
    namespace: String,
    metric: String,
    instance: String,
    /// None when the query left it out: the model requires it.
    period_secs: Option<u64>,
    stat: String,
    dimensions: usize,
}

/// Whether CloudWatch takes `stat` as a MetricStat's Stat: the statistics of the CloudWatch User
/// Guide's "Statistics definitions" (SampleCount, Average, Sum, Minimum, Maximum, IQM, percentiles
/// pNN, trimmed, winsorized and bounded forms tmNN, wmNN, tcNN, tsNN, and their range forms such as
/// TM(10%:90%) or PR(:300)).
fn is_statistic(stat: &str) -> bool {
    let named = ["SampleCount", "Average", "Sum", "Minimum", "Maximum", "IQM"];
    let percent = r"(\d{1,2}(\.\d{1,10})?|100)";
    let bound = r"(\d+(\.\d+)?%?)?";
    let single = regex::Regex::new(&format!("^(p|tm|wm|tc|ts){percent}$")).expect("pattern");
    let range = regex::Regex::new(&format!(r"^(PR|TM|WM|TC|TS)\({bound}:{bound}\)$")).expect("pattern");
    named.contains(&stat) || single.is_match(stat) || range.is_match(stat)
}

/// One result: timestamps (epoch ms, newest first) and values.
struct Series {
    id: String,
    label: String,
    points: Vec<(u64, f64)>,
}

fn bad(message: String) -> AwsError {
    AwsError::client("InvalidParameterValue", message)
}

/// ScanBy (the model's enum) and MaxDatapoints (at least 1) of a GetMetricData; true when the
/// answer is oldest first (TimestampAscending).
fn scan_order(scan_by: Option<&str>, max_datapoints: Option<i128>) -> Result<bool, AwsError> {
    if let Some(max) = max_datapoints {
        if max < 1 {
            return Err(AwsError::client(
                "ValidationError",
                format!("The value {max} for parameter MaxDatapoints is not valid: it must be at least 1."),
            ));
        }
    }
    match scan_by {
        None | Some("TimestampDescending") => Ok(false),
        Some("TimestampAscending") => Ok(true),
        Some(other) => Err(AwsError::client(
            "ValidationError",
            format!("1 validation error detected: Value '{other}' at 'scanBy' failed to satisfy constraint: Member must satisfy enum value set: [TimestampDescending, TimestampAscending]"),
        )),
    }
}

/// Whether CloudWatch still keeps data points of `period` seconds from `start_ms`: periods under a
/// minute for 3 hours, a minute for 15 days, 5 minutes for 63 days, then an hour. Beyond that,
/// GetMetricData returns no data points for the query (the API reference's StartTime).
fn period_kept(period: u64, start_ms: u64, now_ms: u64) -> bool {
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    let age = now_ms.saturating_sub(start_ms);
    let multiple_of = match age {
        a if a <= 3 * HOUR => return true,
        a if a <= 15 * DAY => 60,
        a if a <= 63 * DAY => 300,
        _ => 3_600,
    };
    period.is_multiple_of(multiple_of)
}

/// GetMetricData over the fleet's IMDS history, for the AWS/EC2 IMDS metrics by InstanceId.
fn metric_data(
    sb: &Sandbox,
    at: &Scope<'_>,
    start: u64,
    end: u64,
    queries: &[Query],
) -> Result<Vec<Series>, AwsError> {
    if end <= start {
        return Err(bad(
            "The parameter StartTime must be less than the parameter EndTime.".into(),
        ));
    }
    if queries.is_empty() || queries.len() > MAX_QUERIES {
        return Err(bad(format!(
            "MetricDataQueries must contain between 1 and {MAX_QUERIES} queries; {} were given.",
            queries.len()
        )));
    }
    let id_re = regex::Regex::new(r"^[a-z][a-zA-Z0-9_]*$").expect("pattern");
    for (n, q) in queries.iter().enumerate() {
        // Each query's Id names its result, so two queries cannot share one.
        if queries[..n].iter().any(|earlier| earlier.id == q.id) {
            return Err(AwsError::client(
                "ValidationError",
                format!("The value {} for parameter MetricDataQueries.member.{}.Id is not unique: each query of a request needs its own Id.", q.id, n + 1),
            ));
        }
        let n = n + 1;
        if q.dimensions > 30 {
            return Err(AwsError::client(
                "ValidationError",
                format!("1 validation error detected: Value at 'metricDataQueries.{n}.member.metricStat.metric.dimensions' failed to satisfy constraint: Member must have length less than or equal to 30 (got {})", q.dimensions),
            ));
        }
        if !is_statistic(&q.stat) {
            return Err(AwsError::client(
                "ValidationError",
                format!("The value {} for parameter MetricDataQueries.member.{n}.MetricStat.Stat is not a statistic CloudWatch knows: use SampleCount, Average, Sum, Minimum, Maximum or an extended statistic such as p99 or TM(10%:90%).", q.stat),
            ));
        }
        // The API reference: an Id starts with a lowercase letter and has letters, numbers and
        // underscores only, at most 255 characters.
        if !id_re.is_match(&q.id) || q.id.len() > 255 {
            return Err(AwsError::client(
                "ValidationError",
                format!("The value {} for parameter MetricDataQueries.member.{n}.Id is not valid. The Id must start with a lowercase letter and contain only letters, numbers and underscores.", q.id),
            ));
        }
        // MetricStat's Period is required (the model), with no default.
        let Some(period) = q.period_secs else {
            return Err(AwsError::client(
                "ValidationError",
                format!("1 validation error detected: Value null at 'metricDataQueries.{n}.member.metricStat.period' failed to satisfy constraint: Member must not be null"),
            ));
        };
        // Periods of high-resolution metrics are 1, 5, 10, 20 or 30 seconds; any other is whole
        // minutes.
        if !([1, 5, 10, 20, 30].contains(&period) || (period > 0 && period % 60 == 0)) {
            return Err(AwsError::client(
                "ValidationError",
                format!("The value {period} for parameter MetricDataQueries.member.{n}.MetricStat.Period is not valid. The period must be 1, 5, 10, 20, 30 or a multiple of 60."),
            ));
        }
    }
    let world = sb.world();
    let mut out = Vec::new();
    for q in queries {
        let rejected = match (q.namespace.as_str(), q.metric.as_str()) {
            ("AWS/EC2", "MetadataNoToken") => Some(false),
            ("AWS/EC2", "MetadataNoTokenRejected") => Some(true),
            _ => None,
        };
        let mut points = Vec::new();
        let kept = period_kept(q.period_secs.unwrap_or(60), start, crate::timefmt::now_ms());
        if let (true, Some(rejected), Some(inst)) = (kept, rejected, world.fleet.get(at, &q.instance)) {
            // Newest first (TimestampDescending, CloudWatch's default order).
            let period = q.period_secs.unwrap_or(60).max(60);
            let mut bucket_end = end;
            while bucket_end > start {
                let bucket_start = bucket_end.saturating_sub(period * 1000).max(start);
                if inst.state == "running" {
                    points.push((
                        bucket_start,
                        inst.imdsv1_calls(bucket_start, bucket_end, rejected),
                    ));
                }
                bucket_end = bucket_start;
            }
        }
        out.push(Series {
            id: q.id.clone(),
            label: q.metric.clone(),
            points,
        });
    }
    Ok(out)
}

/// rpcv2Cbor, as the Rust SDK sends it.
pub(crate) fn handle(sb: &Sandbox, at: &Scope<'_>, op: &str, body: &[u8]) -> Result<Response, AwsError> {
    let req: Cbor = ciborium::from_reader(body)
        .map_err(|e| AwsError::client("SerializationException", format!("Malformed CBOR body: {e}")))?;
    match op {
        "GetMetricData" => get_metric_data_cbor(sb, at, &req),
        "DescribeAlarms" => describe_alarms_cbor(sb, at, &req),
        _ => Err(AwsError::client(
            "UnknownOperationException",
            format!("The sandbox does not implement CloudWatch {op}."),
        )),
    }
}

fn texts(req: &Cbor, key: &str) -> Vec<String> {
    get(req, key)
        .and_then(Cbor::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_text().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn describe_alarms_cbor(sb: &Sandbox, at: &Scope<'_>, req: &Cbor) -> Result<Response, AwsError> {
    let q = crate::alarms::AlarmQuery {
        names: texts(req, "AlarmNames"),
        prefix: text(req, "AlarmNamePrefix").map(str::to_owned),
        state: text(req, "StateValue").map(str::to_owned),
        types: get(req, "AlarmTypes").map(|_| texts(req, "AlarmTypes")),
        max_records: get(req, "MaxRecords")
            .and_then(Cbor::as_integer)
            .and_then(|i| i64::try_from(i128::from(i)).ok()),
        next_token: text(req, "NextToken").map(str::to_owned),
    };
    let (alarms, next) = crate::alarms::describe(sb, at, &q)?;
    let now = Cbor::Tag(
        1,
        Box::new(Cbor::Integer((crate::timefmt::now_ms() / 1000).into())),
    );
    let list = alarms
        .into_iter()
        .map(|a| {
            Cbor::Map(vec![
                (t("AlarmName"), t(&a.name)),
                (t("AlarmArn"), t(&a.arn)),
                (t("ActionsEnabled"), Cbor::Bool(true)),
                (t("StateValue"), t(a.state)),
                (t("StateReason"), t(&a.reason)),
                (t("StateUpdatedTimestamp"), now.clone()),
            ])
        })
        .collect();
    let mut out = vec![
        (t("MetricAlarms"), Cbor::Array(list)),
        (t("CompositeAlarms"), Cbor::Array(vec![])),
    ];
    if let Some(next) = next {
        out.push((t("NextToken"), t(&next)));
    }
    ok_cbor(&Cbor::Map(out))
}

fn get_metric_data_cbor(sb: &Sandbox, at: &Scope<'_>, req: &Cbor) -> Result<Response, AwsError> {
    let req = req.clone();
    let start = get(&req, "StartTime")
        .and_then(epoch_ms)
        .ok_or_else(|| bad("StartTime is required.".into()))?;
    let end = get(&req, "EndTime")
        .and_then(epoch_ms)
        .ok_or_else(|| bad("EndTime is required.".into()))?;
    let mut queries = Vec::new();
    for q in get(&req, "MetricDataQueries")
        .and_then(Cbor::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let id = text(&q, "Id").unwrap_or_default().to_owned();
        let stat = get(&q, "MetricStat").ok_or_else(|| {
            bad(format!(
                "Query {id}: the sandbox answers MetricStat queries only."
            ))
        })?;
        let metric = get(stat, "Metric").cloned().unwrap_or(Cbor::Null);
        let instance = get(&metric, "Dimensions")
            .and_then(Cbor::as_array)
            .and_then(|dims| dims.iter().find(|d| text(d, "Name") == Some("InstanceId")))
            .and_then(|d| text(d, "Value"))
            .unwrap_or_default()
            .to_owned();
        queries.push(Query {
            id,
            namespace: text(&metric, "Namespace").unwrap_or_default().to_owned(),
            metric: text(&metric, "MetricName").unwrap_or_default().to_owned(),
            instance,
            period_secs: get(stat, "Period")
                .and_then(|p| p.as_integer())
                .and_then(|i| u64::try_from(i128::from(i)).ok()),
            stat: text(stat, "Stat").unwrap_or_default().to_owned(),
            dimensions: get(&metric, "Dimensions")
                .and_then(Cbor::as_array)
                .map_or(0, Vec::len),
        });
    }
    let ascending = scan_order(
        text(&req, "ScanBy"),
        get(&req, "MaxDatapoints")
            .and_then(Cbor::as_integer)
            .map(i128::from),
    )?;
    let results = metric_data(sb, at, start, end, &queries)?
        .into_iter()
        .map(|mut s| {
            if ascending {
                s.points.reverse();
            }
            Cbor::Map(vec![
                (t("Id"), t(&s.id)),
                (t("Label"), t(&s.label)),
                (
                    t("Timestamps"),
                    Cbor::Array(
                        s.points
                            .iter()
                            .map(|(at, _)| Cbor::Tag(1, Box::new(Cbor::Integer((at / 1000).into()))))
                            .collect(),
                    ),
                ),
                (
                    t("Values"),
                    Cbor::Array(s.points.iter().map(|(_, v)| Cbor::Float(*v)).collect()),
                ),
                (t("StatusCode"), t("Complete")),
            ])
        })
        .collect();
    ok_cbor(&Cbor::Map(vec![
        (t("MetricDataResults"), Cbor::Array(results)),
        (t("Messages"), Cbor::Array(vec![])),
    ]))
}

/// awsJson1_0 (`X-Amz-Target: GraniteServiceVersion20100801.GetMetricData`), as botocore and the AWS CLI send it.
pub(crate) fn handle_json(sb: &Sandbox, at: &Scope<'_>, op: &str, body: &[u8]) -> Result<Response, AwsError> {
    let req: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| AwsError::client("SerializationException", format!("Malformed JSON body: {e}")))?;
    let body = match op {
        "GetMetricData" => get_metric_data_json(sb, at, &req)?,
        "DescribeAlarms" => describe_alarms_json(sb, at, &req)?,
        _ => {
            return Err(AwsError::client(
                "UnknownOperationException",
                format!("The sandbox does not implement CloudWatch {op}."),
            ))
        }
    };
    let mut resp = crate::wire::ok_json(&body)?;
    resp.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    Ok(resp)
}

fn describe_alarms_json(
    sb: &Sandbox,
    at: &Scope<'_>,
    req: &serde_json::Value,
) -> Result<serde_json::Value, AwsError> {
    let list = |k: &str| -> Vec<String> {
        req[k]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let q = crate::alarms::AlarmQuery {
        names: list("AlarmNames"),
        prefix: req["AlarmNamePrefix"].as_str().map(str::to_owned),
        state: req["StateValue"].as_str().map(str::to_owned),
        types: req.get("AlarmTypes").map(|_| list("AlarmTypes")),
        max_records: req["MaxRecords"].as_i64(),
        next_token: req["NextToken"].as_str().map(str::to_owned),
    };
    let (alarms, next) = crate::alarms::describe(sb, at, &q)?;
    let now = crate::timefmt::now_ms() as f64 / 1000.0;
    let list: Vec<serde_json::Value> = alarms
        .iter()
        .map(|a| {
            serde_json::json!({
                "AlarmName": a.name, "AlarmArn": a.arn, "ActionsEnabled": true, "StateValue": a.state,
                "StateReason": a.reason, "StateUpdatedTimestamp": now,
            })
        })
        .collect();
    let mut out = serde_json::json!({ "MetricAlarms": list, "CompositeAlarms": [] });
    if let Some(next) = next {
        out["NextToken"] = serde_json::json!(next);
    }
    Ok(out)
}

fn get_metric_data_json(
    sb: &Sandbox,
    at: &Scope<'_>,
    req: &serde_json::Value,
) -> Result<serde_json::Value, AwsError> {
    let time = |k: &str| {
        req[k]
            .as_f64()
            .map(|s| (s * 1000.0) as u64)
            .ok_or_else(|| bad(format!("{k} is required.")))
    };
    let (start, end) = (time("StartTime")?, time("EndTime")?);
    let mut queries = Vec::new();
    for q in req["MetricDataQueries"].as_array().cloned().unwrap_or_default() {
        let id = q["Id"].as_str().unwrap_or_default().to_owned();
        let stat = &q["MetricStat"];
        if stat.is_null() {
            return Err(bad(format!(
                "Query {id}: the sandbox answers MetricStat queries only."
            )));
        }
        let metric = &stat["Metric"];
        let instance = metric["Dimensions"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["Name"] == "InstanceId"))
            .and_then(|d| d["Value"].as_str())
            .unwrap_or_default()
            .to_owned();
        queries.push(Query {
            id,
            namespace: metric["Namespace"].as_str().unwrap_or_default().to_owned(),
            metric: metric["MetricName"].as_str().unwrap_or_default().to_owned(),
            instance,
            period_secs: stat["Period"].as_u64(),
            stat: stat["Stat"].as_str().unwrap_or_default().to_owned(),
            dimensions: metric["Dimensions"].as_array().map_or(0, Vec::len),
        });
    }
    let ascending = scan_order(
        req["ScanBy"].as_str(),
        req["MaxDatapoints"].as_i64().map(i128::from),
    )?;
    let results: Vec<serde_json::Value> = metric_data(sb, at, start, end, &queries)?
        .into_iter()
        .map(|mut s| {
            if ascending {
                s.points.reverse();
            }
            serde_json::json!({
                "Id": s.id, "Label": s.label, "StatusCode": "Complete",
                "Timestamps": s.points.iter().map(|(at, _)| *at as f64 / 1000.0).collect::<Vec<_>>(),
                "Values": s.points.iter().map(|(_, v)| *v).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(serde_json::json!({ "MetricDataResults": results, "Messages": [] }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn old_data_points_are_kept_only_at_coarser_periods() {
        let day = 86_400_000;
        let now = 100 * day;
        assert!(super::period_kept(1, now - 3_600_000, now));
        assert!(!super::period_kept(30, now - day, now));
        assert!(super::period_kept(60, now - 14 * day, now));
        assert!(!super::period_kept(60, now - 20 * day, now));
        assert!(super::period_kept(300, now - 20 * day, now));
        assert!(!super::period_kept(300, now - 70 * day, now));
        assert!(super::period_kept(7_200, now - 70 * day, now));
    }
}
