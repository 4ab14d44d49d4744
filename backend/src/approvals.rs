//! Two-person approval of starts: the policy (in the store, set by admins), holding a start that needs
//! it (recorded as AwaitingApproval with its approval in one write, so nothing can send it early),
//! and the decision: another operator or admin approves it (it is sent at once) or rejects it; the
//! requester cannot approve their own; unanswered, it expires. Decisions are in the audit trail.

use shared::api::InstanceView;
use shared::api::Via;
use shared::approvals::{ApprovalList, ApprovalPolicy, ApprovalView};
use shared::StartPlan;

use crate::auth::AccountScope;
use crate::error::AppError;
use crate::state::AppState;

const POLICY_KEY: &str = "approval_policy";

pub async fn policy(state: &AppState) -> Result<ApprovalPolicy, AppError> {
    Ok(state
        .store
        .setting(POLICY_KEY)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

pub async fn set_policy(state: &AppState, policy: &ApprovalPolicy, who: &str) -> Result<(), AppError> {
    policy.validate().map_err(AppError::Validation)?;
    let text = serde_json::to_string(policy).map_err(AppError::internal)?;
    state.store.set_setting(POLICY_KEY, &text).await?;
    state
        .store
        .auth_event("approval-policy-set", Some(who), Some(&text), None)
        .await?;
    Ok(())
}

/// Why this start needs a second person under the current policy, or None.
pub async fn needed(
    state: &AppState,
    plan: &StartPlan,
    targets: &[InstanceView],
) -> Result<Option<String>, AppError> {
    let policy = policy(state).await?;
    Ok(policy.needs_approval(
        targets.iter().map(|t| &t.tags),
        targets.len(),
        plan.override_reason.is_some(),
    ))
}

/// When a hold made now expires, as RFC 3339.
pub async fn expiry(state: &AppState) -> Result<String, AppError> {
    let hours = i64::from(policy(state).await?.expires_after_hours);
    let at = aws_smithy_types::DateTime::from_millis(state.store.clock.now_ms() + hours * 3_600_000);
    Ok(crate::aws::rfc3339(Some(&at)).unwrap_or_default())
}

/// Records a start that needs a second person (`why`), held until it is decided or expires, and
/// tells the webhooks. Returns the approval's ID (the record's).
pub async fn hold(
    state: &AppState,
    place: &crate::runs::Place<'_>,
    plan: &StartPlan,
    targets: &[InstanceView],
    origin: crate::runs::Origin<'_>,
    requester: &str,
    why: &str,
) -> Result<i64, AppError> {
    let expires_at = expiry(state).await?;
    // What the requester reviewed, riskiest first, kept for the approver: the same preview, the same
    // IMDSv1 calls, the same warnings.
    let window_days = (state.usage_window.as_secs() / 86_400) as u32;
    let mut ordered = targets.to_vec();
    shared::preview::rollout_order(&mut ordered);
    ordered.reverse();
    let review: Vec<shared::api::PreviewTarget> = ordered
        .iter()
        .take(shared::approvals::REVIEW_ROWS)
        .map(|t| shared::preview::preview(&plan.parameters, t, window_days))
        .collect();
    let review = serde_json::to_string(&review).map_err(AppError::internal)?;
    let hold = crate::runs::Hold {
        why,
        expires_at: &expires_at,
        review: &review,
    };
    let id = crate::runs::record_held(state, place, plan, targets, origin, requester, hold).await?;
    crate::webhooks::notify(state,
        &crate::webhooks::Notice {
            event: "approval.needed",
            summary: format!(
                "{requester} asks for a run on {} instance(s) that needs a second person ({why}): approval {id}",
                targets.len()
            ),
            data: serde_json::json!({"approval_id": id, "requester": requester, "why": why,
                "instances": targets.len(), "expires_at": expires_at}),
        },
    ).await;
    Ok(id)
}

/// What became of a start that may need a second person.
pub enum Sent {
    /// Held: recorded as AwaitingApproval (its approval's ID is the record's), nothing sent.
    Held(i64),
    /// Recorded and sent (or queued for SSM's quota).
    Started(crate::runs::StartReceipt),
}

/// The one place a start's approval decision is carried out (a request, a plan's wave, a rollback):
/// held when `why` says it needs a second person, recorded and sent otherwise.
pub async fn hold_or_send(
    state: &AppState,
    place: &crate::runs::Place<'_>,
    plan: &StartPlan,
    targets: &[InstanceView],
    origin: crate::runs::Origin<'_>,
    requester: &str,
    why: Option<&str>,
) -> Result<Sent, AppError> {
    match why {
        Some(why) => Ok(Sent::Held(
            hold(state, place, plan, targets, origin, requester, why).await?,
        )),
        None => Ok(Sent::Started(
            crate::runs::record_and_send(state, place, plan, targets, origin, requester).await?,
        )),
    }
}

fn now_text(state: &AppState) -> String {
    let at = aws_smithy_types::DateTime::from_millis(state.store.clock.now_ms());
    crate::aws::rfc3339(Some(&at)).unwrap_or_default()
}

/// Expires the holds whose time is up (their runs become Rejected, saying so).
pub async fn expire_due(state: &AppState) -> Result<(), AppError> {
    let now = now_text(state);
    for a in state.store.approvals(true, 1_000).await? {
        if a.expires_at <= now {
            state
                .store
                .decide_approval(
                    a.record_id,
                    "expired",
                    "imds-console",
                    None,
                    None,
                    Some(&format!("the approval expired unanswered at {}", a.expires_at)),
                )
                .await?;
            state
                .store
                .auth_event("run-approval-expired", None, Some(&a.record_id.to_string()), None)
                .await?;
        }
    }
    Ok(())
}

pub async fn list(
    state: &AppState,
    scope: &AccountScope,
    pending_only: bool,
) -> Result<ApprovalList, AppError> {
    expire_due(state).await?;
    let mut approvals = Vec::new();
    for a in state.store.approvals(pending_only, 200).await? {
        // A limited identity sees a held start only when every account it would act in is theirs.
        if scope.allowed.is_some() {
            let Some(run) = state.store.by_record_id(a.record_id).await? else {
                continue;
            };
            if !scope.allows_run(&run.account, run.span.as_deref()) {
                continue;
            }
        }
        if let Some(v) = view_of(state, a).await? {
            approvals.push(v);
        }
    }
    Ok(ApprovalList { approvals })
}

/// An approval with what it would run (None when its run record is gone).
async fn view_of(state: &AppState, a: crate::store::ApprovalRow) -> Result<Option<ApprovalView>, AppError> {
    let Some(run) = state.store.by_record_id(a.record_id).await? else {
        return Ok(None);
    };
    let requesters = requesters_of(state, &a).await?;
    let start: Option<shared::StartPlan> = state
        .store
        .plan_of(run.id)
        .await?
        .and_then(|p| serde_json::from_str(&p).ok());
    let review = a
        .review
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let plan_wave = match state.store.plan_wave_of(run.id).await? {
        Some(marker) => {
            let (plan_id, index) = marker.rsplit_once('/').unwrap_or((marker.as_str(), ""));
            state.store.plan(plan_id).await?.map(|p| {
                let wave = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| p.waves.get(i))
                    .map(|w| w.name.clone())
                    .unwrap_or_default();
                format!("plan \"{}\", wave {wave}", p.name)
            })
        }
        None => None,
    };
    Ok(Some(ApprovalView {
        approval_id: a.record_id,
        why: a.why,
        requester: a.requester,
        requesters,
        created_at: a.created_at,
        expires_at: a.expires_at,
        status: a.status,
        decided_by: a.decided_by,
        decided_via: a.decided_via,
        decided_at: a.decided_at,
        comment: a.comment,
        instance_count: state.store.instance_count(run.id).await?,
        account: run.account,
        region: run.region,
        targets: run.targets,
        instance_id: run.instance_id,
        override_reason: run.override_reason,
        execution_id: run.execution_id,
        start,
        review,
        plan_wave,
    }))
}

/// Everyone who caused a held start: its requester and, for a plan's wave, the plan's creator and
/// whoever started or resumed it (read from the plan now, so a resume after the hold counts too).
async fn requesters_of(state: &AppState, a: &crate::store::ApprovalRow) -> Result<Vec<String>, AppError> {
    let mut all = vec![a.requester.clone()];
    if let Some(marker) = state.store.plan_wave_of(a.record_id).await? {
        let plan_id = crate::plans::plan_id_of(&marker);
        if let Some(plan) = state.store.plan(plan_id).await? {
            for name in std::iter::once(plan.requester).chain(plan.requesters) {
                if !all.contains(&name) {
                    all.push(name);
                }
            }
        }
    }
    Ok(all)
}

/// Approves or rejects a held start. The requester cannot decide their own; an expired or decided
/// one is a 409. An approved start is sent at once (a "not now" from SSM queues it as usual).
pub async fn decide(
    state: &AppState,
    id: i64,
    approve: bool,
    identity: &crate::auth::Identity,
    comment: Option<&str>,
) -> Result<ApprovalView, AppError> {
    let who = identity.name.as_str();
    expire_due(state).await?;
    let a = state
        .store
        .approval(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no approval {id}")))?;
    if a.status != "pending" {
        return Err(AppError::Conflict {
            code: "ApprovalDecided".into(),
            message: format!(
                "approval {id} is {}{}",
                a.status,
                a.decided_by.map(|b| format!(" (by {b})")).unwrap_or_default()
            ),
        });
    }
    // Names compare regardless of case: built-in names are unique so, and a sign-on name that
    // differs only in case is not another person.
    if a.requester.eq_ignore_ascii_case(who) {
        return Err(AppError::refused(
            axum::http::StatusCode::FORBIDDEN,
            "OwnApproval",
            format!("{who} asked for this start: another operator or admin must approve it"),
        ));
    }
    if requesters_of(state, &a)
        .await?
        .iter()
        .any(|r| r.eq_ignore_ascii_case(who))
    {
        return Err(AppError::refused(
            axum::http::StatusCode::FORBIDDEN,
            "OwnApproval",
            format!(
                "{who} started or resumed the plan this wave belongs to, so caused this start: \
                 someone who did not must approve it"
            ),
        ));
    }
    if approve && !identity.own_credential {
        let what = if identity.via == Via::Token {
            "this token was not made by its owner with their own password"
        } else {
            "this session signed in with a password someone else set"
        };
        return Err(AppError::refused(
            axum::http::StatusCode::FORBIDDEN,
            "ForeignCredential",
            format!(
                "{who} cannot approve with a credential someone else made: {what}. Choose your own \
                 password, sign in again with it, then approve"
            ),
        ));
    }
    // An approved start is sent on behalf of whoever asked for it: not once they may no longer start
    // runs where it acts (demoted, limited to other accounts, or a sign-on user whose groups changed).
    if approve {
        if let Some(row) = state.store.by_record_id(id).await? {
            let accounts = crate::auth::policy::run_accounts(&row);
            if let Some(why) = crate::auth::no_longer_answerable(state, &a.requester, &accounts).await? {
                return Err(AppError::Conflict {
                    code: "RequesterNoLongerAllowed".into(),
                    message: format!("{why}: reject it, and let someone who may ask for it again"),
                });
            }
        }
    }
    // A plan's wave is sent only while its plan runs: approving one of a paused or halted plan would
    // send it past the pause (a cancelled plan's held waves are withdrawn at the cancel).
    if approve {
        if let Some(marker) = state.store.plan_wave_of(id).await? {
            let plan_id = crate::plans::plan_id_of(&marker);
            if let Some(plan) = state.store.plan(plan_id).await? {
                if plan.status != shared::plans::PlanStatus::Running {
                    return Err(AppError::Conflict {
                        code: "PlanNotRunning".into(),
                        message: format!(
                            "this start is a wave of plan \"{}\", which is {}: approve it once the plan is resumed",
                            plan.name,
                            plan.status.as_str()
                        ),
                    });
                }
            }
        }
    }
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > 1000) {
        return Err(AppError::field("comment", "at most 1,000 characters"));
    }
    if let Some(Err(m)) = comment.map(shared::params::check_plain_text) {
        return Err(AppError::field("comment", m));
    }
    let (status, run_message) = if approve {
        ("approved", None)
    } else {
        (
            "rejected",
            Some(format!(
                "rejected by {who}{}",
                comment.map(|c| format!(": {c}")).unwrap_or_default()
            )),
        )
    };
    if !state
        .store
        .decide_approval(
            id,
            status,
            who,
            Some(identity.via.as_str()),
            comment,
            run_message.as_deref(),
        )
        .await?
    {
        return Err(AppError::Conflict {
            code: "ApprovalDecided".into(),
            message: format!("approval {id} was decided by someone else just now"),
        });
    }
    state
        .store
        .auth_event(
            if approve { "run-approved" } else { "run-rejected" },
            Some(who),
            Some(&id.to_string()),
            None,
        )
        .await?;
    if approve {
        if let Err(e) = crate::runs::send_approved(state, id).await {
            // Approved and recorded: queued, the watcher sends it when AWS answers again.
            tracing::warn!(record = id, error = %e, "an approved start could not be sent yet");
            state.store.set_queued(id, &e.to_string()).await?;
        }
    }
    let decided = state
        .store
        .approval(id)
        .await?
        .ok_or_else(|| AppError::internal(format!("approval {id} vanished")))?;
    view_of(state, decided)
        .await?
        .ok_or_else(|| AppError::internal(format!("the run of approval {id} vanished")))
}
