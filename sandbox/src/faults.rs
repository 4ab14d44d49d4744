//! Fault injection (throttling, 5xx, latency, denied actions, instances whose changes never take) and
//! the call log that tests read to count requests.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Faults for the operations a rule matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// `service:Operation` (`ssm:GetAutomationExecution`), `service:*`, or `*`.
    pub operation: String,
    /// Share of calls answered with the service's throttling error (0.0 to 1.0).
    #[serde(default)]
    pub throttle: f64,
    /// Share of calls answered with a 500.
    #[serde(default)]
    pub error_500: f64,
    /// Share of calls carried out and then answered with a 500, as when AWS did the work but the reply
    /// was lost (a StartAutomationExecution then has started its execution).
    #[serde(default)]
    pub error_500_after: f64,
    /// Added latency per call, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of calls refused as AWS refuses a request signed with an expired session token (an SSO
    /// sign-in or assumed role that ran out): 400 `ExpiredTokenException`, nothing done.
    #[serde(default)]
    pub expired_token: f64,
}

impl FaultRule {
    fn matches(&self, op: &str) -> bool {
        self.operation == "*"
            || self.operation == op
            || self
                .operation
                .strip_suffix('*')
                .is_some_and(|prefix| op.starts_with(prefix))
    }

    /// Parses `OPERATION:key=value,key=value`, for example `ssm:GetAutomationExecution:throttle=0.3`.
    pub fn parse(raw: &str) -> Result<FaultRule, String> {
        let (op, settings) = raw
            .rsplit_once(':')
            .ok_or_else(|| format!("fault \"{raw}\": expected OPERATION:key=value,..."))?;
        let mut rule = FaultRule {
            operation: op.to_owned(),
            ..FaultRule::default()
        };
        for kv in settings.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("fault \"{raw}\": expected key=value in \"{kv}\""))?;
            let bad = || format!("fault \"{raw}\": bad value \"{v}\" for {k}");
            match k {
                "throttle" => rule.throttle = v.parse().map_err(|_| bad())?,
                "error_500" => rule.error_500 = v.parse().map_err(|_| bad())?,
                "latency_ms" => rule.latency_ms = v.parse().map_err(|_| bad())?,
                "error_500_after" => rule.error_500_after = v.parse().map_err(|_| bad())?,
                "expired_token" => rule.expired_token = v.parse().map_err(|_| bad())?,
                _ => {
                    return Err(format!(
                        "fault \"{raw}\": unknown key {k} (throttle, error_500, error_500_after, expired_token, latency_ms)"
                    ))
                }
            }
        }
        Ok(rule)
    }
}

