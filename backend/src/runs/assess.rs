//! A start's assessment before it is recorded: its place, its targets as they are now (read from EC2,
//! so a missing instance is a field error, not a failed step later), and which of them still call
//! IMDSv1 (the readiness check). Starts, previews and plan waves all assess the same way.

use shared::api::{InstanceUsage, InstanceView};
use shared::params::{AccountId, Region, RoleArn, TargetLocation};
use shared::{preview, StartPlan, Targets};
use std::collections::{BTreeMap, BTreeSet};

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
    // Within the same DescribeInstances budget as the inventory: a burst of starts waits its turn
    // instead of spending EC2's bucket for everyone in the account.
    let pace = state.ec2_reads(account, region);
    let found = match &selection {
        OwnedSelection::Ids(ids) => ec2::describe(clients, ec2::Selection::Ids(ids), &pace).await,
        OwnedSelection::Tag(k, v) => {
            ec2::describe(clients, ec2::Selection::Tag { key: k, value: v }, &pace).await
        }
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
    /// For a run across accounts and Regions: its locations narrowed to the places where targets
    /// are (see [`narrow`]); what is sent. Empty for a run in one place.
    pub locations: Vec<TargetLocation>,
    /// The places (account, Region) a location named where no target is: left out of the start.
    pub left_out: Vec<(String, String)>,
    /// For a run across accounts that names no AutomationAssumeRole: the hub's
    /// `AWS-SystemsManager-AutomationAdministrationRole`, which AWS's multi-account automation runs as
    /// to assume each location's execution role.
    pub administration_role: Option<RoleArn>,
}

/// The role AWS's multi-account automation expects in the account that starts it.
pub const ADMINISTRATION_ROLE: &str = "AWS-SystemsManager-AutomationAdministrationRole";

impl Assessment {
    /// What the start sends: its locations narrowed to where the targets are, run as the
    /// administration role when it names no role of its own.
    pub fn send_where_targets_are(&self, plan: &mut StartPlan) {
        if !self.locations.is_empty() {
            plan.target_locations = self.locations.clone();
        }
        if plan.parameters.assume_role.is_none() {
            plan.parameters.assume_role = self.administration_role.clone();
        }
    }
}

/// Where an account enforces IMDSv2 at launch (`HttpTokensEnforced`), EC2 refuses
/// `HttpTokens=optional` on every instance, so a run that sets it would fail there: refused before it
/// is sent, naming the places. (A place whose defaults cannot be read is not held against the run.)
async fn check_optional_tokens_allowed(
    state: &AppState,
    places: &[(String, String)],
) -> Result<(), AppError> {
    use futures_util::stream::{self, StreamExt};
    let enforced: Vec<(String, String)> = stream::iter(places.iter().cloned())
        .map(|(account, region)| async move {
            let defaults = match crate::inventory::clients_for(state, &account, &region).await {
                Ok(c) => crate::aws::launch::metadata_defaults(&c).await.ok(),
                Err(_) => None,
            };
            defaults
                .filter(|d| d.http_tokens_enforced.as_deref() == Some("enabled"))
                .map(|_| (account, region))
        })
        .buffer_unordered(8)
        .filter_map(|found| async move { found })
        .collect()
        .await;
    if enforced.is_empty() {
        return Ok(());
    }
    let hub = crate::routes::identity::resolve(state).await?.account;
    let mut named: Vec<String> = enforced
        .iter()
        .map(|(a, r)| format!("account {}, {r}", if a.is_empty() { &hub } else { a }))
        .collect();
    named.sort();
    Err(AppError::field(
        "parameters.EnforceIMDSv2",
        format!(
            "EC2 refuses HttpTokens=optional in {}: the account enforces IMDSv2 at launch there (HttpTokensEnforced). \
             Turn that off first (Sources, the account's defaults), or keep IMDSv2 required.",
            named.join("; ")
        ),
    ))
}

