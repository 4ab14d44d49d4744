//! The automation engine: starts executions with SSM's parameter validation and runs each document's
//! `mainSteps` the way SSM Automation does (branches, onFailure, isCritical, maxAttempts, isEnd,
//! outputs), plus rate control: a parent with one `aws:executeAutomation` step per target and child
//! executions, bounded by MaxConcurrency and MaxErrors.
//!
//! The engine is a state machine advanced by `tick` (every 20 ms), not a task per execution: its whole
//! state is data, so it can be saved and resumed after a restart.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use crate::documents::{Document, Documents, StepDef};
use crate::faults::{AutomationQuota, TokenReuse};
use crate::fleet::{scaled_ms, Fleet, Instance, Scope};
use crate::jsonpath;

/// Parameter values as SSM reports them, and the typed variables templates refer to.
type ParamMap = BTreeMap<String, Vec<String>>;
type VarMap = BTreeMap<String, Value>;

/// A child's status, start and end, as its parent mirrors them.
type ChildState = Option<(String, Option<u64>, Option<u64>)>;

pub(crate) const NO_OUTPUT: &str = "No output available yet because the step is not successfully executed";

/// Everything the sandbox remembers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct World {
    pub fleet: Fleet,
    /// Where instances come from: metadata defaults, launch templates, Auto Scaling groups, AMIs.
    #[serde(default)]
    pub launch: crate::launch::Launch,
    /// Accounts whose instance metadata defaults a declarative policy of the organisation manages
    /// (from the fault settings).
    #[serde(skip)]
    pub declarative_policy: BTreeSet<String>,
    pub executions: Vec<Execution>,
    #[serde(skip)]
    by_id: HashMap<String, usize>,
    /// ClientToken (lower case) -> (execution ID, fingerprint of the request).
    pub tokens: HashMap<String, (String, String)>,
    /// ClientToken (lower case) -> when it was first used, for tokens that expire.
    #[serde(default)]
    pub token_times: HashMap<String, u64>,
    #[serde(skip)]
    pub active: BTreeSet<String>,
    /// Set when something changed since the last save.
    #[serde(skip)]
    pub dirty: bool,
    /// Broken instances (from the fault settings), refreshed by the service layer on each request.
    #[serde(skip)]
    pub broken_instances: BTreeSet<String>,
    /// IAM actions refused to the caller (whose permissions a run without an AutomationAssumeRole
    /// uses) and to the AutomationAssumeRole (from the fault settings).
    #[serde(skip)]
    pub caller_deny: BTreeSet<String>,
    #[serde(skip)]
    pub assume_role_deny: BTreeSet<String>,
    /// The organisation's accounts (from the configuration) and those without roles (faults).
    #[serde(skip)]
    pub org_accounts: Vec<String>,
    /// The AWS partition the sandbox plays (from the configuration), for the ARNs runs are given.
    #[serde(skip)]
    pub partition: String,
    #[serde(skip)]
    pub missing_roles: BTreeSet<String>,
    /// Roles beside the standard ones (from the fault settings; see `Faults::roles`).
    #[serde(skip)]
    pub roles: BTreeSet<String>,
    /// SSM's automation quotas (from the fault settings).
    #[serde(skip)]
    pub quota: AutomationQuota,
    /// CloudWatch alarms in the ALARM state (from the fault settings): a run whose AlarmConfiguration
    /// names one is stopped by SSM.
    #[serde(skip)]
    pub alarms_in_alarm: BTreeSet<String>,
    /// CloudWatch alarms that exist (from the fault settings; see `Faults::alarms`).
    #[serde(skip)]
    pub alarms: BTreeSet<String>,
    /// What a run whose targets resolve to no instance ends as (from the fault settings).
    #[serde(skip)]
    pub empty_targets: crate::faults::EmptyTargets,
    pub rng: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Execution {
    pub id: String,
    /// The account it runs in (the caller's, or a TargetLocations child's).
    #[serde(default = "hub_account")]
    pub account: String,
    pub region: String,
    pub document_name: String,
    pub document_version: String,
    pub status: String,
    pub start_ms: u64,
    pub end_ms: Option<u64>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub steps: Vec<StepExec>,
    pub parent_id: Option<String>,
    pub executed_by: String,
    pub tags: Vec<(String, String)>,
    /// The instance a simple or child execution works on.
    pub target: Option<String>,
    pub critical_failed: bool,
    pub cancel_requested: bool,
    /// The step now running (an index into `steps`).
    pub cursor: Option<usize>,
    /// Typed values templates can refer to: parameters and `step.Output`s.
    pub vars: BTreeMap<String, Value>,
    pub rate_control: Option<RateControl>,
    /// The CloudWatch alarms of its AlarmConfiguration, and those that stopped it.
    #[serde(default)]
    pub alarms: Vec<String>,
    #[serde(default)]
    pub triggered_alarms: Vec<String>,
    /// The AlarmConfiguration's IgnorePollAlarmFailure: when false (the model's default), an alarm SSM
    /// cannot read (it does not exist) stops the run.
    #[serde(default)]
    pub ignore_alarm_failure: bool,
    /// StartAutomationExecution's TargetLocations as sent (empty for a run in one place).
    #[serde(default)]
    pub target_locations: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RateControl {
    pub target_parameter_name: String,
    pub targets: Vec<(String, Vec<String>)>,
    pub resolved: Vec<String>,
    pub max_concurrency: String,
    pub max_errors: String,
    /// The child execution of each target, once launched.
    pub children: Vec<Option<String>>,
    pub stopped_launching: bool,
    /// For a multi-account, multi-Region run: `resolved` holds its locations (`account/region`), and
    /// each child is a rate-control run of this shape in its location.
    #[serde(default)]
    pub location_child: Option<LocationChild>,
}

/// What a TargetLocations run starts in each account and Region.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LocationChild {
    pub parameters: BTreeMap<String, Vec<String>>,
    pub target_parameter_name: String,
    pub targets: Vec<(String, Vec<String>)>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub execution_role_name: String,
    /// Each place's TargetLocationAlarmConfiguration (by `account/region`): the alarm its run watches
    /// in that account and Region, and whether an unreadable one is ignored.
    #[serde(default)]
    pub alarms_by_place: BTreeMap<String, (Vec<String>, bool)>,
    /// Each place's own Targets (by `account/region`), from its TargetLocation's Targets, which
    /// take precedence over the run's.
    #[serde(default)]
    pub targets_by_place: BTreeMap<String, Vec<(String, Vec<String>)>>,
}

