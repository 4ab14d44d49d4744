//! STS: who the console acts as.

use super::{sdk_error, RegionClients};
use crate::error::AppError;

pub struct CallerIdentity {
    pub account: String,
    pub arn: String,
}

pub async fn caller_identity(c: &RegionClients) -> Result<CallerIdentity, AppError> {
    let out = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| sdk_error("sts:GetCallerIdentity", &e))?;
    Ok(CallerIdentity {
        account: out.account().unwrap_or_default().to_owned(),
        arn: out.arn().unwrap_or_default().to_owned(),
    })
}
