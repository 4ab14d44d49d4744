//! SSM (awsJson1_1): the Automation operations and the two documents the sandbox runs.

use crate::fleet::Scope;
use axum::response::Response;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

use crate::engine::{is_terminal, Execution, StartRequest, StepExec};
use crate::ssm_rules::pattern_error;
use crate::wire::{ok_json, AwsError};
use crate::{timefmt, Sandbox};

/// More steps than this are left out of GetAutomationExecution (StepExecutionsTruncated), as in SSM;
/// DescribeAutomationStepExecutions pages through all of them. AWS does not document the number, so
/// `Faults::steps_in_get` can change it.
const STEPS_IN_GET: usize = 100;

const STATUSES: &[&str] = &[
    "Pending",
    "InProgress",
    "Waiting",
    "Success",
    "TimedOut",
    "Cancelling",
    "Cancelled",
    "Failed",
    "PendingApproval",
    "Approved",
    "Rejected",
    "Scheduled",
    "RunbookInProgress",
    "PendingChangeCalendarOverride",
    "ChangeCalendarOverrideApproved",
    "ChangeCalendarOverrideRejected",
    "CompletedWithSuccess",
    "CompletedWithFailure",
    "Exited",
];

pub(crate) fn handle(sb: &Sandbox, at: &Scope<'_>, op: &str, body: &[u8]) -> Result<Response, AwsError> {
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| AwsError::client("SerializationException", format!("Malformed JSON body: {e}")))?
    };
    match op {
        "StartAutomationExecution" => start(sb, at, &req),
        "GetAutomationExecution" => {
            let id = required_str(&req, "AutomationExecutionId")?;
            let shown = sb.faults().steps_in_get.unwrap_or(STEPS_IN_GET);
            let world = sb.world();
            let ex = find(&world, at, id)?;
            ok_json(&json!({ "AutomationExecution": execution_json(ex, Some(shown)) }))
        }
        "DescribeAutomationExecutions" => describe_executions(sb, at, &req),
        "DescribeAutomationStepExecutions" => describe_steps(sb, at, &req),
        "StopAutomationExecution" => {
            let id = required_str(&req, "AutomationExecutionId")?;
            // Complete and Cancel both end the run where it is: the API reference tells them apart by
            // name only, and SSM's statuses have one outcome for a run its requester stopped
            // (Cancelled), so the sandbox gives both that outcome.
            crate::ssm_rules::stop_type(&req)?;
            let mut world = sb.world();
            find(&world, at, id)?;
            world.stop(id).map_err(|e| AwsError::client(e.code, e.message))?;
            drop(world);
            sb.save()
                .map_err(|e| AwsError::client("InternalServerError", e.to_string()))?;
            ok_json(&json!({}))
        }
        "DescribeDocument" => {
            let doc = document(sb, &req)?;
            let params: Vec<Value> = doc
                .parameters
                .iter()
                .map(|p| {
                    let mut m = json!({ "Name": p.name, "Type": p.kind, "Description": p.description });
                    if let Some(d) = &p.default {
                        m["DefaultValue"] = json!(crate::jsonpath::as_text(d));
                    }
                    m
                })
                .collect();
            ok_json(&json!({ "Document": {
                "Name": doc.name, "DocumentType": "Automation", "Status": "Active", "SchemaVersion": "0.3",
                "DocumentVersion": doc.version, "LatestVersion": doc.version, "DefaultVersion": doc.version,
                "DocumentFormat": "JSON", "Owner": "Amazon", "TargetType": "/AWS::EC2::Instance",
                "PlatformTypes": ["Windows", "Linux", "MacOS"], "Description": doc.description, "Parameters": params,
                "CreatedDate": 1_600_000_000.0
            }}))
        }
        "GetDocument" => {
            let doc = document(sb, &req)?;
            ok_json(&json!({
                "Name": doc.name, "DocumentVersion": doc.version, "Status": "Active", "Content": doc.content,
                "DocumentType": "Automation", "DocumentFormat": "JSON"
            }))
        }
        other => Err(AwsError::client(
            "UnknownOperationException",
            format!("The sandbox does not implement AmazonSSM.{other}."),
        )),
    }
}