/// One entry of StartAutomationExecution's TargetLocations.
#[derive(Debug, Clone)]
pub(crate) struct TargetLocation {
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub execution_role_name: Option<String>,
    pub targets_max_concurrency: Option<String>,
    pub targets_max_errors: Option<String>,
    /// The location's own Targets (at most one), which take precedence over the run's.
    pub targets: Vec<(String, Vec<String>)>,
    /// TargetLocationAlarmConfiguration: the alarm each of its places' runs watches there.
    pub alarms: Vec<String>,
    pub ignore_alarm_failure: bool,
    /// The entry as the request sent it (units and roots unresolved): GetAutomationExecution answers
    /// it back as the execution's TargetLocations.
    pub requested: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StepExec {
    pub def_index: Option<usize>,
    pub name: String,
    pub action: String,
    pub status: String,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    pub inputs: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub failure_stage: Option<String>,
    pub failure_type: Option<String>,
    pub step_execution_id: String,
    pub on_failure: String,
    pub is_critical: bool,
    pub is_end: bool,
    pub next_step: Option<String>,
    pub max_attempts: u32,
    pub timeout_seconds: Option<u64>,
    /// A TargetLocations run's step for one account and Region: SSM's StepExecution.TargetLocation
    /// (that account and Region, with the location's settings).
    #[serde(default)]
    pub target_location: Option<Value>,
    pub attempt: u32,
    /// When the current phase ends (Pending -> InProgress, or InProgress -> done).
    pub due_ms: u64,
}

/// A refusal of StartAutomationExecution, with SSM's error code.
#[derive(Debug)]
pub(crate) struct StartError {
    pub code: &'static str,
    pub message: String,
}

fn invalid_params(message: String) -> StartError {
    StartError {
        code: "InvalidAutomationExecutionParametersException",
        message,
    }
}

/// What StartAutomationExecution asked for.
pub(crate) struct StartRequest {
    pub document_name: String,
    pub document_version: Option<String>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub client_token: Option<String>,
    /// How a reused ClientToken is answered (a fault setting: AWS does not document it).
    pub token_reuse: TokenReuse,
    pub target_parameter_name: Option<String>,
    pub targets: Vec<(String, Vec<String>)>,
    pub max_concurrency: Option<String>,
    pub max_errors: Option<String>,
    pub tags: Vec<(String, String)>,
    pub target_locations: Vec<TargetLocation>,
    /// AlarmConfiguration's alarm names, and its IgnorePollAlarmFailure.
    pub alarms: Vec<String>,
    pub ignore_alarm_failure: bool,
}

impl World {
    /// Whether a CloudWatch alarm of that name exists in the account and Region (see `Faults::alarms`).
    pub(crate) fn alarm_exists(&self, account: &str, region: &str, name: &str) -> bool {
        self.alarms_in_alarm.contains(name)
            || self.alarms.contains(name)
            || self.alarms.contains(&format!("{account}/{region}/{name}"))
    }

    pub(crate) fn new(fleet: Fleet) -> World {
        World {
            fleet,
            launch: crate::launch::Launch::default(),
            declarative_policy: BTreeSet::new(),
            executions: Vec::new(),
            by_id: HashMap::new(),
            tokens: HashMap::new(),
            token_times: HashMap::new(),
            active: BTreeSet::new(),
            dirty: true,
            broken_instances: BTreeSet::new(),
            empty_targets: crate::faults::EmptyTargets::default(),
            caller_deny: BTreeSet::new(),
            assume_role_deny: BTreeSet::new(),
            org_accounts: vec![crate::ACCOUNT_ID.to_owned()],
            partition: "aws".to_owned(),
            missing_roles: BTreeSet::new(),
            roles: BTreeSet::new(),
            quota: AutomationQuota::default(),
            alarms_in_alarm: BTreeSet::new(),
            alarms: BTreeSet::new(),
            rng: 0x5eed,
        }
    }

    pub(crate) fn load(path: &Path) -> std::io::Result<World> {
        let bytes = std::fs::read(path)?;
        let mut world: World = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?;
        world.fleet.reindex();
        world.by_id = world
            .executions
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        world.active = world
            .executions
            .iter()
            .filter(|e| !is_terminal(&e.status))
            .map(|e| e.id.clone())
            .collect();
        Ok(world)
    }

