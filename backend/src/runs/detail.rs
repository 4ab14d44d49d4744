//! A run's detail as the browser sees it: SSM's view of the execution, completed with what only our
//! record knows (requester, override, rollback links, prior options) and a rate-control run's
//! progress counted from its children in the store.

use shared::api::{ExecutionDetail, Progress, RateControlView, StepView};
use shared::Tone;

use crate::aws::ssm::SsmExecution;
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{HistoryFilter, RunRow};

/// The detail view of an SSM execution, with our record's requester.
pub fn detail_of(run: &RunRow, ex: &SsmExecution) -> ExecutionDetail {
    let mut summary = run.summary();
    summary.status = ex.status.clone();
    summary.start_time = ex.start_time.clone().or(summary.start_time);
    summary.end_time = ex.end_time.clone();
    summary.parent_execution_id = ex.parent_id.clone();
    if summary.instance_id.is_none() {
        summary.instance_id = ex.parameters.get("InstanceId").and_then(|v| v.first()).cloned();
    }
    ExecutionDetail {
        summary,
        parameters: ex.parameters.clone(),
        outputs: ex.outputs.clone(),
        failure_message: ex.failure_message.clone(),
        steps: ex.steps.clone(),
        rate_control: ex.rate_control.as_ref().map(|rc| RateControlView {
            target_parameter_name: rc.target_parameter_name.clone(),
            targets: rc.resolved.clone(),
            max_concurrency: rc.max_concurrency.clone(),
            max_errors: rc.max_errors.clone(),
            progress: if ex.is_cross_account() {
                Progress {
                    total: declared_places(&ex.target_locations) as u32,
                    unit: "locations".into(),
                    ..Progress::default()
                }
            } else {
                Progress {
                    total: rc.resolved.len() as u32,
                    ..Progress::default()
                }
            },
        }),
        children: Vec::new(),
        override_reason: None,
        rollback_of: None,
        rolled_back_by: Vec::new(),
        prior_options: Default::default(),
        approved_by: None,
    }
}

/// How many account-Regions a run's TargetLocations name, when they name accounts only (0 when a
/// unit or root stands for accounts SSM resolves itself).
fn declared_places(locations: &[(Vec<String>, Vec<String>)]) -> usize {
    let mut places = std::collections::BTreeSet::new();
    for (accounts, regions) in locations {
        if accounts
            .iter()
            .any(|a| shared::params::AccountId::parse(a).is_err())
        {
            return 0;
        }
        for a in accounts {
            for r in regions {
                places.insert((a.as_str(), r.as_str()));
            }
        }
    }
    places.len()
}

/// A run's steps as now known: `known` (stored from earlier reads) updated with the steps just read,
/// each found again by its name and location; a step not known yet is added in the order read. (A
/// run across more locations than GetAutomationExecution shows is read a page of steps per round.)
pub fn merge_steps(known: Vec<StepView>, read: impl IntoIterator<Item = StepView>) -> Vec<StepView> {
    let mut steps = known;
    let mut at: std::collections::HashMap<(String, Option<String>), usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.name.clone(), s.target_location.clone()), i))
        .collect();
    for step in read {
        match at.get(&(step.name.clone(), step.target_location.clone())) {
            Some(&i) => steps[i] = step,
            None => {
                at.insert((step.name.clone(), step.target_location.clone()), steps.len());
                steps.push(step);
            }
        }
    }
    steps
}

