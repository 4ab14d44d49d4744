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
    pub limits: BTreeMap<String, RegionLimits>,
    pub store: Store,
    pub events: EventHub,
    pub identity: tokio::sync::OnceCell<shared::api::Identity>,
    pub fleet: tokio::sync::Mutex<Option<(Instant, Vec<InstanceView>)>>,
    /// Serialises on-demand detail fetches so concurrent viewers share one SSM call.
    pub detail_fetch: tokio::sync::Mutex<()>,
    pub poll: Duration,
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
    /// Bumped whenever a session, user or token may have lost access, so that open event streams
    /// check their caller again.
    pub access_epoch: tokio::sync::watch::Sender<u64>,
    /// The first admin's password, when this start created it (also in the data directory's
    /// `first-admin-password` file until changed).
    pub bootstrap_password: Option<String>,
    pub data_dir: std::path::PathBuf,
}

/// How long the fleet view is reused before EC2 is asked again.
pub const FLEET_TTL: Duration = Duration::from_secs(15);

impl StateInner {
    pub fn region(&self, requested: Option<&str>) -> Result<&RegionClients, AppError> {
        let name = requested.unwrap_or(&self.regions[0]);
        self.clients.get(name).ok_or_else(|| {
            AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
                field: "region".into(),
                message: format!(
                    "\"{name}\" is not managed by this console; use one of {}",
                    self.regions.join(", ")
                ),
            }]))
        })
    }

    pub fn limits(&self, region: &str) -> &RegionLimits {
        self.limits
            .get(region)
            .unwrap_or_else(|| self.limits.values().next().expect("at least one region"))
    }

    /// Tells open event streams to check their caller again (sign-out, disable, role or password
    /// change, token revoked).
    pub fn access_changed(&self) {
        self.access_epoch.send_modify(|n| *n += 1);
    }

    pub async fn invalidate_fleet(&self) {
        *self.fleet.lock().await = None;
    }
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

/// Spaces calls evenly so that no one-second window holds more than `per_second` of them. Callers over
/// the budget wait their turn instead of failing.
pub struct RateLimiter {
    spacing: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> RateLimiter {
        // A quarter of slack keeps the (n+1)th call outside any one-second window even when calls
        // reach AWS up to ~250 ms late (a busy host, a slow connection) after their slot.
        let spacing = Duration::from_millis((1250.0 / per_second.max(0.01)).ceil() as u64);
        RateLimiter {
            spacing,
            next: Mutex::new(Instant::now()),
        }
    }

    pub async fn acquire(&self) {
        let wait = {
            let mut next = self
                .next
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.spacing;
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes the next slot if it is free now; otherwise says how long until it is.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if *next > now {
            return Err(*next - now);
        }
        *next = now + self.spacing;
        Ok(())
    }

    /// Pushes the next slot back, after AWS said we were too fast.
    pub fn back_off(&self, by: Duration) {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next = (*next).max(Instant::now()) + by;
    }
}

/// An event with its sequence number (the SSE id).
pub type Numbered = (u64, ExecutionEvent);

/// Execution changes for Server-Sent Events, numbered so a client can resume with Last-Event-ID.
pub struct EventHub {
    tx: broadcast::Sender<Numbered>,
    recent: Mutex<VecDeque<Numbered>>,
    seq: AtomicU64,
}

const RECENT_EVENTS: usize = 2000;

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(1024).0,
            recent: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
        }
    }
}

impl EventHub {
    pub fn publish(&self, event: ExecutionEvent) {
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
