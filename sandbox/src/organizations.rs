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
        "ListAccounts" | "ListAccountsForParent" => {
            if op == "ListAccountsForParent" && req["ParentId"].as_str() != Some(ROOT_ID) {
                return Err(AwsError::client(
                    "ParentNotFoundException",
                    "The sandbox's organisation has one root, r-sand, and no organizational units.",
                ));
            }
            let offset = match req["NextToken"].as_str() {
                Some(t) => t
                    .parse::<usize>()
                    .map_err(|_| AwsError::client("InvalidInputException", "The NextToken is not valid."))?,
                None => 0,
            };
            let page: Vec<Value> = accounts
                .iter()
                .enumerate()
                .skip(offset)
                .take(PAGE)
                .map(|(n, id)| {
                    json!({
                        "Id": id,
                        "Arn": format!("arn:aws:organizations::{}:account/{ORG_ID}/{id}", crate::ACCOUNT_ID),
                        "Name": if n == 0 { "management".to_owned() } else { format!("member-{n}") },
                        "Email": format!("aws+{id}@example.com"),
                        "Status": "ACTIVE",
                        "JoinedMethod": if n == 0 { "CREATED" } else { "INVITED" },
                        "JoinedTimestamp": 1_700_000_000.0,
                    })
                })
                .collect();
            let mut out = json!({ "Accounts": page });
            if offset + PAGE < accounts.len() {
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
