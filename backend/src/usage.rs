//! IMDSv1 usage per instance, from CloudWatch, cached for all viewers. Each instance costs one query:
//! MetadataNoToken while it still allows IMDSv1 (calls that would break), MetadataNoTokenRejected once
//! it is compliant (calls now refused), so reading N instances is N/500 GetMetricData calls and N
//! metrics, which is what CloudWatch bills ($0.01 per 1,000 metrics at list price).
//!
//! What is read, and how often (each figure covers `--imdsv1-window-days`, so an hour's age moves it
//! little):
//! - every instance at least once a day ([`SWEEP_TTL`]), for the fleet's posture counts;
//! - instances shown on a Fleet page at least once an hour ([`SHOWN_TTL`]), in the background;
//! - instances a start or fix decides on (the IMDSv1 gate) when their figure is over five minutes
//!   old ([`TARGETED_TTL`]);
//! - an instance whose posture changed (a run made it compliant, so the metric to ask switches) at
//!   once, at its next reading.
//!
//! At 50,000 instances that is 50,000 metrics a day for the sweep, plus those shown, targeted and
//! changed (BENCHMARKS.md), where re-reading everything every five minutes was 14.4 million.

use shared::api::InstanceView;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::aws::cloudwatch::{self, UsageMetric};
use crate::error::AppError;
use crate::state::AppState;

/// How long a figure decides a start or a fix's IMDSv1 gate.
pub const TARGETED_TTL: Duration = Duration::from_secs(300);
/// How long a figure shown on a page is reused.
pub const SHOWN_TTL: Duration = Duration::from_secs(3_600);
/// How long any figure is reused by the inventory's readings.
pub const SWEEP_TTL: Duration = Duration::from_secs(86_400);

#[derive(Clone, Copy)]
struct Entry {
    at: Instant,
    metric: UsageMetric,
    calls: u64,
}

#[derive(Default)]
pub struct UsageCache {
    entries: tokio::sync::Mutex<HashMap<String, Entry>>,
    /// A background read of shown instances is under way (one at a time).
    shown_reading: std::sync::atomic::AtomicBool,
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

/// Fills `imdsv1_calls` / `imdsv1_rejected` of each instance for the inventory, asking CloudWatch
/// only for those whose figure is missing, for the other metric, or over a day old.
pub async fn annotate(state: &AppState, instances: &mut [InstanceView]) -> Result<(), AppError> {
    annotate_within(state, instances, SWEEP_TTL).await
}

/// The same for the targets of a start or fix, whose IMDSv1 gate wants figures at most
/// [`TARGETED_TTL`] old.
pub async fn annotate_targets(state: &AppState, instances: &mut [InstanceView]) -> Result<(), AppError> {
    annotate_within(state, instances, TARGETED_TTL).await
}

/// Fills the figures, asking CloudWatch for those missing, stale by `ttl` or for the other metric.
async fn annotate_within(
    state: &AppState,
    instances: &mut [InstanceView],
    ttl: Duration,
) -> Result<(), AppError> {
    let mut cache = state.usage.entries.lock().await;
    // CloudWatch is asked in each instance's own account and region.
    let mut wanted: BTreeMap<(String, String), Vec<(String, UsageMetric)>> = BTreeMap::new();
    for i in instances.iter() {
        let metric = metric_for(i);
        let fresh = cache
            .get(&i.instance_id)
            .is_some_and(|e| e.metric == metric && e.at.elapsed() < ttl);
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
        apply(&cache, i);
    }
    Ok(())
}

fn apply(cache: &HashMap<String, Entry>, i: &mut InstanceView) {
    let Some(e) = cache.get(&i.instance_id) else {
        return;
    };
    match e.metric {
        UsageMetric::NoToken => (i.imdsv1_calls, i.imdsv1_rejected) = (Some(e.calls), None),
        UsageMetric::Rejected => (i.imdsv1_calls, i.imdsv1_rejected) = (None, Some(e.calls)),
    }
}

/// A page showed these instances: those whose figure is over [`SHOWN_TTL`] old are read again in the
/// background (the page does not wait) and put into the snapshot, so the next page has them.
pub fn shown(state: &AppState, shown: &[InstanceView]) {
    // With replicas, the leader reads AWS; its sweep and the instances its own pages show are what
    // the others serve.
    if state.store.is_postgres() && !state.leadership.is_leader() {
        return;
    }
    let Ok(cache) = state.usage.entries.try_lock() else {
        // Being read right now: the next page asks again.
        return;
    };
    let mut stale: Vec<InstanceView> = shown
        .iter()
        .filter(|i| {
            !cache
                .get(&i.instance_id)
                .is_some_and(|e| e.metric == metric_for(i) && e.at.elapsed() < SHOWN_TTL)
        })
        .cloned()
        .collect();
    drop(cache);
    if stale.is_empty()
        || state
            .usage
            .shown_reading
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        match annotate_within(&state, &mut stale, SHOWN_TTL).await {
            Ok(()) => {
                let mut fleet = state.fleet.lock().await;
                if let Some(snap) = fleet.as_ref() {
                    let cache = state.usage.entries.lock().await;
                    let mut instances = snap.instances.to_vec();
                    for i in instances.iter_mut() {
                        apply(&cache, i);
                    }
                    drop(cache);
                    let updated = crate::state::FleetSnapshot {
                        instances: std::sync::Arc::new(instances),
                        ..snap.clone()
                    };
                    state.keep_fleet(&mut fleet, updated);
                }
            }
            Err(e) => tracing::warn!(error = %e, "IMDSv1 usage of shown instances unavailable"),
        }
        state
            .usage
            .shown_reading
            .store(false, std::sync::atomic::Ordering::SeqCst);
    });
}
