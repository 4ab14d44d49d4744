//! Shared server state: AWS clients per region, the store, rate limiters, the event hub and caches.

use shared::api::{ExecutionEvent, InstanceView};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

use crate::aws::RegionClients;
use crate::error::AppError;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub inner: Arc<StateInner>,
}

impl std::ops::Deref for AppState {
    type Target = StateInner;
    fn deref(&self) -> &StateInner {
        &self.inner
    }
}

pub struct StateInner {
    /// `sandbox` or `aws`.
    pub mode: &'static str,
    pub regions: Vec<String>,
    pub clients: BTreeMap<String, RegionClients>,
    /// SSM budgets per account ('' for the console's own) and region, as SSM counts its quotas.
    pub limits: Mutex<BTreeMap<(String, String), Arc<RegionLimits>>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who may read `/metrics`.
    pub metrics_access: crate::metrics::Access,
    /// When the watcher last finished a round.
    pub watcher_round: Mutex<Option<Instant>>,
    /// Calls per second each account and region's budgets allow.
    pub ssm_rates: SsmRates,
    pub store: Store,
    pub events: EventHub,
    pub identity: tokio::sync::OnceCell<shared::api::Identity>,
    /// Held only to look at or replace the snapshot, and for the very first reading (when there is
    /// nothing to serve yet); never across a refresh's AWS calls.
    pub fleet: tokio::sync::Mutex<Option<FleetSnapshot>>,
    /// Bumped when the snapshot is forgotten, so a refresh that began before is not stored.
    pub fleet_generation: AtomicU64,
    /// A background refresh of the snapshot is under way (it may be pausing between reads).
    pub fleet_refreshing: std::sync::atomic::AtomicBool,
    /// That refresh is reading AWS right now (the pages say `refreshing`).
    pub fleet_reading: std::sync::atomic::AtomicBool,
    /// Every place is to be read again (a run across accounts and Regions ended), not only the
    /// changed ones.
    pub fleet_full_wanted: std::sync::atomic::AtomicBool,
    /// The snapshot shared between replicas (see `inventory`).
    pub fleet_share: crate::inventory::FleetShare,
    /// Accounts ('' for the console's own) and regions where the console changed instances since the
    /// snapshot, with the instances changed when they are known: the refresh asks EC2 about those
    /// alone, all of a place's changes in one read.
    pub fleet_changed: Mutex<BTreeMap<(String, String), crate::inventory::Changed>>,
    /// DescribeInstances budgets per account ('' for the console's own) and region, within EC2's own
    /// bucket: the inventory's reads and the starts' target checks take from the same one.
    pub ec2_reads: Mutex<BTreeMap<(String, String), Arc<TokenBucket>>>,
    /// Their refill, calls per second (`--ec2-describe-rate`).
    pub ec2_describe_rate: f64,
    /// How long a snapshot is served before a background refresh.
    pub fleet_ttl: Duration,
    /// Where new instances come from, per account and region (see `sources`).
    pub sources: tokio::sync::Mutex<crate::sources::SourcesCache>,
    /// Rollout plans' driver state (see `plans`).
    pub plans: crate::plans::PlanDriver,
    /// How much faster than real time a plan's bake runs: the sandbox's speed, 1 on AWS.
    pub bake_speed: f64,
    /// Where the watcher goes on reading each rate-control run's children.
    pub child_pages: ChildPages,
    /// Serialises on-demand detail fetches so concurrent viewers share one SSM call.
    pub detail_fetch: tokio::sync::Mutex<()>,
    pub poll: Duration,
    /// When unsettled starts are sent again, or given up (see `runs::reconcile`).
    pub settling: crate::runs::Settling,
    /// How often runs started outside the console are looked for.
    pub discover_every: Duration,
    /// IMDSv1 usage per instance, and the look-back window it covers.
    pub usage: crate::usage::UsageCache,
    pub usage_window: Duration,
    pub static_dir: Option<std::path::PathBuf>,
    /// The embedded sandbox, when there is one (tests use it to inject faults and count calls).
    pub sandbox: Option<sandbox::Sandbox>,
    pub sandbox_url: Option<String>,
    pub auth: crate::auth::AuthConfig,
    pub login_throttle: crate::auth::LoginThrottle,
    /// Password checks running at once (argon2 is slow on purpose; the rest waits its turn).
    pub password_checks: tokio::sync::Semaphore,
    pub sso_sightings: crate::auth::SsoSightings,
    /// The accounts the console manages besides its own, and how it reaches them.
    pub org: crate::org::Org,
    /// The last permission check (`/doctor`), reused for a minute.
    pub doctor: tokio::sync::Mutex<Option<(Instant, shared::api::PermissionReport)>>,
    /// Bumped whenever a session, user or token may have lost access, so that open event streams
    /// check their caller again.
    pub access_epoch: tokio::sync::watch::Sender<u64>,
    /// The first admin's password, when this start created it (also in the data directory's
    /// `first-admin-password` file until changed).
    pub bootstrap_password: Option<String>,
    pub data_dir: std::path::PathBuf,
    /// Days a token lives when its maker gives no lifetime.
    pub token_days: u32,
    /// Where webhooks may be sent.
    pub webhook_destinations: Arc<crate::outbound::Destinations>,
    /// Whether this replica runs the background work (always, on SQLite).
    pub leadership: crate::leader::Leadership,
}

