//! CloudWatch DescribeAlarms, in rpcv2Cbor (the Rust SDK) and awsJson1_0 (botocore): the metric
//! alarms the sandbox knows in the caller's account and Region, filtered by AlarmNames,
//! AlarmNamePrefix, StateValue and AlarmTypes, with CloudWatch's limits on them.
//!
//! The alarms that exist are those the fault settings name (`Faults::alarms`, everywhere or in one
//! account and Region), OK unless they are also in `Faults::alarms_in_alarm`, which exist everywhere
//! in ALARM. An alarm a run names that is in neither does not exist: SSM cannot read it.

use std::collections::BTreeSet;

use crate::fleet::Scope;
use crate::wire::AwsError;
use crate::Sandbox;

/// What DescribeAlarms asked for, whichever protocol it came in.
#[derive(Default)]
pub(crate) struct AlarmQuery {
    pub names: Vec<String>,
    pub prefix: Option<String>,
    pub state: Option<String>,
    pub types: Option<Vec<String>>,
    pub max_records: Option<i64>,
    pub next_token: Option<String>,
}

/// One metric alarm as DescribeAlarms shows it.
pub(crate) struct MetricAlarm {
    pub name: String,
    pub arn: String,
    pub state: &'static str,
    pub reason: String,
}

fn validation(message: &str) -> AwsError {
    AwsError::client(
        "ValidationError",
        format!("1 validation error detected: {message}"),
    )
}

/// The page of alarms and the token of the next page.
pub(crate) fn describe(
    sb: &Sandbox,
    at: &Scope<'_>,
    q: &AlarmQuery,
) -> Result<(Vec<MetricAlarm>, Option<String>), AwsError> {
    if q.names.len() > 100 {
        return Err(validation(
            "Value at 'alarmNames' failed to satisfy constraint: Member must have length less than or equal to 100",
        ));
    }
    if let Some(bad) = q.names.iter().find(|n| n.is_empty() || n.chars().count() > 255) {
        return Err(validation(&format!("Value '{bad}' at 'alarmNames' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 255, Member must have length greater than or equal to 1]")));
    }
    if !q.names.is_empty() && q.prefix.is_some() {
        return Err(AwsError::client(
            "InvalidParameterCombination",
            "AlarmNames and AlarmNamePrefix cannot be specified together.",
        ));
    }
    if let Some(state) = &q.state {
        if !["OK", "ALARM", "INSUFFICIENT_DATA"].contains(&state.as_str()) {
            return Err(validation(&format!("Value '{state}' at 'stateValue' failed to satisfy constraint: Member must satisfy enum value set: [INSUFFICIENT_DATA, ALARM, OK]")));
        }
    }
    for t in q.types.iter().flatten() {
        if t != "MetricAlarm" && t != "CompositeAlarm" {
            return Err(validation(&format!("Value '{t}' at 'alarmTypes' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [CompositeAlarm, MetricAlarm]]")));
        }
    }
    let size = match q.max_records {
        None => 50,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(validation(&format!(
                "Value '{n}' at 'maxRecords' failed to satisfy constraint: Member must have value {}",
                if n < 1 {
                    "greater than or equal to 1"
                } else {
                    "less than or equal to 100"
                }
            )))
        }
    };
    let offset = match &q.next_token {
        None => 0,
        Some(t) => t
            .strip_prefix("sbx")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                AwsError::client("InvalidNextToken", "The service returned an invalid next token.")
            })?,
    };
    // Without AlarmTypes CloudWatch returns metric alarms only; the sandbox has no composite ones.
    let wants_metric = q
        .types
        .as_ref()
        .is_none_or(|t| t.iter().any(|x| x == "MetricAlarm"));
    let world = sb.world();
    // Every alarm that exists here: those everywhere, and those of this account and Region.
    let here = format!("{}/{}/", at.account, at.region);
    let known: BTreeSet<String> = world
        .alarms_in_alarm
        .iter()
        .cloned()
        .chain(world.alarms.iter().filter_map(|a| match a.strip_prefix(&here) {
            Some(name) => Some(name.to_owned()),
            None => (!a.contains('/')).then(|| a.clone()),
        }))
        .collect();
    let alarms: Vec<MetricAlarm> = known
        .into_iter()
        .filter(|_| wants_metric)
        .filter(|n| q.names.is_empty() || q.names.contains(n))
        .filter(|n| q.prefix.as_ref().is_none_or(|p| n.starts_with(p.as_str())))
        .map(|name| {
            let firing = world.alarms_in_alarm.contains(&name);
            MetricAlarm {
                arn: format!(
                    "arn:{}:cloudwatch:{}:{}:alarm:{name}",
                    sb.inner.config.partition, at.region, at.account
                ),
                state: if firing { "ALARM" } else { "OK" },
                reason: if firing {
                    "Threshold Crossed: the alarm's metric crossed its threshold.".to_owned()
                } else {
                    "Threshold not crossed.".to_owned()
                },
                name,
            }
        })
        .filter(|a| q.state.as_deref().is_none_or(|s| s == a.state))
        .collect();
    let total = alarms.len();
    let page: Vec<MetricAlarm> = alarms.into_iter().skip(offset).take(size).collect();
    let end = offset + page.len();
    Ok((page, (end < total).then(|| format!("sbx{end:x}"))))
}
