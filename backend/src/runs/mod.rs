//! The life of a start: record it, send it, tell SSM's answers apart, and settle the unclear ones
//! without relying on what AWS leaves undocumented.
//!
//! - A start is recorded (with a fresh ClientToken and its own run tag) before it is sent.
//! - SSM's answer is one of three kinds ([`StartOutcome`]): a definite refusal (the record is kept,
//!   marked Refused), a "not now" (throttling, the concurrent-execution quota: sent again with the same
//!   token, which SSM refused, so nothing was started), or an unclear one (a 5xx after the SDK's
//!   retries, a timeout, a lost reply: the run may exist; the record is marked Unknown, never Refused).
//! - Unclear starts are settled by [`reconcile`]: it looks for the execution by its run tag
//!   (DescribeAutomationExecutions, TagKey filter) and, only when SSM has none, sends the start again
//!   with a fresh ClientToken. A reused token is never relied on: AWS documents only that it "can't be
//!   reused", not what a reuse returns, or for how long.

use serde_json::json;
use shared::api::{
    InstanceView, MetadataOptions, ParametersInput, RateControlInput, RollbackResponse,
    StartExecutionRequest, TargetsInput,
};
use shared::{InstanceId, RunStatus, StartPlan, Targets, RUNBOOK};
use std::collections::BTreeMap;
use std::time::Duration;

mod assess;
mod detail;
pub use assess::{assess, check_alarm, resolve_targets, Assessment, ADMINISTRATION_ROLE};
pub use detail::{complete, detail_of, merge_steps};

use crate::aws::{ec2, ssm, AwsFault};
use crate::error::AppError;
use crate::state::AppState;
use crate::store::{NewRun, RunRow, STATUS_QUEUED, STATUS_RECORDED, STATUS_UNKNOWN};

/// What an error from StartAutomationExecution means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// SSM said no (validation, access denied, unknown document, ...): nothing was started.
    Refused,
    /// SSM said "not now" (throttling, the concurrent-execution quota): nothing was started; send it
    /// again later.
    NotNow,
    /// The run may or may not exist (a 5xx after the SDK's retries, a timeout, a lost connection).
    Unclear,
}

/// Classifies an error from StartAutomationExecution.
/// Decided by what happened on the wire ([`AwsFault`]), never by the status the console answers
/// with: an expired sign-in is a refusal, not an unclear start that would be sent days later.
pub fn classify(err: &AppError) -> StartOutcome {
    match err {
        AppError::Aws { fault, .. } => match fault {
            AwsFault::Throttled | AwsFault::QuotaFull | AwsFault::CredentialsDelayed => StartOutcome::NotNow,
            AwsFault::Refused | AwsFault::NotSent => StartOutcome::Refused,
            AwsFault::ServerFault | AwsFault::Unanswered => StartOutcome::Unclear,
        },
        // Our own validation, before anything was sent.
        AppError::Validation(_) | AppError::BadJson(_) | AppError::BadQuery(_) => StartOutcome::Refused,
        _ => StartOutcome::Unclear,
    }
}

/// How often a throttled start is sent again before the caller hears about it.
const START_ATTEMPTS: u32 = 10;

/// Whether an error is SSM's answer that its concurrency quota and queue are full: waiting seconds
/// does not help, so the start is queued by the console instead of retried in the request.
fn is_quota_full(err: &AppError) -> bool {
    matches!(
        err,
        AppError::Aws {
            fault: AwsFault::QuotaFull,
            ..
        }
    )
}