/// Where the watcher is in each rate-control run's children: the next page, and whether it is reading
/// them through one last time after the run finished.
#[derive(Default)]
pub struct ChildPages(Mutex<std::collections::HashMap<String, ChildCursor>>);

#[derive(Default)]
struct ChildCursor {
    next: Option<String>,
    final_sweep: bool,
}

impl ChildPages {
    fn with<T>(&self, f: impl FnOnce(&mut std::collections::HashMap<String, ChildCursor>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The token of the page to read now. When the run has just finished, reading starts over from the
    /// first page, for one last sweep.
    pub fn next_page(&self, parent: &str, finished: bool) -> Option<String> {
        self.with(|map| {
            let cursor = map.entry(parent.to_owned()).or_default();
            if finished && !cursor.final_sweep {
                cursor.final_sweep = true;
                cursor.next = None;
            }
            cursor.next.take()
        })
    }

    /// Notes the page read; returns true when that completed the last sweep of a finished run.
    pub fn page_read(&self, parent: &str, next: Option<String>) -> bool {
        self.with(|map| {
            let cursor = map.entry(parent.to_owned()).or_default();
            let done = next.is_none() && cursor.final_sweep;
            cursor.next = next;
            if done {
                map.remove(parent);
            }
            done
        })
    }
}

/// The inventory as last read, with IMDSv1 usage, shared by every viewer and page.
#[derive(Clone)]
pub struct FleetSnapshot {
    pub read_at: Instant,
    /// RFC 3339, for "as of" on the pages.
    pub as_of: String,
    pub instances: std::sync::Arc<Vec<InstanceView>>,
    /// Every managed account, and whether it could be read.
    pub accounts: std::sync::Arc<Vec<shared::api::AccountView>>,
    pub organization_error: Option<String>,
}

impl StateInner {
    pub fn region(&self, requested: Option<&str>) -> Result<&RegionClients, AppError> {
        let name = requested.unwrap_or(&self.regions[0]);
        self.clients.get(name).ok_or_else(|| {
            AppError::field(
                "region",
                format!(
                    "\"{name}\" is not managed by this console; use one of {}",
                    self.regions.join(", ")
                ),
            )
        })
    }

    /// The SSM budgets of one account ('' or the console's own ID for its own) and region, made at
    /// first use: SSM counts its request quotas per account and region, so a rollout in one member
    /// account neither waits for nor slows another's.
    pub fn limits(&self, account: &str, region: &str) -> Arc<RegionLimits> {
        let own = self.identity.get().is_some_and(|i| i.account == account);
        let account = if own { "" } else { account };
        let mut limits = self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        limits
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| {
                // Several replicas share the read and start budgets through the database.
                let shared = self
                    .store
                    .is_postgres()
                    .then(|| (self.store.clone(), format!("{account}/{region}")));
                Arc::new(RegionLimits::new(
                    &self.ssm_rates,
                    region,
                    &self.metrics,
                    shared.as_ref(),
                ))
            })
            .clone()
    }

    /// Tells open event streams to check their caller again (sign-out, disable, role or password
    /// change, token revoked).
    pub fn access_changed(&self) {
        self.access_epoch.send_modify(|n| *n += 1);
    }

    /// Makes `snap` the current inventory, and counts it for the metrics then, so that a scrape never
    /// waits for (or misses) the inventory while a read from AWS holds it.
    pub fn keep_fleet(&self, cache: &mut Option<FleetSnapshot>, snap: FleetSnapshot) {
        self.metrics.count_fleet(&snap.instances);
        *cache = Some(snap);
    }

    /// Forgets the snapshot: the next read is a first reading again, waited for (an operator's or a
    /// test's way to see EC2 as it is now, past every cache).
    pub async fn invalidate_fleet(&self) {
        let mut fleet = self.fleet.lock().await;
        self.fleet_generation.fetch_add(1, Ordering::SeqCst);
        *fleet = None;
    }

    /// Asks for every place to be read again (a run across accounts and Regions changed instances in
    /// places the console does not list one by one). The current snapshot is served meanwhile.
    pub fn want_full_fleet_read(&self) {
        self.fleet_full_wanted.store(true, Ordering::SeqCst);
    }

    /// Notes that the console changed instances in one account ('' for its own) and region: the next
    /// refresh asks EC2 about that place again, and about no other.
    pub fn fleet_changed_in(&self, account: &str, region: &str) {
        self.note_fleet_change(account, region, crate::inventory::Changed::Place);
    }

    /// Notes that the console changed these instances of one account ('' for its own) and region:
    /// the next refresh asks EC2 about them (by ID, when that is fewer calls than the whole place).
    pub fn fleet_instances_changed_in(
        &self,
        account: &str,
        region: &str,
        ids: impl IntoIterator<Item = String>,
    ) {
        let ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
        let change = if ids.is_empty() {
            crate::inventory::Changed::Place
        } else {
            crate::inventory::Changed::Instances(ids)
        };
        self.note_fleet_change(account, region, change);
    }

    /// Puts changes back for a later refresh (a read that failed or was throttled).
    pub fn note_fleet_change(&self, account: &str, region: &str, change: crate::inventory::Changed) {
        let mut changed = self
            .fleet_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = changed
            .entry((account.to_owned(), region.to_owned()))
            .or_insert(crate::inventory::Changed::Instances(Default::default()));
        entry.merge(change);
    }

    /// Whether changes wait for a refresh.
    pub fn fleet_changes_pending(&self) -> bool {
        !self
            .fleet_changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// The places changed since the last read, now being read again.
    pub fn take_fleet_changes(&self) -> BTreeMap<(String, String), crate::inventory::Changed> {
        std::mem::take(
            &mut *self
                .fleet_changed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The DescribeInstances budget of one account ('' or the console's own ID for its own) and
    /// region, made at first use: EC2 counts its buckets per account and region.
    pub fn ec2_reads(&self, account: &str, region: &str) -> Arc<TokenBucket> {
        let own = self.identity.get().is_some_and(|i| i.account == account);
        let account = if own { "" } else { account };
        self.ec2_reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((account.to_owned(), region.to_owned()))
            .or_insert_with(|| Arc::new(TokenBucket::new(self.ec2_describe_rate)))
            .clone()
    }
}

/// SSM calls per second in each account and region.
#[derive(Debug, Clone, Copy)]
pub struct SsmRates {
    pub read: f64,
    pub start: f64,
}

/// The SSM budgets of one account and region.
pub struct RegionLimits {
    /// The watcher, discovery and Stop.
    pub read: RateLimiter,
    pub start: RateLimiter,
    /// Lookups a viewer causes (the detail of a run this console has no record of). Separate, and
    /// never queued, so viewers can neither delay the watcher or Stop nor pile up calls.
    pub lookup: RateLimiter,
}

/// A budget of AWS calls per second that holds where AWS counts: at arrival. Calls take turns (one in
/// flight per budget), and the next may start only `1/per_second` after the previous one *finished*.
/// A call arrives at AWS between its start and its finish, so arrivals are at least that far apart,
/// however late a busy host or a slow network delivers them: no one-second window at AWS ever holds
/// more than `per_second` calls. Callers over the budget wait their turn instead of failing.
pub struct RateLimiter {
    gap: Duration,
    /// When the next call may start.
    next: Mutex<Instant>,
    /// Held for the length of a call.
    turn: tokio::sync::Mutex<()>,
    /// How long callers waited, when measured.
    waits: Option<prometheus_client::metrics::histogram::Histogram>,
    /// The same budget, shared with other replicas through the database (a call's start takes the
    /// next shared slot too, so replicas together keep to `per_second`): the store and the key.
    shared: Option<(Store, String)>,
}

/// The right to make one call; the budget's clock restarts when it is dropped (the call finished).
pub struct Slot<'a> {
    limiter: &'a RateLimiter,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut next = self
            .limiter
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next = (*next).max(Instant::now() + self.limiter.gap);
    }
}

/// Viewer-caused lookups per second, apart from the watcher's budget.
const LOOKUP_RATE: f64 = 1.0;

impl RegionLimits {
    fn new(
        rates: &SsmRates,
        region: &str,
        metrics: &crate::metrics::Metrics,
        shared: Option<&(Store, String)>,
    ) -> RegionLimits {
        let share = |budget: &str, limiter: RateLimiter| match shared {
            Some((store, key)) => limiter.shared(store.clone(), format!("{key}/{budget}")),
            None => limiter,
        };
        let waits = |budget: &str| {
            metrics
                .budget_wait
                .get_or_create(&crate::metrics::BudgetLabels {
                    budget: budget.to_owned(),
                    region: region.to_owned(),
                })
                .clone()
        };
        RegionLimits {
            read: share("read", RateLimiter::new(rates.read).timed(waits("read"))),
            start: share("start", RateLimiter::new(rates.start).timed(waits("start"))),
            lookup: share("lookup", RateLimiter::new(LOOKUP_RATE)),
        }
    }
}

impl RateLimiter {
    pub fn new(per_second: f64) -> RateLimiter {
        let gap = Duration::from_millis((1000.0 / per_second.max(0.01)).ceil() as u64);
        RateLimiter {
            gap,
            next: Mutex::new(Instant::now()),
            turn: tokio::sync::Mutex::new(()),
            waits: None,
            shared: None,
        }
    }

    /// Also keeps to the budget `key` that other replicas share through `store`.
    fn shared(mut self, store: Store, key: String) -> RateLimiter {
        self.shared = Some((store, key));
        self
    }

    /// Records in `waits` how long each caller waited for its turn (`/metrics`).
    fn timed(mut self, waits: prometheus_client::metrics::histogram::Histogram) -> RateLimiter {
        self.waits = Some(waits);
        self
    }

    fn next_start(&self) -> Instant {
        *self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for this budget's turn and slot. Keep the slot for the length of the call.
    pub async fn acquire(&self) -> Slot<'_> {
        let asked = Instant::now();
        let turn = self.turn.lock().await;
        loop {
            // `next` can move while we sleep (a back-off), so look again after waking.
            let at = self.next_start();
            if at <= Instant::now() {
                break;
            }
            tokio::time::sleep_until(at.into()).await;
        }
        if let Some((store, key)) = &self.shared {
            let gap_ms = self.gap.as_millis() as i64;
            match store.reserve_slot(key, gap_ms).await {
                Ok(wait) => tokio::time::sleep(wait).await,
                // The database is how replicas share the budget; without it, this replica's own
                // budget still holds.
                Err(e) => tracing::warn!(error = %e, budget = %key, "cannot reserve a shared SSM slot"),
            }
        }
        if let Some(waits) = &self.waits {
            waits.observe(asked.elapsed().as_secs_f64());
        }
        Slot {
            limiter: self,
            _turn: turn,
        }
    }

    /// Takes the slot if it is free now; otherwise says how long until it might be.
    pub fn try_acquire(&self) -> Result<Slot<'_>, Duration> {
        let Ok(turn) = self.turn.try_lock() else {
            return Err(self.gap);
        };
        let at = self.next_start();
        let now = Instant::now();
        if at > now {
            return Err(at - now);
        }
        Ok(Slot {
            limiter: self,
            _turn: turn,
        })
    }

    /// [`RateLimiter::try_acquire`], and the shared budget's slot too when replicas share it: a
    /// viewer's lookup never waits, on any replica.
    pub async fn try_acquire_now(&self) -> Result<Slot<'_>, Duration> {
        let slot = self.try_acquire()?;
        if let Some((store, key)) = &self.shared {
            match store.try_slot(key, self.gap.as_millis() as i64).await {
                Ok(Ok(())) => {}
                Ok(Err(wait)) => return Err(wait),
                Err(e) => tracing::warn!(error = %e, budget = %key, "cannot take a shared SSM slot"),
            }
        }
        Ok(slot)
    }

    /// Pushes the next slot back, after AWS said we were too fast.
    pub fn back_off(&self, by: Duration) {
        if let Some((store, key)) = self.shared.clone() {
            let by_ms = by.as_millis() as i64;
            tokio::spawn(async move {
                if let Err(e) = store.push_back_slot(&key, by_ms).await {
                    tracing::warn!(error = %e, budget = %key, "cannot push a shared SSM budget back");
                }
            });
        }
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next = (*next).max(Instant::now()) + by;
    }
}

/// A budget of AWS calls shaped like the token bucket AWS itself keeps (EC2's): up to `capacity`
/// calls at once, then `refill` a second. A caller takes a token before its call and waits for one
/// when there is none, so the console never sends what the service's bucket would refuse (as long
/// as the model is no larger than the service's). A throttle answer empties it for a while.
pub struct TokenBucket {
    capacity: f64,
    refill: f64,
    /// Tokens (negative: owed, after a throttle) and when they were counted.
    level: Mutex<(f64, Instant)>,
}

/// Seconds of refill the bucket holds.
const BUCKET_SECONDS: f64 = 5.0;

impl TokenBucket {
    /// A full bucket refilled at `per_second`, holding five seconds' worth (EC2's example: 100 tokens
    /// at 20 a second).
    pub fn new(per_second: f64) -> TokenBucket {
        let refill = per_second.max(0.01);
        let capacity = (refill * BUCKET_SECONDS).max(1.0);
        TokenBucket {
            capacity,
            refill,
            level: Mutex::new((capacity, Instant::now())),
        }
    }

