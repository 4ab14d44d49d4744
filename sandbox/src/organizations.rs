//! AWS Organizations (awsJson1_1): the sandbox's organisation, its management account first. Only the
//! management account may list it, as in AWS (or a delegated administrator, which the sandbox has not).

use axum::response::Response;
use serde_json::{json, Value};

use crate::fleet::Scope;
use crate::wire::{ok_json, AwsError};
use crate::Sandbox;

const ORG_ID: &str = "o-sandbox0001";
const ROOT_ID: &str = "r-sand";
const PAGE: usize = 20;
/// The organizational units (ID, name, parent): two under the root, and one nested in the first, so
/// that a walk of child units and SSM's `IncludeChildOrganizationUnits` have something to reach. The
/// management account sits in the root itself; the members go round the units in this order
/// (member-1 in Workloads, member-2 in Sandboxes, member-3 in Production under Workloads, ...).
pub(crate) const UNITS: [(&str, &str, &str); 3] = [
    ("ou-sand-workloads", "Workloads", ROOT_ID),
    ("ou-sand-sandboxes", "Sandboxes", ROOT_ID),
    ("ou-sand-production", "Production", "ou-sand-workloads"),
];

/// Accounts of the organisation that are no longer active (ID, `State`, unit): listed as AWS lists
/// them, with no fleet and no role to assume, whenever the organisation has members. A console that
/// read the retired `Status` field, or took a missing state for ACTIVE, would make them targets.
pub(crate) const INACTIVE: [(&str, &str, &str); 2] = [
    ("299999999991", "SUSPENDED", "ou-sand-production"),
    ("299999999992", "CLOSED", "ou-sand-sandboxes"),
];

/// One account as ListAccounts answers it: `State` only, as the model has it since `Status` was
/// retired (September 2026).
fn account_entry(partition: &str, id: &str, name: &str, state: &str, joined: &str) -> Value {
    json!({
        "Id": id,
        "Arn": format!("arn:{partition}:organizations::{}:account/{ORG_ID}/{id}", crate::ACCOUNT_ID),
        "Name": name,
        "Email": format!("aws+{id}@example.com"),
        "State": state,
        "JoinedMethod": joined,
        "JoinedTimestamp": 1_700_000_000.0,
    })
}

/// The parent (root or unit) of the `n`th account.
pub(crate) fn unit_of(n: usize) -> &'static str {
    if n == 0 {
        ROOT_ID
    } else {
        UNITS[(n - 1) % UNITS.len()].0
    }
}

/// Whether `id` is the root or one of the units.
fn is_parent(id: &str) -> bool {
    id == ROOT_ID || UNITS.iter().any(|(u, _, _)| *u == id)
}

/// The units directly under a root or unit.
fn children_of(
    parent: &str,
) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> + '_ {
    UNITS.iter().filter(move |(_, _, p)| *p == parent)
}

/// `parent` itself and, with `include_children`, every unit below it at any depth.
fn parents_reached(parent: &str, include_children: bool) -> Vec<&str> {
    let mut out = vec![parent];
    let mut at = 0;
    while include_children && at < out.len() {
        let next: Vec<&str> = children_of(out[at]).map(|(id, _, _)| *id).collect();
        out.extend(next);
        at += 1;
    }
    out
}

/// The organisation's members as SSM resolves a TargetLocation's units: the active accounts (in
/// order, management first), and whether the inactive ones come too (see `Faults::inactive_accounts`).
pub(crate) struct Members {
    pub active: Vec<String>,
    pub with_inactive: bool,
}

impl Members {
    pub(crate) fn of(sb: &Sandbox) -> Members {
        Members {
            active: crate::account_ids(sb.inner.config.accounts),
            with_inactive: sb.faults().inactive_accounts == crate::faults::InactiveAccounts::FailLocation,
        }
    }
}

/// The accounts under a root or unit as SSM's TargetLocations reaches them: the ones directly under
/// it, and those of its child units (at any depth) only with `IncludeChildOrganizationUnits` (which
/// defaults to false: "Automations don't run recursively through OUs"). The suspended and closed
/// accounts there come too with `org.with_inactive` (what SSM does with them is undocumented; see
/// `Faults::inactive_accounts`). None when there is no such root or unit.
pub(crate) fn accounts_under(parent: &str, org: &Members, include_children: bool) -> Option<Vec<String>> {
    let accounts = &org.active;
    if !is_parent(parent) {
        return None;
    }
    let reached = parents_reached(parent, include_children);
    let mut out: Vec<String> = accounts
        .iter()
        .enumerate()
        .filter(|(n, _)| reached.contains(&unit_of(*n)))
        .map(|(_, a)| a.clone())
        .collect();
    if org.with_inactive && accounts.len() > 1 {
        out.extend(
            INACTIVE
                .iter()
                .filter(|(_, _, unit)| reached.contains(unit))
                .map(|(id, _, _)| (*id).to_owned()),
        );
    }
    Some(out)
}