    pub(crate) fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, path)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Execution> {
        self.by_id.get(id).map(|i| &self.executions[*i])
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Execution> {
        let i = *self.by_id.get(id)?;
        Some(&mut self.executions[i])
    }

    /// A uniform number in [0, 1), from the world's own generator.
    pub(crate) fn roll(&mut self) -> f64 {
        let mut rng = crate::fleet::Rng::new(self.rng);
        let x = rng.unit();
        self.rng = rng.next_u64();
        x
    }

    /// Executions of `region` running now and waiting in SSM's queue.
    fn occupancy(&self, account: &str, region: &str) -> (usize, usize) {
        let mut running = 0;
        let mut queued = 0;
        for id in &self.active {
            let ex = &self.executions[self.by_id[id]];
            if ex.region != region || ex.account != account {
                continue;
            }
            if ex.status == "Pending" {
                queued += 1;
            } else {
                running += 1;
            }
        }
        (running, queued)
    }

    /// Moves queued executions of `region` to InProgress, oldest first, while the quota has room.
    fn admit_queued(&mut self, account: &str, region: &str, now: u64) {
        let (mut running, _) = self.occupancy(account, region);
        let mut waiting: Vec<usize> = self
            .active
            .iter()
            .map(|id| self.by_id[id])
            .filter(|&i| {
                let ex = &self.executions[i];
                ex.region == region && ex.account == account && ex.status == "Pending"
            })
            .collect();
        waiting.sort_by_key(|&i| (self.executions[i].start_ms, i));
        for i in waiting {
            if running >= self.quota.running {
                break;
            }
            let ex = &mut self.executions[i];
            ex.status = "InProgress".to_owned();
            for step in ex.steps.iter_mut().filter(|s| s.status == "Pending") {
                step.due_ms = step.due_ms.max(now);
            }
            running += 1;
            self.dirty = true;
        }
    }

    fn push(&mut self, ex: Execution) {
        self.by_id.insert(ex.id.clone(), self.executions.len());
        self.active.insert(ex.id.clone());
        self.executions.push(ex);
        self.dirty = true;
    }

    /// StartAutomationExecution: validates like SSM, then records a new execution and returns its ID.
    pub(crate) fn start(
        &mut self,
        docs: &Documents,
        at: &Scope<'_>,
        req: &StartRequest,
        now: u64,
    ) -> Result<String, StartError> {
        let doc = docs.get(&req.document_name).ok_or_else(|| StartError {
            code: "AutomationDefinitionNotFoundException",
            message: format!("Automation definition {}:$DEFAULT not found.", req.document_name),
        })?;
        self.start_document(doc, at, req, now)
    }

    fn start_document(
        &mut self,
        doc: &Document,
        at: &Scope<'_>,
        req: &StartRequest,
        now: u64,
    ) -> Result<String, StartError> {
        let region = at.region;
        if let Some(v) = req.document_version.as_deref() {
            if v != "$DEFAULT" && v != "$LATEST" && v != doc.version {
                return Err(StartError {
                    code: "AutomationDefinitionVersionNotFoundException",
                    message: format!("Automation definition {}:{v} not found.", doc.name),
                });
            }
        }
        let fingerprint = serde_json::to_string(&json!([
            doc.name,
            req.parameters,
            req.target_parameter_name,
            req.targets,
            req.max_concurrency,
            req.max_errors,
            req.target_locations
                .iter()
                .map(|l| &l.requested)
                .collect::<Vec<_>>(),
            req.tags,
            req.alarms,
            req.ignore_alarm_failure
        ]))
        .unwrap_or_default();
        if let Some(token) = &req.client_token {
            let key = token.to_ascii_lowercase();
            let used_at = self.token_times.get(&key).copied().unwrap_or(0);
            let expired = matches!(req.token_reuse, TokenReuse::Expires { after_ms } if now.saturating_sub(used_at) > after_ms);
            if expired {
                self.tokens.remove(&key);
                self.token_times.remove(&key);
            }
            if let Some((existing, fp)) = self.tokens.get(&key) {
                return match req.token_reuse {
                    TokenReuse::Error => Err(StartError {
                        code: "IdempotentParameterMismatch",
                        message: format!("ClientToken {token} has already been used."),
                    }),
                    _ if *fp == fingerprint => Ok(existing.clone()),
                    _ => Err(StartError {
                        code: "IdempotentParameterMismatch",
                        message: format!("ClientToken {token} was already used with different parameters."),
                    }),
                };
            }
        }
        let rate_controlled = req.target_parameter_name.is_some() || !req.targets.is_empty();
        let target_param = if rate_controlled {
            let name = req.target_parameter_name.clone().ok_or_else(|| {
                invalid_params("TargetParameterName must be specified when Targets are given.".to_owned())
            })?;
            if doc.param(&name).is_none() {
                return Err(invalid_params(format!(
                    "TargetParameterName \"{name}\" is not a parameter of the document."
                )));
            }
            if req.targets.len() != 1 {
                return Err(StartError {
                    code: "InvalidTarget",
                    message: "Exactly one Target must be specified.".to_owned(),
                });
            }
            Some(name)
        } else {
            None
        };
        // A role of another partition cannot be assumed: partitions share no IAM.
        let exists = |arn: &str| {
            arn.starts_with(&format!("arn:{}:iam::", self.partition))
                && crate::faults::role_exists(
                    &self.roles,
                    &self.missing_roles,
                    at.account,
                    arn.rsplit('/').next().unwrap_or_default(),
                )
        };
        let (parameters, vars) =
            resolve_parameters(doc, &req.parameters, target_param.as_deref(), at.account, &exists)?;
        let id = uuid::Uuid::new_v4().to_string();
        let executed_by = format!(
            "arn:{}:sts::{}:assumed-role/ImdsConsoleSandbox/console",
            self.partition,
            crate::ACCOUNT_ID
        );

        let mut ex = Execution {
            id: id.clone(),
            account: at.account.to_owned(),
            region: region.to_owned(),
            document_name: doc.name.clone(),
            document_version: doc.version.clone(),
            status: "InProgress".to_owned(),
            start_ms: now,
            end_ms: None,
            parameters,
            outputs: BTreeMap::new(),
            failure_message: None,
            steps: Vec::new(),
            parent_id: None,
            executed_by,
            tags: req.tags.clone(),
            target: None,
            critical_failed: false,
            cancel_requested: false,
            cursor: None,
            vars,
            rate_control: None,
            alarms: req.alarms.clone(),
            triggered_alarms: Vec::new(),
            ignore_alarm_failure: req.ignore_alarm_failure,
            target_locations: Vec::new(),
        };
        if !req.target_locations.is_empty() {
            let target_param = target_param.clone().ok_or_else(|| {
                invalid_params("TargetLocations need TargetParameterName and Targets.".to_owned())
            })?;
            let first = &req.target_locations[0];
            let mut places: Vec<String> = Vec::new();
            let mut alarms_by_place = BTreeMap::new();
            let mut targets_by_place = BTreeMap::new();
            for loc in &req.target_locations {
                for account in &loc.accounts {
                    for r in &loc.regions {
                        let place = format!("{account}/{r}");
                        if places.contains(&place) {
                            continue;
                        }
                        if !loc.alarms.is_empty() {
                            alarms_by_place
                                .insert(place.clone(), (loc.alarms.clone(), loc.ignore_alarm_failure));
                        }
                        if !loc.targets.is_empty() {
                            targets_by_place.insert(place.clone(), loc.targets.clone());
                        }
                        let mut step = new_step(None, &place, "aws:executeAutomation", now);
                        step.inputs
                            .insert("DocumentName".into(), json!(doc.name).to_string());
                        let mut location = json!({ "Accounts": [account], "Regions": [r] });
                        for (key, value) in [
                            ("TargetLocationMaxConcurrency", &loc.max_concurrency),
                            ("TargetLocationMaxErrors", &loc.max_errors),
                            ("ExecutionRoleName", &loc.execution_role_name),
                        ] {
                            if let Some(v) = value {
                                location[key] = json!(v);
                            }
                        }
                        if !loc.targets.is_empty() {
                            location["Targets"] = loc
                                .targets
                                .iter()
                                .map(|(k, v)| json!({ "Key": k, "Values": v }))
                                .collect();
                        }
                        step.target_location = Some(location);
                        ex.steps.push(step);
                        places.push(place);
                    }
                }
            }
            ex.target_locations = req.target_locations.iter().map(|l| l.requested.clone()).collect();
            ex.rate_control = Some(RateControl {
                target_parameter_name: target_param.clone(),
                targets: req.targets.clone(),
                children: vec![None; places.len()],
                resolved: places,
                max_concurrency: first.max_concurrency.clone().unwrap_or_else(|| "1".to_owned()),
                max_errors: first.max_errors.clone().unwrap_or_else(|| "0".to_owned()),
                stopped_launching: false,
                location_child: Some(LocationChild {
                    parameters: req.parameters.clone(),
                    target_parameter_name: target_param,
                    targets: req.targets.clone(),
                    max_concurrency: first
                        .targets_max_concurrency
                        .clone()
                        .or_else(|| req.max_concurrency.clone()),
                    max_errors: first
                        .targets_max_errors
                        .clone()
                        .or_else(|| req.max_errors.clone()),
                    execution_role_name: first
                        .execution_role_name
                        .clone()
                        .unwrap_or_else(|| "AWS-SystemsManager-AutomationExecutionRole".to_owned()),
                    alarms_by_place,
                    targets_by_place,
                }),
            });
        } else if let Some(target_param) = target_param {
            let (key, values) = req.targets[0].clone();
            let resolved = self.resolve_targets(at, &key, &values)?;
            let max_concurrency = req.max_concurrency.clone().unwrap_or_else(|| "10".to_owned());
            let max_errors = req.max_errors.clone().unwrap_or_else(|| "0".to_owned());
            // The parent shows one aws:executeAutomation step per target.
            for target in &resolved {
                let mut runtime = ex.parameters.clone();
                runtime.insert(target_param.clone(), vec![target.clone()]);
                let mut step = new_step(None, target, "aws:executeAutomation", now);
                step.inputs
                    .insert("DocumentName".into(), json!(doc.name).to_string());
                step.inputs
                    .insert("RuntimeParameters".into(), json!(runtime).to_string());
                ex.steps.push(step);
            }
            ex.rate_control = Some(RateControl {
                target_parameter_name: target_param,
                targets: req.targets.clone(),
                children: vec![None; resolved.len()],
                resolved,
                max_concurrency,
                max_errors,
                stopped_launching: false,
                location_child: None,
            });
        } else {
            ex.target = ex.parameters.get("InstanceId").and_then(|v| v.first()).cloned();
            ex.steps.push(step_from_def(doc, 0, now));
            ex.cursor = Some(0);
        }
        let (running, queued) = self.occupancy(at.account, region);
        if running >= self.quota.running {
            if queued >= self.quota.queued {
                return Err(StartError {
                    code: "AutomationExecutionLimitExceededException",
                    message: format!(
                        "The number of concurrently running and queued automation executions has reached the limit ({} running, {} queued).",
                        self.quota.running, self.quota.queued
                    ),
                });
            }
            // Over the concurrency quota: SSM queues the run and shows it as Pending.
            ex.status = "Pending".to_owned();
        }
        if let Some(token) = &req.client_token {
            self.tokens
                .insert(token.to_ascii_lowercase(), (id.clone(), fingerprint));
            self.token_times.insert(token.to_ascii_lowercase(), now);
        }
        self.push(ex);
        Ok(id)
    }

    fn resolve_targets(
        &self,
        at: &Scope<'_>,
        key: &str,
        values: &[String],
    ) -> Result<Vec<String>, StartError> {
        if key == "ParameterValues" {
            return Ok(values.to_vec());
        }
        if let Some(tag) = key.strip_prefix("tag:") {
            let mut ids: Vec<String> = self
                .fleet
                .in_scope(at)
                .filter(|i| i.tag(tag).is_some_and(|v| values.iter().any(|want| want == v)))
                .map(|i| i.id.clone())
                .collect();
            ids.sort();
            return Ok(ids);
        }
        if key == "InstanceIds" {
            return Ok(values.to_vec());
        }
        Err(StartError {
            code: "InvalidTarget",
            message: format!("Target key {key} is not supported here; use ParameterValues or tag:<key>."),
        })
    }

    /// StopAutomationExecution with Type=Cancel.
    pub(crate) fn stop(&mut self, id: &str) -> Result<(), StartError> {
        let ex = self.get_mut(id).ok_or_else(|| StartError {
            code: "AutomationExecutionNotFoundException",
            message: format!("Automation Execution {id} not found."),
        })?;
        if is_terminal(&ex.status) || ex.status == "Cancelling" {
            return Err(StartError {
                code: "InvalidAutomationStatusUpdateException",
                message: format!(
                    "Execution {id} is already in status {} and cannot be cancelled.",
                    ex.status
                ),
            });
        }
        ex.cancel_requested = true;
        ex.status = "Cancelling".to_owned();
        self.dirty = true;
        Ok(())
    }
}

pub(crate) fn is_terminal(status: &str) -> bool {
    matches!(
        status,
        "Success"
            | "Failed"
            | "TimedOut"
            | "Cancelled"
            | "Rejected"
            | "CompletedWithSuccess"
            | "CompletedWithFailure"
            | "Exited"
    )
}

fn type_error(name: &str, kind: &str, value: &str) -> Option<String> {
    let bad = match kind {
        "Integer" => value.parse::<i64>().is_err(),
        "Boolean" => value != "true" && value != "false",
        "AWS::EC2::Instance::Id" => {
            !(value.starts_with("i-")
                && (10..=19).contains(&value.len())
                && value[2..].chars().all(|c| c.is_ascii_alphanumeric()))
        }
        "AWS::IAM::Role::Arn" => {
            !(value.is_empty()
                || (value.starts_with("arn:aws") && value.contains(":iam::") && value.contains(":role/")))
        }
        _ => false,
    };
    bad.then(|| format!("Parameter \"{name}\" value \"{value}\" is not a valid {kind}."))
}

/// Checks the supplied parameters against the document and fills in defaults, as SSM does at start
/// in `account` (where a role parameter must be a role of that account: SSM cannot pass another's;
/// `role_exists` says whether a role ARN can be assumed).
fn resolve_parameters(
    doc: &Document,
    supplied: &BTreeMap<String, Vec<String>>,
    target_param: Option<&str>,
    account: &str,
    role_exists: &dyn Fn(&str) -> bool,
) -> Result<(ParamMap, VarMap), StartError> {
    for name in supplied.keys() {
        if doc.param(name).is_none() {
            return Err(invalid_params(format!(
                "Parameter \"{name}\" is not defined in the document {}.",
                doc.name
            )));
        }
    }
    let mut out = BTreeMap::new();
    let mut vars = BTreeMap::new();
    let mut missing = Vec::new();
    for p in &doc.parameters {
        let value = match supplied.get(&p.name) {
            Some(values) => {
                if values.len() != 1 && p.kind != "StringList" {
                    return Err(invalid_params(format!(
                        "Parameter \"{}\" takes exactly one value.",
                        p.name
                    )));
                }
                values.first().cloned().unwrap_or_default()
            }
            None if target_param == Some(p.name.as_str()) => continue,
            None => match &p.default {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => {
                    missing.push(p.name.clone());
                    continue;
                }
            },
        };
        if let Some(msg) = type_error(&p.name, &p.kind, &value) {
            return Err(invalid_params(msg));
        }
        if supplied.contains_key(&p.name) {
            if let Some(pattern) = &p.allowed_pattern {
                if !pattern.is_match(&value) {
                    return Err(invalid_params(format!(
                        "Parameter \"{}\" value \"{value}\" does not match the allowed pattern {}.",
                        p.name,
                        pattern.as_str()
                    )));
                }
            }
            if !p.allowed_values.is_empty() && !p.allowed_values.contains(&value) {
                return Err(invalid_params(format!(
                    "Parameter \"{}\" value \"{value}\" is not one of the allowed values [{}].",
                    p.name,
                    p.allowed_values.join(", ")
                )));
            }
        }
        if p.kind == "AWS::IAM::Role::Arn"
            && !value.is_empty()
            && (!value.contains(&format!(":iam::{account}:")) || !role_exists(&value))
        {
            return Err(invalid_params(
                "The defined assume role is unable to be assumed.".to_owned(),
            ));
        }
        let typed = if p.kind == "Integer" {
            json!(value.parse::<i64>().unwrap_or(0))
        } else {
            json!(value)
        };
        vars.insert(p.name.clone(), typed);
        out.insert(p.name.clone(), vec![value]);
    }
    if !missing.is_empty() {
        return Err(invalid_params(format!(
            "Required parameter(s) not provided: {}.",
            missing.join(", ")
        )));
    }
    Ok((out, vars))
}

fn new_step(def_index: Option<usize>, name: &str, action: &str, now: u64) -> StepExec {
    StepExec {
        def_index,
        name: name.to_owned(),
        action: action.to_owned(),
        status: "Pending".to_owned(),
        start_ms: None,
        end_ms: None,
        inputs: BTreeMap::new(),
        outputs: BTreeMap::new(),
        failure_message: None,
        failure_stage: None,
        failure_type: None,
        step_execution_id: uuid::Uuid::new_v4().to_string(),
        on_failure: "Abort".to_owned(),
        is_critical: true,
        is_end: false,
        next_step: None,
        max_attempts: 1,
        timeout_seconds: None,
        target_location: None,
        attempt: 0,
        due_ms: now,
    }
}

fn step_from_def(doc: &Document, index: usize, now: u64) -> StepExec {
    let def = &doc.steps[index];
    let mut step = new_step(Some(index), &def.name, &def.action, now);
    step.on_failure = def.on_failure.clone();
    step.is_critical = def.is_critical;
    step.is_end = def.is_end;
    step.next_step = def.next_step.clone();
    step.max_attempts = def.max_attempts;
    step.timeout_seconds = def.timeout_seconds;
    step
}

/// Advances every active execution to `now`.
pub(crate) fn tick(world: &mut World, docs: &Documents, speed: f64, now: u64) {
    let queued_places: BTreeSet<(String, String)> = world
        .active
        .iter()
        .map(|id| &world.executions[world.by_id[id]])
        .filter(|ex| ex.status == "Pending")
        .map(|ex| (ex.account.clone(), ex.region.clone()))
        .collect();
    for (account, region) in queued_places {
        world.admit_queued(&account, &region, now);
    }
    let ids: Vec<String> = world.active.iter().cloned().collect();
    for id in ids {
        let Some(&idx) = world.by_id.get(&id) else {
            continue;
        };
        // SSM polls the run's alarms: one in ALARM stops the run (its children with it).
        let firing: Vec<String> = world.executions[idx]
            .alarms
            .iter()
            .filter(|a| world.alarms_in_alarm.contains(*a))
            .cloned()
            .collect();
        // One it cannot read (none by that name in the run's account and Region) stops it too, unless
        // the run said to ignore poll failures.
        let unreadable: Vec<String> = {
            let ex = &world.executions[idx];
            ex.alarms
                .iter()
                .filter(|a| !ex.ignore_alarm_failure && !world.alarm_exists(&ex.account, &ex.region, a))
                .cloned()
                .collect()
        };
        let stopping = world.executions[idx].triggered_alarms.is_empty()
            && !world.executions[idx].cancel_requested
            && !is_terminal(&world.executions[idx].status);
        if stopping && !firing.is_empty() {
            let ex = &mut world.executions[idx];
            ex.failure_message = Some(format!(
                "The automation was stopped because the CloudWatch alarm {} is in the ALARM state.",
                firing.join(", ")
            ));
            ex.triggered_alarms = firing;
            ex.cancel_requested = true;
            world.dirty = true;
        } else if stopping && !unreadable.is_empty() {
            let ex = &mut world.executions[idx];
            ex.failure_message = Some(format!(
                "The automation was stopped because the CloudWatch alarm {} could not be read: \
                 no alarm by that name exists in account {}, Region {}.",
                unreadable.join(", "),
                ex.account,
                ex.region
            ));
            ex.cancel_requested = true;
            world.dirty = true;
        }
        if world.executions[idx].status == "Pending" {
            continue;
        }
        let Some(doc) = docs.get(&world.executions[idx].document_name) else {
            continue;
        };
        let changed = if world.executions[idx].rate_control.is_some() {
            advance_parent(world, idx, doc, now)
        } else {
            let World {
                executions,
                fleet,
                broken_instances,
                caller_deny,
                assume_role_deny,
                launch,
                partition,
                ..
            } = world;
            let ex = &mut executions[idx];
            let (principal, denied) = principal_of(partition, ex, caller_deny, assume_role_deny);
            let account = ex.account.clone();
            let env = StepEnv {
                account: &account,
                broken: broken_instances,
                denied,
                principal,
                launch,
            };
            advance_simple(ex, fleet, &env, doc, speed, now)
        };
        if changed {
            world.dirty = true;
        }
        if is_terminal(&world.executions[idx].status) {
            world.active.remove(&id);
        }
    }
}

/// Sandbox-time seconds a step takes: API calls and asserts take a moment, sleeps their Duration.
fn step_duration_secs(def: &StepDef, vars: &BTreeMap<String, Value>) -> f64 {
    match def.action.as_str() {
        "aws:branch" => 0.0,
        "aws:sleep" => {
            let d = resolve(&def.inputs["Duration"], vars);
            d.as_str().and_then(parse_iso_duration).unwrap_or(0.0)
        }
        "aws:executeScript" => 3.0,
        _ => 2.0,
    }
}

/// `PT30S`, `PT5M`, `PT1H30M` -> seconds.
fn parse_iso_duration(raw: &str) -> Option<f64> {
    let rest = raw.strip_prefix("PT")?;
    let mut total = 0.0;
    let mut num = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let n: f64 = num.parse().ok()?;
                total += n * match c {
                    'H' => 3600.0,
                    'M' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    Some(total)
}

/// Who a run's steps act as, and what that principal may not do: the AutomationAssumeRole when the
/// run has one, otherwise the caller who started it.
fn hub_account() -> String {
    crate::ACCOUNT_ID.to_owned()
}

fn principal_of<'a>(
    partition: &str,
    ex: &Execution,
    caller_deny: &'a BTreeSet<String>,
    assume_role_deny: &'a BTreeSet<String>,
) -> (String, &'a BTreeSet<String>) {
    match assume_role(ex) {
        Some(role) => {
            let name = role.rsplit('/').next().unwrap_or("role").to_owned();
            (
                format!(
                    "arn:{partition}:sts::{}:assumed-role/{name}/Automation-{}",
                    crate::ACCOUNT_ID,
                    ex.id
                ),
                assume_role_deny,
            )
        }
        None => (ex.executed_by.clone(), caller_deny),
    }
}

fn assume_role(ex: &Execution) -> Option<&str> {
    ex.parameters
        .get("AutomationAssumeRole")
        .and_then(|v| v.first())
        .map(String::as_str)
        .filter(|r| !r.is_empty())
}

/// What a step's AWS calls run under.
pub(crate) struct StepEnv<'a> {
    /// The account the run acts in.
    pub account: &'a str,
    /// Instances whose metadata changes never take.
    pub broken: &'a BTreeSet<String>,
    /// IAM actions the run's principal may not call.
    pub denied: &'a BTreeSet<String>,
    pub principal: String,
    /// The accounts' instance metadata defaults: where IMDSv2 is enforced at launch, EC2 refuses
    /// optional tokens.
    pub launch: &'a crate::launch::Launch,
}

