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

/// Who the console is, asked of the first Region's STS that answers (in the order given): an account
/// may turn a Region's STS off (`RegionDisabledException`), which must not leave the console unable
/// to say who it is.
pub async fn caller_identity_anywhere<'a>(
    clients: impl IntoIterator<Item = &'a RegionClients>,
) -> Result<CallerIdentity, AppError> {
    let mut first_error = None;
    for c in clients {
        match caller_identity(c).await {
            Err(e) if matches!(&e, AppError::Aws { code, .. } if code == "RegionDisabledException") => {
                first_error.get_or_insert(e);
            }
            answer => return answer,
        }
    }
    Err(first_error.unwrap_or_else(|| AppError::internal("no Region configured")))
}