    fn with_level<T>(&self, f: impl FnOnce(&mut f64) -> T) -> T {
        let mut level = self
            .level
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, at) = &mut *level;
        *tokens =
            (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.refill).min(self.capacity);
        *at = now;
        f(tokens)
    }

    /// Takes a token, waiting for the refill when there is none.
    pub async fn take(&self) {
        loop {
            let wait = self.with_level(|tokens| {
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    None
                } else {
                    Some(Duration::from_secs_f64((1.0 - *tokens) / self.refill))
                }
            });
            match wait {
                None => return,
                Some(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// After AWS said we were too fast (someone else spends the same bucket): no token for `by`.
    pub fn back_off(&self, by: Duration) {
        let owed = by.as_secs_f64() * self.refill;
        self.with_level(|tokens| *tokens = tokens.min(0.0) - owed);
    }
}

/// An event with its sequence number (the SSE id).
pub type Numbered = (u64, ExecutionEvent);

/// Execution changes for Server-Sent Events, numbered so a client can resume with Last-Event-ID.
pub struct EventHub {
    tx: broadcast::Sender<Numbered>,
    recent: Mutex<VecDeque<Numbered>>,
    seq: AtomicU64,
    /// The other replicas' way to hear of this one's events ([`crate::relay`]), when there are any.
    relay: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<ExecutionEvent>>,
}

const RECENT_EVENTS: usize = 2000;

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(1024).0,
            recent: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
            relay: std::sync::OnceLock::new(),
        }
    }
}

