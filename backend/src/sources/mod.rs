//! Sources of new IMDSv1 instances, and their fixes.
//!
//! Enforcing IMDSv2 on today's instances is undone by tomorrow's launches: a launch template that
//! leaves HttpTokens optional, an account default with no preference, an AMI not marked v2.0. This
//! module reads those sources per account and region (cached for every viewer, as the inventory is),
//! tells which of them let new instances allow IMDSv1 by EC2's own precedence (the template's
//! options, then the account default, then the AMI), and fixes the two the console can change, with
//! the safety of a run: a preview, the readiness check, a record written before AWS is called, and a
//! revert that restores exactly the prior state.

use futures_util::StreamExt;
use shared::api::InstanceView;
use shared::sources::{
    MetadataDefaults, SourceFix, SourceId, SourcePlace, SourcePosture, SourceView, SourcesView,
    TemplateOptions,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use crate::auth::AccountScope;
use crate::aws::launch;
use crate::error::AppError;
use crate::state::AppState;

/// A launch template with its default and latest versions' options.
#[derive(Debug, Clone)]
pub struct TemplateReading {
    pub id: String,
    pub name: String,
    pub default: TemplateOptions,
    pub latest: TemplateOptions,
    /// The service that manages it (EC2's `Operator` principal), which alone may change it.
    pub managed_by: Option<String>,
}

/// A launch template as a group, an override or a fleet names it.
#[derive(Debug, Clone)]
pub struct TemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    /// `$Default`, `$Latest` or a number.
    pub version: String,
}