/// Adds what our record knows (override, rollback links, prior options) and, for a rate-control parent,
/// its children and progress from the store (which the watcher keeps current).
pub async fn complete(state: &AppState, detail: &mut ExecutionDetail, row: &RunRow) -> Result<(), AppError> {
    detail.override_reason = row.override_reason.clone();
    detail.rollback_of = row.rollback_of.clone();
    detail.rolled_back_by = row
        .rolled_back_by
        .as_deref()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    detail.prior_options = row
        .prior_options
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    if row.started_here && row.parent_execution_id.is_none() {
        detail.approved_by = state
            .store
            .approval(row.id)
            .await?
            .filter(|a| a.status == "approved")
            .and_then(|a| a.decided_by);
        detail.summary.approved_by = detail.approved_by.clone();
    }
    // Only a run across accounts has a span.
    if row.started_here && row.id > 0 && row.span.is_some() {
        show_what_was_sent(state, detail, row).await?;
    }
    let Some(rc) = detail.rate_control.as_mut() else {
        return Ok(());
    };
    // A run across accounts and Regions: one step per location (SSM's StepExecution.TargetLocation),
    // each a run in its own account; the progress counts locations (their instances are in the
    // member accounts' own runs), as many as the run names or as its steps show, if more.
    let locations: Vec<&StepView> = detail
        .steps
        .iter()
        .filter(|s| s.target_location.is_some())
        .collect();
    let declared = if rc.progress.unit == "locations" {
        rc.progress.total
    } else {
        0
    };
    if !locations.is_empty() || declared > 0 {
        let mut p = Progress {
            total: declared.max(locations.len() as u32),
            unit: "locations".into(),
            ..Progress::default()
        };
        let finished = detail.summary.status.is_terminal();
        for step in &locations {
            match step.status.tone() {
                Tone::Succeeded => p.succeeded += 1,
                Tone::Failed => p.failed += 1,
                Tone::Stopped if finished && step.start_time.is_none() => p.not_run += 1,
                Tone::Stopped => p.cancelled += 1,
                Tone::Waiting if finished => p.not_run += 1,
                Tone::Waiting => p.waiting += 1,
                Tone::Running => p.running += 1,
            }
        }
        // Locations whose step has not been read yet (SSM shows the first ones of a long list).
        let unread = p.total - locations.len() as u32;
        if finished {
            p.not_run += unread;
        } else {
            p.waiting += unread;
        }
        rc.progress = p;
        return Ok(());
    }
    let filter = HistoryFilter {
        parent: Some(detail.summary.execution_id.clone()),
        limit: 10_000,
        ..HistoryFilter::default()
    };
    let (children, _) = state.store.history(&filter).await?;
    // SSM shows only the first resolved targets of a large run: the record knows them all (for runs
    // started here), and children seen count too.
    let recorded = if row.id > 0 {
        state.store.instance_count(row.id).await?
    } else {
        0
    };
    let mut p = Progress {
        total: (rc.targets.len().max(recorded).max(children.len())) as u32,
        ..Progress::default()
    };
    for c in &children {
        match c.status.tone() {
            Tone::Succeeded => p.succeeded += 1,
            Tone::Failed => p.failed += 1,
            Tone::Stopped => p.cancelled += 1,
            Tone::Waiting => p.waiting += 1,
            Tone::Running => p.running += 1,
        }
    }
    // Targets without a child yet: waiting while the run goes on, never run once it has ended.
    let unstarted = p.total.saturating_sub(children.len() as u32);
    if detail.summary.status.is_terminal() {
        p.not_run = unstarted;
    } else {
        p.waiting += unstarted;
    }
    rc.progress = p;
    // What needs a look first (failures, then running, waiting, stopped, succeeded), each in the order
    // it started; not yet started last within its group.
    let mut kids = children;
    kids.sort_by(|a, b| {
        let key = |k: &shared::api::ExecutionSummary| {
            (
                k.status.tone().attention(),
                k.start_time.is_none(),
                k.start_time.clone(),
                k.instance_id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    detail.children = kids;
    Ok(())
}

/// The key of `ExecutionDetail::parameters` that lists a run's TargetLocations as sent.
const SENT_LOCATIONS: &str = "TargetLocations";

/// A run across accounts and Regions shows what the console sent, from its record: each location
/// (with its limits) and the run's own concurrency and error threshold. What SSM echoes for these
/// on a run across accounts is undocumented (the sandbox answers its first location's).
async fn show_what_was_sent(
    state: &AppState,
    detail: &mut ExecutionDetail,
    row: &RunRow,
) -> Result<(), AppError> {
    let Some(plan) = state
        .store
        .plan_of(row.id)
        .await?
        .and_then(|p| serde_json::from_str::<shared::StartPlan>(&p).ok())
    else {
        return Ok(());
    };
    if plan.target_locations.is_empty() {
        return Ok(());
    }
    let sent: Vec<String> = plan
        .target_locations
        .iter()
        .flat_map(|loc| {
            loc.ssm_pieces().into_iter().map(|(accounts, regions)| {
                let mut parts = vec![
                    format!("Accounts {}", accounts.join(" ")),
                    format!("Regions {}", regions.join(" ")),
                ];
                let limits = [
                    (
                        "TargetLocationMaxConcurrency",
                        loc.max_concurrency.as_ref().map(|c| c.as_str()),
                    ),
                    (
                        "TargetLocationMaxErrors",
                        loc.max_errors.as_ref().map(|e| e.as_str()),
                    ),
                    (
                        "TargetsMaxConcurrency",
                        loc.targets_max_concurrency.as_ref().map(|c| c.as_str()),
                    ),
                    (
                        "TargetsMaxErrors",
                        loc.targets_max_errors.as_ref().map(|e| e.as_str()),
                    ),
                    ("ExecutionRoleName", loc.execution_role_name.as_deref()),
                ];
                parts.extend(
                    limits
                        .iter()
                        .filter_map(|(key, v)| v.map(|v| format!("{key} {v}"))),
                );
                if !loc.instance_ids.is_empty() {
                    let (key, values) = shared::Targets::InstanceIds(loc.instance_ids.clone()).to_ssm();
                    parts.push(format!("Targets {key} {}", values.join(" ")));
                }
                parts.join(" · ")
            })
        })
        .collect();
    detail.parameters.insert(SENT_LOCATIONS.to_owned(), sent);
    if let (Some(view), Some(sent)) = (detail.rate_control.as_mut(), plan.rate_control.as_ref()) {
        view.max_concurrency = sent.max_concurrency.as_str().to_owned();
        view.max_errors = sent.max_errors.as_str().to_owned();
    }
    Ok(())
}
