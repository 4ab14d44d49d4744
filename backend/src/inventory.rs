//! The fleet's inventory: every instance of every managed account and region, with its IMDSv1 usage,
//! read at most once per `--fleet-refresh-secs` for all viewers and pages. Once there is a snapshot,
//! viewers never wait for a full reading: an older one is served at once (with its age, `as_of`) while
//! one background task reads the next. Refreshes are incremental:
//! - accounts are read side by side, a few at a time, each one call at a time (EC2 counts its
//!   request budget per account and region), so a slow account holds back only itself;
//! - after the console changed instances in one account and region, the next read asks EC2 about that
//!   place alone and keeps the rest;
//! - an account that cannot be read keeps its last reading, with that reading's age and AWS's reason;
//!   so does a Region of a readable account that cannot be (a service control policy, no opt-in).
//!
//! With several replicas (PostgreSQL) only the leader reads EC2: it writes each new snapshot to the
//! store, and the followers serve that, asking the leader through the store for a fresher one, or for
//! the places they just changed ([`follow`], [`serve_followers`]).

use futures_util::StreamExt;
use shared::api::{AccountView, InstanceView};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::aws::ec2::{self, Selection};
use crate::aws::RegionClients;
use crate::error::AppError;
use crate::org::Listed;
use crate::state::{AppState, FleetSnapshot};

/// Accounts read at once: each has its own EC2 budget, the console's host and network are shared.
const ACCOUNTS_AT_ONCE: usize = 8;

/// The inventory: fresh, or older and being refreshed in the background; read now only when there is
/// none (at start), or where the console just changed instances, one reader at a time.
pub async fn snapshot(state: &AppState) -> Result<FleetSnapshot, AppError> {
    if !state.store.is_postgres() {
        return own_snapshot(state).await;
    }
    if !state.leadership.is_leader() {
        return follow(state).await;
    }
    let snap = own_snapshot(state).await?;
    share(state, &snap).await;
    Ok(snap)
}