impl TemplateRef {
    fn names(&self, t: &TemplateReading) -> bool {
        self.id.as_deref() == Some(t.id.as_str()) || self.name.as_deref() == Some(t.name.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct GroupReading {
    pub name: String,
    pub template_id: Option<String>,
    pub template_name: Option<String>,
    /// `$Default`, `$Latest` or a number.
    pub template_version: String,
    pub launch_configuration: Option<String>,
    /// The templates a MixedInstancesPolicy's overrides name for themselves (the group launches
    /// from each of them as well as from its own).
    pub overrides: Vec<TemplateRef>,
    pub instances: Vec<String>,
}

/// An Auto Scaling launch configuration a group launches from. Launch configurations cannot be
/// changed once made, so the console reads them and never fixes them.
#[derive(Debug, Clone)]
pub struct ConfigReading {
    pub name: String,
    pub image_id: Option<String>,
    /// None: created without MetadataOptions or without HttpTokens in them (the account default,
    /// then the AMI, decide).
    pub http_tokens: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ImageReading {
    pub id: String,
    pub name: String,
    pub imds_v2: bool,
    /// The owner's alias (`amazon`, ...) or account ID, as a person would name it.
    pub owner: String,
    pub owner_id: String,
    /// Past its deprecation time.
    pub deprecated: bool,
    /// Disabled by its owner (no new launches; instances from it still run).
    pub disabled: bool,
}

/// An EC2 Fleet or a Spot Fleet request, the templates it launches from, and the AMIs of its launch
/// specifications (Spot Fleet only; they carry no metadata options).
#[derive(Debug, Clone)]
pub struct FleetReading {
    /// "EC2 Fleet" or "Spot Fleet".
    pub kind: &'static str,
    pub id: String,
    pub templates: Vec<TemplateRef>,
    pub images: Vec<String>,
}

impl FleetReading {
    fn launches(&self, t: &TemplateReading) -> bool {
        self.templates.iter().any(|r| r.names(t))
    }

    fn label(&self) -> String {
        format!("{} {}", self.kind, self.id)
    }
}

/// What one account and region launches from.
#[derive(Debug, Clone)]
pub struct PlaceReading {
    pub defaults: MetadataDefaults,
    pub templates: Vec<TemplateReading>,
    pub groups: Vec<GroupReading>,
    /// The launch configurations the groups name.
    pub configs: Vec<ConfigReading>,
    pub images: Vec<ImageReading>,
    pub fleets: Vec<FleetReading>,
}

#[derive(Debug, Clone)]
struct PlaceEntry {
    /// The last good reading and when it was made.
    reading: Option<(String, Arc<PlaceReading>)>,
    error: Option<String>,
    /// When the place was last read (well or not).
    read_at: Instant,
    /// Something changed there since (a run ended): read it again at the next refresh.
    changed: bool,
}

/// The sources of every place, each read again once older than `--fleet-refresh-secs` or changed,
/// in the background, for all viewers; the lock is held only to look at or update the entries,
/// never across a call to AWS.
#[derive(Debug, Default)]
pub struct SourcesCache {
    places: BTreeMap<(String, String), PlaceEntry>,
    /// A background refresh is under way.
    refreshing: bool,
    /// Held while places that were never read are read for the first time, so two viewers do not
    /// both read them.
    first_reads: Arc<tokio::sync::Mutex<()>>,
    /// Sources to fix seen so far (the first listing is the baseline): a new one is told to the
    /// webhooks.
    known: Option<BTreeSet<String>>,
}

/// Places read at once. Each place's own calls (about five, to EC2 and Auto Scaling) go one after
/// another, and each account and region has its own request budget at both services, so this
/// bounds the console's host and network, not a budget.
const PLACES_AT_ONCE: usize = 8;

/// Every place's reading. A place never read is read now (there is nothing to serve for it); a
/// place whose reading is older than the fleet's refresh period, or where something changed, is
/// served as it is while one background task reads it again.
async fn readings(
    state: &AppState,
    places: &[(String, String)],
    fleet: &Arc<Vec<InstanceView>>,
) -> BTreeMap<(String, String), PlaceEntry> {
    let first_reads = state.sources.lock().await.first_reads.clone();
    let missing = |cache: &SourcesCache| -> Vec<(String, String)> {
        places
            .iter()
            .filter(|p| !cache.places.contains_key(*p))
            .cloned()
            .collect()
    };
    if !missing(&*state.sources.lock().await).is_empty() {
        let _turn = first_reads.lock().await;
        let unread = missing(&*state.sources.lock().await);
        if !unread.is_empty() {
            let read = read_places(state, unread, fleet).await;
            keep(state, read).await;
        }
    }
    let mut cache = state.sources.lock().await;
    let due: Vec<(String, String)> = places
        .iter()
        .filter(|p| {
            cache
                .places
                .get(*p)
                .is_some_and(|e| e.changed || e.read_at.elapsed() >= state.fleet_ttl)
        })
        .cloned()
        .collect();
    if !due.is_empty() && !cache.refreshing {
        cache.refreshing = true;
        let state = state.clone();
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let read = read_places(&state, due, &fleet).await;
            keep(&state, read).await;
            state.sources.lock().await.refreshing = false;
        });
    }
    cache.places.clone()
}

/// Reads `places` side by side, at most [`PLACES_AT_ONCE`] at a time.
async fn read_places(
    state: &AppState,
    places: Vec<(String, String)>,
    fleet: &[InstanceView],
) -> Vec<((String, String), Result<PlaceReading, AppError>)> {
    let reads: Vec<_> = places
        .into_iter()
        .map(|place| {
            Box::pin(async move {
                let reading = read_place(state, &place, fleet).await;
                (place, reading)
            })
        })
        .collect();
    futures_util::stream::iter(reads)
        .buffer_unordered(PLACES_AT_ONCE)
        .collect()
        .await
}

/// Stores readings; a place that could not be read keeps its last good reading, with the error.
async fn keep(state: &AppState, read: Vec<((String, String), Result<PlaceReading, AppError>)>) {
    let mut cache = state.sources.lock().await;
    let now = Instant::now();
    for (place, entry) in read {
        let kept = cache.places.get(&place).and_then(|e| e.reading.clone());
        cache.places.insert(
            place,
            match entry {
                Ok(r) => PlaceEntry {
                    reading: Some((state.store.clock.now_rfc3339(), Arc::new(r))),
                    error: None,
                    read_at: now,
                    changed: false,
                },
                Err(e) => PlaceEntry {
                    reading: kept,
                    error: Some(e.to_string()),
                    read_at: now,
                    changed: false,
                },
            },
        );
    }
}

async fn read_place(
    state: &AppState,
    (account, region): &(String, String),
    fleet: &[InstanceView],
) -> Result<PlaceReading, AppError> {
    let clients = crate::inventory::clients_for(state, account, region).await?;
    let images: BTreeSet<String> = fleet
        .iter()
        .filter(|i| &i.account == account && &i.region == region && i.state != "terminated")
        .filter_map(|i| i.image_id.clone())
        .collect();
    launch::read_place(&clients, &images).await
}

/// Notes that something changed in a place (a run ended there): the next refresh reads it again.
pub async fn place_changed(state: &AppState, account: &str, region: &str) {
    if let Some(entry) = state
        .sources
        .lock()
        .await
        .places
        .get_mut(&(account.to_owned(), region.to_owned()))
    {
        entry.changed = true;
    }
}

/// After a fix or a revert: the place is read again now, by the action that changed it, so the
/// next listing shows the change without waiting for AWS. When the fleet has not been read yet (a
/// fix sent again at start-up) or the reading fails, the next refresh reads it.
async fn read_again(state: &AppState, account: &str, region: &str) {
    let place = (account.to_owned(), region.to_owned());
    let fleet = state.fleet.lock().await.as_ref().map(|s| s.instances.clone());
    let reading = match &fleet {
        Some(fleet) => read_place(state, &place, fleet).await,
        None => Err(AppError::internal("the fleet has not been read yet")),
    };
    match reading {
        Ok(r) => keep(state, vec![(place, Ok(r))]).await,
        Err(e) => {
            tracing::warn!(%account, %region, error = %e, "could not read a fixed place again; the next refresh will");
            let mut cache = state.sources.lock().await;
            if let Some(entry) = cache.places.get_mut(&place) {
                entry.changed = true;
            }
        }
    }
}

mod fix;
mod judge;
mod revert;

pub use fix::{fix, preview, resume_unfinished};
use judge::*;
pub use revert::revert;

/// `GET /api/v1/sources`: every source of the places the caller may see.
pub async fn list(state: &AppState, scope: &AccountScope) -> Result<SourcesView, AppError> {
    let fleet = crate::inventory::snapshot(state).await?;
    let places: Vec<(String, String)> = fleet
        .accounts
        .iter()
        .filter(|a| a.reachable && scope.allows(&a.account_id))
        .flat_map(|a| {
            state
                .regions
                .iter()
                .map(move |r| (a.account_id.clone(), r.clone()))
        })
        .collect();
    let entries = readings(state, &places, &fleet.instances).await;
    let mut sources = Vec::new();
    let mut read = Vec::new();
    for place in &places {
        let Some(entry) = entries.get(place) else {
            continue;
        };
        read.push(SourcePlace {
            account: place.0.clone(),
            region: place.1.clone(),
            as_of: entry.reading.as_ref().map(|(t, _)| t.clone()),
            error: entry.error.clone(),
        });
        if let Some((_, r)) = &entry.reading {
            let here: Vec<&InstanceView> = fleet
                .instances
                .iter()
                .filter(|i| i.account == place.0 && i.region == place.1 && i.state != "terminated")
                .collect();
            sources.extend(place_views(&place.0, &place.1, r, &here));
        }
    }
    let to_fix = sources
        .iter()
        .filter(|s| s.posture != SourcePosture::RequiresTokens)
        .count();
    tell_new(state, &sources).await;
    Ok(SourcesView {
        sources,
        places: read,
        to_fix,
    })
}

/// Tells the webhooks about sources to fix that were not there before (none at the first listing).
async fn tell_new(state: &AppState, sources: &[SourceView]) {
    let mut cache = state.sources.lock().await;
    let to_fix = sources
        .iter()
        .filter(|s| s.posture != SourcePosture::RequiresTokens);
    let Some(known) = cache.known.as_mut() else {
        cache.known = Some(to_fix.map(|s| s.id.clone()).collect());
        return;
    };
    for s in to_fix {
        if known.insert(s.id.clone()) {
            crate::webhooks::notify(
                state,
                &crate::webhooks::Notice {
                    event: "source.new",
                    summary: format!(
                        "a new source of IMDSv1 instances: {} {} in {} {} ({})",
                        s.kind.label(),
                        s.name,
                        s.account,
                        s.region,
                        s.posture.label()
                    ),
                    data: serde_json::json!({"source_id": s.id, "kind": s.kind.as_str(), "detail": s.detail}),
                },
            )
            .await;
        }
    }
}

/// The number of sources left to fix in the caller's accounts, from the shared cache: the dashboard
/// never waits for AWS. Before the first reading it answers None and starts one, which the next
/// dashboard has.
pub async fn to_fix_for_dashboard(state: &AppState, scope: &AccountScope) -> Option<usize> {
    let cache = state.sources.lock().await;
    if cache.places.is_empty() {
        drop(cache);
        let reader = state.clone();
        tokio::spawn(async move {
            if let Err(e) = list(&reader, &AccountScope::default()).await {
                tracing::warn!(error = %e, "could not read the sources of new instances");
            }
        });
        return None;
    }
    let fleet = state.fleet.try_lock().ok()?.clone()?;
    let mut n = 0;
    for ((account, region), entry) in cache.places.iter().filter(|((a, _), _)| scope.allows(a)) {
        if let Some((_, r)) = &entry.reading {
            let here: Vec<&InstanceView> = fleet
                .instances
                .iter()
                .filter(|i| &i.account == account && &i.region == region)
                .collect();
            n += place_views(account, region, r, &here)
                .iter()
                .filter(|s| s.posture != SourcePosture::RequiresTokens)
                .count();
        }
    }
    Some(n)
}

/// `GET /sources/fixes`: newest first, within the caller's accounts.
pub async fn fixes(state: &AppState, scope: &AccountScope) -> Result<Vec<SourceFix>, AppError> {
    Ok(state
        .store
        .source_fix_list(200)
        .await?
        .into_iter()
        .filter(|f| scope.allows(&f.account))
        .collect())
}

/// The account a source ID or fix names, for the policy table's account check.
pub fn account_of_source(raw_id: &str) -> Option<String> {
    SourceId::parse(raw_id).ok().map(|id| id.account)
}

#[cfg(test)]
mod tests {
    use super::judge::*;
    use super::*;

    fn image() -> ImageReading {
        ImageReading {
            id: String::new(),
            name: String::new(),
            imds_v2: false,
            owner: "self".into(),
            owner_id: "123456789012".into(),
            deprecated: false,
            disabled: false,
        }
    }

    fn opts(version: i64, tokens: Option<&str>, image: &str) -> TemplateOptions {
        TemplateOptions {
            version,
            http_tokens: tokens.map(str::to_owned),
            http_put_response_hop_limit: None,
            http_endpoint: None,
            image_id: Some(image.to_owned()),
        }
    }

    #[test]
    fn a_launch_follows_the_template_then_the_default_then_the_ami() {
        let images = vec![
            ImageReading {
                id: "ami-00000001".into(),
                name: "old".into(),
                imds_v2: false,
                ..image()
            },
            ImageReading {
                id: "ami-00000002".into(),
                name: "new".into(),
                imds_v2: true,
                ..image()
            },
        ];
        let mut d = MetadataDefaults::default();
        assert_eq!(
            launch_tokens(&opts(1, None, "ami-00000001"), &d, &images).0,
            "optional"
        );
        assert_eq!(
            launch_tokens(&opts(1, None, "ami-00000002"), &d, &images).0,
            "required"
        );
        d.http_tokens = Some("required".into());
        assert_eq!(
            launch_tokens(&opts(1, None, "ami-00000001"), &d, &images).0,
            "required"
        );
        assert_eq!(
            launch_tokens(&opts(1, Some("optional"), "ami-00000002"), &d, &images).0,
            "optional"
        );
        d.http_tokens_enforced = Some("enabled".into());
        assert_eq!(posture("optional", &d), SourcePosture::LaunchRefused);
        assert_eq!(posture("required", &d), SourcePosture::RequiresTokens);
    }

    #[test]
    fn a_launch_configuration_follows_the_same_order() {
        let images = vec![ImageReading {
            id: "ami-00000001".into(),
            name: "old".into(),
            imds_v2: false,
            ..image()
        }];
        let config = |tokens: Option<&str>| ConfigReading {
            name: "lc".into(),
            image_id: Some("ami-00000001".into()),
            http_tokens: tokens.map(str::to_owned),
        };
        let mut d = MetadataDefaults::default();
        assert_eq!(config_tokens(&config(None), &d, &images).0, "optional");
        assert_eq!(
            config_tokens(&config(Some("required")), &d, &images).0,
            "required"
        );
        d.http_tokens = Some("required".into());
        // Left out: the account default decides; set: the configuration's own value wins.
        let (tokens, why) = config_tokens(&config(None), &d, &images);
        assert_eq!(tokens, "required");
        assert!(
            why.starts_with("launch configuration lc leaves HttpTokens unset"),
            "{why}"
        );
        assert_eq!(
            config_tokens(&config(Some("optional")), &d, &images).0,
            "optional"
        );
    }
}
