//! The sandbox: an emulator of the AWS APIs imds-console uses (SSM Automation, EC2, CloudWatch, STS),
//! speaking their real wire protocols so that the real aws-sdk clients, the AWS CLI and boto3 work
//! against it unchanged.
//!
//! It shares no code with the console's AWS adapters: it only reads and writes bytes on the wire, so a
//! bug in an adapter shows up as a failed test instead of being mirrored here.
//!
//! Code map: `wire` routes a request to its service and writes each protocol's error shape; `ssm`,
//! `ec2`, `cloudwatch` and `sts` are the services; `engine` runs automation documents step by step;
//! `documents` loads the published runbooks; `fleet` is the seeded demo fleet; `launch` is where
//! its instances come from (metadata defaults, launch templates, Auto Scaling groups and launch
//! configurations, AMIs), served by `launch_api`, `template_versions` and `images` (EC2) and
//! `autoscaling`; `ssm_rules` holds SSM's model checks and `alarms` CloudWatch's alarms; `faults` injects
//! throttling, 5xx, latency and denied actions, and counts every call.

mod alarms;
mod autoscaling;
mod cloudwatch;
mod documents;
mod ec2;
mod ec2_strict;
mod engine;
mod faults;
mod fleet;
mod iam;
mod images;
mod jsonpath;
mod launch;
mod launch_api;
mod launch_extra;
mod organizations;
mod ssm;
mod ssm_rules;
mod ssm_strict;
mod sts;
mod sts_strict;
mod template_data;
mod template_versions;
mod timefmt;
mod wire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use faults::{
    AutomationQuota, CallCount, Ec2RequestBudget, Ec2ThrottledStep, EmptyTargets, FaultRule, Faults,
    InactiveAccounts, TokenBucket, TokenReuse, STANDARD_ROLES,
};

/// The account the sandbox pretends to be.
pub const ACCOUNT_ID: &str = "123456789012";

/// The organisation's account IDs: the management account, then `200000000001`, `200000000002`, ...
pub fn account_ids(n: usize) -> Vec<String> {
    std::iter::once(ACCOUNT_ID.to_owned())
        .chain((1..n.max(1)).map(|k| format!("2{k:011}")))
        .collect()
}

/// The Regions a sandbox of `partition` plays unless told others: two of that partition's own
/// (one where it has only one), as a TargetLocation may name only Regions of the partition.
pub fn default_regions(partition: &str) -> Vec<String> {
    let regions: &[&str] = match partition {
        "aws-cn" => &["cn-north-1", "cn-northwest-1"],
        "aws-us-gov" => &["us-gov-west-1", "us-gov-east-1"],
        "aws-iso" => &["us-iso-east-1", "us-iso-west-1"],
        "aws-iso-b" => &["us-isob-east-1", "us-isob-west-1"],
        "aws-iso-e" => &["eu-isoe-west-1"],
        "aws-iso-f" => &["us-isof-east-1", "us-isof-south-1"],
        "aws-eusc" => &["eusc-de-east-1"],
        _ => &["us-east-1", "eu-west-1"],
    };
    regions.iter().map(|r| (*r).to_owned()).collect()
}

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// How many instances the demo fleet has, spread over `regions`.
    pub fleet_size: usize,
    /// Seed of the fleet: the same seed and size give the same fleet.
    pub seed: u64,
    /// Regions the fleet is spread over (at least one).
    pub regions: Vec<String>,
    /// Accounts of the organisation (at least one): the first is the management account (the hub
    /// the console runs in, [`ACCOUNT_ID`]); the fleet is spread over all of them.
    pub accounts: usize,
    /// Time factor: 1 is real time, 60 turns the runbook's 30-second sleeps into half a second.
    pub speed: f64,
    /// Where to keep state across restarts; None keeps it in memory only.
    pub state_file: Option<PathBuf>,
    pub faults: Faults,
    /// The AWS partition it plays (`aws`, `aws-us-gov`, `aws-cn`, ...): the ARNs STS gives out, and the
    /// only partition whose role ARNs AssumeRole and IAM accept, as in AWS.
    pub partition: String,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            fleet_size: 40,
            seed: 7,
            regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
            accounts: 1,
            speed: 30.0,
            state_file: None,
            faults: Faults::default(),
            partition: "aws".to_owned(),
        }
    }
}

/// A running sandbox. Cloning is cheap; every clone is the same sandbox.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    world: Mutex<engine::World>,
    config: SandboxConfig,
    faults: Mutex<Faults>,
    calls: Mutex<faults::CallLog>,
    /// EC2's request-rate buckets (see `Faults::ec2_request_budget`).
    ec2_buckets: Arc<Mutex<faults::Ec2Buckets>>,
    docs: documents::Documents,
}

