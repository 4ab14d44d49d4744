//! The watcher: one poller for all in-flight runs, within the SSM read budget, which records what it
//! sees and pushes changes to browsers. Viewers never cause SSM calls of their own (invariant 5).

use shared::api::{ExecutionDetail, ExecutionEvent, Progress, RateControlView};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::aws::ssm::{self, SsmExecution};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{ExecutionUpdate, HistoryFilter, RunRow};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs forever: polls every in-flight run once per round, then waits the poll interval. Every
/// `discover_every` (one call per region) it also lists the newest executions of our runbook, so that runs started outside
/// the console show in its history (marked as such).
pub async fn run(state: AppState) {
    let mut last_discovery: Option<std::time::Instant> = None;
    loop {
        if last_discovery.is_none_or(|t| t.elapsed() >= state.discover_every) {
            last_discovery = Some(std::time::Instant::now());
            for region in state.regions.clone() {
                if let Err(e) = discover(&state, &region).await {
                    note_error(&state, &region, &e);
                }
            }
            // Starts SSM answered unclearly: find their execution, or send them again.
            crate::runs::reconcile(&state, crate::runs::WHILE_SERVING).await;
        }
        match state.store.in_flight() {
            Ok(runs) => {
                for run in runs {
                    if let Err(e) = refresh(&state, &run).await {
                        note_error(&state, &run.region, &e);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read in-flight runs"),
        }
        tokio::time::sleep(state.poll).await;
    }
}

/// Records executions of our runbook that this console did not start (children come with their parent).
/// Pages are newest first: the children of a large rollout can fill many of them, so reading goes on (a
/// page per read slot) past pages of children, and stops at the first page that shows a top-level run
/// already known (everything older is known too), or after `DISCOVERY_PAGES`.
pub async fn discover(state: &AppState, region: &str) -> Result<(), AppError> {
    let clients = state.region(Some(region))?;
    let mut token = None;
    for _ in 0..DISCOVERY_PAGES {
        let (page, next) = {
            let _slot = state.limits(region).read.acquire().await;
            ssm::recent_page(clients, shared::RUNBOOK, token).await?
        };
        let mut reached_known = false;
        for ex in page.iter().filter(|ex| ex.parent_id.is_none()) {
            if state.store.by_execution_id(&ex.id)?.is_some() {
                reached_known = true;
            } else {
                record_foreign(state, region, ex)?;
            }
        }
        match next {
            Some(t) if !reached_known => token = Some(t),
            _ => break,
        }
    }
    Ok(())
}

/// Pages of our runbook's executions read per discovery, at most.
const DISCOVERY_PAGES: usize = 10;

fn record_foreign(state: &AppState, region: &str, ex: &ssm::SsmExecutionSummary) -> Result<(), AppError> {
    let added = state.store.record_foreign(
        region,
        &ex.id,
        &ex.document_name,
        ex.instance_id.as_deref(),
        &ex.status,
        ex.start_time.as_deref(),
    )?;
    if added {
        state.events.publish(ExecutionEvent {
            execution_id: ex.id.clone(),
            status: ex.status.clone(),
            parent_execution_id: None,
        });
    }
    Ok(())
}

fn note_error(state: &AppState, region: &str, e: &AppError) {
    if let AppError::Aws { code, .. } = e {
        if code.contains("Throttl") {
            // SSM says we are too fast: leave it alone for a moment.
            state.limits(region).read.back_off(Duration::from_secs(2));
        }
    }
    tracing::warn!(error = %e, "watching a run failed; will retry");
}

/// Asks SSM about one run (and its children), records the answer and publishes what changed.
/// Returns the detail as now known.
pub async fn refresh(state: &AppState, run: &RunRow) -> Result<ExecutionDetail, AppError> {
    let Some(execution_id) = run.execution_id.as_deref() else {
        return Err(AppError::NotFound("run has no execution yet".into()));
    };
    let clients = state.region(Some(&run.region))?;
    let limits = state.limits(&run.region);
    let ex = {
        let _slot = limits.read.acquire().await;
        ssm::get(clients, execution_id).await?
    };
    if ex.rate_control.is_some() {
        // One page of children per round, so a 1,000-target rollout costs one read a round, not twenty;
        // the pages cycle, so every child is read again within (children / 50) rounds.
        // After the run finishes they are read through once more, so no child is left behind.
        let finished = shared::is_terminal_status(&ex.status);
        if !finished {
            state.store.set_children_synced(execution_id, false)?;
        }
        let token = state.child_pages.next_page(execution_id, finished);
        let (children, next) = {
            let _slot = limits.read.acquire().await;
            ssm::children_page(clients, execution_id, token).await?
        };
        if state.child_pages.page_read(execution_id, next) {
            state.store.set_children_synced(execution_id, true)?;
        }
        for child in children {
            let changed = state.store.upsert_child(
                run,
                &child.id,
                child.instance_id.as_deref(),
                &child.status,
                child.start_time.as_deref(),
                child.end_time.as_deref(),
            )?;
            if changed {
                state.events.publish(ExecutionEvent {
                    execution_id: child.id.clone(),
                    status: child.status.clone(),
                    parent_execution_id: Some(execution_id.to_owned()),
                });
            }
        }
    }
    let mut detail = detail_of(run, &ex);
    let detail_json = serde_json::to_string(&detail).map_err(AppError::internal)?;
    let detail_changed = run.detail.as_deref() != Some(detail_json.as_str());
    let status_changed = state.store.update_execution(
        execution_id,
        &ExecutionUpdate {
            status: &ex.status,
            start_time: ex.start_time.as_deref(),
            end_time: ex.end_time.as_deref(),
            failure_message: ex.failure_message.as_deref(),
            detail: Some(&detail_json),
            document_version: ex.document_version.as_deref(),
            now_ms: now_ms(),
        },
    )?;
    if status_changed || detail_changed {
        state.events.publish(ExecutionEvent {
            execution_id: execution_id.to_owned(),
            status: ex.status.clone(),
            parent_execution_id: ex.parent_id.clone(),
        });
    }
    if status_changed && shared::is_terminal_status(&ex.status) {
        state.invalidate_fleet().await;
    }
    complete(state, &mut detail, run)?;
    Ok(detail)
}

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
            progress: Progress {
                total: rc.resolved.len() as u32,
                ..Progress::default()
            },
        }),
        children: Vec::new(),
        override_reason: None,
        rollback_of: None,
        rolled_back_by: Vec::new(),
        prior_options: Default::default(),
    }
}

