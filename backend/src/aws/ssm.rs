//! SSM Automation: start, read, list children, stop.

use aws_sdk_ssm::types::{
    AutomationExecutionFilter, AutomationExecutionFilterKey, AutomationExecutionMetadata, StepExecution, Tag,
    Target,
};
use shared::api::StepView;
use shared::RunStatus;
use shared::{StartPlan, Targets};
use std::collections::BTreeMap;

use super::{rfc3339, sdk_error, RegionClients};
use crate::error::AppError;

/// An automation execution as SSM reports it.
#[derive(Debug, Clone)]
pub struct SsmExecution {
    pub id: String,
    pub document_name: String,
    pub document_version: Option<String>,
    pub status: RunStatus,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub parameters: BTreeMap<String, Vec<String>>,
    pub outputs: BTreeMap<String, Vec<String>>,
    pub failure_message: Option<String>,
    pub parent_id: Option<String>,
    /// The steps GetAutomationExecution answered: all of them, or for a run across accounts whose
    /// list SSM cut short (`steps_truncated`), the first ones (the watcher reads the rest a page a
    /// round with `steps_page`).
    pub steps: Vec<StepView>,
    pub steps_truncated: bool,
    pub rate_control: Option<SsmRateControl>,
    /// A run across accounts and Regions (SSM's AutomationExecution.TargetLocations): each location's
    /// accounts (or units) and Regions. Empty for a run in one place.
    pub target_locations: Vec<(Vec<String>, Vec<String>)>,
}