/// Sends a recorded start to SSM, again with the same token while SSM throttles it (it started
/// nothing then), up to `attempts` times. Returns the execution ID, stored.
pub async fn send_start(
    state: &AppState,
    run: &RunRef<'_>,
    plan: &StartPlan,
    token: &str,
    attempts: u32,
) -> Result<String, AppError> {
    let clients = &crate::inventory::clients_for(state, run.account, run.region).await?;
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    let execution_id = loop {
        let sent = {
            let limits = state.limits(run.account, run.region);
            let _slot = limits.start.acquire().await;
            ssm::start(
                clients,
                RUNBOOK,
                plan,
                token,
                run.record_id,
                run.run_tag,
                run.requester,
            )
            .await
        };
        match sent {
            Ok(id) => break id,
            Err(e) if classify(&e) == StartOutcome::NotNow && !is_quota_full(&e) && attempt < attempts => {
                tracing::info!(record = run.record_id, attempt, error = %e, "SSM said not now; sending the start again");
                state.limits(run.account, run.region).start.back_off(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    crate::crash::point("after-start");
    settle(state, run.record_id, run.account, &execution_id).await?;
    crate::webhooks::notify(
        state,
        &crate::webhooks::Notice {
            event: "run.started",
            summary: format!(
                "{} started run {execution_id} in {}{}",
                run.requester,
                if run.account.is_empty() {
                    String::new()
                } else {
                    format!("account {}, ", run.account)
                },
                run.region
            ),
            data: json!({"execution_id": execution_id, "record_id": run.record_id, "requester": run.requester,
                         "account": run.account, "region": run.region}),
        },
    )
    .await;
    Ok(execution_id)
}

/// Stops a run SSM is running (within the account and region's read budget), records who stopped
/// it, and tells the viewers. A run that already ended is a 409.
pub async fn stop(state: &AppState, row: &RunRow, who: &str) -> Result<(), AppError> {
    let id = row.execution_id.clone().ok_or_else(|| AppError::Conflict {
        code: "NotStarted".into(),
        message: format!("record {} has no execution yet: nothing to stop", row.id),
    })?;
    let clients = crate::inventory::clients_for(state, &row.account, &row.region).await?;
    let stopped = {
        let limits = state.limits(&row.account, &row.region);
        let _slot = limits.read.acquire().await;
        ssm::stop(&clients, &id).await
    };
    match stopped {
        Ok(()) => {}
        Err(AppError::Aws { code, message, .. }) if code == "InvalidAutomationStatusUpdateException" => {
            return Err(AppError::Conflict { code, message });
        }
        Err(e) => return Err(e),
    }
    state.store.set_stopped_by(&id, who).await?;
    state
        .store
        .auth_event("run-stopped", Some(who), Some(&id), None)
        .await?;
    state.events.publish(shared::api::ExecutionEvent {
        execution_id: id,
        status: "Cancelling".into(),
        parent_execution_id: row.parent_execution_id.clone(),
        account: row.account.clone(),
        accounts: crate::store::span_accounts(row.span.as_deref()),
    });
    Ok(())
}

/// Why a run is started: a person's request, a rollback of another run, or a plan's wave
/// (`plan-id/wave-index`, written with the record so the wave is never started twice).
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    Request,
    RollbackOf(&'a str),
    PlanWave(&'a str),
}

/// Where a run acts: a member account ('' for the console's own) and a region.
#[derive(Clone, Copy)]
pub struct Place<'a> {
    pub account: &'a str,
    pub region: &'a str,
}

/// What a send needs to know about its record.
pub struct RunRef<'a> {
    pub record_id: i64,
    pub account: &'a str,
    pub region: &'a str,
    pub run_tag: Option<&'a str>,
    pub requester: &'a str,
}

/// Stores the execution ID of a record (linking a rollback to the run it reverts) and tells the
/// browsers.
async fn settle(state: &AppState, record_id: i64, account: &str, execution_id: &str) -> Result<(), AppError> {
    state.store.set_execution_id(record_id, execution_id).await?;
    if let Some(reverted) = state.store.rollback_of(record_id).await? {
        state.store.add_rolled_back_by(&reverted, execution_id).await?;
    }
    let span = state.store.span_of(record_id).await?;
    state.events.publish(shared::api::ExecutionEvent {
        execution_id: execution_id.to_owned(),
        status: RunStatus::InProgress,
        parent_execution_id: None,
        account: account.to_owned(),
        accounts: crate::store::span_accounts(span.as_deref()),
    });
    Ok(())
}

/// What became of a start the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartReceipt {
    pub record_id: i64,
    /// None while the start is queued: SSM's concurrency quota was full, or SSM kept throttling.
    pub execution_id: Option<String>,
}

/// A start held for a second person: why it needs one, and until when (RFC 3339).
#[derive(Clone, Copy, Debug)]
pub struct Hold<'a> {
    pub why: &'a str,
    pub expires_at: &'a str,
    /// The requester's review (JSON), for the approver.
    pub review: &'a str,
}

/// Records a start (with each target's current options, for rollback) and sends it. When SSM says
/// "not now" the record is kept as Queued and the watcher sends it later ([`reconcile`]).
pub async fn record_and_send(
    state: &AppState,
    place: &Place<'_>,
    plan: &StartPlan,
    targets: &[InstanceView],
    origin: Origin<'_>,
    requester: &str,
) -> Result<StartReceipt, AppError> {
    let (record_id, token) = record(state, place, plan, targets, origin, requester, None).await?;
    crate::crash::point("after-record");
    send_recorded_now(state, place, plan, requester, record_id, &token).await
}

/// Records a start that waits for a second person; nothing is sent until it is approved
/// ([`send_approved`]). Returns the record ID, which is also the approval's.
pub async fn record_held(
    state: &AppState,
    place: &Place<'_>,
    plan: &StartPlan,
    targets: &[InstanceView],
    origin: Origin<'_>,
    requester: &str,
    hold: Hold<'_>,
) -> Result<i64, AppError> {
    Ok(record(state, place, plan, targets, origin, requester, Some(hold))
        .await?
        .0)
}

/// Sends an approved start now (it was recorded before it was held, with its run tag).
pub async fn send_approved(state: &AppState, record_id: i64) -> Result<(), AppError> {
    let row = state
        .store
        .by_record_id(record_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no record {record_id}")))?;
    // Held until this moment, so never sent: no wait for SSM's list, and the approver judged its age.
    reconcile_one(state, &row, true).await
}

async fn record(
    state: &AppState,
    place: &Place<'_>,
    plan: &StartPlan,
    targets: &[InstanceView],
    origin: Origin<'_>,
    requester: &str,
    hold: Option<Hold<'_>>,
) -> Result<(i64, String), AppError> {
    let (rollback_of, plan_wave) = match origin {
        Origin::Request => (None, None),
        Origin::RollbackOf(id) => (Some(id), None),
        Origin::PlanWave(marker) => (None, Some(marker)),
    };
    // Each target's options, and where it is: a run across accounts restores each place through its
    // own account's clients. (Readers of the options ignore the extra keys.)
    let prior: serde_json::Map<String, serde_json::Value> = targets
        .iter()
        .map(|i| {
            let mut v = json!(i.metadata);
            v["account"] = json!(i.account);
            v["region"] = json!(i.region);
            (i.instance_id.clone(), v)
        })
        .collect();
    let instance_ids: Vec<String> = targets.iter().map(|i| i.instance_id.clone()).collect();
    // A run across accounts acts in every account and unit of its locations and of its targets.
    let span = (!plan.target_locations.is_empty()).then(|| {
        let mut all: Vec<String> = plan
            .target_locations
            .iter()
            .flat_map(|l| {
                l.accounts
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .chain(l.units.iter().map(|u| u.as_str().to_owned()))
            })
            .chain(targets.iter().map(|t| t.account.clone()))
            .filter(|a| !a.is_empty())
            .collect();
        all.sort();
        all.dedup();
        format!(",{},", all.join(","))
    });
    let places: usize = plan.target_locations.iter().map(|l| l.places().len()).sum();
    let units: Vec<&str> = plan
        .target_locations
        .iter()
        .flat_map(|l| l.units.iter().map(|u| u.as_str()))
        .collect();
    let targets_text = plan.rate_control.as_ref().map(|rc| match &rc.targets {
        Targets::InstanceIds(ids) => json!(format!("{} instances", ids.len())),
        Targets::Tag { key, value } if !units.is_empty() && places == 0 => {
            json!(format!("tag:{key}={value} in {}", units.join(", ")))
        }
        Targets::Tag { key, value } if !units.is_empty() => {
            json!(format!(
                "tag:{key}={value} in {} and {places} account-Regions",
                units.join(", ")
            ))
        }
        Targets::Tag { key, value } if places > 0 => {
            json!(format!("tag:{key}={value} in {places} account-Regions"))
        }
        Targets::Tag { key, value } => json!(format!("tag:{key}={value}")),
    });
    // The first token is also the run's tag: later sends get fresh tokens, the tag stays.
    let token = uuid::Uuid::new_v4().to_string();
    let plan_json = serde_json::to_value(plan).map_err(AppError::internal)?;
    let region = place.region;
    let record_id = state
        .store
        .record_start(&NewRun {
            client_token: &token,
            account: place.account,
            region,
            document_name: RUNBOOK,
            requester,
            parameters: &plan_json,
            targets: targets_text.as_ref(),
            instance_id: plan.parameters.instance_id.as_ref().map(InstanceId::as_str),
            instance_ids: &instance_ids,
            override_reason: plan.override_reason.as_deref(),
            prior_options: Some(&serde_json::Value::Object(prior)),
            rollback_of,
            plan_wave,
            span: span.as_deref(),
            approval: hold.as_ref().map(|h| (h.why, h.expires_at)),
            review: hold.as_ref().map(|h| h.review),
        })
        .await?;
    Ok((record_id, token))
}

async fn send_recorded_now(
    state: &AppState,
    place: &Place<'_>,
    plan: &StartPlan,
    requester: &str,
    record_id: i64,
    token: &str,
) -> Result<StartReceipt, AppError> {
    let run = RunRef {
        record_id,
        account: place.account,
        region: place.region,
        run_tag: Some(token),
        requester,
    };
    match send_start(state, &run, plan, token, START_ATTEMPTS).await {
        Ok(execution_id) => Ok(StartReceipt {
            record_id,
            execution_id: Some(execution_id),
        }),
        Err(e) => match classify(&e) {
            StartOutcome::Refused => {
                // SSM answered no: nothing was started. The record stays, marked refused, for the audit.
                state.store.set_refused(record_id, &e.to_string()).await?;
                Err(e)
            }
            StartOutcome::NotNow => {
                // Nothing was started; the watcher sends it again when SSM has room.
                state.store.set_queued(record_id, &e.to_string()).await?;
                Ok(StartReceipt {
                    record_id,
                    execution_id: None,
                })
            }
            StartOutcome::Unclear => {
                state.store.set_unknown(record_id, &e.to_string()).await?;
                Err(AppError::refused(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "StartOutcomeUnknown",
                    format!(
                        "SSM did not answer clearly ({e}). The run may have started: the console is \
                         checking, and it will appear in History if it did; it will not be started twice."
                    ),
                ))
            }
        },
    }
}

/// Settles starts whose outcome is not known: at start-up every unsettled one (no request is sending
/// them then), and from the watcher those marked Unknown. Each is looked for by its run tag first; only
/// when SSM has no such execution is it sent again, with a fresh token.
pub async fn reconcile(state: &AppState, statuses: &[&str]) {
    settle_each(
        state,
        state.store.unsettled(statuses).await.map_err(AppError::from),
    )
    .await;
}

/// How old a Recorded start must be before another replica takes it for orphaned: longer than any
/// send takes, its wait for the start budget included.
const ORPHANED_AFTER_MS: i64 = 3_600_000;

/// Settles what no one else is settling, when this replica takes the lead. One process (SQLite):
/// every unsettled start, since no request is sending any yet. Several replicas (PostgreSQL), whose
/// requests may be sending their own starts right now: the unclear and queued ones, and Recorded
/// ones old enough that their sender must have died ([`reconcile_orphans`]).
pub async fn reconcile_on_taking_the_lead(state: &AppState) {
    if state.store.is_postgres() {
        reconcile(state, WHILE_SERVING).await;
        reconcile_orphans(state).await;
    } else {
        reconcile(state, AT_START_UP).await;
    }
}

/// Settles Recorded starts whose sender died (several replicas only; the leader asks now and then).
pub async fn reconcile_orphans(state: &AppState) {
    let cutoff = aws_smithy_types::DateTime::from_millis(state.store.clock.now_ms() - ORPHANED_AFTER_MS);
    let cutoff = crate::aws::rfc3339(Some(&cutoff)).unwrap_or_default();
    settle_each(
        state,
        state
            .store
            .recorded_before(&cutoff, state.store.clock.now_ms() - ORPHANED_AFTER_MS)
            .await
            .map_err(AppError::from),
    )
    .await;
}

async fn settle_each(state: &AppState, pending: Result<Vec<RunRow>, AppError>) {
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unsettled starts");
            return;
        }
    };
    for run in pending {
        if let Err(e) = reconcile_one(state, &run, false).await {
            tracing::warn!(record = run.id, error = %e, "could not settle a start yet; will try again");
        }
    }
}

