//! The watcher: one poller for all in-flight runs, within the SSM read budget, which records what it
//! sees and pushes changes to browsers. Viewers never cause SSM calls of their own (invariant 5).

use shared::api::{ExecutionDetail, ExecutionEvent};
use std::time::Duration;

use crate::aws::ssm;
use crate::error::AppError;
use crate::runs;
use crate::state::AppState;
use crate::store::{ExecutionUpdate, RunRow};

/// Runs forever: polls every in-flight run once per round, then waits the poll interval. Every
/// `discover_every` (one call per region) it also lists the newest executions of our runbook, so that runs started outside
/// the console show in its history (marked as such).
pub async fn run(state: AppState) {
    let mut last_discovery: Option<std::time::Instant> = None;
    let mut last_settling: Option<std::time::Instant> = None;
    // Unsettled starts are looked at a few times within their wait, so one is sent again soon after
    // its wait ends (a query of the store when there are none).
    let settle_every = (state.settling.wait / 4).clamp(Duration::from_secs(1), Duration::from_secs(15));
    loop {
        if last_discovery.is_none_or(|t| t.elapsed() >= state.discover_every) {
            last_discovery = Some(std::time::Instant::now());
            for region in state.regions.clone() {
                if let Err(e) = discover(&state, &region).await {
                    note_error(&state, &region, &e);
                }
            }
        }
        if last_settling.is_none_or(|t| t.elapsed() >= settle_every) {
            last_settling = Some(std::time::Instant::now());
            // Starts SSM answered unclearly or queued: find their execution, or send them again.
            crate::runs::reconcile(&state, crate::runs::WHILE_SERVING).await;
            if state.store.is_postgres() {
                crate::runs::reconcile_orphans(&state).await;
            }
        }
        match state.store.in_flight().await {
            Ok(runs) => {
                for run in runs {
                    if let Err(e) = refresh(&state, &run).await {
                        note_error(&state, &run.region, &e);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read in-flight runs"),
        }
        *state
            .watcher_round
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
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
            let limits = state.limits("", region);
            let _slot = limits.read.acquire().await;
            ssm::recent_page(clients, shared::RUNBOOK, token).await?
        };
        let mut reached_known = false;
        for ex in page.iter().filter(|ex| ex.parent_id.is_none()) {
            if state.store.by_execution_id(&ex.id).await?.is_some() {
                reached_known = true;
            } else {
                record_foreign(state, region, ex).await?;
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

async fn record_foreign(
    state: &AppState,
    region: &str,
    ex: &ssm::SsmExecutionSummary,
) -> Result<(), AppError> {
    let added = state
        .store
        .record_foreign(
            region,
            &ex.id,
            &ex.document_name,
            ex.instance_id.as_deref(),
            ex.status.as_str(),
            ex.start_time.as_deref(),
        )
        .await?;
    if added {
        state.events.publish(ExecutionEvent {
            execution_id: ex.id.clone(),
            status: ex.status.clone(),
            parent_execution_id: None,
            account: String::new(),
            accounts: Vec::new(),
        });
    }
    Ok(())
}

fn note_error(state: &AppState, region: &str, e: &AppError) {
    if let AppError::Aws { code, .. } = e {
        if code.contains("Throttl") {
            // SSM says we are too fast: leave it alone for a moment.
            state.limits("", region).read.back_off(Duration::from_secs(2));
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
    let clients = &crate::inventory::clients_for(state, &run.account, &run.region).await?;
    let limits = state.limits(&run.account, &run.region);
    let mut ex = {
        let _slot = limits.read.acquire().await;
        ssm::get(clients, execution_id).await?
    };
    if ex.is_cross_account() {
        // A run across accounts and Regions: one step per location, whose runs live in their own
        // accounts (no children to list here). When SSM shows only the first steps, the rest are read
        // a page per round, in the read slot the children's page would take, cycling, and once more
        // through all of them after the run ends; the steps read before are kept meanwhile.
        if ex.steps_truncated {
            let finished = ex.status.is_terminal();
            let token = state.child_pages.next_page(execution_id, finished);
            let (page, next) = {
                let _slot = limits.read.acquire().await;
                ssm::steps_page(clients, execution_id, token).await?
            };
            let swept = state.child_pages.page_read(execution_id, next);
            // Watched until the last sweep is done, even when the run is first seen finished.
            state.store.set_children_synced(execution_id, swept).await?;
            let known = run
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<ExecutionDetail>(d).ok())
                .map(|d| d.steps)
                .unwrap_or_default();
            let first = std::mem::take(&mut ex.steps);
            ex.steps = runs::merge_steps(runs::merge_steps(known, first), page);
        }
    } else if ex.rate_control.is_some() {
        // One page of children per round, so a 1,000-target rollout costs one read a round, not twenty;
        // the pages cycle, so every child is read again within (children / 50) rounds.
        // After the run finishes they are read through once more, so no child is left behind.
        let finished = ex.status.is_terminal();
        if !finished {
            state.store.set_children_synced(execution_id, false).await?;
        }
        let token = state.child_pages.next_page(execution_id, finished);
        let (children, next) = {
            let _slot = limits.read.acquire().await;
            ssm::children_page(clients, execution_id, token).await?
        };
        if state.child_pages.page_read(execution_id, next) {
            state.store.set_children_synced(execution_id, true).await?;
        }
        for child in children {
            let changed = state
                .store
                .upsert_child(
                    run,
                    &child.id,
                    child.instance_id.as_deref(),
                    child.status.as_str(),
                    child.start_time.as_deref(),
                    child.end_time.as_deref(),
                )
                .await?;
            if changed {
                state.events.publish(ExecutionEvent {
                    execution_id: child.id.clone(),
                    status: child.status.clone(),
                    parent_execution_id: Some(execution_id.to_owned()),
                    account: run.account.clone(),
                    accounts: crate::store::span_accounts(run.span.as_deref()),
                });
            }
        }
    }
    let mut detail = runs::detail_of(run, &ex);
    let detail_json = serde_json::to_string(&detail).map_err(AppError::internal)?;
    let detail_changed = run.detail.as_deref() != Some(detail_json.as_str());
    let status_changed = state
        .store
        .update_execution(
            execution_id,
            &ExecutionUpdate {
                status: ex.status.as_str(),
                start_time: ex.start_time.as_deref(),
                end_time: ex.end_time.as_deref(),
                failure_message: ex.failure_message.as_deref(),
                detail: Some(&detail_json),
                document_version: ex.document_version.as_deref(),
                now_ms: state.store.clock.now_ms(),
            },
        )
        .await?;
    if status_changed || detail_changed {
        state.events.publish(ExecutionEvent {
            execution_id: execution_id.to_owned(),
            status: ex.status.clone(),
            parent_execution_id: ex.parent_id.clone(),
            account: run.account.clone(),
            accounts: crate::store::span_accounts(run.span.as_deref()),
        });
    }
    if status_changed && ex.status.is_terminal() && ex.parent_id.is_none() {
        let ok = ex.status == shared::RunStatus::Success;
        crate::webhooks::notify(
            state,
            &crate::webhooks::Notice {
                event: if ok { "run.ended" } else { "run.failed" },
                summary: format!(
                    "run {execution_id} ended {}{}",
                    ex.status.as_str(),
                    ex.failure_message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ),
                data: serde_json::json!({"execution_id": execution_id, "status": ex.status.as_str(),
                    "requester": run.requester, "account": run.account, "region": run.region,
                    "failure_message": ex.failure_message}),
            },
        )
        .await;
    }
    if status_changed && ex.status.is_terminal() {
        // A run across accounts and Regions changed every location's instances; any other, its own.
        // Read again in the background, every run that ends in one place within a second by one
        // read of that place (its instances by ID when that is fewer calls); pages meanwhile serve
        // the last reading.
        if ex.is_cross_account() {
            state.want_full_fleet_read();
        } else {
            let mut targets: Vec<String> = run
                .prior_options
                .as_deref()
                .and_then(|p| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(p).ok())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            targets.extend(run.instance_id.clone());
            // SSM resolves tag targets when the run starts: instances tagged since the check are
            // changed too, so the whole place is read.
            if run.targets.as_deref().is_some_and(|t| t.contains("tag:")) {
                targets.clear();
            }
            state.fleet_instances_changed_in(&run.account, &run.region, targets);
            let account = match state.identity.get() {
                Some(me) if run.account.is_empty() => me.account.clone(),
                _ => run.account.clone(),
            };
            crate::sources::place_changed(state, &account, &run.region).await;
        }
        crate::inventory::start_refresh(state);
    }
    runs::complete(state, &mut detail, run).await?;
    Ok(detail)
}
