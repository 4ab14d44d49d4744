//! The fleet's inventory: every instance of every managed account and region, with its IMDSv1 usage,
//! read at most once per `--fleet-refresh-secs` for all viewers and pages. Once there is a snapshot,
//! no page waits for EC2: the last reading is served at once (with its age, `as_of`, and whether a
//! newer one is being made, [`refreshing`]) while one background task reads what is stale or changed.
//! Refreshes are incremental:
//! - accounts are read side by side, a few at a time, each one call at a time (EC2 counts its
//!   request budget per account and region), so a slow account holds back only itself;
//! - after the console changed instances in one account and region, that place alone is read again,
//!   every change there within a second by one read (the changed instances by ID, when that is fewer
//!   calls than the whole place);
//! - every DescribeInstances takes a token of the account and region's bucket, shaped as EC2's own
//!   (`state.ec2_reads`), so a burst of runs ending never spends EC2's; a throttled place keeps its
//!   last reading and is read again after a growing pause;
//! - an account that cannot be read keeps its last reading, with that reading's age and AWS's reason;
//!   so does a Region of a readable account that cannot be (a service control policy, no opt-in).
//!
//! With several replicas (PostgreSQL) only the leader reads EC2: it writes each new snapshot to the
//! store, and the followers serve that, asking the leader through the store for a fresher one, or for
//! the places they just changed ([`follow`], [`serve_followers`]).

use futures_util::StreamExt;
use shared::api::{AccountView, InstanceView};
use std::collections::{BTreeMap, BTreeSet};
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

/// The shortest time between two refreshes of changed places: every run that ends within it, in
/// one place, is read again by one read of that place.
const COALESCE: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest a refresh waits after reads that EC2 throttled or that failed.
const MAX_BACK_OFF: std::time::Duration = std::time::Duration::from_secs(30);

/// What changed in one place since it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Instances unknown (a run by tag, a fix): the whole place is read again.
    Place,
    /// These instances: read by ID when that takes fewer calls than the whole place.
    Instances(BTreeSet<String>),
}

impl Changed {
    /// Both changes at once.
    pub fn merge(&mut self, other: Changed) {
        match (&mut *self, other) {
            (Changed::Place, _) => {}
            (_, Changed::Place) => *self = Changed::Place,
            (Changed::Instances(mine), Changed::Instances(theirs)) => mine.extend(theirs),
        }
    }
}

/// The inventory, and never a wait for AWS once there is one: the last reading is served (with its
/// age, `as_of`, and [`refreshing`]) while one background task reads what is stale or changed. Only
/// the very first reading, when there is nothing to serve, is waited for.
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

/// Whether a newer reading is being made or waited for (the pages say the one they show may be
/// about to change).
pub fn refreshing(state: &AppState) -> bool {
    state.fleet_reading.load(Ordering::SeqCst)
        || state.fleet_changes_pending()
        || state.fleet_full_wanted.load(Ordering::SeqCst)
}

/// The snapshot this replica reads from EC2 itself.
async fn own_snapshot(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let mut cache = state.fleet.lock().await;
    let Some(current) = cache.as_ref() else {
        state.take_fleet_changes();
        state.fleet_full_wanted.store(false, Ordering::SeqCst);
        let snap = read(state, None).await?;
        state.keep_fleet(&mut cache, snap.clone());
        return Ok(snap);
    };
    let current = current.clone();
    drop(cache);
    if current.read_at.elapsed() >= state.fleet_ttl || refreshing(state) {
        start_refresh(state);
    }
    Ok(current)
}

/// Starts the background refresh unless it runs already.
pub fn start_refresh(state: &AppState) {
    if state.fleet_refreshing.swap(true, Ordering::SeqCst) {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        refresh_until_current(&state).await;
        state.fleet_refreshing.store(false, Ordering::SeqCst);
        // A change noted after the last pass looked, but before the flag fell.
        if state.fleet_changes_pending() || state.fleet_full_wanted.load(Ordering::SeqCst) {
            start_refresh(&state);
        }
    });
}