/// When an unsettled start is sent again, or given up.
#[derive(Debug, Clone, Copy)]
pub struct Settling {
    /// After an unclear send, how long SSM's list has to show the run before it is sent again.
    pub wait: Duration,
    /// How long after it was asked for a start may still be sent.
    pub expiry: Duration,
}

/// The statuses start-up settles.
pub const AT_START_UP: &[&str] = &[STATUS_RECORDED, STATUS_UNKNOWN];
/// The statuses the watcher settles while requests may be sending others.
pub const WHILE_SERVING: &[&str] = &[STATUS_UNKNOWN, STATUS_QUEUED];

/// `known_unsent`: the start was never sent (it was held until now), so it is sent at once.
/// What the watcher does next with an unsettled start it looked for by its run tag.
#[derive(Debug, PartialEq, Eq)]
enum NextStep {
    /// SSM lists it: follow that execution.
    Adopt,
    /// It may be in SSM but not listed yet: look again next round.
    Wait,
    /// Asked for too long ago: refuse it, never send it.
    Expire,
    /// SSM has had time to list it and does not: send it again.
    SendAgain,
}

/// The order matters: a start whose last send is unclear gets its whole wait for SSM's list before
/// anything else is decided, expiry included. Expiring it first would call it refused while SSM may
/// be running it, and the run would go unwatched (or, asked for again, run twice).
fn next_step(found: bool, may_exist: bool, settled_wait: bool, expired: bool) -> NextStep {
    if found {
        NextStep::Adopt
    } else if may_exist && !settled_wait {
        NextStep::Wait
    } else if expired {
        NextStep::Expire
    } else {
        NextStep::SendAgain
    }
}

