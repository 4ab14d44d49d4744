//! EC2: the fleet's instances and their metadata options.

use aws_sdk_ec2::types::{Filter, Instance};
use shared::api::{InstanceView, MetadataOptions};
use std::collections::BTreeMap;

use super::{sdk_error, AwsFault, RegionClients};
use crate::error::AppError;
use crate::state::TokenBucket;

/// Which instances to describe.
pub enum Selection<'a> {
    All,
    /// These instances; EC2 refuses the whole call if one does not exist.
    Ids(&'a [String]),
    /// Those of these instances that still exist (an `instance-id` filter, 200 values a call).
    IdsThatExist(&'a [String]),
    Tag {
        key: &'a str,
        value: &'a str,
    },
}

fn view(region: &str, account: &str, i: &Instance) -> InstanceView {
    let tags: BTreeMap<String, String> = i
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_owned(),
                t.value().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let md = i.metadata_options();
    let metadata = MetadataOptions {
        http_tokens: md
            .and_then(|m| m.http_tokens())
            .map_or("optional", |t| t.as_str())
            .to_owned(),
        http_endpoint: md
            .and_then(|m| m.http_endpoint())
            .map_or("enabled", |t| t.as_str())
            .to_owned(),
        http_put_response_hop_limit: md
            .and_then(|m| m.http_put_response_hop_limit())
            .unwrap_or(1)
            .clamp(0, 64) as u8,
        state: md
            .and_then(|m| m.state())
            .map_or("applied", |s| s.as_str())
            .to_owned(),
    };
    InstanceView {
        instance_id: i.instance_id().unwrap_or_default().to_owned(),
        account: account.to_owned(),
        region: region.to_owned(),
        name: tags.get("Name").cloned(),
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or("unknown", |n| n.as_str())
            .to_owned(),
        compliant: metadata.is_compliant(),
        tags,
        metadata,
        imdsv1_calls: None,
        imdsv1_rejected: None,
        image_id: i.image_id().map(str::to_owned),
    }
}

/// Values one EC2 filter takes.
const FILTER_VALUES: usize = 200;

/// Describes the selected instances of one region, following every page, each call taking a token
/// of `pace` first (the console's share of EC2's request bucket in that account and region); a
/// throttled call empties it for a while.
pub async fn describe(
    c: &RegionClients,
    selection: Selection<'_>,
    pace: &TokenBucket,
) -> Result<Vec<InstanceView>, AppError> {
    if let Selection::IdsThatExist(ids) = selection {
        let mut out = Vec::new();
        for chunk in ids.chunks(FILTER_VALUES) {
            out.extend(describe_pages(c, &Selection::IdsThatExist(chunk), pace).await?);
        }
        return Ok(out);
    }
    describe_pages(c, &selection, pace).await
}

/// How many DescribeInstances calls reading `ids` by ID takes.
pub fn calls_for_ids(ids: usize) -> usize {
    ids.div_ceil(FILTER_VALUES)
}

/// How many DescribeInstances calls reading a whole place of `instances` takes.
pub fn calls_for_place(instances: usize) -> usize {
    instances.div_ceil(PAGE).max(1)
}

/// Instances one page holds (DescribeInstances' MaxResults at most).
const PAGE: usize = 1000;

/// How long a throttled reader leaves EC2's bucket alone before its next call.
const THROTTLED_PAUSE: std::time::Duration = std::time::Duration::from_secs(2);

async fn describe_pages(
    c: &RegionClients,
    selection: &Selection<'_>,
    pace: &TokenBucket,
) -> Result<Vec<InstanceView>, AppError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        pace.take().await;
        let mut req = c.ec2.describe_instances().set_next_token(token.take());
        req = match selection {
            Selection::All => req.max_results(PAGE as i32),
            Selection::Ids(ids) => req.set_instance_ids(Some(ids.to_vec())),
            Selection::IdsThatExist(ids) => req.max_results(PAGE as i32).filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids.to_vec()))
                    .build(),
            ),
            Selection::Tag { key, value } => req.max_results(1000).filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(*value)
                    .build(),
            ),
        };
        let page = req
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeInstances", &e));
        if let Err(AppError::Aws {
            fault: AwsFault::Throttled,
            ..
        }) = &page
        {
            pace.back_off(THROTTLED_PAUSE);
        }
        let page = page?;
        for r in page.reservations() {
            let account = r.owner_id().unwrap_or_default();
            out.extend(r.instances().iter().map(|i| view(&c.region, account, i)));
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}
