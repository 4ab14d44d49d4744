//! Undoing a fix: exactly the prior state, and never over a change someone made since.

use shared::sources::{MetadataDefaults, SourceFix, SourceState};

use super::judge::*;
use super::*;
use crate::aws::launch;
use crate::error::AppError;
use crate::state::AppState;

/// `POST /sources/fixes/{fix_id}/revert`: the prior default, or the prior default version again and
/// the fix's version deleted (groups and fleets on `$Latest` would keep launching it otherwise).
/// A template whose default someone moved since the fix is left alone (409 `ChangedSinceFix`).
pub async fn revert(state: &AppState, fix_id: &str, requester: &str) -> Result<SourceFix, AppError> {
    let (fix, resource, _) = state
        .store
        .source_fix_with_target(fix_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no source fix {fix_id}")))?;
    if fix.status != "applied" {
        return Err(AppError::Conflict {
            code: "NotRevertible".into(),
            message: format!(
                "fix {fix_id} is {}: only an applied fix can be reverted",
                fix.status
            ),
        });
    }
    let clients = crate::inventory::clients_for(state, &fix.account, &fix.region).await?;
    let note = match (&fix.prior, &fix.applied) {
        (SourceState::AccountDefault(prior), applied) => {
            let applied = match applied {
                Some(SourceState::AccountDefault(a)) => Some(a),
                _ => None,
            };
            revert_defaults(&clients, &fix, prior, applied).await?;
            None
        }
        (
            SourceState::LaunchTemplate {
                default_version: prior,
                ..
            },
            Some(SourceState::LaunchTemplate {
                default_version: made,
                latest_version: made_latest,
                ..
            }),
        ) => {
            let made = [*made, *made_latest];
            revert_template(state, &clients, &fix, &resource, *prior, made).await?
        }
        _ => return Err(AppError::internal(format!("fix {fix_id} has mismatched states"))),
    };
    read_again(state, &fix.account, &fix.region).await;
    state
        .store
        .revert_source_fix(fix_id, requester, note.as_deref())
        .await?;
    state
        .store
        .source_fix(fix_id)
        .await?
        .ok_or_else(|| AppError::internal("the fix just reverted is gone"))
}

/// An account-default fix undone: the prior defaults again, but only while the defaults are still
/// what the fix made them (or already the prior ones: a revert cut short). A change someone made
/// since (a security team turning on launch enforcement, another hop limit) is never overwritten
/// (409 `ChangedSinceFix`), and defaults a declarative policy now manages are left to it.
pub(super) async fn revert_defaults(
    clients: &crate::aws::RegionClients,
    fix: &SourceFix,
    prior: &MetadataDefaults,
    applied: Option<&MetadataDefaults>,
) -> Result<(), AppError> {
    let now = launch::metadata_defaults(clients).await?;
    if now.managed_by == "declarative-policy" {
        return Err(AppError::Conflict {
            code: "ManagedByDeclarativePolicy".into(),
            message: format!(
                "a declarative policy of your organisation now manages the instance metadata defaults of {} {}: \
                 nothing was reverted; change the policy instead.",
                fix.account, fix.region
            ),
        });
    }
    let same = |a: &MetadataDefaults, b: &MetadataDefaults| {
        a.http_tokens == b.http_tokens
            && a.http_put_response_hop_limit == b.http_put_response_hop_limit
            && a.http_tokens_enforced == b.http_tokens_enforced
    };
    if same(&now, prior) {
        return Ok(());
    }
    match applied {
        Some(made) if same(&now, made) => launch::set_metadata_defaults(clients, prior).await,
        _ => Err(AppError::Conflict {
            code: "ChangedSinceFix".into(),
            message: format!(
                "the instance metadata defaults of {} {} are now {}: fix {} made them {}, and someone changed them \
                 since. Nothing was reverted, so that change stays; to go back to {}, set them yourself.",
                fix.account,
                fix.region,
                describe_defaults(&now),
                fix.fix_id,
                applied.map_or_else(|| "something else".to_owned(), describe_defaults),
                describe_defaults(prior)
            ),
        }),
    }
}

/// Defaults in words, for a sentence: `HttpTokens required, hop limit 2, enforced at launch`.
pub(super) fn describe_defaults(d: &MetadataDefaults) -> String {
    format!(
        "HttpTokens {}, hop limit {}, launch enforcement {}",
        d.http_tokens.as_deref().unwrap_or("no preference"),
        d.http_put_response_hop_limit
            .map_or_else(|| "no preference".to_owned(), |h| h.to_string()),
        d.http_tokens_enforced.as_deref().unwrap_or("no preference")
    )
}

/// A template fix undone: the prior default version again, then the fix's version `made` deleted.
/// Refused when the default is neither `made` nor `prior` (someone chose another since the fix; the
/// prior one means a revert cut short, which is finished). Returns what stays changed, in a sentence.
pub(super) async fn revert_template(
    state: &AppState,
    clients: &crate::aws::RegionClients,
    fix: &SourceFix,
    template: &str,
    prior: i64,
    [made, made_latest]: [i64; 2],
) -> Result<Option<String>, AppError> {
    let (default_now, latest_now) = launch::version_numbers(clients, template).await?;
    if default_now != made && default_now != prior {
        return Err(AppError::Conflict {
            code: "ChangedSinceFix".into(),
            message: format!(
                "the default version of launch template {template} is now {default_now}: fix {} made it {made}, and someone \
                 changed it since. Nothing was reverted, so that change stays; to go back to version {prior}, make it the \
                 default yourself.",
                fix.fix_id
            ),
        });
    }
    if default_now != prior {
        launch::set_default_version(clients, template, prior).await?;
    }
    crate::crash::point("source-revert-default-moved");
    // The default is back already: a refusal to delete is said in the record, not an error that
    // would hide that the revert happened.
    let mut stays = Vec::new();
    if made_latest != made {
        // The latest version's copy goes first: while it is there it is what $Latest launches.
        let kept = launch::delete_version(clients, template, made_latest)
            .await
            .unwrap_or_else(|e| Some(e.to_string()));
        if let Some(why) = kept {
            stays.push(format!(
                "EC2 kept version {made_latest} ({why}), the fix's copy of the latest version: groups and fleets on \
                 $Latest still launch it with HttpTokens required; delete it."
            ));
        }
    }
    let kept = launch::delete_version(clients, template, made)
        .await
        .unwrap_or_else(|e| Some(e.to_string()));
    if let Some(why) = kept {
        let users = template_users(state, fix, template, made).await;
        stays.push(format!(
            "EC2 kept version {made} ({why}): {} still launch it with HttpTokens required; delete the version or \
             point them at $Default.",
            if users.is_empty() {
                "groups and fleets on $Latest".to_owned()
            } else {
                users.join(", ")
            }
        ));
    }
    if latest_now > made.max(made_latest) {
        stays.push(format!(
            "Version {latest_now} was made after the fix and stays: groups and fleets on $Latest launch it."
        ));
    }
    Ok((!stays.is_empty()).then(|| stays.join(" ")))
}

/// The groups and fleets of `template` that launch version `made` (on `$Latest` or pinned to it), for
/// the sentence of what a revert left; empty when the place cannot be read now.
pub(super) async fn template_users(
    state: &AppState,
    fix: &SourceFix,
    template: &str,
    made: i64,
) -> Vec<String> {
    let place = (fix.account.clone(), fix.region.clone());
    let Ok(reading) = read_place(state, &place, &[]).await else {
        return Vec::new();
    };
    reading
        .groups
        .iter()
        .filter(|g| {
            group_template(g, &reading).is_some_and(|t| t.id == template)
                || g.overrides.iter().any(|o| o.id.as_deref() == Some(template))
        })
        .filter(|g| g.template_version == "$Latest" || g.template_version == made.to_string())
        .map(|g| format!("Auto Scaling group {} ({})", g.name, g.template_version))
        .chain(
            reading
                .fleets
                .iter()
                .filter(|f| f.templates.iter().any(|t| t.id.as_deref() == Some(template)))
                .map(|f| format!("{} (if on $Latest)", f.label())),
        )
        .collect()
}