async fn reconcile_one(state: &AppState, run: &RunRow, known_unsent: bool) -> Result<(), AppError> {
    let plan: Option<StartPlan> = state
        .store
        .plan_of(run.id)
        .await?
        .and_then(|p| serde_json::from_str(&p).ok());
    let Some(plan) = plan else {
        return Ok(());
    };
    let now_ms = state.store.clock.now_ms();
    let millis = |t: &str| {
        aws_smithy_types::DateTime::from_str(t, aws_smithy_types::date_time::Format::DateTime)
            .ok()
            .and_then(|t| t.to_millis().ok())
    };
    // Asked for when requested, or when a second person approved it (their decision is the fresh
    // judgement; the hold before it does not count).
    let approved_ms = state
        .store
        .approval(run.id)
        .await?
        .filter(|a| a.status == "approved")
        .and_then(|a| a.decided_at.as_deref().and_then(millis));
    let asked_ms = millis(&run.created_at)
        .unwrap_or(now_ms)
        .max(approved_ms.unwrap_or(0));
    let expired = !known_unsent && now_ms - asked_ms > state.settling.expiry.as_millis() as i64;
    // A start that may have reached SSM waits for SSM's list to show it before it is sent again: a
    // Recorded one whose sender stopped, an Unknown one since its last unclear send.
    let may_exist = !known_unsent && matches!(run.status, RunStatus::Recorded | RunStatus::Unknown);
    let unclear_since = run.unsettled_at_ms.unwrap_or(asked_ms);
    let settled_wait = now_ms - unclear_since >= state.settling.wait.as_millis() as i64;
    let requester = run.requester.clone().unwrap_or_default();
    let run_tag = state.store.run_tag_of(run.id).await?;
    let token = match &run_tag {
        Some(tag) => {
            let clients = crate::inventory::clients_for(state, &run.account, &run.region).await?;
            let found = {
                let limits = state.limits(&run.account, &run.region);
                let _slot = limits.read.acquire().await;
                ssm::find_by_run_tag(&clients, tag).await?
            };
            match next_step(found.is_some(), may_exist, settled_wait, expired) {
                NextStep::Adopt => {
                    let id = found.unwrap_or_default();
                    tracing::info!(record = run.id, execution = %id, "found the execution of an unsettled start");
                    return settle(state, run.id, &run.account, &id).await;
                }
                NextStep::Wait => {
                    if run.status == RunStatus::Recorded {
                        // Its sender stopped (a crash, a restart): from now on the watcher looks for it.
                        state
                            .store
                            .set_unknown(
                                run.id,
                                "the console stopped while sending this start; looking for it in SSM",
                            )
                            .await?;
                    }
                    return Ok(());
                }
                NextStep::Expire => {
                    return Ok(state
                        .store
                        .set_refused(run.id, &expiry_message(state, run))
                        .await?)
                }
                NextStep::SendAgain => {
                    // SSM has no such run: send it again, with a token never used before (recorded first).
                    let fresh = uuid::Uuid::new_v4().to_string();
                    state.store.set_client_token(run.id, &fresh).await?;
                    fresh
                }
            }
        }
        // A record from before run tags: only its own token can find it.
        None if expired => {
            return Ok(state
                .store
                .set_refused(run.id, &expiry_message(state, run))
                .await?)
        }
        None => run.client_token.clone().unwrap_or_default(),
    };
    // A plan's wave is sent only while its plan runs: a paused or halted plan's waits for it to be
    // resumed, a cancelled or finished plan's is never sent.
    if let Some(marker) = state.store.plan_wave_of(run.id).await? {
        let plan_id = crate::plans::plan_id_of(&marker);
        match state.store.plan(plan_id).await?.map(|p| p.status) {
            Some(shared::plans::PlanStatus::Running) | None => {}
            Some(s) if s.is_final() => {
                return Ok(state
                    .store
                    .set_refused(run.id, &format!("not sent: its plan is {}", s.as_str()))
                    .await?);
            }
            Some(_) => return Ok(()),
        }
    }
    let r = RunRef {
        record_id: run.id,
        account: &run.account,
        region: &run.region,
        run_tag: run_tag.as_deref(),
        requester: &requester,
    };
    // The watcher makes one attempt: it comes back next round, and must not sit in a retry loop
    // meanwhile. An approval's send is a request's, and retries throttling as a start does.
    let attempts = if known_unsent { START_ATTEMPTS } else { 1 };
    match send_start(state, &r, &plan, &token, attempts).await {
        Ok(id) => {
            tracing::info!(record = run.id, execution = %id, "sent an unsettled start");
            Ok(())
        }
        Err(e) => match classify(&e) {
            StartOutcome::Refused => Ok(state.store.set_refused(run.id, &e.to_string()).await?),
            StartOutcome::NotNow => Ok(state.store.set_queued(run.id, &e.to_string()).await?),
            StartOutcome::Unclear => Ok(state.store.set_unknown(run.id, &e.to_string()).await?),
        },
    }
}