/// Every fault the sandbox injects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// IAM actions refused with AccessDenied, such as `ssm:StartAutomationExecution`, to the caller:
    /// its own calls, and the steps of runs it starts without an AutomationAssumeRole.
    #[serde(default)]
    pub deny: BTreeSet<String>,
    /// IAM actions the AutomationAssumeRole lacks (any role a run names): steps that call them fail
    /// with AccessDenied, and with `iam:PassRole` here a rate-control run's children cannot start.
    #[serde(default)]
    pub assume_role_deny: BTreeSet<String>,
    /// Instances whose metadata changes never take: EC2 accepts the call but nothing changes, so the
    /// runbook's assert steps fail as they do in AWS when a change does not apply.
    #[serde(default)]
    pub broken_instances: BTreeSet<String>,
    /// What a StartAutomationExecution with an already used ClientToken gets. AWS documents only that
    /// a token "can't be reused", so each choice it could make is here, and the console must be right
    /// under every one.
    #[serde(default)]
    pub client_token_reuse: TokenReuse,
    /// How long a new execution takes to appear in DescribeAutomationExecutions (milliseconds). SSM's
    /// lists are eventually consistent and AWS gives no bound, so a console must not take "not listed
    /// yet" for "never started".
    #[serde(default)]
    pub list_lag_ms: u64,
    /// How many StepExecutions GetAutomationExecution answers before it sets StepExecutionsTruncated
    /// (the rest are read with DescribeAutomationStepExecutions). AWS does not document the number;
    /// None is 100.
    #[serde(default)]
    pub steps_in_get: Option<usize>,
    /// What a run, or one location of a run across accounts and Regions, whose targets resolve to
    /// no instance ends as. AWS does not document it; a console must be right under either.
    #[serde(default)]
    pub empty_targets: EmptyTargets,
    /// Accounts where no role can be assumed (the console's member role, or an execution role, is
    /// missing there): AssumeRole into them is AccessDenied. `111111111111/Name` takes only that
    /// role out of that account (an execution role missing in one member account).
    #[serde(default)]
    pub missing_roles: BTreeSet<String>,
    /// Regions an organisation's service control policy denies (`eu-west-1` everywhere, or
    /// `111111111111/eu-west-1` in one account): every call there is AccessDenied, as AWS answers an
    /// explicit deny; STS still answers.
    #[serde(default)]
    pub denied_regions: BTreeSet<String>,
    /// Regions whose STS endpoint the management account has not activated (or an opt-in Region it
    /// has not enabled): STS there answers `RegionDisabledException`; the other services answer.
    #[serde(default)]
    pub sts_disabled_regions: BTreeSet<String>,
    /// SSM's automation quotas, lowered by tests to reach them with a few runs.
    #[serde(default)]
    pub automation_quota: AutomationQuota,
    /// Accounts whose instance metadata defaults an AWS Organizations declarative policy manages:
    /// GetInstanceMetadataDefaults says `declarative-policy`, and ModifyInstanceMetadataDefaults is
    /// refused there (AWS does not document the refusal's code; this is the closest it documents).
    #[serde(default)]
    pub declarative_policy: BTreeSet<String>,
    /// CloudWatch alarms in the ALARM state (they exist in every account and Region): a run whose
    /// AlarmConfiguration names one is stopped.
    #[serde(default)]
    pub alarms_in_alarm: BTreeSet<String>,
    /// CloudWatch metric alarms that exist, in the OK state unless also in `alarms_in_alarm`: `name`
    /// in every account and Region, or `111111111111/eu-west-1/name` in one place. Any other alarm a
    /// run names does not exist, and SSM, unable to read it, stops the run (unless the run's
    /// `IgnorePollAlarmFailure` is true).
    #[serde(default)]
    pub alarms: BTreeSet<String>,
    /// IAM roles that exist beside the sandbox's standard ones ([`STANDARD_ROLES`]): a name (in every
    /// account) or `111111111111/Name` (in one). Any other role does not exist: AssumeRole into it is
    /// AccessDenied, IAM answers NoSuchEntity, and SSM cannot assume it.
    #[serde(default)]
    pub roles: BTreeSet<String>,
    /// The Region of the organisation's IAM Identity Center instance: outside us-east-1, the path of
    /// its roles (`AWSReservedSSO_…`) names it, as IAM's GetRole shows.
    #[serde(default)]
    pub identity_center_region: Option<String>,
    /// EC2's request-rate token buckets, one per account, Region and action, as EC2 throttles; on by
    /// default, as in AWS.
    #[serde(default)]
    pub ec2_request_budget: Ec2RequestBudget,
    /// What SSM does with the suspended and closed accounts under an organizational unit or root a
    /// TargetLocation names. AWS does not document it; a console must be right under either.
    #[serde(default)]
    pub inactive_accounts: InactiveAccounts,
    /// What Automation does when EC2 throttles one of its own calls (the runbook's calls draw from
    /// the account's EC2 buckets like any other caller's). AWS does not document it.
    #[serde(default)]
    pub ec2_throttled_step: Ec2ThrottledStep,
}