fn document<'a>(sb: &'a Sandbox, req: &Value) -> Result<&'a crate::documents::Document, AwsError> {
    let name = required_str(req, "Name")?;
    let doc = sb.inner.docs.get(name).ok_or_else(|| {
        AwsError::client(
            "InvalidDocument",
            format!("Document with name {name} does not exist."),
        )
    })?;
    if let Some(v) = req["DocumentVersion"].as_str() {
        if v != doc.version && v != "$LATEST" && v != "$DEFAULT" {
            return Err(AwsError::client(
                "InvalidDocumentVersion",
                format!("Document version {v} of {name} does not exist."),
            ));
        }
    }
    Ok(doc)
}

fn required_str<'a>(req: &'a Value, key: &str) -> Result<&'a str, AwsError> {
    req[key].as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
        AwsError::client("ValidationException", format!("1 validation error detected: Value null at '{key}' failed to satisfy constraint: Member must not be null"))
    })
}

/// An execution as `at` sees it: another account's or region's does not exist there.
fn find<'a>(world: &'a crate::engine::World, at: &Scope<'_>, id: &str) -> Result<&'a Execution, AwsError> {
    world
        .get(id)
        .filter(|e| e.region == at.region && e.account == at.account)
        .ok_or_else(|| {
            AwsError::client(
                "AutomationExecutionNotFoundException",
                format!("Automation Execution {id} not found."),
            )
        })
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn start(sb: &Sandbox, at: &Scope<'_>, req: &Value) -> Result<Response, AwsError> {
    let document_name = required_str(req, "DocumentName")?.to_owned();
    let mut parameters = BTreeMap::new();
    if let Some(m) = req["Parameters"].as_object() {
        for (k, v) in m {
            let values: Vec<String> = v
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            if values.iter().any(|x| x.is_empty() || x.len() > 512) {
                return Err(AwsError::client(
                    "ValidationException",
                    format!("1 validation error detected: Value at 'parameters' failed to satisfy constraint: Map value for {k} must have length between 1 and 512"),
                ));
            }
            parameters.insert(k.clone(), values);
        }
    }
    let client_token = req["ClientToken"].as_str().map(str::to_owned);
    if let Some(t) = &client_token {
        if !is_uuid(t) {
            return Err(pattern_error(
                "clientToken",
                t,
                "[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}",
            ));
        }
    }
    if req.get("TargetMaps").is_some_and(|v| !v.is_null()) {
        return Err(AwsError::client(
            "InvalidAutomationExecutionParametersException",
            "The sandbox does not emulate TargetMaps; use Targets (and TargetLocations).",
        ));
    }
    crate::ssm_strict::start_checks(req, &sb.inner.config.partition)?;
    let target_locations = target_locations(req, &crate::organizations::Members::of(sb))?;
    let targets = crate::ssm_rules::start_targets(req)?;
    let target_parameter_name = req["TargetParameterName"].as_str().map(str::to_owned);
    crate::ssm_rules::target_not_in_parameters(target_parameter_name.as_deref(), &parameters)?;
    crate::ssm_rules::start_mode_and_url(req)?;
    let max_concurrency = req["MaxConcurrency"].as_str().map(str::to_owned);
    for (key, v) in [
        ("maxConcurrency", &req["MaxConcurrency"]),
        ("maxErrors", &req["MaxErrors"]),
    ] {
        if let Some(v) = v.as_str().filter(|v| v.chars().count() > 7) {
            return Err(crate::ssm_rules::validation(&format!("Value '{v}' at '{key}' failed to satisfy constraint: Member must have length less than or equal to 7")));
        }
    }
    if let Some(v) = &max_concurrency {
        let re = regex::Regex::new(r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$").expect("pattern");
        if !re.is_match(v) {
            return Err(pattern_error("maxConcurrency", v, re.as_str()));
        }
    }
    let max_errors = req["MaxErrors"].as_str().map(str::to_owned);
    if let Some(v) = &max_errors {
        let re = regex::Regex::new(r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$").expect("pattern");
        if !re.is_match(v) {
            return Err(pattern_error("maxErrors", v, re.as_str()));
        }
    }
    let tags = crate::ssm_rules::start_tags(req)?;
    let (alarms, ignore_alarm_failure) =
        alarm_configuration(req.get("AlarmConfiguration"), "alarmConfiguration")?;
    let start = StartRequest {
        document_name,
        document_version: req["DocumentVersion"].as_str().map(str::to_owned),
        parameters,
        client_token,
        token_reuse: sb.faults().client_token_reuse,
        target_parameter_name,
        targets,
        max_concurrency,
        max_errors,
        tags,
        target_locations,
        alarms,
        ignore_alarm_failure,
    };
    let now = timefmt::now_ms();
    let id = {
        let mut world = sb.world();
        world
            .start(&sb.inner.docs, at, &start, now)
            .map_err(|e| AwsError::client(e.code, e.message))?
    };
    // A start is durable before it is acknowledged, so a console that saw the ID can rely on it.
    sb.save()
        .map_err(|e| AwsError::client("InternalServerError", e.to_string()))?;
    ok_json(&json!({ "AutomationExecutionId": id }))
}

/// An AlarmConfiguration (`at` names it in errors, as SSM does): exactly one alarm (the API model's
/// limit), its name 1 to 255 characters; its alarm names and IgnorePollAlarmFailure (default false).
fn alarm_configuration(conf: Option<&Value>, at: &str) -> Result<(Vec<String>, bool), AwsError> {
    let Some(conf) = conf.filter(|v| !v.is_null()) else {
        return Ok((Vec::new(), false));
    };
    let list = conf["Alarms"].as_array().cloned().unwrap_or_default();
    if list.len() != 1 {
        return Err(AwsError::client(
            "ValidationException",
            format!("1 validation error detected: Value at '{at}.alarms' failed to satisfy constraint: Member must have length less than or equal to 1 and greater than or equal to 1 (got {})", list.len()),
        ));
    }
    let name = list[0]["Name"].as_str().unwrap_or_default();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(AwsError::client(
            "ValidationException",
            format!("1 validation error detected: Value at '{at}.alarms.1.member.name' failed to satisfy constraint: Member must have length between 1 and 255"),
        ));
    }
    // The model's pattern `^(?!\s*$).+`: a name that is only white space names no alarm.
    if name.trim().is_empty() {
        return Err(pattern_error(
            &format!("{at}.alarms.1.member.name"),
            name,
            r"^(?!\s*$).+",
        ));
    }
    let ignore = conf["IgnorePollAlarmFailure"].as_bool().unwrap_or(false);
    Ok((vec![name.to_owned()], ignore))
}

/// TargetLocations, checked against the API model: 1 to 100 locations, each with accounts (IDs, or
/// organizational unit and root IDs) and Regions, and the concurrency and error patterns of Targets.
fn target_locations(
    req: &Value,
    org: &crate::organizations::Members,
) -> Result<Vec<crate::engine::TargetLocation>, AwsError> {
    let Some(list) = req["TargetLocations"].as_array() else {
        return Ok(Vec::new());
    };
    if list.is_empty() || list.len() > 100 {
        return Err(AwsError::client(
            "ValidationException",
            "1 validation error detected: Value at 'targetLocations' failed to satisfy constraint: Member must have length between 1 and 100",
        ));
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let account_re =
        regex::Regex::new(r"^(\d{12}|ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}|r-[a-z0-9]{4,32})$").expect("pattern");
    let conc_re = regex::Regex::new(r"^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$").expect("pattern");
    let err_re = regex::Regex::new(r"^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$").expect("pattern");
    let mut out = Vec::new();
    for (n, loc) in list.iter().enumerate() {
        let n = n + 1;
        let accounts = strings(&loc["Accounts"]);
        let regions = strings(&loc["Regions"]);
        if accounts.is_empty() || regions.is_empty() {
            return Err(AwsError::client(
                "ValidationException",
                format!("1 validation error detected: targetLocations.{n}: Accounts and Regions must each name at least one."),
            ));
        }
        // The model's list limits: Accounts and Regions at most 50 each.
        for (member, count) in [("accounts", accounts.len()), ("regions", regions.len())] {
            if count > 50 {
                return Err(AwsError::client(
                    "ValidationException",
                    format!("1 validation error detected: Value at 'targetLocations.{n}.member.{member}' failed to satisfy constraint: Member must have length less than or equal to 50"),
                ));
            }
        }
        let excluded = crate::ssm_rules::location_members(loc, n)?;
        if let Some(bad) = accounts.iter().find(|a| !account_re.is_match(a)) {
            return Err(pattern_error(
                &format!("targetLocations.{n}.member.accounts"),
                bad,
                account_re.as_str(),
            ));
        }
        // A root or unit stands for the accounts directly under it, and for those of its child units
        // too only when IncludeChildOrganizationUnits says so (SSM's default is false).
        let include_children = loc["IncludeChildOrganizationUnits"].as_bool().unwrap_or(false);
        let mut resolved: Vec<String> = Vec::new();
        for entry in &accounts {
            let found = if entry.starts_with("r-") || entry.starts_with("ou-") {
                crate::organizations::accounts_under(entry, org, include_children).ok_or_else(|| {
                    AwsError::client(
                        "InvalidTarget",
                        format!("Organizational unit or root {entry} not found in the organization."),
                    )
                })?
            } else {
                vec![entry.clone()]
            };
            for a in found {
                if !resolved.contains(&a) {
                    resolved.push(a);
                }
            }
        }
        // An excluded account, or every account of an excluded unit, gets no location of its own.
        let mut excluded_accounts: Vec<String> = Vec::new();
        for entry in &excluded {
            if entry.starts_with("ou-") {
                excluded_accounts.extend(
                    crate::organizations::accounts_under(entry, org, true).ok_or_else(|| {
                        AwsError::client(
                            "InvalidTarget",
                            format!("Organizational unit {entry} in ExcludeAccounts not found in the organization."),
                        )
                    })?,
                );
            } else {
                excluded_accounts.push(entry.clone());
            }
        }
        resolved.retain(|a| !excluded_accounts.contains(a));
        let accounts = resolved;
        let opt = |k: &str| loc[k].as_str().map(str::to_owned);
        for (key, re) in [
            ("TargetLocationMaxConcurrency", &conc_re),
            ("TargetsMaxConcurrency", &conc_re),
            ("TargetLocationMaxErrors", &err_re),
            ("TargetsMaxErrors", &err_re),
        ] {
            if let Some(v) = opt(key) {
                if v.chars().count() > 7 {
                    return Err(crate::ssm_rules::validation(&format!("Value '{v}' at 'targetLocations.{n}.member.{key}' failed to satisfy constraint: Member must have length less than or equal to 7")));
                }
                if !re.is_match(&v) {
                    return Err(pattern_error(
                        &format!("targetLocations.{n}.member.{key}"),
                        &v,
                        re.as_str(),
                    ));
                }
            }
        }
        let targets =
            crate::ssm_rules::targets_at(&loc["Targets"], &format!("targetLocations.{n}.member.targets"))?;
        let (alarms, ignore_alarm_failure) = alarm_configuration(
            loc.get("TargetLocationAlarmConfiguration"),
            &format!("targetLocations.{n}.member.targetLocationAlarmConfiguration"),
        )?;
        out.push(crate::engine::TargetLocation {
            alarms,
            ignore_alarm_failure,
            accounts,
            regions,
            max_concurrency: opt("TargetLocationMaxConcurrency"),
            max_errors: opt("TargetLocationMaxErrors"),
            execution_role_name: opt("ExecutionRoleName"),
            targets_max_concurrency: opt("TargetsMaxConcurrency"),
            targets_max_errors: opt("TargetsMaxErrors"),
            targets,
            requested: loc.clone(),
        });
    }
    Ok(out)
}

fn insert_opt<T: Into<Value>>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v {
        m.insert(key.to_owned(), v.into());
    }
}

fn step_json(s: &StepExec) -> Value {
    let mut m = Map::new();
    m.insert("StepName".into(), json!(s.name));
    m.insert("Action".into(), json!(s.action));
    insert_opt(&mut m, "TimeoutSeconds", s.timeout_seconds);
    m.insert("OnFailure".into(), json!(s.on_failure));
    m.insert("MaxAttempts".into(), json!(s.max_attempts));
    insert_opt(&mut m, "ExecutionStartTime", s.start_ms.map(timefmt::epoch_secs));
    insert_opt(&mut m, "ExecutionEndTime", s.end_ms.map(timefmt::epoch_secs));
    m.insert("StepStatus".into(), json!(s.status));
    m.insert("Inputs".into(), json!(s.inputs));
    if !s.outputs.is_empty() {
        m.insert("Outputs".into(), json!(s.outputs));
    }
    if let Some(msg) = &s.failure_message {
        m.insert("FailureMessage".into(), json!(msg));
        m.insert(
            "FailureDetails".into(),
            json!({ "FailureStage": s.failure_stage, "FailureType": s.failure_type, "Details": {} }),
        );
    }
    m.insert("StepExecutionId".into(), json!(s.step_execution_id));
    m.insert("OverriddenParameters".into(), json!({}));
    m.insert("IsEnd".into(), json!(s.is_end));
    insert_opt(&mut m, "NextStep", s.next_step.clone());
    m.insert("IsCritical".into(), json!(s.is_critical));
    insert_opt(&mut m, "TargetLocation", s.target_location.clone());
    Value::Object(m)
}

/// How many resolved targets an execution shows before it says the list is truncated.
const RESOLVED_TARGETS_SHOWN: usize = 50;

/// GetAutomationExecution's AutomationExecution (with how many steps it shows) or, without,
/// DescribeAutomationExecutions' metadata.
fn execution_json(ex: &Execution, steps_shown: Option<usize>) -> Value {
    let mut m = Map::new();
    m.insert("AutomationExecutionId".into(), json!(ex.id));
    m.insert("DocumentName".into(), json!(ex.document_name));
    m.insert("DocumentVersion".into(), json!(ex.document_version));
    m.insert(
        "ExecutionStartTime".into(),
        json!(timefmt::epoch_secs(ex.start_ms)),
    );
    insert_opt(&mut m, "ExecutionEndTime", ex.end_ms.map(timefmt::epoch_secs));
    m.insert("AutomationExecutionStatus".into(), json!(ex.status));
    m.insert("Outputs".into(), json!(ex.outputs));
    insert_opt(&mut m, "FailureMessage", ex.failure_message.clone());
    if !ex.alarms.is_empty() {
        m.insert(
            "AlarmConfiguration".into(),
            json!({"IgnorePollAlarmFailure": ex.ignore_alarm_failure, "Alarms": ex.alarms.iter().map(|a| json!({"Name": a})).collect::<Vec<_>>()}),
        );
    }
    if !ex.triggered_alarms.is_empty() {
        m.insert(
            "TriggeredAlarms".into(),
            json!(ex
                .triggered_alarms
                .iter()
                .map(|a| json!({"Name": a, "State": "ALARM"}))
                .collect::<Vec<_>>()),
        );
    }
    m.insert("Mode".into(), json!("Auto"));
    insert_opt(&mut m, "ParentAutomationExecutionId", ex.parent_id.clone());
    m.insert("ExecutedBy".into(), json!(ex.executed_by));
    if let Some(step) = ex
        .cursor
        .and_then(|c| ex.steps.get(c))
        .filter(|_| !is_terminal(&ex.status))
    {
        m.insert("CurrentStepName".into(), json!(step.name));
        m.insert("CurrentAction".into(), json!(step.action));
    }
    insert_opt(&mut m, "Target", ex.target.clone());
    match &ex.rate_control {
        Some(rc) => {
            m.insert("TargetParameterName".into(), json!(rc.target_parameter_name));
            m.insert(
                "Targets".into(),
                Value::Array(
                    rc.targets
                        .iter()
                        .map(|(k, v)| json!({ "Key": k, "Values": v }))
                        .collect(),
                ),
            );
            m.insert(
                "ResolvedTargets".into(),
                // SSM returns only the first of many resolved targets (how many is not documented;
                // the sandbox keeps 50) and says so.
                json!({
                    "ParameterValues": rc.resolved.iter().take(RESOLVED_TARGETS_SHOWN).collect::<Vec<_>>(),
                    "Truncated": rc.resolved.len() > RESOLVED_TARGETS_SHOWN,
                }),
            );
            m.insert("MaxConcurrency".into(), json!(rc.max_concurrency));
            m.insert("MaxErrors".into(), json!(rc.max_errors));
        }
        None => {
            m.insert("Targets".into(), json!([]));
            m.insert(
                "ResolvedTargets".into(),
                json!({ "ParameterValues": [], "Truncated": false }),
            );
        }
    }
    if let Some(shown) = steps_shown {
        m.insert("Parameters".into(), json!(ex.parameters));
        if !ex.target_locations.is_empty() {
            m.insert("TargetLocations".into(), json!(ex.target_locations));
        }
        let truncated = ex.steps.len() > shown;
        m.insert(
            "StepExecutions".into(),
            Value::Array(ex.steps.iter().take(shown).map(step_json).collect()),
        );
        m.insert("StepExecutionsTruncated".into(), json!(truncated));
        let count = |st: &str| ex.steps.iter().filter(|s| s.status == st).count();
        m.insert(
            "ProgressCounters".into(),
            json!({
                "TotalSteps": ex.steps.len(), "SuccessSteps": count("Success"), "FailedSteps": count("Failed"),
                "CancelledSteps": count("Cancelled"), "TimedOutSteps": count("TimedOut")
            }),
        );
    } else {
        m.insert("AutomationType".into(), json!(automation_type(ex)));
        m.insert("LogFile".into(), json!(""));
    }
    if !ex.tags.is_empty() && steps_shown.is_none() {
        // Not part of the metadata shape; tags are read with ListTagsForResource in AWS.
    }
    Value::Object(m)
}

/// `CrossAccount` for a run started with TargetLocations, `Local` for any other (the model's
/// AutomationType).
fn automation_type(ex: &Execution) -> &'static str {
    if ex.target_locations.is_empty() {
        "Local"
    } else {
        "CrossAccount"
    }
}

fn page_params(req: &Value, max: u64) -> Result<(usize, usize), AwsError> {
    let max_results = match req.get("MaxResults").and_then(Value::as_u64) {
        Some(n) if (1..=max).contains(&n) => n as usize,
        Some(n) => {
            let bound = if n < 1 {
                "greater than or equal to 1".to_owned()
            } else {
                format!("less than or equal to {max}")
            };
            return Err(AwsError::client(
                "ValidationException",
                format!("1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value {bound}"),
            ));
        }
        None => max as usize,
    };
    let offset = match req["NextToken"].as_str() {
        Some(t) => t
            .strip_prefix("sbx-")
            .and_then(|n| usize::from_str_radix(n, 16).ok())
            .ok_or_else(|| AwsError::client("InvalidNextToken", "The specified token is not valid."))?,
        None => 0,
    };
    Ok((offset, max_results))
}

fn next_token(offset: usize, shown: usize, total: usize) -> Option<String> {
    (offset + shown < total).then(|| format!("sbx-{:x}", offset + shown))
}

fn describe_executions(sb: &Sandbox, at: &Scope<'_>, req: &Value) -> Result<Response, AwsError> {
    let (offset, max_results) = page_params(req, 50)?;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for (key, values) in crate::ssm_rules::execution_filters(req)? {
        match key.as_str() {
            "DocumentNamePrefix" | "ExecutionId" | "ParentExecutionId" | "TagKey" | "CurrentAction"
            | "AutomationType" => {}
            "ExecutionStatus" => {
                if let Some(bad) = values.iter().find(|v| !STATUSES.contains(&v.as_str())) {
                    return Err(AwsError::client(
                        "InvalidFilterValue",
                        format!("The filter value {bad} is not valid for ExecutionStatus."),
                    ));
                }
            }
            "StartTimeBefore" | "StartTimeAfter" => {
                if let Some(bad) = values.iter().find(|v| timefmt::parse_time(v).is_none()) {
                    return Err(AwsError::client(
                        "InvalidFilterValue",
                        format!("The filter value {bad} is not a valid time for {key}."),
                    ));
                }
            }
            _ => return Err(AwsError::client("InvalidFilterKey", "")),
        }
        filters.push((key, values));
    }
    let world = sb.world();
    let matches = |ex: &Execution| {
        filters.iter().all(|(key, values)| {
            let any = |f: &dyn Fn(&str) -> bool| values.iter().any(|v| f(v));
            match key.as_str() {
                "DocumentNamePrefix" => any(&|v| ex.document_name.starts_with(v)),
                "ExecutionStatus" => any(&|v| ex.status == v),
                "ExecutionId" => any(&|v| ex.id == v),
                "ParentExecutionId" => any(&|v| ex.parent_id.as_deref() == Some(v)),
                "TagKey" => any(&|v| ex.tags.iter().any(|(k, _)| k == v)),
                "CurrentAction" => any(&|v| {
                    ex.cursor
                        .and_then(|c| ex.steps.get(c))
                        .is_some_and(|s| s.action == v)
                }),
                "AutomationType" => any(&|v| v == automation_type(ex)),
                "StartTimeBefore" => any(&|v| timefmt::parse_time(v).is_some_and(|t| ex.start_ms < t)),
                "StartTimeAfter" => any(&|v| timefmt::parse_time(v).is_some_and(|t| ex.start_ms > t)),
                _ => false,
            }
        })
    };
    // Newest first, as SSM lists them; the newest not at all while the list lags behind.
    let listed_before = timefmt::now_ms().saturating_sub(sb.faults().list_lag_ms);
    let all: Vec<&Execution> = world
        .executions
        .iter()
        .rev()
        .filter(|e| {
            e.region == at.region && e.account == at.account && e.start_ms <= listed_before && matches(e)
        })
        .collect();
    let page: Vec<Value> = all
        .iter()
        .skip(offset)
        .take(max_results)
        .map(|e| execution_json(e, None))
        .collect();
    let mut resp = json!({ "AutomationExecutionMetadataList": page });
    if let Some(t) = next_token(
        offset,
        max_results.min(all.len().saturating_sub(offset)),
        all.len(),
    ) {
        resp["NextToken"] = json!(t);
    }
    ok_json(&resp)
}

fn describe_steps(sb: &Sandbox, at: &Scope<'_>, req: &Value) -> Result<Response, AwsError> {
    let id = required_str(req, "AutomationExecutionId")?;
    let (offset, max_results) = page_params(req, 50)?;
    let world = sb.world();
    let ex = find(&world, at, id)?;
    let mut filters: Vec<(String, Vec<String>)> = Vec::new();
    for f in req["Filters"].as_array().into_iter().flatten() {
        let key = f["Key"].as_str().unwrap_or_default().to_owned();
        if !["StepName", "StepExecutionStatus", "StepExecutionId", "Action"].contains(&key.as_str()) {
            return Err(AwsError::client("InvalidFilterKey", ""));
        }
        let values = f["Values"]
            .as_array()
            .map(|v| v.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        filters.push((key, values));
    }
    let mut steps: Vec<&StepExec> = ex
        .steps
        .iter()
        .filter(|s| {
            filters.iter().all(|(k, vals)| {
                let field = match k.as_str() {
                    "StepName" => &s.name,
                    "StepExecutionStatus" => &s.status,
                    "StepExecutionId" => &s.step_execution_id,
                    _ => &s.action,
                };
                vals.iter().any(|v| v == field)
            })
        })
        .collect();
    if req["ReverseOrder"].as_bool() == Some(true) {
        steps.reverse();
    }
    let page: Vec<Value> = steps
        .iter()
        .skip(offset)
        .take(max_results)
        .map(|s| step_json(s))
        .collect();
    let mut resp = json!({ "StepExecutions": page });
    if let Some(t) = next_token(
        offset,
        max_results.min(steps.len().saturating_sub(offset)),
        steps.len(),
    ) {
        resp["NextToken"] = json!(t);
    }
    ok_json(&resp)
}