/// Why a start that waited too long was not sent.
fn expiry_message(state: &AppState, run: &RunRow) -> String {
    format!(
        "not sent: it waited more than {} minutes (SSM was {}, and it is not in SSM), so the readiness check \
         it passed at {} is stale; start it again",
        state.settling.expiry.as_secs() / 60,
        if run.status == RunStatus::Queued { "full or throttling" } else { "unclear about it" },
        run.created_at
    )
}

/// The options a rollback sets back: tokens, endpoint and hop limit.
fn restorable(m: &MetadataOptions) -> (String, String, u8) {
    (
        m.http_tokens.clone(),
        m.http_endpoint.clone(),
        m.http_put_response_hop_limit,
    )
}

/// The runs that would put every instance a run changed back to its recorded prior options: one per
/// distinct set of prior options in each account and region (rate-controlled when it covers several),
/// each with the instances it restores as they are now; and the notes and skipped instances.
pub struct RollbackPlan {
    pub starts: Vec<RollbackStart>,
    pub notes: Vec<String>,
    pub skipped: Vec<String>,
}

/// One run of a rollback.
pub struct RollbackStart {
    pub account: String,
    pub region: String,
    pub plan: StartPlan,
    pub targets: Vec<InstanceView>,
}

/// An account as a sentence names it: the console's own is '' in records.
fn account_shown(account: &str) -> &str {
    if account.is_empty() {
        "the console's account"
    } else {
        account
    }
}

/// Whether AWS refused to let the console into a place (a definite answer that will not change by
/// itself), rather than failing in a way that may pass.
pub fn place_refused(e: &AppError) -> bool {
    matches!(
        e,
        AppError::Aws {
            fault: crate::aws::AwsFault::Refused | crate::aws::AwsFault::NotSent,
            ..
        }
    )
}

