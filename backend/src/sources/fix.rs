//! Fixing a source with the safety of a run: a preview, the readiness check, a record written before
//! AWS is called, and the fix applied (or resumed after a crash).

use shared::api::InstanceView;
use shared::sources::{
    declarative_policy_text, MetadataDefaults, SourceFix, SourceFixPreview, SourceFixRequest, SourceId,
    SourceKind, SourceState, TemplateOptions, DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT,
};
use std::collections::BTreeSet;

use super::judge::*;
use super::*;
use crate::aws::launch;
use crate::error::AppError;
use crate::state::AppState;

/// What a fix changes: the source (a group's template), its state now and after, and who launches
/// from it. Read fresh from AWS: a fix must start from the state as it is, not as it was cached.
pub(super) struct Plan {
    id: SourceId,
    /// The source that is changed (a group's fix changes its template).
    target: SourceId,
    preview: SourceFixPreview,
}

pub(super) async fn plan(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
) -> Result<(Plan, Option<String>, Option<u8>), AppError> {
    let id = SourceId::parse(raw_id).map_err(AppError::NotFound)?;
    let (hop, reason) = req.validate().map_err(AppError::Validation)?;
    if !state.regions.contains(&id.region) {
        return Err(AppError::NotFound(format!(
            "region {} is not managed by this console",
            id.region
        )));
    }
    let fleet = crate::inventory::snapshot(state).await?;
    let place = (id.account.clone(), id.region.clone());
    let reading = read_place(state, &place, &fleet.instances).await?;
    let here: Vec<&InstanceView> = fleet
        .instances
        .iter()
        .filter(|i| i.account == id.account && i.region == id.region && i.state != "terminated")
        .collect();
    let d = &reading.defaults;
    let target = match id.kind {
        SourceKind::AccountDefault | SourceKind::LaunchTemplate => id.clone(),
        SourceKind::AutoScalingGroup => {
            let g = reading
                .groups
                .iter()
                .find(|g| g.name == id.resource)
                .ok_or_else(|| AppError::NotFound(format!("Auto Scaling group {} does not exist in {} {}", id.resource, id.account, id.region)))?;
            let t = group_template(g, &reading).ok_or_else(|| AppError::Conflict {
                code: "NotFixable".into(),
                message: match &g.launch_configuration {
                    Some(lc) => format!(
                        "group {} launches from launch configuration {lc}, which AWS does not let anyone change: move the group to a \
                         launch template that requires tokens (or, where {lc} leaves HttpTokens unset, fix the account default)",
                        g.name
                    ),
                    None => format!("group {} does not launch from a launch template the console can read; move it to one first", g.name),
                },
            })?;
            if override_templates(g, &reading).iter().any(|(o, _)| o.id != t.id) {
                let names: Vec<String> = std::iter::once(t.name.clone())
                    .chain(override_templates(g, &reading).iter().map(|(o, _)| o.name.clone()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                return Err(AppError::Conflict {
                    code: "NotFixable".into(),
                    message: format!(
                        "group {} launches from several templates through its mixed instances policy ({}): fix each template that \
                         allows IMDSv1 instead",
                        g.name,
                        names.join(", ")
                    ),
                });
            }
            if !group_follows_template(g) {
                return Err(AppError::Conflict {
                    code: "NotFixable".into(),
                    message: format!(
                        "group {} pins version {} of {}: a new default version would not reach it. Fix {} and point the group at $Default.",
                        g.name, g.template_version, t.name, t.id
                    ),
                });
            }
            SourceId {
                kind: SourceKind::LaunchTemplate,
                resource: t.id.clone(),
                ..id.clone()
            }
        }
        SourceKind::Image => {
            return Err(AppError::Conflict {
                code: "NotFixable".into(),
                message: "the console does not change AMIs: an AMI's owner can mark it ImdsSupport v2.0 once, irreversibly \
                          (modify-image-attribute --imds-support v2.0), or register a copy with --imds-support v2.0; or fix the account \
                          default, which covers every AMI"
                    .into(),
            })
        }
    };
    if let Some((name, who)) = reading
        .templates
        .iter()
        .filter(|t| target.kind == SourceKind::LaunchTemplate && t.id == target.resource)
        .find_map(|t| t.managed_by.as_ref().map(|who| (t.name.clone(), who.clone())))
    {
        return Err(AppError::Conflict {
            code: "NotFixable".into(),
            message: managed_advice(&name, &who),
        });
    }
    let preview = match target.kind {
        SourceKind::AccountDefault => {
            let after = MetadataDefaults {
                http_tokens: Some("required".into()),
                http_put_response_hop_limit: hop.map(i32::from).or(d.http_put_response_hop_limit),
                http_tokens_enforced: if req.enforce_at_launch {
                    Some("enabled".into())
                } else {
                    d.http_tokens_enforced.clone()
                },
                ..d.clone()
            };
            let mut changes = vec![change(
                "HttpTokens",
                d.http_tokens.as_deref(),
                after.http_tokens.as_deref(),
            )];
            if after.http_put_response_hop_limit != d.http_put_response_hop_limit {
                changes.push(format!(
                    "HttpPutResponseHopLimit: {} → {}",
                    d.http_put_response_hop_limit
                        .map_or("no preference".into(), |h| h.to_string()),
                    after
                        .http_put_response_hop_limit
                        .map_or("no preference".into(), |h| h.to_string())
                ));
            }
            if after.http_tokens_enforced != d.http_tokens_enforced {
                changes.push(change(
                    "HttpTokensEnforced",
                    d.http_tokens_enforced.as_deref(),
                    after.http_tokens_enforced.as_deref(),
                ));
            }
            // Under the new defaults, which templates and groups would still ask for optional (and so
            // be refused at launch, if enforced).
            let refused_after: Vec<String> = if after.http_tokens_enforced.as_deref() == Some("enabled") {
                reading
                    .templates
                    .iter()
                    .filter(|t| {
                        [&t.default, &t.latest]
                            .iter()
                            .any(|o| launch_tokens(o, &after, &reading.images).0 != "required")
                    })
                    .map(|t| format!("launch template {} ({})", t.name, t.id))
                    .chain(
                        reading
                            .groups
                            .iter()
                            .filter(|g| {
                                group_tokens(g, &reading, &after).is_none_or(|(t, _)| t != "required")
                            })
                            .map(|g| format!("Auto Scaling group {}", g.name)),
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let policy = d.managed_by == "declarative-policy";
            let mut warnings = Vec::new();
            if policy && req.enforce_at_launch {
                warnings.push(DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT.to_owned());
            }
            if !policy
                && after.http_tokens_enforced.as_deref() == Some("enabled")
                && d.http_tokens_enforced.as_deref() != Some("enabled")
            {
                warnings.push(format!(
                    "While HttpTokensEnforced stays enabled, EC2 refuses HttpTokens=optional on every instance of \
                     {target}: no run's Revert, and no plan's automatic rollback, can bring IMDSv1 back there until it \
                     is turned off (reverting this fix turns it off)."
                ));
            }
            SourceFixPreview {
                warnings,
                source_id: id.to_string(),
                fixes: target.to_string(),
                changes,
                before: SourceState::AccountDefault(d.clone()),
                after: SourceState::AccountDefault(after),
                groups: reading.groups.iter().map(|g| g.name.clone()).collect(),
                refused_after,
                imdsv1_instances: usage(&here),
                needs_override: false,
                managed_by_policy: policy,
                policy_text: policy.then(|| declarative_policy_text(hop)),
            }
        }
        _ => {
            let t = reading
                .templates
                .iter()
                .find(|t| t.id == target.resource)
                .ok_or_else(|| {
                    AppError::NotFound(format!(
                        "launch template {} does not exist in {} {}",
                        target.resource, id.account, id.region
                    ))
                })?;
            let new_version = t.latest.version + 1;
            let after_options = TemplateOptions {
                version: new_version,
                http_tokens: Some("required".into()),
                http_put_response_hop_limit: hop.map(i32::from).or(t.default.http_put_response_hop_limit),
                // Left as it was: an unset endpoint stays unset (EC2 then enables it at launch).
                http_endpoint: t.default.http_endpoint.clone(),
                image_id: t.default.image_id.clone(),
            };
            let groups: Vec<&GroupReading> = reading
                .groups
                .iter()
                .filter(|g| group_uses(g, &reading, t))
                .collect();
            let members: BTreeSet<&str> = groups
                .iter()
                .flat_map(|g| g.instances.iter().map(String::as_str))
                .collect();
            let from: Vec<&InstanceView> = here
                .iter()
                .copied()
                .filter(|i| {
                    i.launch_template().is_some_and(|(tid, _)| tid == t.id)
                        || members.contains(i.instance_id.as_str())
                })
                .collect();
            let mut changes = vec![
                format!(
                    "New version {new_version}, copied from default version {}",
                    t.default.version
                ),
                change("HttpTokens", t.default.http_tokens.as_deref(), Some("required")),
            ];
            if after_options.http_put_response_hop_limit != t.default.http_put_response_hop_limit {
                changes.push(format!(
                    "HttpPutResponseHopLimit: {} → {}",
                    t.default
                        .http_put_response_hop_limit
                        .map_or("unset".into(), |h| h.to_string()),
                    after_options
                        .http_put_response_hop_limit
                        .map_or("unset".into(), |h| h.to_string())
                ));
            }
            // Groups and fleets on $Latest launch the newest version, which may differ from the
            // default (another AMI, instance type, user data). One copy of the default would become
            // their $Latest and change all that; a second copy, of the latest version, keeps it.
            let latest_copy = (t.latest.version != t.default.version).then_some(new_version + 1);
            if let Some(copy) = latest_copy {
                changes.push(format!(
                    "New version {copy}, copied from latest version {} with HttpTokens required, so that groups and \
                     fleets on $Latest keep launching what they launch now",
                    t.latest.version
                ));
            }
            changes.push(format!("Default version: {} → {new_version}", t.default.version));
            let pinned: Vec<String> = groups
                .iter()
                .filter(|g| !group_follows_template(g))
                .map(|g| format!("{} (pins version {}: unchanged)", g.name, g.template_version))
                .collect();
            SourceFixPreview {
                source_id: id.to_string(),
                fixes: target.to_string(),
                changes,
                before: SourceState::LaunchTemplate {
                    default_version: t.default.version,
                    latest_version: t.latest.version,
                    options: t.default.clone(),
                },
                after: SourceState::LaunchTemplate {
                    default_version: new_version,
                    latest_version: latest_copy.unwrap_or(new_version),
                    options: after_options,
                },
                groups: groups
                    .iter()
                    .filter(|g| group_follows_template(g))
                    .map(|g| format!("{} ({})", g.name, g.template_version))
                    .chain(pinned)
                    .chain(
                        reading
                            .fleets
                            .iter()
                            .filter(|f| f.launches(t))
                            .map(FleetReading::label),
                    )
                    .collect(),
                refused_after: Vec::new(),
                imdsv1_instances: usage(&from),
                needs_override: false,
                managed_by_policy: false,
                policy_text: None,
                warnings: Vec::new(),
            }
        }
    };
    let mut preview = preview;
    preview.needs_override = !preview.imdsv1_instances.is_empty();
    Ok((Plan { id, target, preview }, reason, hop))
}

pub(super) fn change(field: &str, before: Option<&str>, after: Option<&str>) -> String {
    format!(
        "{field}: {} → {}",
        before.unwrap_or("no preference"),
        after.unwrap_or("no preference")
    )
}

/// `POST /sources/{id}/preview`.
pub async fn preview(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
) -> Result<SourceFixPreview, AppError> {
    Ok(plan(state, raw_id, req).await?.0.preview)
}

/// `POST /sources/{id}/fix`: refused while instances from the source call IMDSv1 (unless a reason is
/// given) or where a declarative policy manages the defaults; recorded, then sent.
pub async fn fix(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
    requester: &str,
) -> Result<SourceFix, AppError> {
    let (plan, reason, hop) = plan(state, raw_id, req).await?;
    let p = &plan.preview;
    if p.managed_by_policy {
        return Err(AppError::Conflict {
            code: "ManagedByDeclarativePolicy".into(),
            message: format!(
                "a declarative policy of your organisation manages the instance metadata defaults of {}: nothing was changed. \
                 Give its administrators this policy text (also in the preview):\n{}",
                plan.id.account,
                p.policy_text.clone().unwrap_or_default()
            ),
        });
    }
    if p.needs_override && reason.is_none() {
        return Err(AppError::Imdsv1InUse(p.imdsv1_instances.clone()));
    }
    let fix_id = uuid::Uuid::new_v4().to_string();
    let record = SourceFix {
        fix_id: fix_id.clone(),
        source_id: plan.id.to_string(),
        kind: plan.target.kind,
        account: plan.target.account.clone(),
        region: plan.target.region.clone(),
        requester: requester.to_owned(),
        created_at: state.store.clock.now_rfc3339(),
        override_reason: reason,
        prior: p.before.clone(),
        applied: Some(p.after.clone()),
        status: "sending".into(),
        error: None,
        reverted_by: None,
        reverted_at: None,
    };
    state
        .store
        .record_source_fix(&record, &plan.target.resource, hop)
        .await?;
    apply(state, &record, &plan.target.resource, hop).await
}

/// Sends a recorded fix and records what came of it. Safe to repeat: the template version is created
/// with the fix's ID as ClientToken, and the defaults are set to fixed values.
pub(super) async fn apply(
    state: &AppState,
    record: &SourceFix,
    resource: &str,
    hop: Option<u8>,
) -> Result<SourceFix, AppError> {
    crate::crash::point("source-fix-recorded");
    let clients = crate::inventory::clients_for(state, &record.account, &record.region).await?;
    let sent: Result<SourceState, AppError> = async {
        match (&record.prior, &record.applied) {
            (SourceState::AccountDefault(_), Some(SourceState::AccountDefault(after))) => {
                launch::set_metadata_defaults(&clients, after).await?;
                Ok(SourceState::AccountDefault(after.clone()))
            }
            (
                SourceState::LaunchTemplate {
                    options,
                    default_version,
                    latest_version,
                },
                Some(SourceState::LaunchTemplate { options: after, .. }),
            ) => {
                let description = format!("imds-console fix {}: HttpTokens required", record.fix_id);
                let version = launch::create_required_version(
                    &clients,
                    resource,
                    options,
                    hop,
                    &description,
                    &record.fix_id,
                )
                .await?;
                crate::crash::point("source-fix-version-created");
                // The latest version's own copy (see the preview), made after the default's so
                // that it is $Latest; its client token is the fix's too, so a resumed fix makes
                // it once.
                let latest = if latest_version != default_version {
                    let source = TemplateOptions {
                        version: *latest_version,
                        ..TemplateOptions::default()
                    };
                    launch::create_required_version(
                        &clients,
                        resource,
                        &source,
                        hop,
                        &format!("{description} (copy of version {latest_version}, for $Latest)"),
                        &format!("{}-latest", record.fix_id),
                    )
                    .await?
                } else {
                    version
                };
                launch::set_default_version(&clients, resource, version).await?;
                Ok(SourceState::LaunchTemplate {
                    default_version: version,
                    latest_version: latest,
                    options: TemplateOptions {
                        version,
                        ..after.clone()
                    },
                })
            }
            _ => Err(AppError::internal(format!(
                "fix {} has mismatched states",
                record.fix_id
            ))),
        }
    }
    .await;
    read_again(state, &record.account, &record.region).await;
    match sent {
        Ok(applied) => {
            state
                .store
                .finish_source_fix(&record.fix_id, "applied", Some(&applied), None)
                .await?;
        }
        Err(e) => {
            // AWS said no, or could not be reached: either way nothing is half-done that a retry
            // would not finish, so the record says failed with the reason.
            state
                .store
                .finish_source_fix(&record.fix_id, "failed", None, Some(&e.to_string()))
                .await?;
            return Err(e);
        }
    }
    state
        .store
        .source_fix(&record.fix_id)
        .await?
        .ok_or_else(|| AppError::internal("the fix just recorded is gone"))
}

/// Fixes a crash left between record and reply are sent again at start (each is idempotent).
pub async fn resume_unfinished(state: &AppState) {
    let pending = match state.store.source_fixes_in("sending").await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not read unfinished source fixes");
            return;
        }
    };
    for (fix, resource, hop) in pending {
        tracing::info!(fix = %fix.fix_id, "sending a source fix recorded before a restart");
        if let Err(e) = apply(state, &fix, &resource, hop).await {
            tracing::warn!(fix = %fix.fix_id, error = %e, "the resumed source fix failed");
        }
    }
}
