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
/// The organizational units under the root. The management account sits in the root itself; the
/// members alternate between the units (member-1 in the first, member-2 in the second, ...).
pub(crate) const UNITS: [(&str, &str); 2] = [
    ("ou-sand-workloads", "Workloads"),
    ("ou-sand-sandboxes", "Sandboxes"),
];

/// Accounts of the organisation that are no longer active (ID, `State`, unit): listed as AWS lists
/// them, with no fleet and no role to assume, whenever the organisation has members. A console that
/// read the retired `Status` field, or took a missing state for ACTIVE, would make them targets.
pub(crate) const INACTIVE: [(&str, &str, &str); 2] = [
    ("299999999991", "SUSPENDED", "ou-sand-workloads"),
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

/// The accounts under a root or unit as SSM's TargetLocations reaches them: the ones directly under
/// it, and those of its child units only with `IncludeChildOrganizationUnits` (which defaults to
/// false: "Automations don't run recursively through OUs"); None when there is no such root or unit.
pub(crate) fn accounts_under(
    parent: &str,
    accounts: &[String],
    include_children: bool,
) -> Option<Vec<String>> {
    if parent == ROOT_ID {
        return Some(if include_children {
            accounts.to_vec()
        } else {
            accounts.iter().take(1).cloned().collect()
        });
    }
    UNITS.iter().any(|(id, _)| *id == parent).then(|| {
        accounts
            .iter()
            .enumerate()
            .filter(|(n, _)| unit_of(*n) == parent)
            .map(|(_, a)| a.clone())
            .collect()
    })
}

fn parent_not_found(parent: &str) -> AwsError {
    AwsError::client(
        "ParentNotFoundException",
        format!("We can't find a root or OU with the ParentId {parent}. The sandbox's organisation has the root r-sand and the units ou-sand-workloads and ou-sand-sandboxes."),
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
            let units: Vec<Value> = if parent == ROOT_ID {
                UNITS
                    .iter()
                    .map(|(id, name)| {
                        json!({
                            "Id": id,
                            "Name": name,
                            "Arn": format!("arn:{partition}:organizations::{}:ou/{ORG_ID}/{id}", crate::ACCOUNT_ID),
                        })
                    })
                    .collect()
            } else if UNITS.iter().any(|(id, _)| *id == parent) {
                Vec::new()
            } else {
                return Err(parent_not_found(parent));
            };
            ok_json(&json!({ "OrganizationalUnits": units }))
        }
        "ListAccounts" | "ListAccountsForParent" => {
            let parent =
                (op == "ListAccountsForParent").then(|| req["ParentId"].as_str().unwrap_or_default());
            if let Some(p) = parent {
                if p != ROOT_ID && !UNITS.iter().any(|(id, _)| *id == p) {
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
    fn a_root_reaches_its_units_accounts_only_when_asked_to() {
        let accounts = crate::account_ids(4);
        assert_eq!(
            super::accounts_under("r-sand", &accounts, false).unwrap(),
            [crate::ACCOUNT_ID]
        );
        assert_eq!(
            super::accounts_under("r-sand", &accounts, true).unwrap(),
            accounts
        );
        assert_eq!(
            super::accounts_under("ou-sand-workloads", &accounts, false).unwrap(),
            [accounts[1].clone(), accounts[3].clone()]
        );
        assert!(super::accounts_under("ou-none-00000000", &accounts, true).is_none());
    }
}