/// Works out a rollback without starting anything (the preview and the rollback share it).
/// Instances that have since been terminated, or are gone, are skipped and named in the notes.
pub async fn plan_rollback(state: &AppState, id: &str) -> Result<RollbackPlan, AppError> {
    let row = state
        .store
        .by_execution_id(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("execution {id} was not started by this console")))?;
    if !row.status.is_terminal() {
        return Err(AppError::Conflict {
            code: "StillRunning".into(),
            message: format!(
                "execution {id} is {}; stop it or let it finish before rolling back",
                row.status
            ),
        });
    }
    let prior: BTreeMap<String, MetadataOptions> = row
        .prior_options
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .filter(|p: &BTreeMap<String, MetadataOptions>| !p.is_empty())
        .ok_or_else(|| AppError::Conflict {
            code: "NothingToRollBack".into(),
            message: format!(
                "execution {id} has no recorded prior options (a child run: roll back its parent)"
            ),
        })?;
    // Where each instance was (older records: the run's own account and region).
    let recorded: BTreeMap<String, serde_json::Value> = row
        .prior_options
        .as_deref()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    let place_of = |id: &str| {
        let v = recorded.get(id);
        let text = |k: &str, or: &str| {
            v.and_then(|v| v[k].as_str())
                .filter(|s| !s.is_empty())
                .map_or_else(|| or.to_owned(), str::to_owned)
        };
        let hub_or_row = text("account", &row.account);
        (hub_or_row, text("region", &row.region))
    };
    let mut by_place: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for id in prior.keys() {
        by_place.entry(place_of(id)).or_default().push(id.clone());
    }
    let hub = crate::routes::identity::resolve(state).await?.account;
    let mut starts = Vec::new();
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    for ((account, region), ids) in by_place {
        // The console's own account is '' in records and runs.
        let account = if account == hub { String::new() } else { account };
        let read = async {
            let clients = crate::inventory::clients_for(state, &account, &region).await?;
            // By filter, not by ID: EC2 fails a whole by-ID call once any of them is gone.
            let pace = state.ec2_reads(&account, &region);
            let current = ec2::describe(&clients, ec2::Selection::IdsThatExist(&ids), &pace).await?;
            Ok::<_, AppError>((clients, current))
        };
        let (clients, current) = match read.await {
            Ok(read) => read,
            // A place AWS refuses (its member role removed, a suspended account, a Region an SCP
            // denies) does not hold back the others: its instances are named. A fault that may pass
            // (throttling, a timeout) fails the whole rollback, to be tried again.
            Err(e) if place_refused(&e) => {
                let shown = account_shown(&account);
                notes.push(format!(
                    "{shown} {region}: cannot be read ({e}); its {} instance(s) are not restored by this rollback: \
                     roll back again once the console can reach it ({})",
                    ids.len(),
                    ids.join(", ")
                ));
                skipped.extend(ids);
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut groups: BTreeMap<(String, String, u8), Vec<InstanceView>> = BTreeMap::new();
        let mut gone = Vec::new();
        for wanted in &ids {
            match current.iter().find(|i| &i.instance_id == wanted) {
                None => {
                    notes.push(format!("{wanted}: no longer exists; nothing to restore"));
                    gone.push(wanted.clone());
                }
                Some(i) if matches!(i.state.as_str(), "terminated" | "shutting-down") => {
                    notes.push(format!("{wanted}: {}; nothing to restore", i.state));
                    gone.push(wanted.clone());
                }
                Some(_) => {}
            }
        }
        for inst in current.into_iter().filter(|i| !gone.contains(&i.instance_id)) {
            let Some(before) = prior.get(&inst.instance_id) else {
                continue;
            };
            if restorable(before) == restorable(&inst.metadata) {
                continue;
            }
            if before.http_endpoint == "disabled"
                && (before.http_tokens != inst.metadata.http_tokens
                    || before.http_put_response_hop_limit != inst.metadata.http_put_response_hop_limit)
            {
                notes.push(format!(
                    "{}: the runbook's disable path only turns the endpoint off; http_tokens and the hop limit stay {} and {} (they have no effect while it is off)",
                    inst.instance_id, inst.metadata.http_tokens, inst.metadata.http_put_response_hop_limit
                ));
            }
            groups.entry(restorable(before)).or_default().push(inst);
        }
        skipped.extend(gone);
        // Where the account enforces IMDSv2 at launch, EC2 refuses HttpTokens=optional on any
        // instance: those cannot go back to optional while it stays on, so they are named, not sent.
        if groups.keys().any(|(tokens, _, _)| tokens == "optional") {
            let read = crate::aws::launch::metadata_defaults(&clients).await;
            if let Err(e) = &read {
                notes.push(format!(
                    "{region}: the instance metadata defaults could not be read ({e}); if the account enforces IMDSv2 at launch there, EC2 refuses the optional tokens this rollback restores"
                ));
            }
            let enforced = read.is_ok_and(|d| d.http_tokens_enforced.as_deref() == Some("enabled"));
            if enforced {
                let shown = account_shown(&account);
                let blocked: Vec<String> = groups
                    .iter()
                    .filter(|((tokens, _, _), _)| tokens == "optional")
                    .flat_map(|(_, members)| members.iter().map(|i| i.instance_id.clone()))
                    .collect();
                for id in &blocked {
                    notes.push(format!(
                        "{id}: cannot be restored: its prior options have HttpTokens=optional, which the runbook \
                         sends, and {shown} enforces IMDSv2 at launch in {region} (HttpTokensEnforced), so EC2 \
                         refuses it there until that is turned off"
                    ));
                }
                groups.retain(|(tokens, _, _), _| tokens != "optional");
                skipped.extend(blocked);
            }
        }
        for ((tokens, endpoint, hop), members) in groups {
            for chunk in members.chunks(shared::params::MAX_TARGET_VALUES) {
                let ids: Vec<String> = chunk.iter().map(|i| i.instance_id.clone()).collect();
                let parameters = ParametersInput {
                    instance_id: (ids.len() == 1).then(|| ids[0].clone()),
                    enforce_imdsv2: Some(tokens.clone()),
                    metadata_access: Some(endpoint.clone()),
                    hop_limit: Some(json!(hop)),
                    assume_role: None,
                };
                let req = StartExecutionRequest {
                    alarm_name: None,
                    account: (!account.is_empty()).then(|| account.clone()),
                    region: Some(region.clone()),
                    parameters,
                    rate_control: (ids.len() > 1).then(|| RateControlInput {
                        targets: TargetsInput::InstanceIds(ids.clone()),
                        max_concurrency: "10".into(),
                        // Restore as many as possible: one failure must not stop the others.
                        max_errors: "100%".into(),
                    }),
                    target_locations: None,
                    override_gate: None,
                };
                starts.push(RollbackStart {
                    account: account.clone(),
                    region: region.clone(),
                    plan: req.validate().map_err(AppError::Validation)?,
                    targets: chunk.to_vec(),
                });
            }
        }
    }
    if starts.is_empty() {
        let message = if skipped.is_empty() {
            format!("every instance of {id} already has its prior options")
        } else {
            format!("nothing of {id} can be restored: {}", notes.join("; "))
        };
        return Err(AppError::Conflict {
            code: "NothingToRollBack".into(),
            message,
        });
    }
    Ok(RollbackPlan {
        starts,
        notes,
        skipped,
    })
}

/// Who asks for a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackBy {
    /// A person: a rollback turns IMDSv1 back on, so it waits for a second person whenever the run
    /// it reverts did, or the approval policy covers it.
    Person,
    /// A plan that halted restores its wave at once: that is the safety net the plan was made with.
    PlanHalt,
}

