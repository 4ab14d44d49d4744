//! IMDSv1 usage per instance, from CloudWatch, cached for all viewers. Each instance costs one query:
//! MetadataNoToken while it still allows IMDSv1 (calls that would break), MetadataNoTokenRejected once
//! it is compliant (calls now refused), so a full refresh of N instances is N/500 GetMetricData calls.

use shared::api::InstanceView;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::aws::cloudwatch::{self, UsageMetric};
use crate::error::AppError;
use crate::state::AppState;

/// How long a usage figure is reused.
pub const USAGE_TTL: Duration = Duration::from_secs(300);

#[derive(Clone, Copy)]
struct Entry {
    at: Instant,
    metric: UsageMetric,
    calls: u64,
}

#[derive(Default)]
pub struct UsageCache {
    entries: tokio::sync::Mutex<HashMap<String, Entry>>,
}

impl UsageCache {
    /// Forgets every figure, so the next read asks CloudWatch again.
    pub async fn forget(&self) {
        self.entries.lock().await.clear();
    }
}

fn metric_for(i: &InstanceView) -> UsageMetric {
    if i.metadata.is_compliant() {
        UsageMetric::Rejected
    } else {
        UsageMetric::NoToken
    }
}

/// Fills `imdsv1_calls` / `imdsv1_rejected` of each instance, asking CloudWatch only for those whose
/// figure is missing or stale.
pub async fn annotate(state: &AppState, instances: &mut [InstanceView]) -> Result<(), AppError> {
    let mut cache = state.usage.entries.lock().await;
    // CloudWatch is asked in each instance's own account and region.
    let mut wanted: BTreeMap<(String, String), Vec<(String, UsageMetric)>> = BTreeMap::new();
    for i in instances.iter() {
        let metric = metric_for(i);
        let fresh = cache
            .get(&i.instance_id)
            .is_some_and(|e| e.metric == metric && e.at.elapsed() < USAGE_TTL);
        if !fresh {
            wanted
                .entry((i.account.clone(), i.region.clone()))
                .or_default()
                .push((i.instance_id.clone(), metric));
        }
    }
    for ((account, region), queries) in wanted {
        let clients = crate::inventory::clients_for(state, &account, &region).await?;
        let sums = cloudwatch::usage(&clients, &queries, state.usage_window).await?;
        let now = Instant::now();
        for (id, metric) in queries {
            let calls = sums.get(&id).copied().unwrap_or(0);
            cache.insert(
                id,
                Entry {
                    at: now,
                    metric,
                    calls,
                },
            );
        }
    }
    for i in instances.iter_mut() {
        let Some(e) = cache.get(&i.instance_id) else {
            continue;
        };
        match e.metric {
            UsageMetric::NoToken => (i.imdsv1_calls, i.imdsv1_rejected) = (Some(e.calls), None),
            UsageMetric::Rejected => (i.imdsv1_calls, i.imdsv1_rejected) = (None, Some(e.calls)),
        }
    }
    Ok(())
}