fn advance_simple(
    ex: &mut Execution,
    fleet: &mut Fleet,
    env: &StepEnv<'_>,
    doc: &Document,
    speed: f64,
    now: u64,
) -> bool {
    let mut changed = false;
    loop {
        if ex.cancel_requested {
            if let Some(ci) = ex.cursor.take() {
                let step = &mut ex.steps[ci];
                step.status = "Cancelled".to_owned();
                step.end_ms = Some(now);
            }
            finish(ex, doc, "Cancelled", now);
            return true;
        }
        let Some(ci) = ex.cursor else {
            let status = if ex.critical_failed { "Failed" } else { "Success" };
            finish(ex, doc, status, now);
            return true;
        };
        if now < ex.steps[ci].due_ms {
            return changed;
        }
        changed = true;
        let def_index = ex.steps[ci].def_index.unwrap_or(0);
        let def = &doc.steps[def_index];
        if ex.steps[ci].status == "Pending" {
            let resolved = resolve(&def.inputs, &ex.vars);
            let step = &mut ex.steps[ci];
            step.status = "InProgress".to_owned();
            step.start_ms = Some(now);
            step.attempt = 1;
            if let Value::Object(map) = &resolved {
                step.inputs = map.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
            }
            step.due_ms = now + scaled_ms(step_duration_secs(def, &ex.vars), speed);
            continue;
        }
        // The step's time is up: run it.
        let outcome = run_step(def, &ex.vars, &ex.region, fleet, env, speed, now);
        let step = &mut ex.steps[ci];
        let next = match outcome {
            Ok(StepOk {
                outputs,
                typed,
                branch,
            }) => {
                step.status = "Success".to_owned();
                step.end_ms = Some(now);
                step.outputs = outputs;
                for (name, value) in typed {
                    ex.vars.insert(format!("{}.{name}", def.name), value);
                }
                if def.is_end {
                    None
                } else {
                    branch
                        .or_else(|| def.next_step.clone())
                        .or_else(|| doc.steps.get(def_index + 1).map(|s| s.name.clone()))
                }
            }
            Err(failure)
                if failure.message.contains(THROTTLED)
                    && fleet.ec2_gate.on_throttle == crate::faults::Ec2ThrottledStep::RetryInStep =>
            {
                // Automation retries a throttled call inside the step (one of the fault choices).
                step.due_ms = now + scaled_ms(1.0, speed);
                continue;
            }
            Err(failure) if step.attempt < def.max_attempts => {
                // Retried within the same step execution, as SSM does with maxAttempts.
                step.attempt += 1;
                step.due_ms = now + scaled_ms(step_duration_secs(def, &ex.vars), speed);
                tracing::debug!(step = %def.name, message = %failure.message, "retrying step");
                continue;
            }
            Err(failure) => {
                step.status = "Failed".to_owned();
                step.end_ms = Some(now);
                step.failure_message = Some(failure.message.clone());
                step.failure_stage = Some(failure.stage.to_owned());
                step.failure_type = Some(failure.kind.to_owned());
                if def.is_critical {
                    if !ex.critical_failed {
                        ex.failure_message = Some(format!(
                            "Step fails when it is {}. {} Please refer to Automation Service Troubleshooting Guide for more diagnosis details.",
                            failure.stage_phrase, failure.message
                        ));
                    }
                    ex.critical_failed = true;
                }
                match def.on_failure.as_str() {
                    "Continue" => def
                        .next_step
                        .clone()
                        .or_else(|| doc.steps.get(def_index + 1).map(|s| s.name.clone())),
                    other => match other.strip_prefix("step:") {
                        Some(target) => Some(target.to_owned()),
                        None => {
                            // Abort: the execution fails now.
                            ex.critical_failed = true;
                            if ex.failure_message.is_none() {
                                ex.failure_message = Some(failure.message.clone());
                            }
                            None
                        }
                    },
                }
            }
        };
        ex.cursor = None;
        if let Some(next_name) = next {
            if let Some(ni) = doc.step_index(&next_name) {
                let mut step = step_from_def(doc, ni, now);
                // A step is Pending for one engine beat before it starts.
                step.due_ms = now + 20;
                ex.steps.push(step);
                ex.cursor = Some(ex.steps.len() - 1);
            }
        }
    }
}