/// Starts the runs of [`plan_rollback`], each recorded as the rollback of `id`.
pub async fn rollback(
    state: &AppState,
    id: &str,
    requester: &str,
    by: RollbackBy,
) -> Result<RollbackResponse, AppError> {
    let RollbackPlan {
        starts,
        mut notes,
        skipped,
    } = plan_rollback(state, id).await?;
    let reverted_was_approved = match state.store.by_execution_id(id).await? {
        Some(row) => state
            .store
            .approval(row.id)
            .await?
            .is_some_and(|a| a.status == "approved"),
        None => false,
    };
    // The policy judges the rollback as a whole (all its instances, in every place), as it judged the
    // run: split per place, a rollback of eight instances would pass a "more than five" rule.
    let why = match (by, starts.first()) {
        (RollbackBy::PlanHalt, _) | (_, None) => None,
        (RollbackBy::Person, Some(_)) if reverted_was_approved => {
            Some(format!("it reverts {id}, which needed a second person"))
        }
        (RollbackBy::Person, Some(first)) => {
            let every_target: Vec<shared::api::InstanceView> =
                starts.iter().flat_map(|s| s.targets.iter().cloned()).collect();
            crate::approvals::needed(state, &first.plan, &every_target).await?
        }
    };
    let mut execution_ids = Vec::new();
    let mut record_ids = Vec::new();
    let mut instances = Vec::new();
    for start in starts {
        let place = Place {
            account: &start.account,
            region: &start.region,
        };
        let sent = crate::approvals::hold_or_send(
            state,
            &place,
            &start.plan,
            &start.targets,
            Origin::RollbackOf(id),
            requester,
            why.as_deref(),
        )
        .await?;
        record_ids.push(match &sent {
            crate::approvals::Sent::Held(held) => *held,
            crate::approvals::Sent::Started(receipt) => receipt.record_id,
        });
        match sent {
            crate::approvals::Sent::Held(held) => notes.push(format!(
                "record {held}: held for a second person ({}); nothing is sent until another operator or admin approves it (approval {held})",
                why.as_deref().unwrap_or_default()
            )),
            // `settle` has linked it to the run it reverts.
            crate::approvals::Sent::Started(receipt) => match receipt.execution_id {
                Some(new_id) => execution_ids.push(new_id),
                None => notes.push(format!(
                    "record {}: queued, because SSM's concurrent-automation quota is full; the console starts it when SSM has room",
                    receipt.record_id
                )),
            },
        }
        instances.extend(start.targets.into_iter().map(|t| t.instance_id));
    }
    Ok(RollbackResponse {
        execution_ids,
        instances,
        notes,
        skipped,
        record_ids,
    })
}

/// Puts an instance-ID rollout's targets in the order of `ordered` (least likely to break first, see
/// `shared::preview::rollout_order`): SSM starts a rate-control run's targets in the order it is given
/// them, so a MaxErrors threshold stops the run before the riskiest instances. IDs `ordered` does not
/// hold keep their place after the others.
pub fn follow_rollout_order(plan: &mut StartPlan, ordered: &[shared::api::InstanceView]) {
    let Some(Targets::InstanceIds(ids)) = plan.rate_control.as_mut().map(|rc| &mut rc.targets) else {
        return;
    };
    let rank = |id: &shared::params::InstanceId| {
        ordered
            .iter()
            .position(|i| i.instance_id == id.as_str())
            .unwrap_or(usize::MAX)
    };
    ids.sort_by_key(rank);
}

