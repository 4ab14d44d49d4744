//! CloudWatch: IMDSv1 usage per instance (AWS/EC2 MetadataNoToken and MetadataNoTokenRejected), in
//! batches of up to 500 queries per GetMetricData call.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use super::{sdk_error, RegionClients};
use crate::error::AppError;

/// CloudWatch's limit of queries per GetMetricData call.
pub const QUERIES_PER_CALL: usize = 500;

/// Which metric to read for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageMetric {
    /// IMDSv1 calls that succeeded: the ones that break when IMDSv1 is turned off.
    NoToken,
    /// IMDSv1 calls refused because IMDSv1 is off: software still trying after enforcement.
    Rejected,
}

impl UsageMetric {
    fn name(self) -> &'static str {
        match self {
            UsageMetric::NoToken => "MetadataNoToken",
            UsageMetric::Rejected => "MetadataNoTokenRejected",
        }
    }
}

/// One period spanning the whole window, so each instance gets one number. CloudWatch keeps minute
/// data for 15 days, 5-minute data for 63 and hourly data after that, and answers no data points for
/// a period finer than what it keeps from the window's start: the period is a whole multiple of
/// what that start's age requires.
pub fn period_for(window: Duration) -> u64 {
    const DAY: u64 = 86_400;
    let secs = window.as_secs();
    let unit = match secs {
        s if s <= 15 * DAY => 60,
        s if s <= 63 * DAY => 300,
        _ => 3_600,
    };
    secs.div_ceil(unit).max(1) * unit
}

/// The sum of the metric over the last `window` for each instance (0 when CloudWatch has no data).
pub async fn usage(
    c: &RegionClients,
    queries: &[(String, UsageMetric)],
    window: Duration,
) -> Result<HashMap<String, u64>, AppError> {
    // AWS's time, not the console's (which tests move): CloudWatch keeps its data by the real clock.
    let end = SystemTime::now();
    let start = end - window;
    let period = i32::try_from(period_for(window)).unwrap_or(i32::MAX);
    let mut out = HashMap::new();
    for chunk in queries.chunks(QUERIES_PER_CALL) {
        let mut req = c
            .cloudwatch
            .get_metric_data()
            .start_time(aws_smithy_types::DateTime::from(start))
            .end_time(aws_smithy_types::DateTime::from(end));
        for (n, (instance, metric)) in chunk.iter().enumerate() {
            let m = Metric::builder()
                .namespace("AWS/EC2")
                .metric_name(metric.name())
                .dimensions(Dimension::builder().name("InstanceId").value(instance).build())
                .build();
            req = req.metric_data_queries(
                MetricDataQuery::builder()
                    .id(format!("q{n}"))
                    .metric_stat(MetricStat::builder().metric(m).period(period).stat("Sum").build())
                    .build(),
            );
        }
        let mut token: Option<String> = None;
        loop {
            let page = req
                .clone()
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("cloudwatch:GetMetricData", &e))?;
            for r in page.metric_data_results() {
                let Some(idx) = r
                    .id()
                    .and_then(|id| id.strip_prefix('q'))
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    continue;
                };
                if let Some((instance, _)) = chunk.get(idx) {
                    let sum: f64 = r.values().iter().sum();
                    *out.entry(instance.clone()).or_insert(0) += sum.max(0.0).round() as u64;
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        for (instance, _) in chunk {
            out.entry(instance.clone()).or_insert(0);
        }
    }
    Ok(out)
}

/// Whether a CloudWatch alarm (metric or composite) of that name exists in the clients' account and
/// Region. SSM stops a run whose alarm it cannot read, so a start checks first.
pub async fn alarm_exists(c: &RegionClients, name: &str) -> Result<bool, AppError> {
    use aws_sdk_cloudwatch::types::AlarmType;
    let out = c
        .cloudwatch
        .describe_alarms()
        .alarm_names(name)
        .alarm_types(AlarmType::MetricAlarm)
        .alarm_types(AlarmType::CompositeAlarm)
        .send()
        .await
        .map_err(|e| sdk_error("cloudwatch:DescribeAlarms", &e))?;
    Ok(out.metric_alarms().iter().any(|a| a.alarm_name() == Some(name))
        || out
            .composite_alarms()
            .iter()
            .any(|a| a.alarm_name() == Some(name)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn the_period_is_one_cloudwatch_keeps_from_the_windows_start() {
        let day = 86_400;
        assert_eq!(super::period_for(Duration::from_secs(90)), 120);
        assert_eq!(
            super::period_for(Duration::from_secs(14 * day + 1)),
            14 * day + 60
        );
        assert_eq!(
            super::period_for(Duration::from_secs(20 * day + 61)),
            20 * day + 300
        );
        assert_eq!(
            super::period_for(Duration::from_secs(70 * day + 1)),
            70 * day + 3_600
        );
    }
}