fn finish(ex: &mut Execution, doc: &Document, status: &str, now: u64) {
    ex.status = status.to_owned();
    ex.end_ms = Some(now);
    ex.outputs = doc
        .outputs
        .iter()
        .map(|out| {
            let value = match out.split_once('.') {
                Some((step, name)) => ex
                    .steps
                    .iter()
                    .rev()
                    .find(|s| s.name == step && s.status == "Success")
                    .and_then(|s| s.outputs.get(name).cloned()),
                None => None,
            };
            (out.clone(), value.unwrap_or_else(|| vec![NO_OUTPUT.to_owned()]))
        })
        .collect();
}

struct StepOk {
    outputs: BTreeMap<String, Vec<String>>,
    typed: Vec<(String, Value)>,
    branch: Option<String>,
}

struct StepFailure {
    message: String,
    stage: &'static str,
    stage_phrase: &'static str,
    kind: &'static str,
}

fn run_step(
    def: &StepDef,
    vars: &BTreeMap<String, Value>,
    region: &str,
    fleet: &mut Fleet,
    env: &StepEnv<'_>,
    speed: f64,
    now: u64,
) -> Result<StepOk, StepFailure> {
    let inputs = resolve(&def.inputs, vars);
    let mut ok = StepOk {
        outputs: BTreeMap::new(),
        typed: Vec::new(),
        branch: None,
    };
    match def.action.as_str() {
        "aws:branch" => {
            ok.branch = choose_branch(&inputs);
        }
        "aws:sleep" => {}
        "aws:executeAwsApi" => {
            let response = call_api(&inputs, region, fleet, env, speed, now)?;
            collect_outputs(def, &response, &mut ok);
        }
        "aws:executeScript" => {
            let payload = run_known_script(&inputs)?;
            let response = json!({ "Payload": payload });
            ok.outputs
                .insert("OutputPayload".into(), vec![response.to_string()]);
            collect_outputs(def, &response, &mut ok);
        }
        "aws:assertAwsResourceProperty" => {
            let response = call_api(&inputs, region, fleet, env, speed, now)?;
            let selector = inputs["PropertySelector"].as_str().unwrap_or("$");
            let actual = jsonpath::select(&response, selector).map(jsonpath::as_text);
            let desired: Vec<String> = inputs["DesiredValues"]
                .as_array()
                .map(|a| a.iter().map(jsonpath::as_text).collect())
                .unwrap_or_default();
            if !actual.as_ref().is_some_and(|a| desired.contains(a)) {
                return Err(StepFailure {
                    message: format!(
                        "Expected values [{}] but found {} for property {selector}.",
                        desired.join(", "),
                        actual.unwrap_or_else(|| "nothing".to_owned())
                    ),
                    stage: "Invocation",
                    stage_phrase: "verifying the property value",
                    kind: "Verification",
                });
            }
        }
        other => {
            return Err(StepFailure {
                message: format!("The sandbox does not run {other} steps."),
                stage: "Invocation",
                stage_phrase: "Invocation",
                kind: "Internal",
            })
        }
    }
    Ok(ok)
}