impl Sandbox {
    /// Builds the sandbox (loading saved state if there is any) and starts its engine.
    pub fn start(config: SandboxConfig) -> std::io::Result<Sandbox> {
        let docs = documents::Documents::load();
        let world = match &config.state_file {
            Some(path) if path.exists() => engine::World::load(path)?,
            _ => {
                let mut fleet = fleet::generate(
                    config.fleet_size,
                    config.seed,
                    &config.regions,
                    &account_ids(config.accounts),
                );
                let launch = launch::seed(&mut fleet);
                let mut world = engine::World::new(fleet);
                world.launch = launch;
                world
            }
        };
        let sandbox = Sandbox {
            inner: Arc::new(Inner {
                world: Mutex::new(world),
                faults: Mutex::new(config.faults.clone()),
                config,
                calls: Mutex::new(faults::CallLog::default()),
                ec2_buckets: Arc::new(Mutex::new(faults::Ec2Buckets::default())),
                docs,
            }),
        };
        sandbox.set_faults(sandbox.inner.config.faults.clone());
        let ticker = sandbox.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(20));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut since_save = 0u32;
            loop {
                interval.tick().await;
                ticker.tick();
                since_save += 1;
                if since_save >= 25 {
                    since_save = 0;
                    ticker.save_if_dirty();
                }
            }
        });
        Ok(sandbox)
    }

    /// Binds `addr` and serves the sandbox there until the task is dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let router = wire::router(self.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "sandbox server stopped");
            }
        });
        Ok(local)
    }

    /// The axum router, for embedding.
    pub fn router(&self) -> axum::Router {
        wire::router(self.clone())
    }

    /// Replaces the fault-injection rules.
    pub fn set_faults(&self, faults: Faults) {
        {
            let mut world = self.world();
            world.broken_instances = faults.broken_instances.clone();
            world.quota = faults.automation_quota;
            world.caller_deny = faults.deny.clone();
            world.assume_role_deny = faults.assume_role_deny.clone();
            world.missing_roles = faults.missing_roles.clone();
            world.roles = faults.roles.clone();
            world.declarative_policy = faults.declarative_policy.clone();
            world.alarms_in_alarm = faults.alarms_in_alarm.clone();
            world.alarms = faults.alarms.clone();
            world.empty_targets = faults.empty_targets;
            world.fleet.ec2_gate = faults::Ec2Gate {
                buckets: self.inner.ec2_buckets.clone(),
                budget: faults.ec2_request_budget,
                on_throttle: faults.ec2_throttled_step,
            };
            world.org_accounts = account_ids(self.inner.config.accounts);
            world.partition = self.inner.config.partition.clone();
        }
        *lock(&self.inner.faults) = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    /// Every call received since `since_ms` (epoch milliseconds), by `service:Operation`.
    pub fn calls_since(&self, since_ms: u64) -> Vec<CallCount> {
        lock(&self.inner.calls).since(since_ms)
    }

    /// How many calls to `op` (`service:Operation`, or `service:*` for a whole service) arrived since
    /// `since_ms`.
    pub fn count_calls(&self, op: &str, since_ms: u64) -> usize {
        let prefix = op.strip_suffix('*');
        self.calls_since(since_ms)
            .iter()
            .filter(|c| prefix.map_or(c.operation == op, |p| c.operation.starts_with(p)))
            .map(|c| c.count)
            .sum()
    }

    /// The largest number of calls to `op` (`service:Operation`, `*` as a suffix wildcard) seen in any
    /// one-second window since `since_ms`.
    pub fn peak_per_second(&self, op_prefix: &str, since_ms: u64) -> usize {
        lock(&self.inner.calls).peak_per_second(op_prefix, since_ms)
    }

    /// IDs of the executions started by callers (not rate-control children), oldest first.
    pub fn execution_ids(&self) -> Vec<String> {
        self.world()
            .executions
            .iter()
            .filter(|e| e.parent_id.is_none())
            .map(|e| e.id.clone())
            .collect()
    }

    /// Writes the state file now (when there is one).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.inner.config.state_file else {
            return Ok(());
        };
        let mut world = self.world();
        world.dirty = false;
        world.save(path)
    }

    fn save_if_dirty(&self) {
        if self.world().dirty {
            if let Err(e) = self.save() {
                tracing::warn!(error = %e, "could not save sandbox state");
            }
        }
    }

    fn tick(&self) {
        let now = timefmt::now_ms();
        let mut world = self.world();
        engine::tick(&mut world, &self.inner.docs, self.inner.config.speed, now);
    }

    fn world(&self) -> MutexGuard<'_, engine::World> {
        lock(&self.inner.world)
    }

    fn speed(&self) -> f64 {
        self.inner.config.speed
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
