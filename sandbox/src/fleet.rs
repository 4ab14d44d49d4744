//! The demo fleet: deterministic, seeded instances across regions with a realistic mix of metadata
//! options, tags and IMDSv1 usage, and the EC2 semantics of changing metadata options.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The sandbox-time (seconds) EC2 takes to apply a metadata change on a running instance.
pub(crate) const APPLY_DELAY_SECS: f64 = 10.0;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Instance {
    pub id: String,
    /// The account that owns it (the organisation's management account unless the sandbox has more).
    #[serde(default = "hub_account")]
    pub account: String,
    pub region: String,
    pub instance_type: String,
    /// running or stopped.
    pub state: String,
    pub launch_ms: u64,
    pub private_ip: String,
    pub tags: Vec<(String, String)>,
    pub md: Metadata,
    /// IMDSv1 calls an hour made by software on the instance while it runs (0 for most).
    pub imdsv1_per_hour: f64,
    /// When IMDSv1 was turned off (true) or on (false), oldest first; the first entry holds since forever.
    pub v1_blocked_log: Vec<(u64, bool)>,
    /// The sandbox speed of the last change: time after a change made in the sandbox runs on sandbox
    /// time, so software refused at enforcement shows refusals within seconds of a fast sandbox's run
    /// (the seeded history before it stays in real time).
    #[serde(default = "real_time")]
    pub changed_at_speed: f64,
    /// When TerminateInstances ended it; such an instance stays visible (state terminated) for
    /// `TERMINATED_VISIBLE_SECS`, then is gone, and DescribeInstances by its ID fails as in EC2.
    #[serde(default)]
    pub terminated_ms: Option<u64>,
    /// The AMI it was launched from (set by `launch::seed` for the seeded fleet).
    #[serde(default)]
    pub image_id: Option<String>,
}

/// How long EC2 keeps showing a terminated instance (about an hour), in sandbox seconds.
pub(crate) const TERMINATED_VISIBLE_SECS: f64 = 3600.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Metadata {
    pub http_tokens: String,
    pub hop_limit: u8,
    pub http_endpoint: String,
    pub http_protocol_ipv6: String,
    pub instance_metadata_tags: String,
    /// The change is pending until then (u64::MAX: until the instance next starts).
    pub applied_at_ms: u64,
}

impl Metadata {
    pub(crate) fn state(&self, now_ms: u64) -> &'static str {
        if now_ms >= self.applied_at_ms {
            "applied"
        } else {
            "pending"
        }
    }

    fn v1_blocked(&self) -> bool {
        self.http_tokens == "required" || self.http_endpoint == "disabled"
    }
}

impl Instance {
    pub(crate) fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Applies ModifyInstanceMetadataOptions: omitted fields keep their values, and the result is
    /// pending until EC2 applies it (on a stopped instance, at its next start).
    pub(crate) fn modify_metadata(
        &mut self,
        tokens: Option<&str>,
        hop: Option<u8>,
        endpoint: Option<&str>,
        now_ms: u64,
        speed: f64,
        broken: bool,
    ) {
        if broken {
            // The call is accepted but the change never takes, which the runbook's asserts detect.
            self.md.applied_at_ms = now_ms + scaled_ms(APPLY_DELAY_SECS, speed);
            return;
        }
        let before = self.md.v1_blocked();
        if let Some(t) = tokens {
            self.md.http_tokens = t.to_owned();
        }
        if let Some(h) = hop {
            self.md.hop_limit = h;
        }
        if let Some(e) = endpoint {
            self.md.http_endpoint = e.to_owned();
        }
        self.md.applied_at_ms = if self.state == "running" {
            now_ms + scaled_ms(APPLY_DELAY_SECS, speed)
        } else {
            u64::MAX
        };
        let after = self.md.v1_blocked();
        if before != after {
            self.v1_blocked_log.push((now_ms, after));
            self.changed_at_speed = speed.max(0.001);
        }
    }

