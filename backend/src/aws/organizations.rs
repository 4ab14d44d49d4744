//! AWS Organizations: the accounts of the organisation, for a console in the management account or
//! a delegated administrator.

use super::{sdk_error, RegionClients};
use crate::error::AppError;

struct Page {
    accounts: Vec<aws_sdk_organizations::types::Account>,
    next_token: Option<String>,
}

impl Page {
    fn accounts(&self) -> &[aws_sdk_organizations::types::Account] {
        &self.accounts
    }
    fn next_token(&self) -> Option<&str> {
        self.next_token.as_deref()
    }
}

pub struct OrgAccount {
    pub id: String,
    pub name: String,
    /// Organizations' `State` (PENDING_ACTIVATION, ACTIVE, SUSPENDED, PENDING_CLOSURE, CLOSED);
    /// UNKNOWN when the answer gives none. Only ACTIVE accounts are targets.
    pub state: String,
}

/// Every account (ListAccounts, all pages), or those directly under an organizational unit or root
/// (ListAccountsForParent).
pub async fn list_accounts(c: &RegionClients, parent: Option<&str>) -> Result<Vec<OrgAccount>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = match parent {
            None => c
                .organizations
                .list_accounts()
                .set_next_token(token.take())
                .send()
                .await
                .map(|p| (p.accounts, p.next_token))
                .map_err(|e| sdk_error("organizations:ListAccounts", &e))?,
            Some(ou) => c
                .organizations
                .list_accounts_for_parent()
                .parent_id(ou)
                .set_next_token(token.take())
                .send()
                .await
                .map(|p| (p.accounts, p.next_token))
                .map_err(|e| sdk_error("organizations:ListAccountsForParent", &e))?,
        };
        let page = Page {
            accounts: page.0.unwrap_or_default(),
            next_token: page.1,
        };
        out.extend(page.accounts().iter().map(|a| OrgAccount {
            id: a.id().unwrap_or_default().to_owned(),
            name: a.name().unwrap_or_default().to_owned(),
            // `Status` is retired (September 2026): the state is `State`, and an account without one
            // is not taken for active.
            state: a.state().map_or("UNKNOWN", |s| s.as_str()).to_owned(),
        }));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// The organizational units directly under a root or unit (ListOrganizationalUnitsForParent, all pages).
async fn child_units(c: &RegionClients, parent: &str) -> Result<Vec<String>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .organizations
            .list_organizational_units_for_parent()
            .parent_id(parent)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("organizations:ListOrganizationalUnitsForParent", &e))?;
        out.extend(
            page.organizational_units()
                .iter()
                .filter_map(|u| u.id().map(str::to_owned)),
        );
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Every account under a root or unit, its units' included at any depth, as SSM's TargetLocations
/// reaches them. Organizations nests units at most five deep; the walk stops there too.
pub async fn accounts_under(c: &RegionClients, parent: &str) -> Result<Vec<OrgAccount>, AppError> {
    let mut out = Vec::new();
    let mut level = vec![parent.to_owned()];
    for _ in 0..=5 {
        let mut next = Vec::new();
        for unit in &level {
            out.extend(list_accounts(c, Some(unit)).await?);
            next.extend(child_units(c, unit).await?);
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    Ok(out)
}
