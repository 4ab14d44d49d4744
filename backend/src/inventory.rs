//! The fleet's inventory: every instance of every managed account and region, with its IMDSv1 usage,
//! read at most once per [`FLEET_TTL`] for all viewers and pages. Once there is a snapshot, viewers
//! never wait for AWS: an older one is served at once (with its age, `as_of`) while one background
//! task reads the next. An account that cannot be read is kept with AWS's reason; the others show.

use shared::api::{AccountView, InstanceView};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::aws::ec2::{self, Selection};
use crate::aws::RegionClients;
use crate::error::AppError;
use crate::state::{AppState, FleetSnapshot, FLEET_TTL};

/// The inventory: fresh, or older and being refreshed in the background; read now only when there is
/// none (at start, or after the console changed instances), one reader at a time.
pub async fn snapshot(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let mut cache = state.fleet.lock().await;
    if let Some(s) = cache.as_ref() {
        if s.read_at.elapsed() >= FLEET_TTL && !state.fleet_refreshing.swap(true, Ordering::SeqCst) {
            let state = state.clone();
            let generation = state.fleet_generation.load(Ordering::SeqCst);
            tokio::spawn(async move {
                match read(&state).await {
                    Ok(fresh) => {
                        let mut cache = state.fleet.lock().await;
                        if state.fleet_generation.load(Ordering::SeqCst) == generation {
                            *cache = Some(fresh);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "fleet refresh failed; serving the last inventory"),
                }
                state.fleet_refreshing.store(false, Ordering::SeqCst);
            });
        }
        return Ok(s.clone());
    }
    let snap = read(state).await?;
    *cache = Some(snap.clone());
    Ok(snap)
}

/// The clients acting in `account` and `region`: the console's own in its account, the member
/// role's elsewhere.
pub async fn clients_for(state: &AppState, account: &str, region: &str) -> Result<RegionClients, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    if account.is_empty() || account == hub {
        return state.region(Some(region)).cloned();
    }
    let members = state.org.member_clients(account).await;
    members
        .get(region)
        .cloned()
        .ok_or_else(|| AppError::NotFound(format!("region {region} is not managed by this console")))
}

async fn read(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    let hub_clients = state.region(None)?;
    let (listed, organization_error) = state.org.accounts(&hub, hub_clients).await;
    let mut all: Vec<InstanceView> = Vec::new();
    let mut accounts: Vec<AccountView> = Vec::new();
    for account in &listed {
        let mut found = Vec::new();
        let mut problem = None;
        for region in &state.regions {
            let clients = if account.hub {
                state.region(Some(region))?.clone()
            } else {
                match clients_for(state, &account.id, region).await {
                    Ok(c) => c,
                    Err(e) => {
                        problem = Some(e);
                        break;
                    }
                }
            };
            match ec2::describe(&clients, Selection::All).await {
                Ok(list) => found.extend(list),
                // The console's own account must be readable; a member may not be.
                Err(e) if account.hub => return Err(e),
                Err(e) => {
                    problem = Some(e);
                    break;
                }
            }
        }
        if problem.is_some() {
            found.clear();
        }
        accounts.push(crate::org::view(account, found.len(), problem.as_ref()));
        all.extend(found);
    }
    // Usage is a second opinion: when CloudWatch cannot answer, the fleet still shows (usage unknown).
    if let Err(e) = crate::usage::annotate(state, &mut all).await {
        tracing::warn!(error = %e, "IMDSv1 usage unavailable");
    }
    record_posture(state, &all, &accounts);
    Ok(FleetSnapshot {
        read_at: Instant::now(),
        as_of: crate::store::now_rfc3339(),
        instances: Arc::new(all),
        accounts: Arc::new(accounts),
        organization_error,
    })
}

/// Keeps today's posture per account for the dashboard's trend (the day's last reading wins), and
/// forgets days older than the trend keeps. A failure is logged: the fleet still shows.
fn record_posture(state: &AppState, instances: &[InstanceView], accounts: &[AccountView]) {
    let day = state.store.clock.day(0);
    let mut per_account: std::collections::BTreeMap<&str, shared::api::PostureCounts> = accounts
        .iter()
        .filter(|a| a.reachable)
        .map(|a| (a.account_id.as_str(), shared::api::PostureCounts::default()))
        .collect();
    for i in instances {
        per_account.entry(i.account.as_str()).or_default().add(i);
    }
    let recorded = per_account
        .iter()
        .try_for_each(|(account, counts)| state.store.record_posture(&day, account, counts))
        .and_then(|()| {
            state
                .store
                .prune_posture(&state.store.clock.day(crate::store::POSTURE_KEEP_DAYS))
        });
    if let Err(e) = recorded {
        tracing::warn!(error = %e, "could not record the day's posture");
    }
}
