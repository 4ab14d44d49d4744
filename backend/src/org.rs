//! The organisation the console manages: its own (hub) account, and member accounts named on the
//! command line, in a file, or listed by AWS Organizations, each reached by assuming the member role.
//! Accounts the console cannot reach are kept with the reason, never dropped.

use shared::api::AccountView;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::aws::{self, RegionClients, Target, Timeouts};
use crate::error::AppError;

pub struct Org {
    /// Members named by --account / --accounts-file.
    pub named: Vec<String>,
    /// Whether to list members from AWS Organizations.
    pub organization: bool,
    /// Organizational units (or roots) whose accounts, at any depth, are members.
    pub units: Vec<String>,
    pub member_role: String,
    target: Target,
    timeouts: Timeouts,
    regions: Vec<String>,
    metrics: Arc<crate::metrics::Metrics>,
    members: tokio::sync::Mutex<BTreeMap<String, Arc<BTreeMap<String, RegionClients>>>>,
}

/// An account to inventory, and what is known about it before trying.
pub struct Listed {
    pub id: String,
    pub name: Option<String>,
    pub hub: bool,
}

/// How the console's AWS clients are made: where they point, their timeouts, the regions, and the
/// metrics their calls are counted in.
pub struct ClientSettings {
    pub target: Target,
    pub timeouts: Timeouts,
    pub regions: Vec<String>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Org {
    pub fn new(
        named: Vec<String>,
        organization: bool,
        units: Vec<String>,
        member_role: String,
        clients: ClientSettings,
    ) -> Org {
        Org {
            metrics: clients.metrics,
            named,
            organization,
            units,
            member_role,
            target: clients.target,
            timeouts: clients.timeouts,
            regions: clients.regions,
            members: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Whether the console looks beyond its own account.
    pub fn is_multi_account(&self) -> bool {
        self.organization || !self.named.is_empty() || !self.units.is_empty()
    }

    /// The hub first, then the members: named ones and, when asked, the organisation's active
    /// accounts. An organisation that cannot be listed is reported as the second value.
    pub async fn accounts(&self, hub: &str, hub_clients: &RegionClients) -> (Vec<Listed>, Option<String>) {
        let mut out = vec![Listed {
            id: hub.to_owned(),
            name: None,
            hub: true,
        }];
        let mut problem = None;
        let mut sources: Vec<Option<&str>> = Vec::new();
        if self.organization {
            sources.push(None);
        }
        sources.extend(self.units.iter().map(|u| Some(u.as_str())));
        for parent in sources {
            let listed = match parent {
                None => aws::organizations::list_accounts(hub_clients, None).await,
                Some(unit) => aws::organizations::accounts_under(hub_clients, unit).await,
            };
            match listed {
                Ok(list) => {
                    for a in list.into_iter().filter(|a| a.state == "ACTIVE") {
                        if a.id == hub {
                            out[0].name = Some(a.name);
                        } else if !out.iter().any(|o| o.id == a.id) {
                            out.push(Listed {
                                id: a.id,
                                name: Some(a.name),
                                hub: false,
                            });
                        }
                    }
                }
                Err(e) => {
                    let what = parent.map_or_else(
                        || "the organisation".to_owned(),
                        |p| format!("organizational unit {p}"),
                    );
                    problem = Some(format!("cannot list the accounts of {what}: {e}"));
                }
            }
        }
        for id in &self.named {
            if !out.iter().any(|a| &a.id == id) {
                out.push(Listed {
                    id: id.clone(),
                    name: None,
                    hub: false,
                });
            }
        }
        (out, problem)
    }

    /// The member role's ARN in `account`, in the console's own partition (`aws`, `aws-us-gov`,
    /// `aws-cn`, ...): roles are only ever assumed within one.
    pub fn role_arn(&self, account: &str, partition: &str) -> String {
        format!("arn:{partition}:iam::{account}:role/{}", self.member_role)
    }

    /// Clients acting in a member account, made once and kept. `partition`: the console's, from the
    /// ARN GetCallerIdentity gave it ([`partition_of`]).
    pub async fn member_clients(
        &self,
        account: &str,
        partition: &str,
    ) -> Arc<BTreeMap<String, RegionClients>> {
        let mut members = self.members.lock().await;
        if let Some(c) = members.get(account) {
            return c.clone();
        }
        let made = Arc::new(
            aws::assumed_clients(
                &self.target,
                &self.regions,
                self.timeouts,
                &self.role_arn(account, partition),
                &self.metrics,
            )
            .await,
        );
        members.insert(account.to_owned(), made.clone());
        made
    }
}

/// The partition of an ARN (`arn:aws-us-gov:sts::...` gives `aws-us-gov`); `aws` if it is not an ARN.
pub fn partition_of(arn: &str) -> &str {
    match arn.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", partition, ..] if !partition.is_empty() => partition,
        _ => "aws",
    }
}

/// What one account's inventory came to.
pub fn view(
    listed: &Listed,
    instances: usize,
    problem: Option<&AppError>,
    as_of: Option<String>,
) -> AccountView {
    AccountView {
        account_id: listed.id.clone(),
        name: listed.name.clone(),
        hub: listed.hub,
        reachable: problem.is_none(),
        reason: problem.map(ToString::to_string),
        instances,
        as_of,
        regions_unreachable: Vec::new(),
    }
}

/// Every (account, region) a run's TargetLocations reach, once each: the accounts they name, and the
/// active accounts under their organizational units and roots, listed through Organizations (SSM
/// resolves the units itself when the run starts; the preview needs the accounts now).
pub async fn places(
    state: &crate::state::AppState,
    locations: &[shared::params::TargetLocation],
) -> Result<Vec<(String, String)>, AppError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for loc in locations {
        let mut accounts: Vec<String> = loc.accounts.iter().map(|a| a.as_str().to_owned()).collect();
        for unit in &loc.units {
            let under = aws::organizations::accounts_under(state.region(None)?, unit.as_str())
                .await
                .map_err(|e| {
                    AppError::field(
                        "target_locations",
                        format!("cannot list the accounts of {unit}: {e}"),
                    )
                })?;
            accounts.extend(under.into_iter().filter(|a| a.state == "ACTIVE").map(|a| a.id));
        }
        for account in accounts {
            for region in &loc.regions {
                let place = (account.clone(), region.as_str().to_owned());
                if !out.contains(&place) {
                    out.push(place);
                }
            }
        }
    }
    Ok(out)
}
