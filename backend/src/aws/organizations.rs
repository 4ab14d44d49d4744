//! AWS Organizations: the accounts of the organisation, for a console in the management account or
//! a delegated administrator.

use super::{sdk_error, RegionClients};
use crate::error::AppError;

pub struct OrgAccount {
    pub id: String,
    pub name: String,
    pub status: String,
}

/// Every account (ListAccounts, all pages).
pub async fn list_accounts(c: &RegionClients) -> Result<Vec<OrgAccount>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .organizations
            .list_accounts()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("organizations:ListAccounts", &e))?;
        out.extend(page.accounts().iter().map(|a| OrgAccount {
            id: a.id().unwrap_or_default().to_owned(),
            name: a.name().unwrap_or_default().to_owned(),
            status: a.status().map_or("ACTIVE", |s| s.as_str()).to_owned(),
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}