/// Adds what our record knows (override, rollback links, prior options) and, for a rate-control parent,
/// its children and progress from the store (which the watcher keeps current).
pub fn complete(state: &AppState, detail: &mut ExecutionDetail, row: &RunRow) -> Result<(), AppError> {
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
    let Some(rc) = detail.rate_control.as_mut() else {
        return Ok(());
    };
    let filter = HistoryFilter {
        parent: Some(detail.summary.execution_id.clone()),
        limit: 10_000,
        ..HistoryFilter::default()
    };
    let (children, _) = state.store.history(&filter)?;
    // SSM shows only the first resolved targets of a large run: the record knows them all (for runs
    // started here), and children seen count too.
    let recorded = if row.id > 0 {
        state.store.instance_count(row.id)?
    } else {
        0
    };
    let mut p = Progress {
        total: (rc.targets.len().max(recorded).max(children.len())) as u32,
        ..Progress::default()
    };
    for c in &children {
        match c.status.as_str() {
            "Success" | "CompletedWithSuccess" => p.succeeded += 1,
            "Failed" | "TimedOut" | "CompletedWithFailure" => p.failed += 1,
            "Cancelled" => p.cancelled += 1,
            _ => p.running += 1,
        }
    }
    p.waiting = p.total.saturating_sub(children.len() as u32);
    rc.progress = p;
    let mut kids: Vec<_> = children.iter().map(RunRow::summary).collect();
    kids.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    detail.children = kids;
    Ok(())
}