    /// IMDSv1 calls in [from, to) that succeeded (`rejected` false) or were refused (`rejected` true).
    pub(crate) fn imdsv1_calls(&self, from_ms: u64, to_ms: u64, rejected: bool) -> f64 {
        if self.state != "running" || self.imdsv1_per_hour == 0.0 || to_ms <= from_ms {
            return 0.0;
        }
        let mut total_ms = 0u64;
        for (i, (since, blocked)) in self.v1_blocked_log.iter().enumerate() {
            let until = self.v1_blocked_log.get(i + 1).map_or(u64::MAX, |n| n.0);
            let (a, b) = (from_ms.max(*since), to_ms.min(until));
            if b > a && *blocked == rejected {
                let scale = if i == 0 { 1.0 } else { self.changed_at_speed };
                total_ms += ((b - a) as f64 * scale) as u64;
            }
        }
        (self.imdsv1_per_hour * total_ms as f64 / 3_600_000.0).round()
    }
}

fn hub_account() -> String {
    crate::ACCOUNT_ID.to_owned()
}

fn real_time() -> f64 {
    1.0
}

pub(crate) fn scaled_ms(sandbox_secs: f64, speed: f64) -> u64 {
    (sandbox_secs * 1000.0 / speed.max(0.001)) as u64
}

/// All instances, by region, with an index by ID.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Fleet {
    pub instances: Vec<Instance>,
    #[serde(skip)]
    index: HashMap<String, usize>,
    pub regions: Vec<String>,
    /// EC2's request buckets, for the runbook's own EC2 calls (set with the faults).
    #[serde(skip)]
    pub ec2_gate: crate::faults::Ec2Gate,
}

impl Fleet {
    pub(crate) fn reindex(&mut self) {
        self.index = self
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (inst.id.clone(), i))
            .collect();
    }

    /// An instance as `at` sees it: another account's or region's does not exist there.
    pub(crate) fn get(&self, at: &Scope<'_>, id: &str) -> Option<&Instance> {
        self.index
            .get(id)
            .map(|i| &self.instances[*i])
            .filter(|inst| at.holds(inst))
    }

    pub(crate) fn get_mut(&mut self, at: &Scope<'_>, id: &str) -> Option<&mut Instance> {
        let i = *self.index.get(id)?;
        Some(&mut self.instances[i]).filter(|inst| at.holds(inst))
    }

    pub(crate) fn in_scope<'a>(&'a self, at: &'a Scope<'a>) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| at.holds(i))
    }

    /// Forgets instances terminated longer ago than EC2 keeps showing them.
    pub(crate) fn purge_terminated(&mut self, now_ms: u64, speed: f64) {
        let visible = scaled_ms(TERMINATED_VISIBLE_SECS, speed);
        let before = self.instances.len();
        self.instances.retain(|i| {
            i.terminated_ms
                .is_none_or(|t| now_ms.saturating_sub(t) <= visible)
        });
        if self.instances.len() != before {
            self.reindex();
        }
    }
}

/// splitmix64: a tiny, well-known generator, so a seed always gives the same fleet.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const TEAMS: &[&str] = &["payments", "web", "data", "platform", "ml"];
const ENVS: &[&str] = &["prod", "prod", "staging", "dev"];
const ROLES: &[&str] = &["api", "worker", "db", "web", "batch", "eks-node", "ecs-host"];
const TYPES: &[&str] = &["t3.micro", "t3.medium", "m6i.large", "c7g.xlarge", "r6i.2xlarge"];

/// Where a call acts: the caller's account (from its credentials) and the region (from the signature).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub account: &'a str,
    pub region: &'a str,
}

impl Scope<'_> {
    pub(crate) fn holds(&self, i: &Instance) -> bool {
        i.account == self.account && i.region == self.region
    }
}