fn collect_outputs(def: &StepDef, response: &Value, ok: &mut StepOk) {
    for out in &def.outputs {
        let Some(v) = jsonpath::select(response, &out.selector) else {
            continue;
        };
        let typed = match out.kind.as_str() {
            "Integer" => json!(v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0)),
            "String" => json!(jsonpath::as_text(v)),
            _ => v.clone(),
        };
        ok.outputs
            .insert(out.name.clone(), vec![jsonpath::as_text(&typed)]);
        ok.typed.push((out.name.clone(), typed));
    }
}

fn choose_branch(inputs: &Value) -> Option<String> {
    for choice in inputs["Choices"].as_array().into_iter().flatten() {
        let var = &choice["Variable"];
        let matched = if let Some(s) = choice.get("StringEquals") {
            jsonpath::as_text(var) == jsonpath::as_text(s)
        } else if let Some(n) = choice.get("NumericEquals") {
            let lhs = var.as_f64().or_else(|| var.as_str().and_then(|s| s.parse().ok()));
            lhs.is_some_and(|l| Some(l) == n.as_f64())
        } else if let Some(b) = choice.get("BooleanEquals") {
            var.as_bool() == b.as_bool() || jsonpath::as_text(var) == jsonpath::as_text(b)
        } else {
            false
        };
        if matched {
            return choice["NextStep"].as_str().map(str::to_owned);
        }
    }
    inputs["Default"].as_str().map(str::to_owned)
}

/// executeScript without Python: the published runbooks' scripts are known and reproduced here.
fn run_known_script(inputs: &Value) -> Result<Value, StepFailure> {
    let script = inputs["Script"].as_str().unwrap_or_default();
    if script.contains("str(events[\"HttpPutResponseHopLimit\"])") {
        let v = &inputs["InputPayload"]["HttpPutResponseHopLimit"];
        return Ok(json!({ "HttpPutResponseHopLimitString": jsonpath::as_text(v) }));
    }
    Err(StepFailure {
        message: "The sandbox cannot run this script.".to_owned(),
        stage: "Invocation",
        stage_phrase: "Invocation",
        kind: "Internal",
    })
}

/// EC2's throttling code as a runbook step's failure message carries it.
const THROTTLED: &str = "(RequestLimitExceeded)";

fn api_error(code: &str, api: &str, message: &str) -> StepFailure {
    StepFailure {
        message: format!("An error occurred ({code}) when calling the {api} operation: {message}"),
        stage: "Invocation",
        stage_phrase: "Invocation",
        kind: "Action",
    }
}

/// The ec2 APIs the runbooks call, answered in the SDK's JSON shape (what selectors address).
fn call_api(
    inputs: &Value,
    region: &str,
    fleet: &mut Fleet,
    env: &StepEnv<'_>,
    speed: f64,
    now: u64,
) -> Result<Value, StepFailure> {
    let api = inputs["Api"].as_str().unwrap_or_default();
    let service = inputs["Service"].as_str().unwrap_or_default();
    let at = Scope {
        account: env.account,
        region,
    };
    let action = format!("{service}:{api}");
    if env.denied.contains(&action) {
        let code = if service == "ec2" {
            "UnauthorizedOperation"
        } else {
            "AccessDeniedException"
        };
        return Err(api_error(
            code,
            api,
            &format!(
                "You are not authorized to perform this operation. User: {} is not authorized to perform: {action} because no identity-based policy allows the {action} action",
                env.principal
            ),
        ));
    }
    // Automation's calls draw from the account's EC2 buckets like the console's do.
    if service == "ec2" && !fleet.ec2_gate.take(env.account, region, api) {
        return Err(api_error("RequestLimitExceeded", api, "Request limit exceeded."));
    }
    match (inputs["Service"].as_str().unwrap_or_default(), api) {
        ("ec2", "ModifyInstanceMetadataOptions") => {
            let id = jsonpath::as_text(&inputs["InstanceId"]);
            let text = |k: &str| inputs.get(k).map(jsonpath::as_text);
            let hop =
                match text("HttpPutResponseHopLimit") {
                    Some(h) => Some(h.parse::<u8>().ok().filter(|h| (1..=64).contains(h)).ok_or_else(
                        || api_error("InvalidParameterValue", api, &format!("Invalid hop limit: {h}")),
                    )?),
                    None => None,
                };
            if text("HttpTokens").as_deref() == Some("optional")
                && env.launch.tokens_enforced(env.account, region)
            {
                let (code, message) = crate::launch::optional_refused(&id);
                return Err(api_error(code, api, &message));
            }
            let inst = fleet.get_mut(&at, &id).ok_or_else(|| {
                api_error(
                    "InvalidInstanceID.NotFound",
                    api,
                    &format!("The instance ID '{id}' does not exist"),
                )
            })?;
            inst.modify_metadata(
                text("HttpTokens").as_deref(),
                hop,
                text("HttpEndpoint").as_deref(),
                now,
                speed,
                env.broken.contains(&id),
            );
            Ok(json!({ "InstanceId": id, "InstanceMetadataOptions": metadata_json(inst, now) }))
        }
        ("ec2", "DescribeInstances") => {
            let ids: Vec<String> = inputs["InstanceIds"]
                .as_array()
                .map(|a| a.iter().map(jsonpath::as_text).collect())
                .unwrap_or_default();
            let mut instances = Vec::new();
            for id in &ids {
                let inst = fleet.get(&at, id).ok_or_else(|| {
                    api_error(
                        "InvalidInstanceID.NotFound",
                        api,
                        &format!("The instance ID '{id}' does not exist"),
                    )
                })?;
                instances.push(instance_json(inst, now));
            }
            Ok(json!({ "Reservations": [{ "Instances": instances }] }))
        }
        (service, api) => Err(StepFailure {
            message: format!("The sandbox does not emulate {service}:{api}."),
            stage: "Invocation",
            stage_phrase: "Invocation",
            kind: "Internal",
        }),
    }
}