/// What a runbook step does when EC2 answers one of its calls with `RequestLimitExceeded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ec2ThrottledStep {
    /// The attempt fails: the step tries again as its `maxAttempts` allow, then fails.
    #[default]
    FailAttempt,
    /// Automation retries the call inside the step, without spending an attempt, until EC2 takes it.
    RetryInStep,
}

/// What SSM makes of an inactive (suspended, closed) account under a unit a TargetLocation names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InactiveAccounts {
    /// Left out: it gets no location of its own.
    #[default]
    Skip,
    /// Reached like any account: its location fails, as its role cannot be assumed.
    FailLocation,
}

/// A token bucket: `capacity` tokens at most, `refill_per_second` added back every second; a call
/// takes one, and a call that finds none is refused.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TokenBucket {
    pub capacity: f64,
    pub refill_per_second: f64,
}

/// EC2's request rate limits: each API action has its own bucket per account and Region (the EC2
/// developer guide's "Request throttling for the Amazon EC2 API"). A call over the budget gets
/// `RequestLimitExceeded` (HTTP 503) and does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ec2RequestBudget {
    /// Off: no call is ever refused for its rate (tests that measure something else).
    pub enabled: bool,
    /// `Describe*` and `Get*` actions: the guide's example, 100 tokens refilled at 20 a second.
    pub non_mutating: TokenBucket,
    /// Every other action (ModifyInstanceMetadataOptions, CreateLaunchTemplateVersion, ...): a
    /// smaller bucket, refilled at 5 a second.
    pub mutating: TokenBucket,
}

impl Default for Ec2RequestBudget {
    fn default() -> Self {
        Ec2RequestBudget {
            enabled: true,
            non_mutating: TokenBucket {
                capacity: 100.0,
                refill_per_second: 20.0,
            },
            mutating: TokenBucket {
                capacity: 50.0,
                refill_per_second: 5.0,
            },
        }
    }
}

impl Ec2RequestBudget {
    /// The bucket an EC2 action draws from.
    pub(crate) fn bucket_for(&self, action: &str) -> TokenBucket {
        if action.starts_with("Describe") || action.starts_with("Get") {
            self.non_mutating
        } else {
            self.mutating
        }
    }
}

/// The buckets' levels, per account, Region and action.
#[derive(Debug, Default)]
pub(crate) struct Ec2Buckets {
    levels: std::collections::HashMap<(String, String, String), (f64, std::time::Instant)>,
}

impl Ec2Buckets {
    /// Takes a token for one call of `action` in `account` and `region`; false when the bucket is
    /// empty (the call is throttled). Buckets start full.
    pub(crate) fn take(
        &mut self,
        budget: &Ec2RequestBudget,
        account: &str,
        region: &str,
        action: &str,
        now: std::time::Instant,
    ) -> bool {
        if !budget.enabled {
            return true;
        }
        let bucket = budget.bucket_for(action);
        let (tokens, at) = self
            .levels
            .entry((account.to_owned(), region.to_owned(), action.to_owned()))
            .or_insert((bucket.capacity, now));
        let refilled = *tokens + now.saturating_duration_since(*at).as_secs_f64() * bucket.refill_per_second;
        *tokens = refilled.min(bucket.capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// EC2's buckets as the runbook engine reaches them: the same buckets the wire draws from, so that
/// Automation's calls and the console's share each account and Region's budget, as in AWS.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ec2Gate {
    pub buckets: std::sync::Arc<std::sync::Mutex<Ec2Buckets>>,
    pub budget: Ec2RequestBudget,
    pub on_throttle: Ec2ThrottledStep,
}

impl Ec2Gate {
    /// Takes a token for one of the runbook's calls; false when EC2 would throttle it.
    pub(crate) fn take(&self, account: &str, region: &str, action: &str) -> bool {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(&self.budget, account, region, action, std::time::Instant::now())
    }
}

/// SSM's per-account, per-Region automation quotas: at most `running` executions run at once
/// (children of rate-control runs included); more wait as `Pending`, at most `queued` of them, and a
/// start beyond that is refused with `AutomationExecutionLimitExceededException`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutomationQuota {
    pub running: usize,
    pub queued: usize,
}

impl Default for AutomationQuota {
    /// AWS's published defaults.
    fn default() -> Self {
        AutomationQuota {
            running: 100,
            queued: 1_000,
        }
    }
}

/// The answers AWS's model allows to a reused ClientToken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum TokenReuse {
    /// The execution the token started (what the sandbox always did).
    #[default]
    SameExecution,
    /// An error: `IdempotentParameterMismatch`.
    Error,
    /// The same execution while the token is younger than `after_ms`; after that the token is
    /// forgotten and the start runs again.
    Expires { after_ms: u64 },
}