impl SsmExecution {
    /// Whether SSM runs it across accounts and Regions (one step per location).
    pub fn is_cross_account(&self) -> bool {
        !self.target_locations.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct SsmRateControl {
    pub target_parameter_name: String,
    pub targets: Vec<String>,
    pub resolved: Vec<String>,
    /// SSM shows only the first resolved targets of a large run.
    pub resolved_truncated: bool,
    pub max_concurrency: String,
    pub max_errors: String,
}

/// A child or listed execution, without steps.
#[derive(Debug, Clone)]
pub struct SsmExecutionSummary {
    pub id: String,
    pub document_name: String,
    pub status: RunStatus,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub parent_id: Option<String>,
    pub instance_id: Option<String>,
}

fn step_view(s: &StepExecution) -> StepView {
    let details = s.failure_details();
    StepView {
        name: s.step_name().unwrap_or_default().to_owned(),
        action: s.action().unwrap_or_default().to_owned(),
        status: RunStatus::parse(s.step_status().map_or("Pending", |x| x.as_str())),
        start_time: rfc3339(s.execution_start_time()),
        end_time: rfc3339(s.execution_end_time()),
        inputs: s
            .inputs()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        outputs: s
            .outputs()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        failure_message: s.failure_message().map(str::to_owned),
        failure_stage: details.and_then(|d| d.failure_stage()).map(str::to_owned),
        failure_type: details.and_then(|d| d.failure_type()).map(str::to_owned),
        target_location: s
            .target_location()
            .map(|l| format!("{}/{}", l.accounts().join(","), l.regions().join(","))),
    }
}

/// Tags the console puts on every execution it starts, so a run can be found again after a crash.
pub const RECORD_TAG: &str = "imds-console:record";
pub const REQUESTER_TAG: &str = "imds-console:requester";
/// Prefix of the tag key that carries a run's own tag (`imds-console:run:<uuid>`): the
/// DescribeAutomationExecutions `TagKey` filter finds the execution by it directly.
pub const RUN_TAG_PREFIX: &str = "imds-console:run:";

/// `text` as a value SSM accepts in a tag: characters outside its pattern become `_`, and it is cut
/// to 256 characters. (The store keeps the requester exactly; the tag only helps find a run in AWS.)
pub fn tag_value(text: &str) -> String {
    text.chars()
        .map(|c| if shared::params::ssm_tag_char(c) { c } else { '_' })
        .take(256)
        .collect()
}

/// StartAutomationExecution with our ClientToken and tags; returns the execution ID.
pub async fn start(
    c: &RegionClients,
    document: &str,
    plan: &StartPlan,
    client_token: &str,
    record_id: i64,
    run_tag: Option<&str>,
    requester: &str,
) -> Result<String, AppError> {
    let params: std::collections::HashMap<String, Vec<String>> =
        plan.parameters.to_ssm().into_iter().collect();
    let mut req = c
        .ssm
        .start_automation_execution()
        .document_name(document)
        .set_parameters(Some(params))
        .client_token(client_token);
    let mut tags = vec![
        (RECORD_TAG.to_owned(), record_id.to_string()),
        (REQUESTER_TAG.to_owned(), tag_value(requester)),
    ];
    if let Some(run_tag) = run_tag {
        tags.push((format!("{RUN_TAG_PREFIX}{run_tag}"), record_id.to_string()));
    }
    for (key, value) in tags {
        let tag = Tag::builder()
            .key(key)
            .value(value)
            .build()
            .map_err(AppError::internal)?;
        req = req.tags(tag);
    }
    if let Some(rc) = &plan.rate_control {
        let (key, values) = rc.targets.to_ssm();
        req = req
            .target_parameter_name("InstanceId")
            .targets(Target::builder().key(key).set_values(Some(values)).build())
            .max_concurrency(rc.max_concurrency.as_str())
            .max_errors(rc.max_errors.as_str());
    }
    // SSM watches the alarm while the run goes on and stops it when the alarm fires; an alarm SSM
    // cannot read stops the run too (IgnorePollAlarmFailure false), which is the safe side. A run
    // across accounts watches it in each location's account and Region (where its instances are),
    // not in the console's own, where nothing runs.
    let alarm = plan
        .alarm_name
        .as_deref()
        .map(|name| {
            let alarm = aws_sdk_ssm::types::Alarm::builder()
                .name(name)
                .build()
                .map_err(AppError::internal)?;
            aws_sdk_ssm::types::AlarmConfiguration::builder()
                .ignore_poll_alarm_failure(false)
                .alarms(alarm)
                .build()
                .map_err(AppError::internal)
        })
        .transpose()?;
    if plan.target_locations.is_empty() {
        req = req.set_alarm_configuration(alarm.clone());
    }
    for loc in &plan.target_locations {
        // SSM takes at most 50 accounts and 50 Regions in one location: a bigger one goes as several
        // with the same settings.
        for (accounts, regions) in loc.ssm_pieces() {
            let mut l = aws_sdk_ssm::types::TargetLocation::builder()
                .set_accounts(Some(accounts))
                .set_regions(Some(regions))
                .set_target_location_max_concurrency(
                    loc.max_concurrency.as_ref().map(|c| c.as_str().to_owned()),
                )
                .set_target_location_max_errors(loc.max_errors.as_ref().map(|e| e.as_str().to_owned()))
                .set_execution_role_name(loc.execution_role_name.clone())
                // SSM does not walk child units unless told; the console previews every account under
                // a unit or root, at any depth, so it asks SSM to reach the same ones.
                .include_child_organization_units(!loc.units.is_empty())
                .set_target_location_alarm_configuration(alarm.clone());
            if let Some(c) = &loc.targets_max_concurrency {
                l = l.targets_max_concurrency(c.as_str());
            }
            if let Some(e) = &loc.targets_max_errors {
                l = l.targets_max_errors(e.as_str());
            }
            // A location narrowed to some of its instances (one account and Region, at most 50):
            // its own Targets, which SSM takes before the run's.
            if !loc.instance_ids.is_empty() {
                let (key, values) = Targets::InstanceIds(loc.instance_ids.clone()).to_ssm();
                l = l.targets(Target::builder().key(key).set_values(Some(values)).build());
            }
            req = req.target_locations(l.build());
        }
    }
    // No automatic retries here: a retried start after a lost reply would rely on how SSM treats a
    // reused ClientToken, which AWS does not document. The caller retries what is safe to retry
    // (throttling, the quota) and settles everything else by looking for the run's tag.
    let out = req
        .customize()
        .config_override(
            aws_sdk_ssm::config::Builder::default()
                .retry_config(aws_sdk_ssm::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .map_err(|e| sdk_error("ssm:StartAutomationExecution", &e))?;
    out.automation_execution_id()
        .map(str::to_owned)
        .ok_or_else(|| AppError::internal("SSM returned no execution ID"))
}

/// GetAutomationExecution, with every step (paging DescribeAutomationStepExecutions when truncated).
pub async fn get(c: &RegionClients, id: &str) -> Result<SsmExecution, AppError> {
    let out = c
        .ssm
        .get_automation_execution()
        .automation_execution_id(id)
        .send()
        .await
        .map_err(|e| sdk_error("ssm:GetAutomationExecution", &e))?;
    let ex = out
        .automation_execution()
        .ok_or_else(|| AppError::NotFound(format!("execution {id}")))?;
    let mut steps: Vec<StepView> = ex.step_executions().iter().map(step_view).collect();
    let target_locations: Vec<(Vec<String>, Vec<String>)> = ex
        .target_locations()
        .iter()
        .map(|l| (l.accounts().to_vec(), l.regions().to_vec()))
        .collect();
    // A rate-control parent has a step per target; its progress comes from the children instead. A
    // run across accounts has a step per location, which the watcher reads a page per round, within
    // the read budget.
    let mut steps_truncated = ex.step_executions_truncated();
    if steps_truncated && ex.target_parameter_name().is_none() && target_locations.is_empty() {
        steps = all_steps(c, id).await?;
        steps_truncated = false;
    }
    let rate_control = ex.target_parameter_name().map(|name| SsmRateControl {
        target_parameter_name: name.to_owned(),
        targets: ex
            .targets()
            .iter()
            .map(|t| format!("{}={}", t.key().unwrap_or_default(), t.values().join(",")))
            .collect(),
        resolved: ex
            .resolved_targets()
            .map(|r| r.parameter_values().to_vec())
            .unwrap_or_default(),
        resolved_truncated: ex.resolved_targets().is_some_and(|r| r.truncated()),
        max_concurrency: ex.max_concurrency().unwrap_or_default().to_owned(),
        max_errors: ex.max_errors().unwrap_or_default().to_owned(),
    });
    Ok(SsmExecution {
        id: id.to_owned(),
        document_name: ex.document_name().unwrap_or_default().to_owned(),
        document_version: ex.document_version().map(str::to_owned),
        status: ex
            .automation_execution_status()
            .map_or(RunStatus::Pending, |s| RunStatus::parse(s.as_str())),
        start_time: rfc3339(ex.execution_start_time()),
        end_time: rfc3339(ex.execution_end_time()),
        parameters: ex
            .parameters()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        outputs: ex
            .outputs()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        failure_message: ex.failure_message().map(str::to_owned),
        parent_id: ex.parent_automation_execution_id().map(str::to_owned),
        steps,
        steps_truncated,
        rate_control,
        target_locations,
    })
}

async fn all_steps(c: &RegionClients, id: &str) -> Result<Vec<StepView>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = steps_page(c, id, token).await?;
        out.extend(page);
        match next {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// One page of an execution's steps (DescribeAutomationStepExecutions, the model's largest page of
/// 50), and the token of the next page.
pub async fn steps_page(
    c: &RegionClients,
    id: &str,
    token: Option<String>,
) -> Result<(Vec<StepView>, Option<String>), AppError> {
    let page = c
        .ssm
        .describe_automation_step_executions()
        .automation_execution_id(id)
        .max_results(50)
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| sdk_error("ssm:DescribeAutomationStepExecutions", &e))?;
    let next = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
    Ok((page.step_executions().iter().map(step_view).collect(), next))
}

fn summary(m: &AutomationExecutionMetadata) -> SsmExecutionSummary {
    SsmExecutionSummary {
        id: m.automation_execution_id().unwrap_or_default().to_owned(),
        document_name: m.document_name().unwrap_or_default().to_owned(),
        status: m
            .automation_execution_status()
            .map_or(RunStatus::Pending, |s| RunStatus::parse(s.as_str())),
        start_time: rfc3339(m.execution_start_time()),
        end_time: rfc3339(m.execution_end_time()),
        parent_id: m.parent_automation_execution_id().map(str::to_owned),
        instance_id: m.target().map(str::to_owned),
    }
}

/// The children of a rate-control parent (DescribeAutomationExecutions, ParentExecutionId filter).
/// One page of a parent's children, and the token of the next page (one call; the watcher spreads the
/// pages of a large run over its rounds, each page counted against the read budget).
pub async fn children_page(
    c: &RegionClients,
    parent_id: &str,
    token: Option<String>,
) -> Result<(Vec<SsmExecutionSummary>, Option<String>), AppError> {
    page(
        c,
        AutomationExecutionFilterKey::ParentExecutionId,
        parent_id,
        token,
    )
    .await
}

/// One page (50) of the executions of a document, newest first, and the next page's token.
pub async fn recent_page(
    c: &RegionClients,
    document: &str,
    token: Option<String>,
) -> Result<(Vec<SsmExecutionSummary>, Option<String>), AppError> {
    page(
        c,
        AutomationExecutionFilterKey::DocumentNamePrefix,
        document,
        token,
    )
    .await
}

async fn page(
    c: &RegionClients,
    key: AutomationExecutionFilterKey,
    value: &str,
    token: Option<String>,
) -> Result<(Vec<SsmExecutionSummary>, Option<String>), AppError> {
    let filter = AutomationExecutionFilter::builder()
        .key(key)
        .values(value)
        .build()
        .map_err(AppError::internal)?;
    let page = c
        .ssm
        .describe_automation_executions()
        .filters(filter)
        .max_results(50)
        .set_next_token(token)
        .send()
        .await
        .map_err(|e| sdk_error("ssm:DescribeAutomationExecutions", &e))?;
    let next = page.next_token().filter(|t| !t.is_empty()).map(str::to_owned);
    Ok((
        page.automation_execution_metadata_list()
            .iter()
            .map(summary)
            .collect(),
        next,
    ))
}

/// The execution that carries the run tag `run_tag`, if SSM has one (DescribeAutomationExecutions with
/// the TagKey filter: one call, whatever else is running).
pub async fn find_by_run_tag(c: &RegionClients, run_tag: &str) -> Result<Option<String>, AppError> {
    let filter = AutomationExecutionFilter::builder()
        .key(AutomationExecutionFilterKey::TagKey)
        .values(format!("{RUN_TAG_PREFIX}{run_tag}"))
        .build()
        .map_err(AppError::internal)?;
    let page = c
        .ssm
        .describe_automation_executions()
        .filters(filter)
        .max_results(10)
        .send()
        .await
        .map_err(|e| sdk_error("ssm:DescribeAutomationExecutions", &e))?;
    Ok(page
        .automation_execution_metadata_list()
        .iter()
        .filter(|m| m.parent_automation_execution_id().is_none())
        .find_map(|m| m.automation_execution_id().map(str::to_owned)))
}

/// StopAutomationExecution (Cancel).
pub async fn stop(c: &RegionClients, id: &str) -> Result<(), AppError> {
    c.ssm
        .stop_automation_execution()
        .automation_execution_id(id)
        .r#type(aws_sdk_ssm::types::StopType::Cancel)
        .send()
        .await
        .map_err(|e| sdk_error("ssm:StopAutomationExecution", &e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tag_value;

    #[test]
    fn tag_values_keep_what_ssm_allows_and_replace_the_rest() {
        assert_eq!(tag_value("CORP\\jane O'Brien"), "CORP_jane O_Brien");
        assert_eq!(
            tag_value("ana.lópez+ops@example.com"),
            "ana.lópez+ops@example.com"
        );
        assert_eq!(tag_value(&"x".repeat(300)).chars().count(), 256);
    }
}