fn parent_not_found(parent: &str) -> AwsError {
    AwsError::client(
        "ParentNotFoundException",
        format!("We can't find a root or OU with the ParentId {parent}. The sandbox's organisation has the root r-sand and the units ou-sand-workloads (with ou-sand-production in it) and ou-sand-sandboxes."),
    )
}

pub(crate) fn handle(sb: &Sandbox, at: &Scope<'_>, op: &str, body: &[u8]) -> Result<Response, AwsError> {
    if at.account != crate::ACCOUNT_ID {
        return Err(AwsError::client(
            "AccessDeniedException",
            "You don't have permissions to access this resource: only the management account can list the organization.",
        ));
    }
    let req: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
    let accounts = crate::account_ids(sb.inner.config.accounts);
    let partition = sb.inner.config.partition.as_str();
    match op {
        "DescribeOrganization" => ok_json(&json!({ "Organization": {
            "Id": ORG_ID,
            "Arn": format!("arn:{partition}:organizations::{}:organization/{ORG_ID}", crate::ACCOUNT_ID),
            "FeatureSet": "ALL",
            "MasterAccountId": crate::ACCOUNT_ID,
        }})),
        "ListOrganizationalUnitsForParent" => {
            let parent = req["ParentId"].as_str().unwrap_or_default();
            if !is_parent(parent) {
                return Err(parent_not_found(parent));
            }
            let units: Vec<Value> = children_of(parent)
                .map(|(id, name, _)| {
                    json!({
                        "Id": id,
                        "Name": name,
                        "Arn": format!("arn:{partition}:organizations::{}:ou/{ORG_ID}/{id}", crate::ACCOUNT_ID),
                    })
                })
                .collect();
            ok_json(&json!({ "OrganizationalUnits": units }))
        }
        "ListAccounts" | "ListAccountsForParent" => {
            let parent =
                (op == "ListAccountsForParent").then(|| req["ParentId"].as_str().unwrap_or_default());
            if let Some(p) = parent {
                if !is_parent(p) {
                    return Err(parent_not_found(p));
                }
            }
            let mut listed: Vec<Value> = accounts
                .iter()
                .enumerate()
                .filter(|(n, _)| parent.is_none_or(|p| unit_of(*n) == p))
                .map(|(n, id)| {
                    let name = if n == 0 {
                        "management".to_owned()
                    } else {
                        format!("member-{n}")
                    };
                    account_entry(
                        partition,
                        id,
                        &name,
                        "ACTIVE",
                        if n == 0 { "CREATED" } else { "INVITED" },
                    )
                })
                .collect();
            if accounts.len() > 1 {
                listed.extend(
                    INACTIVE
                        .iter()
                        .filter(|(_, _, unit)| parent.is_none_or(|p| p == *unit))
                        .map(|(id, state, _)| {
                            account_entry(
                                partition,
                                id,
                                &format!("{} member", state.to_lowercase()),
                                state,
                                "INVITED",
                            )
                        }),
                );
            }
            let offset = match req["NextToken"].as_str() {
                Some(t) => t
                    .parse::<usize>()
                    .map_err(|_| AwsError::client("InvalidInputException", "The NextToken is not valid."))?,
                None => 0,
            };
            let page: Vec<Value> = listed.iter().skip(offset).take(PAGE).cloned().collect();
            let mut out = json!({ "Accounts": page });
            if offset + PAGE < listed.len() {
                out["NextToken"] = json!((offset + PAGE).to_string());
            }
            ok_json(&out)
        }
        other => Err(AwsError::client(
            "InvalidInputException",
            format!("The sandbox does not emulate organizations:{other}."),
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_root_or_unit_reaches_its_child_units_accounts_only_when_asked_to() {
        let accounts = crate::account_ids(5);
        let org = |with_inactive| super::Members {
            active: accounts.clone(),
            with_inactive,
        };
        assert_eq!(
            super::accounts_under("r-sand", &org(false), false).unwrap(),
            [crate::ACCOUNT_ID]
        );
        assert_eq!(
            super::accounts_under("r-sand", &org(false), true).unwrap(),
            accounts
        );
        // Workloads holds member-1 and member-4; Production, inside it, member-3.
        assert_eq!(
            super::accounts_under("ou-sand-workloads", &org(false), false).unwrap(),
            [accounts[1].clone(), accounts[4].clone()]
        );
        assert_eq!(
            super::accounts_under("ou-sand-workloads", &org(false), true).unwrap(),
            [accounts[1].clone(), accounts[3].clone(), accounts[4].clone()]
        );
        assert_eq!(
            super::accounts_under("ou-sand-production", &org(true), true).unwrap(),
            [accounts[3].clone(), "299999999991".to_owned()]
        );
        assert!(super::accounts_under("ou-none-00000000", &org(false), true).is_none());
    }
}