/// What SSM makes of a rate-control run whose targets match no instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmptyTargets {
    /// Failed, "The targets resolved to no instances." (what the sandbox has always done).
    #[default]
    Failed,
    /// Success, with nothing done.
    Success,
}

/// What a call should suffer.
pub(crate) enum Injected {
    None,
    Throttle,
    Error500,
    /// Carry the call out, then answer with a 500.
    Error500After,
    Denied,
    ExpiredToken,
}

impl Faults {
    /// Decides the fault for one call; `roll` is a uniform number in [0, 1).
    pub(crate) fn decide(&self, op: &str, roll: f64) -> (Injected, u64) {
        let latency = self
            .rules
            .iter()
            .filter(|r| r.matches(op))
            .map(|r| r.latency_ms)
            .max()
            .unwrap_or(0);
        if self.deny.contains(op) {
            return (Injected::Denied, latency);
        }
        let share = |pick: fn(&FaultRule) -> f64| {
            self.rules
                .iter()
                .filter(|r| r.matches(op))
                .map(pick)
                .fold(0.0, f64::max)
        };
        if roll < share(|r| r.expired_token) {
            return (Injected::ExpiredToken, latency);
        }
        let throttle: f64 = self
            .rules
            .iter()
            .filter(|r| r.matches(op))
            .map(|r| r.throttle)
            .fold(0.0, f64::max);
        let e500: f64 = self
            .rules
            .iter()
            .filter(|r| r.matches(op))
            .map(|r| r.error_500)
            .fold(0.0, f64::max);
        let e500_after: f64 = self
            .rules
            .iter()
            .filter(|r| r.matches(op))
            .map(|r| r.error_500_after)
            .fold(0.0, f64::max);
        if roll < throttle {
            (Injected::Throttle, latency)
        } else if roll < throttle + e500 {
            (Injected::Error500, latency)
        } else if roll < throttle + e500 + e500_after {
            (Injected::Error500After, latency)
        } else {
            (Injected::None, latency)
        }
    }
}

/// Calls to one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    pub operation: String,
    pub count: usize,
}

/// The recent calls, oldest first (bounded, so a long demo does not grow without end).
#[derive(Default)]
pub(crate) struct CallLog {
    entries: VecDeque<(u64, String)>,
}

const CALL_LOG_LIMIT: usize = 500_000;

impl CallLog {
    pub(crate) fn record(&mut self, at_ms: u64, op: String) {
        if self.entries.len() >= CALL_LOG_LIMIT {
            self.entries.pop_front();
        }
        self.entries.push_back((at_ms, op));
    }

    pub(crate) fn since(&self, since_ms: u64) -> Vec<CallCount> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (at, op) in &self.entries {
            if *at >= since_ms {
                *counts.entry(op).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(operation, count)| CallCount {
                operation: operation.to_owned(),
                count,
            })
            .collect()
    }