impl EventHub {
    /// Publishes an event to this replica's streams and to the other replicas'.
    pub fn publish(&self, event: ExecutionEvent) {
        if let Some(relay) = self.relay.get() {
            let _ = relay.send(event.clone());
        }
        self.publish_here(event);
    }

    /// Also sends every event published here to `relay`.
    pub fn relay_to(&self, relay: tokio::sync::mpsc::UnboundedSender<ExecutionEvent>) {
        let _ = self.relay.set(relay);
    }

    /// Publishes an event to this replica's streams only (one another replica relayed).
    pub fn publish_here(&self, event: ExecutionEvent) {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        if recent.len() >= RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back((id, event.clone()));
        let _ = self.tx.send((id, event));
    }

    /// The number of the last event published.
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Events after `last_id` that are still remembered, and a receiver for the ones to come.
    pub fn subscribe(&self, last_id: Option<u64>) -> (Vec<Numbered>, broadcast::Receiver<Numbered>) {
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = self.tx.subscribe();
        let replay = match last_id {
            Some(last) => recent.iter().filter(|(id, _)| *id > last).cloned().collect(),
            None => Vec::new(),
        };
        (replay, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::{RateLimiter, TokenBucket};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn the_next_call_starts_a_full_gap_after_the_previous_one_finished() {
        let limiter = RateLimiter::new(20.0); // a 50 ms gap
        let slot = limiter.acquire().await;
        assert!(limiter.try_acquire().is_err(), "one call at a time");
        tokio::time::sleep(Duration::from_millis(120)).await; // a slow call
        drop(slot);
        let finished = Instant::now();
        let _next = limiter.acquire().await;
        assert!(
            finished.elapsed() >= Duration::from_millis(50),
            "the gap counts from the end of the slow call, not from its start"
        );
    }

    #[tokio::test]
    async fn a_token_bucket_lets_a_burst_through_then_the_refill_and_waits_out_a_throttle() {
        let bucket = TokenBucket::new(20.0); // 100 tokens, 20 a second
        let started = Instant::now();
        for _ in 0..100 {
            bucket.take().await;
        }
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "the burst is not waited for"
        );
        bucket.take().await;
        assert!(
            started.elapsed() >= Duration::from_millis(45),
            "the 101st call waits for the refill"
        );
        bucket.back_off(Duration::from_millis(200));
        let throttled = Instant::now();
        bucket.take().await;
        assert!(
            throttled.elapsed() >= Duration::from_millis(200),
            "no token while backing off"
        );
    }
}