fn metadata_json(inst: &Instance, now: u64) -> Value {
    json!({
        "State": inst.md.state(now),
        "HttpTokens": inst.md.http_tokens,
        "HttpPutResponseHopLimit": inst.md.hop_limit,
        "HttpEndpoint": inst.md.http_endpoint,
        "HttpProtocolIpv6": inst.md.http_protocol_ipv6,
        "InstanceMetadataTags": inst.md.instance_metadata_tags,
    })
}

fn instance_json(inst: &Instance, now: u64) -> Value {
    json!({
        "InstanceId": inst.id,
        "InstanceType": inst.instance_type,
        "State": { "Name": inst.state },
        "Tags": inst.tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
        "MetadataOptions": metadata_json(inst, now),
    })
}

/// Replaces `{{ Name }}` templates. A value that is exactly one template keeps the variable's type.
fn resolve(value: &Value, vars: &BTreeMap<String, Value>) -> Value {
    match value {
        Value::String(s) => {
            let trimmed = s.trim();
            if let Some(inner) = trimmed.strip_prefix("{{").and_then(|r| r.strip_suffix("}}")) {
                if !inner.contains("{{") {
                    return vars.get(inner.trim()).cloned().unwrap_or_else(|| value.clone());
                }
            }
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{") {
                out.push_str(&rest[..start]);
                let Some(end) = rest[start..].find("}}") else {
                    break;
                };
                let name = rest[start + 2..start + end].trim();
                match vars.get(name) {
                    Some(v) => out.push_str(&jsonpath::as_text(v)),
                    None => out.push_str(&rest[start..start + end + 2]),
                }
                rest = &rest[start + end + 2..];
            }
            out.push_str(rest);
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolve(v, vars)).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), resolve(v, vars))).collect()),
        other => other.clone(),
    }
}

fn count_or_percent(raw: &str, total: usize, at_least_one: bool) -> usize {
    let n = match raw.strip_suffix('%') {
        Some(p) => total * p.parse::<usize>().unwrap_or(0) / 100,
        None => raw.parse().unwrap_or(0),
    };
    if at_least_one {
        n.max(1)
    } else {
        n
    }
}

/// Advances a rate-control parent: mirrors its children into its steps, launches new children within
/// MaxConcurrency, and stops launching once more than MaxErrors children have failed.
/// Starts a TargetLocations run's child in its account and Region: a rate-control run of the same
/// document there, through the location's execution role. A role missing in the account, an account
/// outside the organisation or a Region not enabled fails that location, as in AWS.
fn launch_location(world: &mut World, idx: usize, i: usize, place: &str, doc: &Document, now: u64) {
    let parent = &world.executions[idx];
    let Some(lc) = parent
        .rate_control
        .as_ref()
        .and_then(|rc| rc.location_child.clone())
    else {
        return;
    };
    let (account, region) = place.split_once('/').unwrap_or((place, ""));
    let partition = world.partition.clone();
    let role_arn = format!("arn:{partition}:iam::{account}:role/{}", lc.execution_role_name);
    let refused = if !world.org_accounts.iter().any(|a| a == account)
        || !crate::faults::role_exists(
            &world.roles,
            &world.missing_roles,
            account,
            &lc.execution_role_name,
        ) {
        Some(format!(
            "AccessDenied: User: arn:{partition}:sts::{}:assumed-role/AWS-SystemsManager-AutomationAdministrationRole/{} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
            parent.account, parent.id
        ))
    } else if !world.fleet.regions.iter().any(|r| r == region) {
        Some(format!("Region {region} is not enabled for account {account}."))
    } else {
        None
    };
    let started = match refused {
        Some(message) => Err(message),
        None => {
            let req = StartRequest {
                document_name: parent.document_name.clone(),
                document_version: None,
                // The location's run acts as its execution role: a role parameter the parent ran
                // with (the hub's administration role) is that role in the location's account.
                parameters: lc
                    .parameters
                    .iter()
                    .map(|(k, v)| match k.as_str() {
                        "AutomationAssumeRole" => (k.clone(), vec![role_arn.clone()]),
                        _ => (k.clone(), v.clone()),
                    })
                    .collect(),
                client_token: None,
                token_reuse: TokenReuse::default(),
                target_parameter_name: Some(lc.target_parameter_name.clone()),
                targets: lc.targets_by_place.get(place).unwrap_or(&lc.targets).clone(),
                max_concurrency: lc.max_concurrency.clone(),
                max_errors: lc.max_errors.clone(),
                tags: parent.tags.clone(),
                target_locations: Vec::new(),
                // The location's run watches its TargetLocationAlarmConfiguration's alarm, in its own
                // account and Region (and stops with its parent, which holds the AlarmConfiguration).
                alarms: lc
                    .alarms_by_place
                    .get(place)
                    .map(|a| a.0.clone())
                    .unwrap_or_default(),
                ignore_alarm_failure: lc.alarms_by_place.get(place).is_some_and(|a| a.1),
            };
            let parent_id = parent.id.clone();
            world
                .start_document(doc, &Scope { account, region }, &req, now)
                .inspect(|child| {
                    if let Some(c) = world.get_mut(child) {
                        c.parent_id = Some(parent_id);
                        c.executed_by = format!(
                            "arn:{partition}:sts::{account}:assumed-role/{}/Automation",
                            lc.execution_role_name
                        );
                    }
                })
                .map_err(|e| format!("{}: {}", e.code, e.message))
        }
    };
    let ex = &mut world.executions[idx];
    let step = &mut ex.steps[i];
    step.start_ms = Some(now);
    match started {
        Ok(child) => {
            step.status = "InProgress".to_owned();
            step.outputs.insert("ExecutionId".into(), vec![child.clone()]);
            if let Some(rc) = ex.rate_control.as_mut() {
                rc.children[i] = Some(child);
            }
        }
        Err(message) => {
            step.status = "Failed".to_owned();
            step.end_ms = Some(now);
            step.failure_message = Some(message);
            if let Some(rc) = ex.rate_control.as_mut() {
                rc.children[i] = Some(String::new());
            }
        }
    }
    world.dirty = true;
}