    pub(crate) fn peak_per_second(&self, op_prefix: &str, since_ms: u64) -> usize {
        let prefix = op_prefix.strip_suffix('*');
        let times: Vec<u64> = self
            .entries
            .iter()
            .filter(|(at, op)| *at >= since_ms && prefix.map_or(op == op_prefix, |p| op.starts_with(p)))
            .map(|(at, _)| *at)
            .collect();
        // Sliding one-second window over the sorted times.
        let mut peak = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= 1000 {
                start += 1;
            }
            peak = peak.max(end - start + 1);
        }
        peak
    }
}

/// The roles every account of the sandbox has (unless `Faults::missing_roles` names the account):
/// the console's member role under its default name, the sandbox console's own role, AWS's
/// multi-account Automation roles, and an AutomationAssumeRole for runs. IAM Identity Center's
/// `AWSReservedSSO_…` roles exist too.
pub const STANDARD_ROLES: [&str; 5] = [
    "ImdsConsoleMember",
    "ImdsConsoleSandbox",
    "AWS-SystemsManager-AutomationAdministrationRole",
    "AWS-SystemsManager-AutomationExecutionRole",
    "ImdsAutomation",
];

/// Whether the role `name` exists in `account`.
pub(crate) fn role_exists(
    roles: &BTreeSet<String>,
    missing: &BTreeSet<String>,
    account: &str,
    name: &str,
) -> bool {
    !missing.contains(account)
        && !missing.contains(&format!("{account}/{name}"))
        && (STANDARD_ROLES.contains(&name)
            || name.starts_with("AWSReservedSSO_")
            || roles.contains(name)
            || roles.contains(&format!("{account}/{name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_rules_parse_from_the_command_line_form() {
        let rule = FaultRule::parse("ssm:GetAutomationExecution:throttle=0.25,latency_ms=40").unwrap();
        assert_eq!(rule.operation, "ssm:GetAutomationExecution");
        assert_eq!(rule.throttle, 0.25);
        assert_eq!(rule.latency_ms, 40);
        assert!(FaultRule::parse("ssm:*:bogus=1").is_err());
        assert!(FaultRule::parse("nothing").is_err());
    }

    #[test]
    fn an_ec2_bucket_refuses_past_its_capacity_and_refills_at_its_rate() {
        let budget = Ec2RequestBudget::default();
        let mut buckets = Ec2Buckets::default();
        let t0 = std::time::Instant::now();
        let taken = (0..150)
            .filter(|_| buckets.take(&budget, "1", "us-east-1", "DescribeInstances", t0))
            .count();
        assert_eq!(taken, 100, "the non-mutating bucket holds 100");
        // Another action, account or Region has its own bucket.
        assert!(buckets.take(&budget, "1", "us-east-1", "DescribeImages", t0));
        assert!(buckets.take(&budget, "2", "us-east-1", "DescribeInstances", t0));
        assert!(buckets.take(&budget, "1", "eu-west-1", "DescribeInstances", t0));
        let later = t0 + std::time::Duration::from_millis(500);
        let refilled = (0..50)
            .filter(|_| buckets.take(&budget, "1", "us-east-1", "DescribeInstances", later))
            .count();
        assert_eq!(refilled, 10, "20 a second refill 10 tokens in half a second");
        let mutating = (0..100)
            .filter(|_| buckets.take(&budget, "1", "us-east-1", "ModifyInstanceMetadataOptions", t0))
            .count();
        assert_eq!(mutating, 50, "mutating actions have the smaller bucket");
        let off = Ec2RequestBudget {
            enabled: false,
            ..budget
        };
        assert!(buckets.take(&off, "1", "us-east-1", "DescribeInstances", later));
    }

    #[test]
    fn peak_per_second_uses_a_sliding_window() {
        let mut log = CallLog::default();
        for at in [0, 100, 900, 1000, 1100, 2500] {
            log.record(at, "ssm:GetAutomationExecution".into());
        }
        log.record(950, "ec2:DescribeInstances".into());
        assert_eq!(log.peak_per_second("ssm:*", 0), 3);
        assert_eq!(log.peak_per_second("ec2:DescribeInstances", 0), 1);
    }
}