/// Runs `lookup` (a call to SSM about a run the console has no record of) in one of the Region's
/// lookup slots: 429 when the budget is spent, never a queue.
pub async fn in_lookup_slot<T>(
    state: &AppState,
    region: &str,
    id: &str,
    lookup: impl std::future::Future<Output = T>,
) -> Result<T, AppError> {
    let limits = state.limits("", region);
    let slot = limits.lookup.try_acquire_now().await;
    let answer = match slot {
        Ok(_slot) => Ok(lookup.await),
        Err(wait) => Err(AppError::refused(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "LookupThrottled",
            format!(
                "execution {id} is not in this console's records, and looking it up in SSM is rate-limited; try again in {} s",
                wait.as_secs() + 1
            ),
        )),
    };
    answer
}

/// The answer for a run found neither in the records nor in SSM.
pub fn unknown_to_ssm(state: &AppState, id: &str) -> AppError {
    AppError::NotFound(format!(
        "execution {id} is not known to this console or to SSM in {}",
        state.regions.join(", ")
    ))
}

/// What a read of a recorded run outside the caller's accounts answers, for a caller who may look
/// runs up in the console's own account: exactly what a run unknown to SSM there answers (the same
/// lookups spent, the same SSM calls made, the same 429 when they are), so a hidden run's existence
/// does not show.
pub async fn hidden_run(state: &AppState, id: &str) -> AppError {
    // The same calls as that lookup, their answers thrown away, so that it takes as long too.
    for clients in state.clients.values() {
        if let Err(throttled) = in_lookup_slot(state, &clients.region, id, ssm::get(clients, id)).await {
            return throttled;
        }
    }
    unknown_to_ssm(state, id)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_unsettled_start_waits_for_ssm_s_list_before_it_expires_or_is_sent_again() {
        use super::{next_step, NextStep::*};
        // (found, may exist, waited long enough, expired) → next step
        let table = [
            ((true, true, false, true), Adopt),
            ((true, false, true, false), Adopt),
            // Sent just before its expiry, unclear: SSM may be running it; it is not refused yet.
            ((false, true, false, true), Wait),
            ((false, true, false, false), Wait),
            ((false, true, true, true), Expire),
            ((false, false, true, true), Expire),
            ((false, false, false, true), Expire),
            ((false, true, true, false), SendAgain),
            ((false, false, false, false), SendAgain),
        ];
        for ((found, may_exist, waited, expired), expected) in table {
            assert_eq!(
                next_step(found, may_exist, waited, expired),
                expected,
                "found {found}, may exist {may_exist}, waited {waited}, expired {expired}"
            );
        }
    }

    use super::*;
    use aws_sdk_ssm::error::SdkError;
    use aws_sdk_ssm::operation::start_automation_execution::StartAutomationExecutionError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_types::error::ErrorMetadata;

    /// AWS's answer `code` with HTTP `status`, as the SDK hands it to us.
    fn answered(status: u16, code: &str) -> SdkError<StartAutomationExecutionError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = HttpResponse::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        );
        SdkError::service_error(StartAutomationExecutionError::generic(meta), raw)
    }

    fn outcome(err: &SdkError<StartAutomationExecutionError, HttpResponse>) -> StartOutcome {
        classify(&crate::aws::sdk_error("ssm:StartAutomationExecution", err))
    }

    #[test]
    fn a_start_is_classified_by_what_happened_on_the_wire() {
        use StartOutcome::{NotNow, Refused, Unclear};
        let table = [
            (answered(400, "AccessDeniedException"), Refused),
            (
                answered(400, "InvalidAutomationExecutionParametersException"),
                Refused,
            ),
            // Credentials AWS no longer takes: nothing was started, and nothing will be until a
            // person signs in again; never an unclear start sent days later.
            (answered(400, "ExpiredTokenException"), Refused),
            (answered(400, "UnrecognizedClientException"), Refused),
            (answered(403, "SignatureDoesNotMatch"), Refused),
            (answered(403, "IncompleteSignature"), Refused),
            (answered(403, "OptInRequired"), Refused),
            (answered(400, "ThrottlingException"), NotNow),
            // EC2 throttles with a 503: the code decides, not the status.
            (answered(503, "RequestLimitExceeded"), NotNow),
            (answered(400, "AutomationExecutionLimitExceededException"), NotNow),
            (answered(500, "InternalServerError"), Unclear),
            (answered(503, "ServiceUnavailable"), Unclear),
        ];
        for (err, expected) in &table {
            assert_eq!(outcome(err), *expected, "{err:?}");
        }
        // A credential provider that failed (an expired SSO session, a failing credential process):
        // the request never left.
        let no_credentials = SdkError::dispatch_failure(ConnectorError::other(
            Box::new(
                aws_credential_types::provider::error::CredentialsError::provider_error(
                    "the SSO session has expired",
                ),
            ),
            None,
        ));
        assert_eq!(outcome(&no_credentials), Refused);
        let classified = crate::aws::sdk_error("ssm:StartAutomationExecution", &no_credentials);
        assert!(
            matches!(&classified, AppError::Aws { code, .. } if code == "CredentialsUnavailable"),
            "{classified:?}"
        );
        // A connection that broke, or no answer in time: the start may have arrived.
        let broke = SdkError::dispatch_failure(ConnectorError::io(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ))));
        assert_eq!(outcome(&broke), Unclear);
        assert_eq!(classify(&AppError::AwsUnavailable("timed out".into())), Unclear);
    }
}
