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

/// The parent (root or unit) of the `n`th account.
pub(crate) fn unit_of(n: usize) -> &'static str {
    if n == 0 {
        ROOT_ID
    } else {
        UNITS[(n - 1) % UNITS.len()].0
    }
}

/// The accounts under a root (all of them, the units' included) or a unit, as TargetLocations takes
/// them; None when there is no such root or unit.
pub(crate) fn accounts_under(parent: &str, accounts: &[String]) -> Option<Vec<String>> {
    if parent == ROOT_ID {
        return Some(accounts.to_vec());
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
    match op {
        "DescribeOrganization" => ok_json(&json!({ "Organization": {
            "Id": ORG_ID,
            "Arn": format!("arn:aws:organizations::{}:organization/{ORG_ID}", crate::ACCOUNT_ID),
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
                            "Arn": format!("arn:aws:organizations::{}:ou/{ORG_ID}/{id}", crate::ACCOUNT_ID),
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
            let listed: Vec<(usize, &String)> = if op == "ListAccounts" {
                accounts.iter().enumerate().collect()
            } else {
                let parent = req["ParentId"].as_str().unwrap_or_default();
                if parent != ROOT_ID && !UNITS.iter().any(|(id, _)| *id == parent) {
                    return Err(parent_not_found(parent));
                }
                accounts
                    .iter()
                    .enumerate()
                    .filter(|(n, _)| unit_of(*n) == parent)
                    .collect()
            };
            let offset = match req["NextToken"].as_str() {
                Some(t) => t
                    .parse::<usize>()
                    .map_err(|_| AwsError::client("InvalidInputException", "The NextToken is not valid."))?,
                None => 0,
            };
            let page: Vec<Value> = listed
                .iter()
                .skip(offset)
                .take(PAGE)
                .map(|(n, id)| {
                    json!({
                        "Id": id,
                        "Arn": format!("arn:aws:organizations::{}:account/{ORG_ID}/{id}", crate::ACCOUNT_ID),
                        "Name": if *n == 0 { "management".to_owned() } else { format!("member-{n}") },
                        "Email": format!("aws+{id}@example.com"),
                        "Status": "ACTIVE",
                        "JoinedMethod": if *n == 0 { "CREATED" } else { "INVITED" },
                        "JoinedTimestamp": 1_700_000_000.0,
                    })
                })
                .collect();
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