fn advance_parent(world: &mut World, idx: usize, doc: &Document, now: u64) -> bool {
    let mut changed = false;
    let ex = &world.executions[idx];
    let Some(rc) = &ex.rate_control else { return false };
    let child_status: Vec<ChildState> = rc
        .children
        .iter()
        .map(|c| {
            c.as_ref()
                .and_then(|id| world.get(id))
                .map(|c| (c.status.clone(), Some(c.start_ms), c.end_ms))
        })
        .collect();
    let cancel = ex.cancel_requested;
    let total = rc.resolved.len();
    let max_conc = count_or_percent(&rc.max_concurrency, total, true);
    let max_err = count_or_percent(&rc.max_errors, total, false);

    // Mirror children into the parent's steps.
    let mut running = 0;
    let mut failed = 0;
    let mut to_cancel = Vec::new();
    {
        let ex = &mut world.executions[idx];
        for (i, st) in child_status.iter().enumerate() {
            let step = &mut ex.steps[i];
            if let Some((status, start, end)) = st {
                if step.status != *status {
                    step.status = status.clone();
                    step.start_ms = *start;
                    step.end_ms = *end;
                    changed = true;
                }
                if !is_terminal(status) {
                    running += 1;
                    if cancel {
                        if let Some(Some(id)) = ex.rate_control.as_ref().map(|r| r.children[i].clone()) {
                            to_cancel.push(id);
                        }
                    }
                }
                if matches!(status.as_str(), "Failed" | "TimedOut") {
                    failed += 1;
                }
            }
        }
    }
    for id in to_cancel {
        if let Some(child) = world.get_mut(&id) {
            if !child.cancel_requested {
                child.cancel_requested = true;
                child.status = "Cancelling".to_owned();
                changed = true;
            }
        }
    }
    let mut launches = Vec::new();
    {
        let ex = &mut world.executions[idx];
        let rc = ex.rate_control.as_mut().expect("parent");
        if failed > max_err || cancel {
            rc.stopped_launching = true;
        }
        if rc.stopped_launching {
            for (i, step) in ex.steps.iter_mut().enumerate() {
                if rc.children[i].is_none() && step.status == "Pending" {
                    step.status = "Cancelled".to_owned();
                    changed = true;
                }
            }
        } else {
            let mut slots = max_conc.saturating_sub(running);
            for i in 0..total {
                if slots == 0 {
                    break;
                }
                if rc.children[i].is_none() {
                    launches.push((i, rc.resolved[i].clone()));
                    slots -= 1;
                }
            }
        }
    }
    for (i, target) in launches {
        if world.executions[idx]
            .rate_control
            .as_ref()
            .is_some_and(|rc| rc.location_child.is_some())
        {
            launch_location(world, idx, i, &target, doc, now);
            changed = true;
            continue;
        }
        let parent = &world.executions[idx];
        let rc = parent.rate_control.as_ref().expect("parent");
        let mut params = parent.parameters.clone();
        params.insert(rc.target_parameter_name.clone(), vec![target.clone()]);
        // Automation starts each child with the parent's AutomationAssumeRole, which must be allowed
        // to pass itself (AWS's setup guide grants iam:PassRole on the role to the role).
        let pass_role_denied =
            assume_role(parent).filter(|_| world.assume_role_deny.contains("iam:PassRole"));
        let resolved = match pass_role_denied {
            Some(role) => Err(StartError {
                code: "AccessDeniedException",
                message: format!(
                    "User: arn:{}:sts::{}:assumed-role/{}/Automation-{} is not authorized to perform: iam:PassRole on resource: {role}",
                    world.partition,
                    crate::ACCOUNT_ID,
                    role.rsplit('/').next().unwrap_or("role"),
                    parent.id
                ),
            }),
            None => resolve_parameters(doc, &params, None, &parent.account, &|arn: &str| {
                let role = arn.rsplit('/').next().unwrap_or_default();
                crate::faults::role_exists(&world.roles, &world.missing_roles, &parent.account, role)
            }),
        };
        let (parameters, vars) = match resolved {
            Ok(p) => p,
            Err(e) => {
                // A target that is not a valid value (or a child SSM may not start) fails its own
                // step, like SSM's child validation.
                let step = &mut world.executions[idx].steps[i];
                step.status = "Failed".to_owned();
                step.start_ms = Some(now);
                step.end_ms = Some(now);
                step.failure_message = Some(e.message);
                if let Some(rc) = world.executions[idx].rate_control.as_mut() {
                    rc.children[i] = Some(String::new());
                }
                changed = true;
                continue;
            }
        };
        let child_id = uuid::Uuid::new_v4().to_string();
        // Children count against the concurrency quota too, and wait in SSM's queue when it is full.
        let (running, _) = world.occupancy(&parent.account, &parent.region);
        let child_status = if running >= world.quota.running {
            "Pending"
        } else {
            "InProgress"
        };
        let child = Execution {
            id: child_id.clone(),
            account: parent.account.clone(),
            region: parent.region.clone(),
            document_name: parent.document_name.clone(),
            document_version: parent.document_version.clone(),
            status: child_status.to_owned(),
            start_ms: now,
            end_ms: None,
            parameters,
            outputs: BTreeMap::new(),
            failure_message: None,
            steps: vec![step_from_def(doc, 0, now)],
            parent_id: Some(parent.id.clone()),
            executed_by: parent.executed_by.clone(),
            tags: parent.tags.clone(),
            target: Some(target),
            critical_failed: false,
            cancel_requested: false,
            cursor: Some(0),
            vars,
            rate_control: None,
            // A child stops with its parent, which holds the alarms.
            alarms: Vec::new(),
            triggered_alarms: Vec::new(),
            ignore_alarm_failure: false,
            target_locations: Vec::new(),
        };
        let ex = &mut world.executions[idx];
        let step = &mut ex.steps[i];
        step.status = "InProgress".to_owned();
        step.start_ms = Some(now);
        step.outputs.insert("ExecutionId".into(), vec![child_id.clone()]);
        if let Some(rc) = ex.rate_control.as_mut() {
            rc.children[i] = Some(child_id);
        }
        world.push(child);
        changed = true;
    }
    // Finished when every target is either done or will never start.
    let ex = &world.executions[idx];
    let all_done = ex.steps.iter().all(|s| is_terminal(&s.status));
    if all_done {
        let any_failed = ex
            .steps
            .iter()
            .any(|s| matches!(s.status.as_str(), "Failed" | "TimedOut"));
        let status = if cancel {
            "Cancelled"
        } else if any_failed || ex.steps.iter().any(|s| s.status == "Cancelled") {
            "Failed"
        } else {
            "Success"
        };
        let empty_fails = world.empty_targets == crate::faults::EmptyTargets::Failed;
        let ex = &mut world.executions[idx];
        if ex.steps.is_empty() && empty_fails {
            ex.failure_message = Some("The targets resolved to no instances.".to_owned());
        } else if status == "Failed" {
            // The message counts what ended the run: a child an alarm, a stop or MaxErrors
            // cancelled fails its parent too, so it is counted rather than left out.
            let count = |statuses: &[&str]| {
                ex.steps
                    .iter()
                    .filter(|s| statuses.contains(&s.status.as_str()))
                    .count()
            };
            let (failed, cancelled) = (count(&["Failed", "TimedOut"]), count(&["Cancelled"]));
            let cancelled_part = if cancelled == 0 {
                String::new()
            } else {
                let verb = if cancelled == 1 { "was" } else { "were" };
                format!(" and {cancelled} {verb} cancelled")
            };
            ex.failure_message = Some(format!(
                "{failed} of {} child executions failed{cancelled_part} (MaxErrors {}).",
                ex.steps.len(),
                ex.rate_control
                    .as_ref()
                    .map(|r| r.max_errors.as_str())
                    .unwrap_or("0")
            ));
        }
        ex.status = if ex.steps.is_empty() && empty_fails {
            "Failed".to_owned()
        } else {
            status.to_owned()
        };
        ex.end_ms = Some(now);
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse_to_seconds() {
        assert_eq!(parse_iso_duration("PT30S"), Some(30.0));
        assert_eq!(parse_iso_duration("PT1H30M"), Some(5400.0));
        assert_eq!(parse_iso_duration("30S"), None);
    }

    #[test]
    fn templates_keep_types_when_whole_and_interpolate_otherwise() {
        let vars: BTreeMap<String, Value> = [
            ("HttpPutResponseHopLimit".to_owned(), json!(2)),
            ("InstanceId".to_owned(), json!("i-1")),
        ]
        .into();
        assert_eq!(resolve(&json!("{{ HttpPutResponseHopLimit }}"), &vars), json!(2));
        assert_eq!(resolve(&json!(["{{InstanceId}}"]), &vars), json!(["i-1"]));
        assert_eq!(resolve(&json!("id={{ InstanceId }}!"), &vars), json!("id=i-1!"));
    }
}
