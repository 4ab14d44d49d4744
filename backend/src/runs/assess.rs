//! A start's assessment before it is recorded: its place, its targets as they are now (read from EC2,
//! so a missing instance is a field error, not a failed step later), and which of them still call
//! IMDSv1 (the readiness check). Starts, previews and plan waves all assess the same way.

use shared::api::{InstanceUsage, InstanceView};
use shared::{preview, StartPlan, Targets};

use crate::aws::ec2;
use crate::error::AppError;
use crate::state::AppState;
use crate::usage;

/// Checks that the targets exist (SSM itself would only fail later, in a step) and returns their
/// current options, which are kept with the record.
pub async fn resolve_targets(
    state: &AppState,
    account: &str,
    region: &str,
    plan: &StartPlan,
) -> Result<Vec<shared::api::InstanceView>, AppError> {
    let clients = &crate::inventory::clients_for(state, account, region).await?;
    // Where the targets were looked for, as the person would say it.
    let place = if account.is_empty() {
        region.to_owned()
    } else {
        format!("account {account}, {region}")
    };
    let (selection, field) = match (&plan.rate_control, &plan.parameters.instance_id) {
        (Some(rc), _) => match &rc.targets {
            Targets::InstanceIds(ids) => (
                OwnedSelection::Ids(ids.iter().map(|i| i.to_string()).collect()),
                "rate_control.targets.instance_ids",
            ),
            Targets::Tag { key, value } => (
                OwnedSelection::Tag(key.clone(), value.clone()),
                "rate_control.targets.tag",
            ),
        },
        (None, Some(id)) => (OwnedSelection::Ids(vec![id.to_string()]), "parameters.InstanceId"),
        (None, None) => return Err(AppError::field("parameters.InstanceId", "required")),
    };
    let found = match &selection {
        OwnedSelection::Ids(ids) => ec2::describe(clients, ec2::Selection::Ids(ids)).await,
        OwnedSelection::Tag(k, v) => ec2::describe(clients, ec2::Selection::Tag { key: k, value: v }).await,
    };
    match found {
        Ok(list) if list.is_empty() => Err(AppError::field(
            field,
            format!("no instance in {place} matches these targets"),
        )),
        Ok(list) => Ok(list),
        Err(AppError::Aws { code, message, .. }) if code.starts_with("InvalidInstanceID") => {
            Err(AppError::field(field, format!("{message} in {place}")))
        }
        Err(e) => Err(e),
    }
}

enum OwnedSelection {
    Ids(Vec<String>),
    Tag(String, String),
}

/// A validated start, its region, and its targets as they are now (with IMDSv1 usage when it matters).
pub struct Assessment {
    /// The member account; '' for the console's own.
    pub account: String,
    pub region: String,
    pub targets: Vec<InstanceView>,
    /// Targets whose IMDSv1 callers the run would break.
    pub users: Vec<InstanceUsage>,
}

pub async fn assess(state: &AppState, plan: &StartPlan, with_usage: bool) -> Result<Assessment, AppError> {
    let region = plan
        .region
        .as_ref()
        .map_or_else(|| state.regions[0].clone(), |r| r.as_str().to_owned());
    state.region(Some(&region))?;
    let account = plan
        .account
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let mut targets = if plan.target_locations.is_empty() {
        resolve_targets(state, &account, &region, plan).await?
    } else {
        // Across accounts and Regions: the preview and the readiness check cover every place.
        let hub = crate::routes::identity::resolve(state).await?.account;
        let mut all = Vec::new();
        for (acct, r) in crate::org::places(state, &plan.target_locations).await? {
            let acct = if acct == hub { String::new() } else { acct };
            match resolve_targets(state, &acct, &r, plan).await {
                Ok(found) => all.extend(found),
                // A place with no tagged instance is not an error; an unreachable one is.
                Err(AppError::Validation(_)) => {}
                Err(e) => {
                    return Err(AppError::field(
                        "target_locations",
                        format!("cannot read account {acct} in {r}: {e}"),
                    ))
                }
            }
        }
        if all.is_empty() {
            return Err(AppError::field(
                "rate_control.targets.tag",
                "no instance in these accounts and Regions matches this tag",
            ));
        }
        all
    };
    let mut users = Vec::new();
    // A rollout over instance IDs goes least risky first, which needs each one's IMDSv1 use.
    let ordered = plan
        .rate_control
        .as_ref()
        .is_some_and(|rc| matches!(rc.targets, Targets::InstanceIds(_)));
    if with_usage || plan.blocks_imdsv1() || ordered {
        usage::annotate(state, &mut targets).await?;
        if ordered {
            preview::rollout_order(&mut targets);
        }
        users = targets
            .iter()
            .filter(|t| preview::breaks_imdsv1_users(&plan.parameters, t))
            .map(|t| InstanceUsage {
                instance_id: t.instance_id.clone(),
                imdsv1_calls: t.imdsv1_calls.unwrap_or(0),
            })
            .collect();
    }
    Ok(Assessment {
        account,
        region,
        targets,
        users,
    })
}