/// The snapshot this replica reads from EC2 itself.
async fn own_snapshot(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let mut cache = state.fleet.lock().await;
    let Some(current) = cache.as_ref() else {
        state.take_fleet_changes();
        let snap = read(state, None).await?;
        state.keep_fleet(&mut cache, snap.clone());
        return Ok(snap);
    };
    let changed = state.take_fleet_changes();
    if !changed.is_empty() {
        match reread(state, current, &changed).await {
            Ok(snap) => {
                state.keep_fleet(&mut cache, snap.clone());
                return Ok(snap);
            }
            Err(e) => {
                // Asked again at the next read.
                state
                    .fleet_changed
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(changed);
                return Err(e);
            }
        }
    }
    if current.read_at.elapsed() >= state.fleet_ttl && !state.fleet_refreshing.swap(true, Ordering::SeqCst) {
        let state = state.clone();
        let previous = current.clone();
        let generation = state.fleet_generation.load(Ordering::SeqCst);
        tokio::spawn(async move {
            match read(&state, Some(&previous)).await {
                Ok(fresh) => {
                    let mut cache = state.fleet.lock().await;
                    if state.fleet_generation.load(Ordering::SeqCst) == generation {
                        state.keep_fleet(&mut cache, fresh);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "fleet refresh failed; serving the last inventory"),
            }
            state.fleet_refreshing.store(false, Ordering::SeqCst);
        });
    }
    Ok(current.clone())
}

/// What the store keeps of a snapshot for the followers.
#[derive(serde::Serialize, serde::Deserialize)]
struct Shared {
    as_of: String,
    instances: Vec<InstanceView>,
    accounts: Vec<AccountView>,
    organization_error: Option<String>,
}

/// How this replica stands with the shared snapshot: as the leader, the instances it last wrote;
/// as a follower, the version it last loaded.
#[derive(Default)]
pub struct FleetShare {
    written: tokio::sync::Mutex<Option<Arc<Vec<InstanceView>>>>,
    loaded: std::sync::atomic::AtomicI64,
}

/// How long a follower waits for the leader's first reading, or for a place it changed.
const FOLLOWER_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The leader writes a snapshot it has not written yet.
async fn share(state: &AppState, snap: &FleetSnapshot) {
    let mut written = state.fleet_share.written.lock().await;
    if written.as_ref().is_some_and(|w| Arc::ptr_eq(w, &snap.instances)) {
        return;
    }
    let body = serde_json::to_string(&Shared {
        as_of: snap.as_of.clone(),
        instances: snap.instances.to_vec(),
        accounts: snap.accounts.to_vec(),
        organization_error: snap.organization_error.clone(),
    })
    .unwrap_or_default();
    let read_at_ms = state.store.clock.now_ms() - snap.read_at.elapsed().as_millis() as i64;
    match state.store.save_fleet(read_at_ms, &body).await {
        Ok(()) => *written = Some(snap.instances.clone()),
        Err(e) => tracing::warn!(error = %e, "could not share the fleet snapshot with the other replicas"),
    }
}

/// A follower's snapshot: the leader's latest, asking it for a fresher one when it is older than
/// `--fleet-refresh-secs`, and waiting (a little) for the places this replica just changed.
async fn follow(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let changed: Vec<String> = state
        .take_fleet_changes()
        .into_iter()
        .map(|(account, region)| format!("{account}/{region}"))
        .collect();
    let version_before = state.store.fleet_version().await?.map(|(v, _)| v);
    if !changed.is_empty() {
        state.store.want_fleet(&changed).await?;
    }
    let deadline = Instant::now() + FOLLOWER_WAIT;
    loop {
        if let Some((version, read_at_ms)) = state.store.fleet_version().await? {
            let mut cache = state.fleet.lock().await;
            if cache.is_none() || state.fleet_share.loaded.load(Ordering::SeqCst) != version {
                if let Some(body) = state.store.fleet_body().await? {
                    let shared: Shared = serde_json::from_str(&body).map_err(AppError::internal)?;
                    let age = (state.store.clock.now_ms() - read_at_ms).max(0) as u64;
                    let loaded = FleetSnapshot {
                        read_at: Instant::now()
                            .checked_sub(std::time::Duration::from_millis(age))
                            .unwrap_or_else(Instant::now),
                        as_of: shared.as_of,
                        instances: Arc::new(shared.instances),
                        accounts: Arc::new(shared.accounts),
                        organization_error: shared.organization_error,
                    };
                    state.keep_fleet(&mut cache, loaded);
                    state.fleet_share.loaded.store(version, Ordering::SeqCst);
                }
            }
            let current = cache.clone().expect("loaded above");
            drop(cache);
            if current.read_at.elapsed() >= state.fleet_ttl {
                state.store.want_fleet(&[String::new()]).await?;
            }
            let waiting_for_change = !changed.is_empty() && Some(version) == version_before;
            if !waiting_for_change || Instant::now() >= deadline {
                return Ok(current);
            }
        } else {
            state.store.want_fleet(&[String::new()]).await?;
            if Instant::now() >= deadline {
                return Err(AppError::refused(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "FleetNotReadYet",
                    "the leading replica has not read the fleet yet; try again in a moment",
                ));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The leader's side: reads what followers asked for (a fresher snapshot, places they changed), and
/// places its own runs changed, a few times a second, and shares the result.
pub async fn serve_followers(state: AppState) {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let wanted = match state.store.take_fleet_wanted().await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the followers' fleet requests");
                continue;
            }
        };
        let changed_here = !state
            .fleet_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
        if wanted.is_empty() && !changed_here {
            continue;
        }
        for place in &wanted {
            if let Some((account, region)) = place.split_once('/') {
                state.fleet_changed_in(account, region);
            }
        }
        if let Err(e) = snapshot(&state).await {
            tracing::warn!(error = %e, "could not read the fleet for the other replicas");
        }
    }
}

/// The clients acting in `account` and `region`: the console's own in its account, the member
/// role's elsewhere.
pub async fn clients_for(state: &AppState, account: &str, region: &str) -> Result<RegionClients, AppError> {
    let console = crate::routes::identity::resolve(state).await?;
    if account.is_empty() || account == console.account {
        return state.region(Some(region)).cloned();
    }
    let members = state
        .org
        .member_clients(account, crate::org::partition_of(&console.arn))
        .await;
    members
        .get(region)
        .cloned()
        .ok_or_else(|| AppError::NotFound(format!("region {region} is not managed by this console")))
}

/// One account's reading: its instances in the Regions that could be read, and the Regions that
/// could not, with why.
struct AccountReading {
    found: Vec<InstanceView>,
    failed: Vec<(String, AppError)>,
}

/// Every instance of one account, region after region. One Region that cannot be read (a service
/// control policy's deny, a Region not opted in) does not make the account unreadable; all of them
/// failing, or the account's role, does.
async fn read_account(state: &AppState, account: &Listed) -> Result<AccountReading, AppError> {
    let mut reading = AccountReading {
        found: Vec::new(),
        failed: Vec::new(),
    };
    for region in &state.regions {
        let clients = clients_for(state, &account.id, region).await?;
        match ec2::describe(&clients, Selection::All).await {
            Ok(found) => reading.found.extend(found),
            // No credentials for the account (its role cannot be assumed): no Region can be read.
            Err(
                e @ AppError::Aws {
                    fault: crate::aws::AwsFault::NotSent | crate::aws::AwsFault::CredentialsDelayed,
                    ..
                },
            ) => return Err(e),
            Err(e) => reading.failed.push((region.clone(), e)),
        }
    }
    if reading.found.is_empty() && reading.failed.len() == state.regions.len() {
        return Err(reading.failed.swap_remove(0).1);
    }
    Ok(reading)
}

/// A full reading. `previous` lends its instances to accounts that cannot be read now.
async fn read(state: &AppState, previous: Option<&FleetSnapshot>) -> Result<FleetSnapshot, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    let (listed, organization_error) = state.org.accounts(&hub, state.region(None)?).await;
    let as_of = crate::store::now_rfc3339();
    // Collected first: a stream that maps lazily over borrowed accounts is not `Send` for the
    // background task (a known limit of higher-ranked closures in async Rust).
    let reads: Vec<_> = listed
        .iter()
        .map(|account| Box::pin(read_account(state, account)))
        .collect();
    let readings: Vec<Result<AccountReading, AppError>> = futures_util::stream::iter(reads)
        .buffered(ACCOUNTS_AT_ONCE)
        .collect()
        .await;
    let mut all: Vec<InstanceView> = Vec::new();
    let mut accounts: Vec<AccountView> = Vec::new();
    for (account, reading) in listed.iter().zip(readings) {
        match reading {
            Ok(AccountReading { found, failed }) => {
                // A Region that could not be read keeps its last reading, with its age and why.
                let mut kept: Vec<InstanceView> = Vec::new();
                let mut problems = Vec::new();
                for (region, e) in failed {
                    let before: Vec<InstanceView> = previous
                        .map(|p| {
                            p.instances
                                .iter()
                                .filter(|i| i.account == account.id && i.region == region)
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    let last = previous.and_then(|p| p.accounts.iter().find(|a| a.account_id == account.id));
                    let region_as_of =
                        last.and_then(
                            |a| match a.regions_unreachable.iter().find(|r| r.region == region) {
                                Some(r) => r.as_of.clone(),
                                None => a.as_of.clone(),
                            },
                        );
                    problems.push(shared::api::RegionProblem {
                        region,
                        reason: e.to_string(),
                        as_of: region_as_of.filter(|_| !before.is_empty()),
                    });
                    kept.extend(before);
                }
                let mut view = crate::org::view(account, found.len() + kept.len(), None, Some(as_of.clone()));
                view.regions_unreachable = problems;
                accounts.push(view);
                all.extend(found);
                all.extend(kept);
            }
            // The console's own account must be readable; a member may not be.
            Err(e) if account.hub => return Err(e),
            Err(e) => {
                let kept: Vec<InstanceView> = previous
                    .map(|p| {
                        p.instances
                            .iter()
                            .filter(|i| i.account == account.id)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                let kept_as_of = previous
                    .and_then(|p| p.accounts.iter().find(|a| a.account_id == account.id))
                    .and_then(|a| a.as_of.clone());
                accounts.push(crate::org::view(account, kept.len(), Some(&e), kept_as_of));
                all.extend(kept);
            }
        }
    }
    annotate(state, &mut all).await;
    record_posture(state, &all, &accounts).await;
    Ok(FleetSnapshot {
        read_at: Instant::now(),
        as_of,
        instances: Arc::new(all),
        accounts: Arc::new(accounts),
        organization_error,
    })
}

/// `current` with the `changed` places (account, '' for the console's own, and region) read again.
/// The snapshot keeps its age: the rest of it is as old as before.
async fn reread(
    state: &AppState,
    current: &FleetSnapshot,
    changed: &BTreeSet<(String, String)>,
) -> Result<FleetSnapshot, AppError> {
    let hub = crate::routes::identity::resolve(state).await?.account;
    let places: BTreeSet<(String, String)> = changed
        .iter()
        .map(|(account, region)| {
            let account = if account.is_empty() {
                hub.clone()
            } else {
                account.clone()
            };
            (account, region.clone())
        })
        .collect();
    let mut fresh = Vec::new();
    let mut read: BTreeSet<(String, String)> = BTreeSet::new();
    let mut failed: Vec<(String, String, AppError)> = Vec::new();
    for (account, region) in &places {
        // A place that cannot be read now (denied since, its role gone) keeps its last reading, as
        // in a full reading; the next full reading says why.
        let reading = match clients_for(state, account, region).await {
            Ok(clients) => ec2::describe(&clients, Selection::All).await,
            Err(e) => Err(e),
        };
        match reading {
            Ok(found) => {
                fresh.extend(found);
                read.insert((account.clone(), region.clone()));
            }
            Err(e) => failed.push((account.clone(), region.clone(), e)),
        }
    }
    if read.is_empty() && !failed.is_empty() && failed.len() == places.len() && current.instances.is_empty() {
        return Err(failed.swap_remove(0).2);
    }
    for (account, region, e) in &failed {
        tracing::warn!(%account, %region, error = %e, "could not read a changed place again; keeping its last reading");
    }
    let mut all: Vec<InstanceView> = current
        .instances
        .iter()
        .filter(|i| !read.contains(&(i.account.clone(), i.region.clone())))
        .cloned()
        .collect();
    all.extend(fresh);
    annotate(state, &mut all).await;
    let mut per_account: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for i in &all {
        *per_account.entry(i.account.as_str()).or_default() += 1;
    }
    let accounts: Vec<AccountView> = current
        .accounts
        .iter()
        .map(|a| {
            let mut a = a.clone();
            if a.reachable {
                a.instances = per_account.get(a.account_id.as_str()).copied().unwrap_or(0);
            }
            a
        })
        .collect();
    record_posture(state, &all, &accounts).await;
    Ok(FleetSnapshot {
        instances: Arc::new(all),
        accounts: Arc::new(accounts),
        ..current.clone()
    })
}

/// Usage is a second opinion: when CloudWatch cannot answer, the fleet still shows (usage unknown).
async fn annotate(state: &AppState, all: &mut [InstanceView]) {
    if let Err(e) = crate::usage::annotate(state, all).await {
        tracing::warn!(error = %e, "IMDSv1 usage unavailable");
    }
}

/// Keeps today's posture per account for the dashboard's trend (the day's last reading wins), and
/// forgets days older than the trend keeps. A failure is logged: the fleet still shows.
async fn record_posture(state: &AppState, instances: &[InstanceView], accounts: &[AccountView]) {
    let day = state.store.clock.day(0);
    let mut per_account: std::collections::BTreeMap<&str, shared::api::PostureCounts> = accounts
        .iter()
        .filter(|a| a.reachable)
        .map(|a| (a.account_id.as_str(), shared::api::PostureCounts::default()))
        .collect();
    // An unreachable account's kept instances are an old reading, not today's posture; so are those
    // kept for a Region of a readable account that could not be read.
    let kept: std::collections::BTreeSet<(&str, &str)> = accounts
        .iter()
        .flat_map(|a| {
            a.regions_unreachable
                .iter()
                .map(move |r| (a.account_id.as_str(), r.region.as_str()))
        })
        .collect();
    for i in instances {
        if kept.contains(&(i.account.as_str(), i.region.as_str())) {
            continue;
        }
        if let Some(counts) = per_account.get_mut(i.account.as_str()) {
            counts.add(i);
        }
    }
    let recorded = async {
        for (account, counts) in &per_account {
            state.store.record_posture(&day, account, counts).await?;
        }
        state
            .store
            .prune_posture(&state.store.clock.day(crate::store::POSTURE_KEEP_DAYS))
            .await
    };
    if let Err(e) = recorded.await {
        tracing::warn!(error = %e, "could not record the day's posture");
    }
}