/// Checks that the run's CloudWatch alarm exists in every place it runs (`places`: account, '' for
/// the console's own, and Region): SSM reads it there and stops the run when it cannot.
pub async fn check_alarm(
    state: &AppState,
    name: &str,
    places: &[(String, String)],
    field: &str,
) -> Result<(), AppError> {
    use futures_util::stream::{self, StreamExt};
    let answers: Vec<((String, String), Result<bool, AppError>)> = stream::iter(places.iter().cloned())
        .map(|(account, region)| async move {
            let found = match crate::inventory::clients_for(state, &account, &region).await {
                Ok(c) => crate::aws::cloudwatch::alarm_exists(&c, name).await,
                Err(e) => Err(e),
            };
            ((account, region), found)
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let hub = crate::routes::identity::resolve(state).await?.account;
    let at = |(account, region): &(String, String)| {
        format!(
            "account {}, {region}",
            if account.is_empty() { &hub } else { account }
        )
    };
    let mut missing: Vec<String> = Vec::new();
    for (place, found) in &answers {
        match found {
            Ok(true) => {}
            Ok(false) => missing.push(at(place)),
            Err(e) => {
                return Err(AppError::field(
                    field,
                    format!("The console cannot read CloudWatch alarms in {}: {e}", at(place)),
                ))
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    missing.sort();
    let more = missing.len().saturating_sub(3);
    missing.truncate(3);
    Err(AppError::field(
        field,
        format!(
            "There is no CloudWatch alarm named {name} in {}{}: SSM would stop the run at once, unable to read it.",
            missing.join("; "),
            if more > 0 { format!(" and {more} more places") } else { String::new() }
        ),
    ))
}

/// `locations` (each with the places it resolves to: its accounts, and the accounts of its units, in
/// its Regions) narrowed to the places in `with_targets`. SSM's behaviour on a location where the
/// targets resolve to nothing is undocumented (it may fail the location, and with a location error
/// threshold of 0 stop the rest), so such places are not sent at all. Accounts going to the same
/// Regions share one location, which keeps its settings; returns the narrowed locations and the
/// places left out.
pub(super) fn narrow(
    locations: &[(TargetLocation, Vec<(String, String)>)],
    with_targets: &BTreeSet<(String, String)>,
) -> (Vec<TargetLocation>, Vec<(String, String)>) {
    let mut narrowed = Vec::new();
    let mut left_out = Vec::new();
    let mut sent: BTreeSet<(String, String)> = BTreeSet::new();
    for (location, places) in locations {
        // Regions by account, for the places of this location that have targets (and that no
        // earlier location sends already: SSM would run the same account and Region twice).
        let mut regions_of: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for place in places {
            if !with_targets.contains(place) {
                left_out.push(place.clone());
            } else if sent.insert(place.clone()) {
                regions_of.entry(&place.0).or_default().insert(&place.1);
            }
        }
        let mut accounts_of: BTreeMap<Vec<&str>, Vec<&str>> = BTreeMap::new();
        for (account, regions) in regions_of {
            accounts_of
                .entry(regions.into_iter().collect())
                .or_default()
                .push(account);
        }
        for (regions, accounts) in accounts_of {
            narrowed.push(TargetLocation {
                accounts: accounts.iter().filter_map(|a| AccountId::parse(a).ok()).collect(),
                units: Vec::new(),
                regions: regions.iter().filter_map(|r| Region::parse(r).ok()).collect(),
                ..location.clone()
            });
        }
    }
    (narrowed, left_out)
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
    if let Some(role) = &plan.parameters.assume_role {
        // SSM passes the role in the account the run starts in; a role of another account cannot be
        // passed, and naming one must not reach that account on anyone's behalf.
        let starts_in = if account.is_empty() {
            crate::routes::identity::resolve(state).await?.account
        } else {
            account.clone()
        };
        let identity = crate::routes::identity::resolve(state).await?;
        let ours = crate::org::partition_of(&identity.arn);
        let role_partition = role.as_str().split(':').nth(1).unwrap_or_default();
        if role_partition != ours {
            return Err(AppError::field(
                "parameters.AutomationAssumeRole",
                format!(
                    "The AutomationAssumeRole is a role of the {role_partition} partition; the console runs in {ours}, and \
                     AWS partitions share no roles: name a role arn:{ours}:iam::{starts_in}:role/…"
                ),
            ));
        }
        let of_role = role.as_str().split(':').nth(4).unwrap_or_default();
        if of_role != starts_in {
            return Err(AppError::field(
                "parameters.AutomationAssumeRole",
                format!(
                    "The AutomationAssumeRole must be a role of account {starts_in}, where the run starts; {of_role} is another account, whose role SSM cannot pass."
                ),
            ));
        }
    }
    let mut locations = Vec::new();
    let mut left_out = Vec::new();
    let mut administration_role = None;
    // Where the run goes: its own place, or the places with targets of a run across accounts.
    let mut run_places = vec![(account.clone(), region.clone())];
    let mut targets = if plan.target_locations.is_empty() {
        resolve_targets(state, &account, &region, plan).await?
    } else {
        // Across accounts and Regions: the preview and the readiness check cover every place, and
        // the start goes only where targets are.
        let hub = crate::routes::identity::resolve(state).await?.account;
        let mut all = Vec::new();
        let mut resolved = Vec::new();
        let mut read: BTreeSet<(String, String)> = BTreeSet::new();
        let mut with_targets: BTreeSet<(String, String)> = BTreeSet::new();
        // Places a location narrows to some of its instances (by ID): named by no other location,
        // since SSM would run such a place once, with one location's targets.
        let by_ids: BTreeSet<(String, String)> = plan
            .target_locations
            .iter()
            .filter(|l| !l.instance_ids.is_empty())
            .flat_map(TargetLocation::places)
            .collect();
        for (n, location) in plan.target_locations.iter().enumerate() {
            let places = crate::org::places(state, std::slice::from_ref(location)).await?;
            resolved.push((location.clone(), places.clone()));
            if !location.instance_ids.is_empty() {
                // Instance IDs exist in one account and Region: the location names exactly that.
                if location.accounts.len() != 1 || !location.units.is_empty() || location.regions.len() != 1 {
                    return Err(AppError::field(
                        &format!("target_locations[{n}].instance_ids"),
                        "a location that lists instance IDs names exactly one account and one Region: the instances' own",
                    ));
                }
                let (acct_id, r) = location.places().pop().unwrap_or_default();
                if !read.insert((acct_id.clone(), r.clone())) {
                    return Err(AppError::field(
                        &format!("target_locations[{n}].instance_ids"),
                        format!("account {acct_id} in {r} is named by another location too: a place runs with one location's targets, so name it once"),
                    ));
                }
                let acct = if acct_id == hub {
                    String::new()
                } else {
                    acct_id.clone()
                };
                let mut own = plan.clone();
                if let Some(rc) = own.rate_control.as_mut() {
                    rc.targets = Targets::InstanceIds(location.instance_ids.clone());
                }
                let found = resolve_targets(state, &acct, &r, &own)
                    .await
                    .map_err(|e| match e {
                        AppError::Validation(_) => AppError::field(
                            &format!("target_locations[{n}].instance_ids"),
                            format!("not every one of these instances is in account {acct_id}, {r}: {e}"),
                        ),
                        e => e,
                    })?;
                with_targets.insert((acct_id, r));
                all.extend(found);
                continue;
            }
            for (acct_id, r) in places {
                if by_ids.contains(&(acct_id.clone(), r.clone())) {
                    return Err(AppError::field(
                        "target_locations",
                        format!("account {acct_id} in {r} is named by a location that lists instance IDs and by another: a place runs with one location's targets, so name it once"),
                    ));
                }
                if !read.insert((acct_id.clone(), r.clone())) {
                    continue;
                }
                let acct = if acct_id == hub {
                    String::new()
                } else {
                    acct_id.clone()
                };
                // A Region the console does not manage cannot be read: refused as for a member
                // account, never taken for "no matching instance there".
                if state.region(Some(&r)).is_err() {
                    return Err(AppError::field(
                        "target_locations",
                        format!("Region {r} is not managed by this console (add it with --region)"),
                    ));
                }
                match resolve_targets(state, &acct, &r, plan).await {
                    Ok(found) => {
                        with_targets.insert((acct_id, r));
                        all.extend(found);
                    }
                    // A place with no tagged instance is not an error; an unreachable one is.
                    Err(AppError::Validation(_)) => {}
                    Err(e) => {
                        return Err(AppError::field(
                            "target_locations",
                            format!("cannot read account {acct_id} in {r}: {e}"),
                        ))
                    }
                }
            }
        }
        (locations, left_out) = narrow(&resolved, &with_targets);
        run_places = with_targets
            .iter()
            .map(|(a, r)| (if *a == hub { String::new() } else { a.clone() }, r.clone()))
            .collect();
        let console = crate::routes::identity::resolve(state).await?;
        administration_role = RoleArn::parse(&format!(
            "arn:{}:iam::{}:role/{ADMINISTRATION_ROLE}",
            crate::org::partition_of(&console.arn),
            console.account
        ))
        .ok();
        // Narrowed, a location may become several (accounts with different Regions): still within
        // what SSM takes in one start.
        let pieces: usize = locations.iter().map(|l| l.ssm_pieces().len()).sum();
        if pieces > shared::params::SSM_MAX_LOCATIONS {
            return Err(AppError::field(
                "target_locations",
                format!(
                    "sent only where instances match, these locations become {pieces} of SSM's TargetLocations, \
                     more than the {} it takes in one run: split the run by Region or by accounts",
                    shared::params::SSM_MAX_LOCATIONS
                ),
            ));
        }
        if all.is_empty() {
            return Err(AppError::field(
                "rate_control.targets.tag",
                "no instance in these accounts and Regions matches this tag",
            ));
        }
        all
    };
    if let Some(name) = &plan.alarm_name {
        check_alarm(state, name, &run_places, "alarm_name").await?;
    }
    if plan.parameters.enforce_imdsv2 == shared::params::EnforceImdsV2::Optional
        && plan.parameters.metadata_access == shared::params::MetadataAccess::Enabled
    {
        check_optional_tokens_allowed(state, &run_places).await?;
    }
    let mut users = Vec::new();
    // A rollout over instance IDs goes least risky first, which needs each one's IMDSv1 use.
    let ordered = plan
        .rate_control
        .as_ref()
        .is_some_and(|rc| matches!(rc.targets, Targets::InstanceIds(_)));
    if with_usage || plan.blocks_imdsv1() || ordered {
        usage::annotate_targets(state, &mut targets).await?;
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
        locations,
        left_out,
        administration_role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(accounts: &[&str], regions: &[&str], concurrency: &str) -> TargetLocation {
        TargetLocation {
            accounts: accounts.iter().map(|a| AccountId::parse(a).unwrap()).collect(),
            units: Vec::new(),
            regions: regions.iter().map(|r| Region::parse(r).unwrap()).collect(),
            max_concurrency: Some(shared::params::MaxConcurrency::parse(concurrency).unwrap()),
            max_errors: None,
            execution_role_name: None,
            targets_max_concurrency: None,
            targets_max_errors: None,
            instance_ids: Vec::new(),
        }
    }

    fn place(a: &str, r: &str) -> (String, String) {
        (a.to_owned(), r.to_owned())
    }

    #[test]
    fn a_location_is_narrowed_to_the_places_with_targets_keeping_its_settings() {
        let (a, b, c) = ("111111111111", "222222222222", "333333333333");
        let every = location(&[a, b, c], &["us-east-1", "eu-west-1"], "2");
        let places = every.places();
        // Targets in a (both Regions), b (us-east-1 only); none in c.
        let with: BTreeSet<_> = [
            place(a, "us-east-1"),
            place(a, "eu-west-1"),
            place(b, "us-east-1"),
        ]
        .into_iter()
        .collect();
        let (narrowed, left_out) = narrow(&[(every, places)], &with);
        let mut sent: Vec<(String, String)> = narrowed.iter().flat_map(TargetLocation::places).collect();
        sent.sort();
        let mut expected: Vec<_> = with.iter().cloned().collect();
        expected.sort();
        assert_eq!(sent, expected, "exactly the places with targets");
        assert_eq!(
            narrowed.len(),
            2,
            "a's two Regions in one location, b's one in another"
        );
        assert!(narrowed
            .iter()
            .all(|l| l.max_concurrency.as_ref().map(|m| m.as_str()) == Some("2")));
        let mut left: Vec<_> = left_out;
        left.sort();
        assert_eq!(
            left,
            vec![
                place(b, "eu-west-1"),
                place(c, "eu-west-1"),
                place(c, "us-east-1")
            ]
        );
    }

    #[test]
    fn a_place_two_locations_name_is_sent_once() {
        let a = "111111111111";
        let first = location(&[a], &["us-east-1"], "1");
        let second = location(&[a], &["us-east-1", "eu-west-1"], "3");
        let with: BTreeSet<_> = [place(a, "us-east-1"), place(a, "eu-west-1")]
            .into_iter()
            .collect();
        let (narrowed, left_out) = narrow(
            &[(first.clone(), first.places()), (second.clone(), second.places())],
            &with,
        );
        let sent: Vec<(String, String)> = narrowed.iter().flat_map(TargetLocation::places).collect();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(left_out.is_empty());
    }
}