/// Reads what is stale (everything, once the snapshot is older than `--fleet-refresh-secs`, or when
/// a run across accounts ended) or changed (those places, or instances, alone), pass after pass at
/// least [`COALESCE`] apart, until nothing is left; a pass EC2 throttled puts its places back and
/// waits longer before the next.
async fn refresh_until_current(state: &AppState) {
    let mut pause = COALESCE;
    loop {
        let generation = state.fleet_generation.load(Ordering::SeqCst);
        let Some(current) = state.fleet.lock().await.clone() else {
            return;
        };
        // Set before the changes are taken, so a page never sees neither.
        state.fleet_reading.store(true, Ordering::SeqCst);
        let full = current.read_at.elapsed() >= state.fleet_ttl
            || state.fleet_full_wanted.swap(false, Ordering::SeqCst);
        let changed = state.take_fleet_changes();
        if !full && changed.is_empty() {
            state.fleet_reading.store(false, Ordering::SeqCst);
            return;
        }
        let fresh = if full {
            match read(state, Some(&current)).await {
                Ok(fresh) => {
                    pause = COALESCE;
                    fresh
                }
                Err(e) => {
                    // Tried again after a growing pause, by this task: not at once, and not by
                    // every page that finds the snapshot stale.
                    tracing::warn!(error = %e, "fleet refresh failed; serving the last inventory");
                    for ((account, region), change) in changed {
                        state.note_fleet_change(&account, &region, change);
                    }
                    state.want_full_fleet_read();
                    state.fleet_reading.store(false, Ordering::SeqCst);
                    pause = (pause * 2).min(MAX_BACK_OFF);
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
        } else {
            let (fresh, left) = reread(state, &current, &changed).await;
            pause = if left.is_empty() {
                COALESCE
            } else {
                (pause * 2).min(MAX_BACK_OFF)
            };
            for ((account, region), change) in left {
                state.note_fleet_change(&account, &region, change);
            }
            fresh
        };
        let mut cache = state.fleet.lock().await;
        state.fleet_reading.store(false, Ordering::SeqCst);
        if state.fleet_generation.load(Ordering::SeqCst) != generation {
            // Forgotten meanwhile: the next page reads afresh.
            return;
        }
        state.keep_fleet(&mut cache, fresh.clone());
        drop(cache);
        if state.store.is_postgres() && state.leadership.is_leader() {
            share(state, &fresh).await;
        }
        tokio::time::sleep(pause).await;
    }
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
/// `--fleet-refresh-secs`, and for the places this replica just changed; never waiting for either
/// (only for the leader's very first reading, when there is nothing to serve).
async fn follow(state: &AppState) -> Result<FleetSnapshot, AppError> {
    let changed: Vec<String> = state
        .take_fleet_changes()
        .into_keys()
        .map(|(account, region)| format!("{account}/{region}"))
        .collect();
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
            return Ok(current);
        }
        state.store.want_fleet(&[String::new()]).await?;
        if Instant::now() >= deadline {
            return Err(AppError::refused(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "FleetNotReadYet",
                "the leading replica has not read the fleet yet; try again in a moment",
            ));
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
        let changed_here = state.fleet_changes_pending();
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
        let pace = state.ec2_reads(&account.id, region);
        match ec2::describe(&clients, Selection::All, &pace).await {
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
    let as_of = state.store.clock.now_rfc3339();
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

/// One changed place read again: the IDs asked for (None: the whole place), and what EC2 answered.
type PlaceReread = (Option<Vec<String>>, Vec<InstanceView>);

/// `current` with the `changed` places (account, '' for the console's own, and region) read again,
/// side by side within each place's EC2 budget: by instance ID when the changed instances are known
/// and fewer calls than the whole place, else the whole place. The snapshot keeps its age: the rest
/// of it is as old as before. Places that could not be read (throttled, denied since, their role
/// gone) keep their last reading and come back in the second value, to be read again later.
async fn reread(
    state: &AppState,
    current: &FleetSnapshot,
    changed: &BTreeMap<(String, String), Changed>,
) -> (FleetSnapshot, BTreeMap<(String, String), Changed>) {
    let hub = match crate::routes::identity::resolve(state).await {
        Ok(identity) => identity.account,
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell the console's own account; changed places read later");
            return (current.clone(), changed.clone());
        }
    };
    let mut places: BTreeMap<(String, String), Changed> = BTreeMap::new();
    for ((account, region), change) in changed {
        let account = if account.is_empty() {
            hub.clone()
        } else {
            account.clone()
        };
        places
            .entry((account, region.clone()))
            .or_insert(Changed::Instances(BTreeSet::new()))
            .merge(change.clone());
    }
    let mut in_place: std::collections::HashMap<(&str, &str), usize> = std::collections::HashMap::new();
    for i in current.instances.iter() {
        *in_place
            .entry((i.account.as_str(), i.region.as_str()))
            .or_default() += 1;
    }
    let reads: Vec<_> = places
        .iter()
        .map(|((account, region), change)| {
            let known = in_place
                .get(&(account.as_str(), region.as_str()))
                .copied()
                .unwrap_or(0);
            let by_id = match change {
                Changed::Instances(ids) if ec2::calls_for_ids(ids.len()) < ec2::calls_for_place(known) => {
                    Some(ids.iter().cloned().collect::<Vec<String>>())
                }
                _ => None,
            };
            Box::pin(async move {
                let clients = clients_for(state, account, region).await?;
                let pace = state.ec2_reads(account, region);
                let found = match &by_id {
                    Some(ids) => ec2::describe(&clients, Selection::IdsThatExist(ids), &pace).await?,
                    None => ec2::describe(&clients, Selection::All, &pace).await?,
                };
                Ok::<_, AppError>((by_id, found))
            })
        })
        .collect();
    let readings: Vec<Result<PlaceReread, AppError>> = futures_util::stream::iter(reads)
        .buffered(ACCOUNTS_AT_ONCE)
        .collect()
        .await;
    let mut whole: BTreeSet<(String, String)> = BTreeSet::new();
    let mut by_id: BTreeSet<String> = BTreeSet::new();
    let mut fresh = Vec::new();
    let mut left = BTreeMap::new();
    for (((account, region), change), reading) in places.into_iter().zip(readings) {
        match reading {
            Ok((Some(ids), found)) => {
                by_id.extend(ids);
                fresh.extend(found);
            }
            Ok((None, found)) => {
                whole.insert((account, region));
                fresh.extend(found);
            }
            Err(e) => {
                tracing::warn!(%account, %region, error = %e, "could not read a changed place again; keeping its last reading");
                left.insert((account, region), change);
            }
        }
    }
    // An instance asked for by ID and not found is gone from EC2 (terminated over an hour ago).
    let mut all: Vec<InstanceView> = current
        .instances
        .iter()
        .filter(|i| {
            !whole.contains(&(i.account.clone(), i.region.clone())) && !by_id.contains(&i.instance_id)
        })
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
    (
        FleetSnapshot {
            instances: Arc::new(all),
            accounts: Arc::new(accounts),
            ..current.clone()
        },
        left,
    )
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
