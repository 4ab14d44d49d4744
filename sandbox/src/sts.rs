//! STS (awsQuery): GetCallerIdentity, which needs no permission in AWS either.

use axum::response::Response;

use crate::wire::{ok_xml, AwsError};

pub(crate) fn handle(op: &str) -> Result<Response, AwsError> {
    match op {
        "GetCallerIdentity" => ok_xml(format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
             <Arn>arn:aws:sts::{acct}:assumed-role/ImdsConsoleSandbox/console</Arn><UserId>AROASANDBOXEXAMPLE:console</UserId>\
             <Account>{acct}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>",
            acct = crate::ACCOUNT_ID,
            rid = uuid::Uuid::new_v4()
        )),
        other => Err(AwsError::client("InvalidAction", format!("Could not find operation {other} for version 2011-06-15"))),
    }
}