/// Builds `size` instances over `regions` and `accounts`, the same for the same seed (and, with one
/// account, the same fleet as before accounts existed).
pub(crate) fn generate(size: usize, seed: u64, regions: &[String], accounts: &[String]) -> Fleet {
    let mut rng = Rng::new(seed);
    // The fleet was launched over the last 90 days; its IMDS history starts then.
    let now = crate::timefmt::now_ms();
    let mut instances = Vec::with_capacity(size);
    let mut seen = std::collections::HashSet::new();
    for n in 0..size {
        let region = regions[n % regions.len()].clone();
        let account = accounts[(n / regions.len()) % accounts.len()].clone();
        let id = loop {
            let id = format!("i-0{:016x}", rng.next_u64());
            if seen.insert(id.clone()) {
                break id;
            }
        };
        let team = rng.pick(TEAMS);
        let env = rng.pick(ENVS);
        let role = rng.pick(ROLES);
        let running = rng.unit() < 0.85;
        let required = rng.unit() < 0.4;
        let disabled = rng.unit() < 0.05;
        let hop = match rng.unit() {
            x if x < 0.5 => 1,
            x if x < 0.9 => 2,
            _ => 3,
        };
        // About a third of the instances that still allow IMDSv1 have software that uses it.
        let uses_v1 = !required && rng.unit() < 0.35;
        let rate = if uses_v1 {
            (1 + rng.next_u64() % 200) as f64
        } else {
            0.0
        };
        let launch_ms = now.saturating_sub(rng.next_u64() % (90 * 86_400_000));
        let md = Metadata {
            http_tokens: if required { "required" } else { "optional" }.to_owned(),
            hop_limit: hop,
            http_endpoint: if disabled { "disabled" } else { "enabled" }.to_owned(),
            http_protocol_ipv6: "disabled".to_owned(),
            instance_metadata_tags: "disabled".to_owned(),
            applied_at_ms: 0,
        };
        let blocked = md.v1_blocked();
        let mut tags: BTreeMap<String, String> = BTreeMap::new();
        tags.insert("Name".into(), format!("{team}-{role}-{n:04}"));
        tags.insert("Team".into(), team.into());
        tags.insert("Env".into(), env.into());
        instances.push(Instance {
            id,
            account,
            region,
            instance_type: rng.pick(TYPES).to_owned(),
            state: if running { "running" } else { "stopped" }.to_owned(),
            launch_ms,
            private_ip: format!("10.{}.{}.{}", n / 65536 % 256, n / 256 % 256, n % 256),
            tags: tags.into_iter().collect(),
            md,
            imdsv1_per_hour: rate,
            v1_blocked_log: vec![(0, blocked)],
            changed_at_speed: 1.0,
            terminated_ms: None,
            image_id: None,
        });
    }
    let mut fleet = Fleet {
        instances,
        index: HashMap::new(),
        regions: regions.to_vec(),
        ec2_gate: crate::faults::Ec2Gate::default(),
    };
    fleet.reindex();
    fleet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_fleet_with_a_realistic_mix() {
        let regions = vec!["us-east-1".to_owned(), "eu-west-1".to_owned()];
        let a = generate(500, 42, &regions, &[crate::ACCOUNT_ID.to_owned()]);
        let b = generate(500, 42, &regions, &[crate::ACCOUNT_ID.to_owned()]);
        let ids = |f: &Fleet| f.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        let count = |p: &dyn Fn(&Instance) -> bool| a.instances.iter().filter(|i| p(i)).count();
        assert!(count(&|i| i.region == "eu-west-1") == 250);
        assert!(count(&|i| i.state == "stopped") > 20);
        assert!(count(&|i| i.md.http_tokens == "required") > 100);
        assert!(count(&|i| i.md.http_endpoint == "disabled") > 5);
        assert!(count(&|i| i.imdsv1_per_hour > 0.0) > 50);
        assert!(a
            .instances
            .iter()
            .all(|i| i.id.len() == 19 && i.tag("Name").is_some()));
    }

    #[test]
    fn modifying_keeps_omitted_fields_and_is_pending_until_applied() {
        let mut fleet = generate(4, 1, &["us-east-1".to_owned()], &[crate::ACCOUNT_ID.to_owned()]);
        let inst = fleet.instances.iter_mut().find(|i| i.state == "running").unwrap();
        let hop = inst.md.hop_limit;
        inst.modify_metadata(Some("required"), None, None, 1_000, 10.0, false);
        assert_eq!(inst.md.http_tokens, "required");
        assert_eq!(inst.md.hop_limit, hop);
        assert_eq!(inst.md.state(1_500), "pending");
        assert_eq!(
            inst.md.state(1_000 + scaled_ms(APPLY_DELAY_SECS, 10.0)),
            "applied"
        );
    }
}
