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
use shared::api::{InstanceUsage, InstanceView};
use shared::sources::{
    declarative_policy_text, MetadataDefaults, SourceFix, SourceFixPreview, SourceFixRequest, SourceId,
    SourceKind, SourcePlace, SourcePosture, SourceState, SourceView, SourcesView, TemplateOptions,
    DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT,
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
                    reading: Some((crate::store::now_rfc3339(), Arc::new(r))),
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
        None => Err(AppError::Internal("the fleet has not been read yet".into())),
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

/// The tokens a launch from `options` gets, and what decided it: EC2's order is the template, then
/// the account default, then the AMI (`v2.0`: required).
fn launch_tokens(
    options: &TemplateOptions,
    defaults: &MetadataDefaults,
    images: &[ImageReading],
) -> (String, String) {
    decide_tokens(
        &format!("version {}", options.version),
        options.http_tokens.as_deref(),
        options.image_id.as_deref(),
        defaults,
        images,
    )
}

/// The same order for a launch configuration: Auto Scaling passes its MetadataOptions to the launch
/// as a template's are passed, so an HttpTokens it sets wins and one it leaves out falls to the account
/// default, then the AMI.
fn config_tokens(
    c: &ConfigReading,
    defaults: &MetadataDefaults,
    images: &[ImageReading],
) -> (String, String) {
    decide_tokens(
        &format!("launch configuration {}", c.name),
        c.http_tokens.as_deref(),
        c.image_id.as_deref(),
        defaults,
        images,
    )
}

/// The tokens of a launch whose own options are `tokens` (None: left out) from `image`, and why;
/// `what` names the thing launched from ("version 3", "launch configuration legacy-lc").
fn decide_tokens(
    what: &str,
    tokens: Option<&str>,
    image: Option<&str>,
    defaults: &MetadataDefaults,
    images: &[ImageReading],
) -> (String, String) {
    if let Some(t) = tokens {
        return (t.to_owned(), format!("{what} sets HttpTokens {t}"));
    }
    if let Some(t) = &defaults.http_tokens {
        return (
            t.clone(),
            format!("{what} leaves HttpTokens unset; the account default is {t}"),
        );
    }
    let name = image.unwrap_or("its AMI");
    match images.iter().find(|i| Some(i.id.as_str()) == image) {
        Some(i) if i.imds_v2 => (
            "required".to_owned(),
            format!("HttpTokens unset here and in the account default; {name} is marked ImdsSupport v2.0"),
        ),
        _ => (
            "optional".to_owned(),
            format!(
                "HttpTokens unset here and in the account default, and {name} is not marked ImdsSupport v2.0"
            ),
        ),
    }
}

fn posture(tokens: &str, defaults: &MetadataDefaults) -> SourcePosture {
    match tokens {
        "required" => SourcePosture::RequiresTokens,
        _ if defaults.http_tokens_enforced.as_deref() == Some("enabled") => SourcePosture::LaunchRefused,
        _ => SourcePosture::AllowsImdsv1,
    }
}

/// The worse of two postures (refused launches first, then IMDSv1 allowed).
fn worse(a: SourcePosture, b: SourcePosture) -> SourcePosture {
    let rank = |p| match p {
        SourcePosture::LaunchRefused => 2,
        SourcePosture::AllowsImdsv1 => 1,
        SourcePosture::RequiresTokens => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn calls_imdsv1(i: &InstanceView) -> bool {
    i.imdsv1_calls.unwrap_or(0) > 0
}

fn usage(instances: &[&InstanceView]) -> Vec<InstanceUsage> {
    instances
        .iter()
        .filter(|i| calls_imdsv1(i))
        .map(|i| InstanceUsage {
            instance_id: i.instance_id.clone(),
            imdsv1_calls: i.imdsv1_calls.unwrap_or(0),
        })
        .collect()
}

/// The group's launch template version as it resolves now; None for a pinned number that is
/// neither the default nor the latest (unknown without another call).
fn group_options<'a>(g: &GroupReading, t: &'a TemplateReading) -> Option<&'a TemplateOptions> {
    version_options(&g.template_version, t)
}

/// `$Latest`, `$Default` or a number of `t`; None for a number that is neither (not read).
fn version_options<'a>(version: &str, t: &'a TemplateReading) -> Option<&'a TemplateOptions> {
    match version {
        "$Latest" => Some(&t.latest),
        "$Default" => Some(&t.default),
        n => [&t.default, &t.latest]
            .into_iter()
            .find(|o| o.version.to_string() == n),
    }
}

fn group_template<'a>(g: &GroupReading, r: &'a PlaceReading) -> Option<&'a TemplateReading> {
    r.templates.iter().find(|t| {
        g.template_id.as_deref() == Some(t.id.as_str()) || g.template_name.as_deref() == Some(t.name.as_str())
    })
}

/// The templates a group's MixedInstancesPolicy overrides launch besides its own, with the version
/// each names; an override naming a template that was not read is left out.
fn override_templates<'a>(g: &'a GroupReading, r: &'a PlaceReading) -> Vec<(&'a TemplateReading, &'a str)> {
    let mut out: Vec<(&TemplateReading, &str)> = Vec::new();
    for o in &g.overrides {
        if let Some(t) = r.templates.iter().find(|t| o.names(t)) {
            if !out.iter().any(|(seen, v)| seen.id == t.id && *v == o.version) {
                out.push((t, o.version.as_str()));
            }
        }
    }
    out
}

/// Whether `g` launches from `t`, as its own template or an override's.
fn group_uses(g: &GroupReading, r: &PlaceReading, t: &TemplateReading) -> bool {
    group_template(g, r).is_some_and(|gt| gt.id == t.id) || g.overrides.iter().any(|o| o.names(t))
}

/// The tokens a group's launches get now, and why; None where its template version or launch
/// configuration was not read. A group on several templates gets the worst of them.
fn group_tokens(g: &GroupReading, r: &PlaceReading, defaults: &MetadataDefaults) -> Option<(String, String)> {
    if let Some(t) = group_template(g, r) {
        let own = group_options(g, t).map(|o| launch_tokens(o, defaults, &r.images));
        return override_templates(g, r)
            .into_iter()
            .map(|(t, v)| version_options(v, t).map(|o| launch_tokens(o, defaults, &r.images)))
            .fold(own, |worst, next| match (worst, next) {
                (Some(w), Some(n)) if w.0 == "required" && n.0 != "required" => Some(n),
                (Some(w), Some(_)) => Some(w),
                _ => None,
            });
    }
    let name = g.launch_configuration.as_ref()?;
    r.configs
        .iter()
        .find(|c| &c.name == name)
        .map(|c| config_tokens(c, defaults, &r.images))
}

/// A group's fix is its template's, when the group follows `$Default` or `$Latest` (a pinned version
/// would not see the new one).
fn group_follows_template(g: &GroupReading) -> bool {
    g.template_version == "$Default" || g.template_version == "$Latest"
}

/// The sources of one place, with the instances that came from each.
fn place_views(account: &str, region: &str, r: &PlaceReading, here: &[&InstanceView]) -> Vec<SourceView> {
    let mut out = Vec::new();
    let d = &r.defaults;
    let id = |kind: SourceKind, resource: &str| {
        SourceId {
            kind,
            account: account.to_owned(),
            region: region.to_owned(),
            resource: resource.to_owned(),
        }
        .to_string()
    };
    let policy = d.managed_by == "declarative-policy";
    out.push(SourceView {
        id: id(SourceKind::AccountDefault, ""),
        kind: SourceKind::AccountDefault,
        account: account.to_owned(),
        region: region.to_owned(),
        name: "Instance metadata defaults".to_owned(),
        resource_id: String::new(),
        posture: if d.http_tokens.as_deref() == Some("required") {
            SourcePosture::RequiresTokens
        } else {
            SourcePosture::AllowsImdsv1
        },
        detail: format!(
            "HttpTokens {}; launch-time enforcement {}; managed by {}",
            d.http_tokens.as_deref().unwrap_or("no preference (templates, then AMIs decide)"),
            d.http_tokens_enforced.as_deref().unwrap_or("no preference"),
            if policy { "a declarative policy of the organisation" } else { "the account" }
        ),
        instances: here.len(),
        imdsv1_instances: here.iter().filter(|i| calls_imdsv1(i)).count(),
        related: Vec::new(),
        fixable: !policy,
        advice: policy.then(|| {
            "A declarative policy of your organisation manages these defaults: the preview gives the policy text for its administrators.".to_owned()
        }),
        state: Some(SourceState::AccountDefault(d.clone())),
    });
    for t in &r.templates {
        let (dt, dwhy) = launch_tokens(&t.default, d, &r.images);
        let (lt, lwhy) = launch_tokens(&t.latest, d, &r.images);
        let from: Vec<&&InstanceView> = here
            .iter()
            .filter(|i| i.launch_template().is_some_and(|(tid, _)| tid == t.id))
            .collect();
        let groups: Vec<String> = r
            .groups
            .iter()
            .filter(|g| group_uses(g, r, t))
            .map(|g| g.name.clone())
            .chain(r.fleets.iter().filter(|f| f.launches(t)).map(FleetReading::label))
            .collect();
        let detail = if t.default.version == t.latest.version {
            format!("Default and latest version {}: {dwhy}", t.default.version)
        } else {
            format!(
                "Default version {}: {dwhy}. Latest version {}: {lwhy}",
                t.default.version, t.latest.version
            )
        };
        out.push(SourceView {
            id: id(SourceKind::LaunchTemplate, &t.id),
            kind: SourceKind::LaunchTemplate,
            account: account.to_owned(),
            region: region.to_owned(),
            name: t.name.clone(),
            resource_id: t.id.clone(),
            posture: worse(posture(&dt, d), posture(&lt, d)),
            detail,
            instances: from.len(),
            imdsv1_instances: from.iter().filter(|i| calls_imdsv1(i)).count(),
            related: groups,
            fixable: t.managed_by.is_none(),
            advice: t.managed_by.as_ref().map(|who| managed_advice(&t.name, who)),
            state: Some(SourceState::LaunchTemplate {
                default_version: t.default.version,
                latest_version: t.latest.version,
                options: t.default.clone(),
            }),
        });
    }
    for g in &r.groups {
        let members: BTreeSet<&str> = g.instances.iter().map(String::as_str).collect();
        let from: Vec<&&InstanceView> = here
            .iter()
            .filter(|i| {
                members.contains(i.instance_id.as_str()) || i.auto_scaling_group() == Some(g.name.as_str())
            })
            .collect();
        let template = group_template(g, r);
        let (posture_now, detail, fixable, advice) = match (template, &g.launch_configuration) {
            (Some(t), _) => match group_options(g, t) {
                Some(o) => {
                    let (tokens, why) = launch_tokens(o, d, &r.images);
                    let follows = group_follows_template(g);
                    (
                        posture(&tokens, d),
                        format!("Launches {} {} (version {}): {why}", t.name, g.template_version, o.version),
                        follows,
                        (!follows).then(|| format!("The group pins version {}: after fixing {}, point the group at $Default.", g.template_version, t.name)),
                    )
                }
                None => (
                    SourcePosture::AllowsImdsv1,
                    format!("Launches {} version {}, which is neither its default nor its latest", t.name, g.template_version),
                    false,
                    Some(format!("Point the group at $Default of {} once that is fixed.", t.name)),
                ),
            },
            (None, Some(lc)) => match r.configs.iter().find(|c| &c.name == lc) {
                Some(c) => {
                    let (tokens, why) = config_tokens(c, d, &r.images);
                    let posture = posture(&tokens, d);
                    // A launch configuration cannot be changed: the way to IMDSv2 is a launch
                    // template (or, where it leaves HttpTokens unset, the account default).
                    let advice = match (posture, &c.http_tokens) {
                        (SourcePosture::RequiresTokens, _) => None,
                        (_, Some(_)) => Some(format!(
                            "Launch configuration {lc} sets HttpTokens itself and cannot be changed (AWS does not modify launch configurations): \
                             move the group to a launch template that requires tokens (Auto Scaling can copy the configuration to one)."
                        )),
                        (_, None) => Some(format!(
                            "Launch configuration {lc} cannot be changed (AWS does not modify launch configurations): move the group to a launch \
                             template that requires tokens, or fix the account default, which covers a configuration that leaves HttpTokens unset."
                        )),
                    };
                    (
                        posture,
                        format!("Launches from launch configuration {lc}: {why}"),
                        false,
                        advice,
                    )
                }
                None => (
                    SourcePosture::AllowsImdsv1,
                    format!("Launches from launch configuration {lc}, which Auto Scaling did not describe"),
                    false,
                    Some("Move the group to a launch template that requires tokens (launch configurations cannot be changed).".to_owned()),
                ),
            },
            (None, None) => (
                SourcePosture::AllowsImdsv1,
                "Its launch template is not readable in this account".to_owned(),
                false,
                None,
            ),
        };
        // A MixedInstancesPolicy's overrides may launch other templates: the group is as bad as
        // the worst of them, and is fixed through each template, not as one.
        let (mut posture_now, mut detail, mut fixable, mut advice) = (posture_now, detail, fixable, advice);
        let others = override_templates(g, r);
        for (t, version) in &others {
            let (p, why) = match version_options(version, t) {
                Some(o) => {
                    let (tokens, why) = launch_tokens(o, d, &r.images);
                    (posture(&tokens, d), format!("(version {}): {why}", o.version))
                }
                None => (
                    SourcePosture::AllowsImdsv1,
                    "is neither its default nor its latest version".to_owned(),
                ),
            };
            posture_now = worse(posture_now, p);
            detail.push_str(&format!(". An override launches {} {version} {why}", t.name));
        }
        let mut templates: Vec<&TemplateReading> = template.into_iter().collect();
        for (t, _) in &others {
            if !templates.iter().any(|x| x.id == t.id) {
                templates.push(t);
            }
        }
        if templates.len() > 1 {
            fixable = false;
            let unfixed: Vec<&str> = templates.iter().map(|t| t.name.as_str()).collect();
            advice = Some(format!(
                "The group launches from {} templates ({}): fix each template that allows IMDSv1.",
                templates.len(),
                unfixed.join(", ")
            ));
        } else if let Some(who) = template.and_then(|t| t.managed_by.as_ref()) {
            fixable = false;
            advice = Some(managed_advice(
                &template.map(|t| t.name.clone()).unwrap_or_default(),
                who,
            ));
        }
        out.push(SourceView {
            id: id(SourceKind::AutoScalingGroup, &g.name),
            kind: SourceKind::AutoScalingGroup,
            account: account.to_owned(),
            region: region.to_owned(),
            name: g.name.clone(),
            resource_id: g.name.clone(),
            posture: posture_now,
            detail,
            instances: from.len(),
            imdsv1_instances: from.iter().filter(|i| calls_imdsv1(i)).count(),
            related: if templates.is_empty() {
                g.launch_configuration.clone().into_iter().collect()
            } else {
                templates.iter().map(|t| t.id.clone()).collect()
            },
            fixable,
            advice,
            state: None,
        });
    }
    for img in r.images.iter().filter(|i| !i.imds_v2) {
        let from: Vec<&&InstanceView> = here
            .iter()
            .filter(|i| i.image_id.as_deref() == Some(img.id.as_str()))
            .collect();
        let templates: Vec<String> = r
            .templates
            .iter()
            .filter(|t| {
                [&t.default, &t.latest]
                    .iter()
                    .any(|o| o.image_id.as_deref() == Some(img.id.as_str()))
            })
            .map(|t| t.id.clone())
            .chain(
                r.fleets
                    .iter()
                    .filter(|f| f.images.contains(&img.id))
                    .map(FleetReading::label),
            )
            .collect();
        let covered = d.http_tokens.as_deref() == Some("required");
        let own = img.owner_id == account;
        let mut about = Vec::new();
        if !own {
            about.push(format!("owned by {}", img.owner));
        }
        if img.deprecated {
            about.push("deprecated".to_owned());
        }
        if img.disabled {
            about.push("disabled (no new launches; its instances still run)".to_owned());
        }
        let about = if about.is_empty() {
            String::new()
        } else {
            format!(" ({})", about.join(", "))
        };
        out.push(SourceView {
            id: id(SourceKind::Image, &img.id),
            kind: SourceKind::Image,
            account: account.to_owned(),
            region: region.to_owned(),
            name: if img.name.is_empty() { img.id.clone() } else { img.name.clone() },
            resource_id: img.id.clone(),
            posture: if covered {
                SourcePosture::RequiresTokens
            } else {
                SourcePosture::AllowsImdsv1
            },
            detail: if covered {
                format!("Not marked ImdsSupport v2.0{about}, but the account default requires tokens for launches that leave them unset")
            } else {
                format!("Not marked ImdsSupport v2.0{about}: a launch that leaves HttpTokens unset allows IMDSv1")
            },
            instances: from.len(),
            imdsv1_instances: from.iter().filter(|i| calls_imdsv1(i)).count(),
            related: templates,
            fixable: false,
            advice: Some(image_advice(img, own)),
            state: None,
        });
    }
    out
}

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

/// What a fix changes: the source (a group's template), its state now and after, and who launches
/// from it. Read fresh from AWS: a fix must start from the state as it is, not as it was cached.
struct Plan {
    id: SourceId,
    /// The source that is changed (a group's fix changes its template).
    target: SourceId,
    preview: SourceFixPreview,
}

async fn plan(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
) -> Result<(Plan, Option<String>, Option<u8>), AppError> {
    let id = SourceId::parse(raw_id).map_err(AppError::NotFound)?;
    let (hop, reason) = req.validate().map_err(AppError::Validation)?;
    if !state.regions.contains(&id.region) {
        return Err(AppError::NotFound(format!(
            "region {} is not managed by this console",
            id.region
        )));
    }
    let fleet = crate::inventory::snapshot(state).await?;
    let place = (id.account.clone(), id.region.clone());
    let reading = read_place(state, &place, &fleet.instances).await?;
    let here: Vec<&InstanceView> = fleet
        .instances
        .iter()
        .filter(|i| i.account == id.account && i.region == id.region && i.state != "terminated")
        .collect();
    let d = &reading.defaults;
    let target = match id.kind {
        SourceKind::AccountDefault | SourceKind::LaunchTemplate => id.clone(),
        SourceKind::AutoScalingGroup => {
            let g = reading
                .groups
                .iter()
                .find(|g| g.name == id.resource)
                .ok_or_else(|| AppError::NotFound(format!("Auto Scaling group {} does not exist in {} {}", id.resource, id.account, id.region)))?;
            let t = group_template(g, &reading).ok_or_else(|| AppError::Conflict {
                code: "NotFixable".into(),
                message: match &g.launch_configuration {
                    Some(lc) => format!(
                        "group {} launches from launch configuration {lc}, which AWS does not let anyone change: move the group to a \
                         launch template that requires tokens (or, where {lc} leaves HttpTokens unset, fix the account default)",
                        g.name
                    ),
                    None => format!("group {} does not launch from a launch template the console can read; move it to one first", g.name),
                },
            })?;
            if override_templates(g, &reading).iter().any(|(o, _)| o.id != t.id) {
                let names: Vec<String> = std::iter::once(t.name.clone())
                    .chain(override_templates(g, &reading).iter().map(|(o, _)| o.name.clone()))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                return Err(AppError::Conflict {
                    code: "NotFixable".into(),
                    message: format!(
                        "group {} launches from several templates through its mixed instances policy ({}): fix each template that \
                         allows IMDSv1 instead",
                        g.name,
                        names.join(", ")
                    ),
                });
            }
            if !group_follows_template(g) {
                return Err(AppError::Conflict {
                    code: "NotFixable".into(),
                    message: format!(
                        "group {} pins version {} of {}: a new default version would not reach it. Fix {} and point the group at $Default.",
                        g.name, g.template_version, t.name, t.id
                    ),
                });
            }
            SourceId {
                kind: SourceKind::LaunchTemplate,
                resource: t.id.clone(),
                ..id.clone()
            }
        }
        SourceKind::Image => {
            return Err(AppError::Conflict {
                code: "NotFixable".into(),
                message: "the console does not change AMIs: an AMI's owner can mark it ImdsSupport v2.0 once, irreversibly \
                          (modify-image-attribute --imds-support v2.0), or register a copy with --imds-support v2.0; or fix the account \
                          default, which covers every AMI"
                    .into(),
            })
        }
    };
    if let Some((name, who)) = reading
        .templates
        .iter()
        .filter(|t| target.kind == SourceKind::LaunchTemplate && t.id == target.resource)
        .find_map(|t| t.managed_by.as_ref().map(|who| (t.name.clone(), who.clone())))
    {
        return Err(AppError::Conflict {
            code: "NotFixable".into(),
            message: managed_advice(&name, &who),
        });
    }
    let preview = match target.kind {
        SourceKind::AccountDefault => {
            let after = MetadataDefaults {
                http_tokens: Some("required".into()),
                http_put_response_hop_limit: hop.map(i32::from).or(d.http_put_response_hop_limit),
                http_tokens_enforced: if req.enforce_at_launch {
                    Some("enabled".into())
                } else {
                    d.http_tokens_enforced.clone()
                },
                ..d.clone()
            };
            let mut changes = vec![change(
                "HttpTokens",
                d.http_tokens.as_deref(),
                after.http_tokens.as_deref(),
            )];
            if after.http_put_response_hop_limit != d.http_put_response_hop_limit {
                changes.push(format!(
                    "HttpPutResponseHopLimit: {} → {}",
                    d.http_put_response_hop_limit
                        .map_or("no preference".into(), |h| h.to_string()),
                    after
                        .http_put_response_hop_limit
                        .map_or("no preference".into(), |h| h.to_string())
                ));
            }
            if after.http_tokens_enforced != d.http_tokens_enforced {
                changes.push(change(
                    "HttpTokensEnforced",
                    d.http_tokens_enforced.as_deref(),
                    after.http_tokens_enforced.as_deref(),
                ));
            }
            // Under the new defaults, which templates and groups would still ask for optional (and so
            // be refused at launch, if enforced).
            let refused_after: Vec<String> = if after.http_tokens_enforced.as_deref() == Some("enabled") {
                reading
                    .templates
                    .iter()
                    .filter(|t| {
                        [&t.default, &t.latest]
                            .iter()
                            .any(|o| launch_tokens(o, &after, &reading.images).0 != "required")
                    })
                    .map(|t| format!("launch template {} ({})", t.name, t.id))
                    .chain(
                        reading
                            .groups
                            .iter()
                            .filter(|g| {
                                group_tokens(g, &reading, &after).is_none_or(|(t, _)| t != "required")
                            })
                            .map(|g| format!("Auto Scaling group {}", g.name)),
                    )
                    .collect()
            } else {
                Vec::new()
            };
            let policy = d.managed_by == "declarative-policy";
            let mut warnings = Vec::new();
            if policy && req.enforce_at_launch {
                warnings.push(DECLARATIVE_POLICY_HAS_NO_LAUNCH_ENFORCEMENT.to_owned());
            }
            if !policy
                && after.http_tokens_enforced.as_deref() == Some("enabled")
                && d.http_tokens_enforced.as_deref() != Some("enabled")
            {
                warnings.push(format!(
                    "While HttpTokensEnforced stays enabled, EC2 refuses HttpTokens=optional on every instance of \
                     {target}: no run's Revert, and no plan's automatic rollback, can bring IMDSv1 back there until it \
                     is turned off (reverting this fix turns it off)."
                ));
            }
            SourceFixPreview {
                warnings,
                source_id: id.to_string(),
                fixes: target.to_string(),
                changes,
                before: SourceState::AccountDefault(d.clone()),
                after: SourceState::AccountDefault(after),
                groups: reading.groups.iter().map(|g| g.name.clone()).collect(),
                refused_after,
                imdsv1_instances: usage(&here),
                needs_override: false,
                managed_by_policy: policy,
                policy_text: policy.then(|| declarative_policy_text(hop)),
            }
        }
        _ => {
            let t = reading
                .templates
                .iter()
                .find(|t| t.id == target.resource)
                .ok_or_else(|| {
                    AppError::NotFound(format!(
                        "launch template {} does not exist in {} {}",
                        target.resource, id.account, id.region
                    ))
                })?;
            let new_version = t.latest.version + 1;
            let after_options = TemplateOptions {
                version: new_version,
                http_tokens: Some("required".into()),
                http_put_response_hop_limit: hop.map(i32::from).or(t.default.http_put_response_hop_limit),
                // Left as it was: an unset endpoint stays unset (EC2 then enables it at launch).
                http_endpoint: t.default.http_endpoint.clone(),
                image_id: t.default.image_id.clone(),
            };
            let groups: Vec<&GroupReading> = reading
                .groups
                .iter()
                .filter(|g| group_uses(g, &reading, t))
                .collect();
            let members: BTreeSet<&str> = groups
                .iter()
                .flat_map(|g| g.instances.iter().map(String::as_str))
                .collect();
            let from: Vec<&InstanceView> = here
                .iter()
                .copied()
                .filter(|i| {
                    i.launch_template().is_some_and(|(tid, _)| tid == t.id)
                        || members.contains(i.instance_id.as_str())
                })
                .collect();
            let mut changes = vec![
                format!(
                    "New version {new_version}, copied from default version {}",
                    t.default.version
                ),
                change("HttpTokens", t.default.http_tokens.as_deref(), Some("required")),
            ];
            if after_options.http_put_response_hop_limit != t.default.http_put_response_hop_limit {
                changes.push(format!(
                    "HttpPutResponseHopLimit: {} → {}",
                    t.default
                        .http_put_response_hop_limit
                        .map_or("unset".into(), |h| h.to_string()),
                    after_options
                        .http_put_response_hop_limit
                        .map_or("unset".into(), |h| h.to_string())
                ));
            }
            // Groups and fleets on $Latest launch the newest version, which may differ from the
            // default (another AMI, instance type, user data). One copy of the default would become
            // their $Latest and change all that; a second copy, of the latest version, keeps it.
            let latest_copy = (t.latest.version != t.default.version).then_some(new_version + 1);
            if let Some(copy) = latest_copy {
                changes.push(format!(
                    "New version {copy}, copied from latest version {} with HttpTokens required, so that groups and \
                     fleets on $Latest keep launching what they launch now",
                    t.latest.version
                ));
            }
            changes.push(format!("Default version: {} → {new_version}", t.default.version));
            let pinned: Vec<String> = groups
                .iter()
                .filter(|g| !group_follows_template(g))
                .map(|g| format!("{} (pins version {}: unchanged)", g.name, g.template_version))
                .collect();
            SourceFixPreview {
                source_id: id.to_string(),
                fixes: target.to_string(),
                changes,
                before: SourceState::LaunchTemplate {
                    default_version: t.default.version,
                    latest_version: t.latest.version,
                    options: t.default.clone(),
                },
                after: SourceState::LaunchTemplate {
                    default_version: new_version,
                    latest_version: latest_copy.unwrap_or(new_version),
                    options: after_options,
                },
                groups: groups
                    .iter()
                    .filter(|g| group_follows_template(g))
                    .map(|g| format!("{} ({})", g.name, g.template_version))
                    .chain(pinned)
                    .chain(
                        reading
                            .fleets
                            .iter()
                            .filter(|f| f.launches(t))
                            .map(FleetReading::label),
                    )
                    .collect(),
                refused_after: Vec::new(),
                imdsv1_instances: usage(&from),
                needs_override: false,
                managed_by_policy: false,
                policy_text: None,
                warnings: Vec::new(),
            }
        }
    };
    let mut preview = preview;
    preview.needs_override = !preview.imdsv1_instances.is_empty();
    Ok((Plan { id, target, preview }, reason, hop))
}

/// What to do about an AMI not marked v2.0: its owner may mark it, once and for good; anyone else
/// can only use another AMI or rely on the account default.
fn image_advice(img: &ImageReading, own: bool) -> String {
    if own {
        format!(
            "Mark it once its software supports IMDSv2: `aws ec2 modify-image-attribute --image-id {} --imds-support v2.0` \
             (AWS cannot undo this), or register a copy with --imds-support v2.0, or fix the account default, which covers every AMI.",
            img.id
        )
    } else {
        format!(
            "Only its owner ({}) can mark it ImdsSupport v2.0: use an AMI you own registered with --imds-support v2.0, or fix the \
             account default, which covers every AMI.",
            img.owner
        )
    }
}

/// What to do about a template a service manages: EC2 shows it, but only that service changes it.
fn managed_advice(template: &str, service: &str) -> String {
    format!(
        "Launch template {template} is managed by {service}: only that service changes it. Set its metadata options \
         where you configure that service (or fix the account default, which covers a template that leaves HttpTokens unset)."
    )
}

fn change(field: &str, before: Option<&str>, after: Option<&str>) -> String {
    format!(
        "{field}: {} → {}",
        before.unwrap_or("no preference"),
        after.unwrap_or("no preference")
    )
}

/// `POST /sources/{id}/preview`.
pub async fn preview(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
) -> Result<SourceFixPreview, AppError> {
    Ok(plan(state, raw_id, req).await?.0.preview)
}

/// `POST /sources/{id}/fix`: refused while instances from the source call IMDSv1 (unless a reason is
/// given) or where a declarative policy manages the defaults; recorded, then sent.
pub async fn fix(
    state: &AppState,
    raw_id: &str,
    req: &SourceFixRequest,
    requester: &str,
) -> Result<SourceFix, AppError> {
    let (plan, reason, hop) = plan(state, raw_id, req).await?;
    let p = &plan.preview;
    if p.managed_by_policy {
        return Err(AppError::Conflict {
            code: "ManagedByDeclarativePolicy".into(),
            message: format!(
                "a declarative policy of your organisation manages the instance metadata defaults of {}: nothing was changed. \
                 Give its administrators this policy text (also in the preview):\n{}",
                plan.id.account,
                p.policy_text.clone().unwrap_or_default()
            ),
        });
    }
    if p.needs_override && reason.is_none() {
        return Err(AppError::Imdsv1InUse(p.imdsv1_instances.clone()));
    }
    let fix_id = uuid::Uuid::new_v4().to_string();
    let record = SourceFix {
        fix_id: fix_id.clone(),
        source_id: plan.id.to_string(),
        kind: plan.target.kind,
        account: plan.target.account.clone(),
        region: plan.target.region.clone(),
        requester: requester.to_owned(),
        created_at: crate::store::now_rfc3339(),
        override_reason: reason,
        prior: p.before.clone(),
        applied: Some(p.after.clone()),
        status: "sending".into(),
        error: None,
        reverted_by: None,
        reverted_at: None,
    };
    state
        .store
        .record_source_fix(&record, &plan.target.resource, hop)
        .await?;
    apply(state, &record, &plan.target.resource, hop).await
}

/// Sends a recorded fix and records what came of it. Safe to repeat: the template version is created
/// with the fix's ID as ClientToken, and the defaults are set to fixed values.
async fn apply(
    state: &AppState,
    record: &SourceFix,
    resource: &str,
    hop: Option<u8>,
) -> Result<SourceFix, AppError> {
    crate::crash::point("source-fix-recorded");
    let clients = crate::inventory::clients_for(state, &record.account, &record.region).await?;
    let sent: Result<SourceState, AppError> = async {
        match (&record.prior, &record.applied) {
            (SourceState::AccountDefault(_), Some(SourceState::AccountDefault(after))) => {
                launch::set_metadata_defaults(&clients, after).await?;
                Ok(SourceState::AccountDefault(after.clone()))
            }
            (
                SourceState::LaunchTemplate {
                    options,
                    default_version,
                    latest_version,
                },
                Some(SourceState::LaunchTemplate { options: after, .. }),
            ) => {
                let description = format!("imds-console fix {}: HttpTokens required", record.fix_id);
                let version = launch::create_required_version(
                    &clients,
                    resource,
                    options,
                    hop,
                    &description,
                    &record.fix_id,
                )
                .await?;
                crate::crash::point("source-fix-version-created");
                // The latest version's own copy (see the preview), made after the default's so
                // that it is $Latest; its client token is the fix's too, so a resumed fix makes
                // it once.
                let latest = if latest_version != default_version {
                    let source = TemplateOptions {
                        version: *latest_version,
                        ..TemplateOptions::default()
                    };
                    launch::create_required_version(
                        &clients,
                        resource,
                        &source,
                        hop,
                        &format!("{description} (copy of version {latest_version}, for $Latest)"),
                        &format!("{}-latest", record.fix_id),
                    )
                    .await?
                } else {
                    version
                };
                launch::set_default_version(&clients, resource, version).await?;
                Ok(SourceState::LaunchTemplate {
                    default_version: version,
                    latest_version: latest,
                    options: TemplateOptions {
                        version,
                        ..after.clone()
                    },
                })
            }
            _ => Err(AppError::Internal(format!(
                "fix {} has mismatched states",
                record.fix_id
            ))),
        }
    }
    .await;
    read_again(state, &record.account, &record.region).await;
    match sent {
        Ok(applied) => {
            state
                .store
                .finish_source_fix(&record.fix_id, "applied", Some(&applied), None)
                .await?;
        }
        Err(e) => {
            // AWS said no, or could not be reached: either way nothing is half-done that a retry
            // would not finish, so the record says failed with the reason.
            state
                .store
                .finish_source_fix(&record.fix_id, "failed", None, Some(&e.to_string()))
                .await?;
            return Err(e);
        }
    }
    state
        .store
        .source_fix(&record.fix_id)
        .await?
        .ok_or_else(|| AppError::Internal("the fix just recorded is gone".into()))
}

/// Fixes a crash left between record and reply are sent again at start (each is idempotent).
pub async fn resume_unfinished(state: &AppState) {
    let pending = match state.store.source_fixes_in("sending").await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "could not read unfinished source fixes");
            return;
        }
    };
    for (fix, resource, hop) in pending {
        tracing::info!(fix = %fix.fix_id, "sending a source fix recorded before a restart");
        if let Err(e) = apply(state, &fix, &resource, hop).await {
            tracing::warn!(fix = %fix.fix_id, error = %e, "the resumed source fix failed");
        }
    }
}

/// `POST /sources/fixes/{fix_id}/revert`: the prior default, or the prior default version again and
/// the fix's version deleted (groups and fleets on `$Latest` would keep launching it otherwise).
/// A template whose default someone moved since the fix is left alone (409 `ChangedSinceFix`).
pub async fn revert(state: &AppState, fix_id: &str, requester: &str) -> Result<SourceFix, AppError> {
    let (fix, resource, _) = state
        .store
        .source_fix_with_target(fix_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no source fix {fix_id}")))?;
    if fix.status != "applied" {
        return Err(AppError::Conflict {
            code: "NotRevertible".into(),
            message: format!(
                "fix {fix_id} is {}: only an applied fix can be reverted",
                fix.status
            ),
        });
    }
    let clients = crate::inventory::clients_for(state, &fix.account, &fix.region).await?;
    let note = match (&fix.prior, &fix.applied) {
        (SourceState::AccountDefault(prior), applied) => {
            let applied = match applied {
                Some(SourceState::AccountDefault(a)) => Some(a),
                _ => None,
            };
            revert_defaults(&clients, &fix, prior, applied).await?;
            None
        }
        (
            SourceState::LaunchTemplate {
                default_version: prior,
                ..
            },
            Some(SourceState::LaunchTemplate {
                default_version: made,
                latest_version: made_latest,
                ..
            }),
        ) => {
            let made = [*made, *made_latest];
            revert_template(state, &clients, &fix, &resource, *prior, made).await?
        }
        _ => return Err(AppError::Internal(format!("fix {fix_id} has mismatched states"))),
    };
    read_again(state, &fix.account, &fix.region).await;
    state
        .store
        .revert_source_fix(fix_id, requester, note.as_deref())
        .await?;
    state
        .store
        .source_fix(fix_id)
        .await?
        .ok_or_else(|| AppError::Internal("the fix just reverted is gone".into()))
}

/// An account-default fix undone: the prior defaults again, but only while the defaults are still
/// what the fix made them (or already the prior ones: a revert cut short). A change someone made
/// since (a security team turning on launch enforcement, another hop limit) is never overwritten
/// (409 `ChangedSinceFix`), and defaults a declarative policy now manages are left to it.
async fn revert_defaults(
    clients: &crate::aws::RegionClients,
    fix: &SourceFix,
    prior: &MetadataDefaults,
    applied: Option<&MetadataDefaults>,
) -> Result<(), AppError> {
    let now = launch::metadata_defaults(clients).await?;
    if now.managed_by == "declarative-policy" {
        return Err(AppError::Conflict {
            code: "ManagedByDeclarativePolicy".into(),
            message: format!(
                "a declarative policy of your organisation now manages the instance metadata defaults of {} {}: \
                 nothing was reverted; change the policy instead.",
                fix.account, fix.region
            ),
        });
    }
    let same = |a: &MetadataDefaults, b: &MetadataDefaults| {
        a.http_tokens == b.http_tokens
            && a.http_put_response_hop_limit == b.http_put_response_hop_limit
            && a.http_tokens_enforced == b.http_tokens_enforced
    };
    if same(&now, prior) {
        return Ok(());
    }
    match applied {
        Some(made) if same(&now, made) => launch::set_metadata_defaults(clients, prior).await,
        _ => Err(AppError::Conflict {
            code: "ChangedSinceFix".into(),
            message: format!(
                "the instance metadata defaults of {} {} are now {}: fix {} made them {}, and someone changed them \
                 since. Nothing was reverted, so that change stays; to go back to {}, set them yourself.",
                fix.account,
                fix.region,
                describe_defaults(&now),
                fix.fix_id,
                applied.map_or_else(|| "something else".to_owned(), describe_defaults),
                describe_defaults(prior)
            ),
        }),
    }
}

/// Defaults in words, for a sentence: `HttpTokens required, hop limit 2, enforced at launch`.
fn describe_defaults(d: &MetadataDefaults) -> String {
    format!(
        "HttpTokens {}, hop limit {}, launch enforcement {}",
        d.http_tokens.as_deref().unwrap_or("no preference"),
        d.http_put_response_hop_limit
            .map_or_else(|| "no preference".to_owned(), |h| h.to_string()),
        d.http_tokens_enforced.as_deref().unwrap_or("no preference")
    )
}

/// A template fix undone: the prior default version again, then the fix's version `made` deleted.
/// Refused when the default is neither `made` nor `prior` (someone chose another since the fix; the
/// prior one means a revert cut short, which is finished). Returns what stays changed, in a sentence.
async fn revert_template(
    state: &AppState,
    clients: &crate::aws::RegionClients,
    fix: &SourceFix,
    template: &str,
    prior: i64,
    [made, made_latest]: [i64; 2],
) -> Result<Option<String>, AppError> {
    let (default_now, latest_now) = launch::version_numbers(clients, template).await?;
    if default_now != made && default_now != prior {
        return Err(AppError::Conflict {
            code: "ChangedSinceFix".into(),
            message: format!(
                "the default version of launch template {template} is now {default_now}: fix {} made it {made}, and someone \
                 changed it since. Nothing was reverted, so that change stays; to go back to version {prior}, make it the \
                 default yourself.",
                fix.fix_id
            ),
        });
    }
    if default_now != prior {
        launch::set_default_version(clients, template, prior).await?;
    }
    crate::crash::point("source-revert-default-moved");
    // The default is back already: a refusal to delete is said in the record, not an error that
    // would hide that the revert happened.
    let mut stays = Vec::new();
    if made_latest != made {
        // The latest version's copy goes first: while it is there it is what $Latest launches.
        let kept = launch::delete_version(clients, template, made_latest)
            .await
            .unwrap_or_else(|e| Some(e.to_string()));
        if let Some(why) = kept {
            stays.push(format!(
                "EC2 kept version {made_latest} ({why}), the fix's copy of the latest version: groups and fleets on \
                 $Latest still launch it with HttpTokens required; delete it."
            ));
        }
    }
    let kept = launch::delete_version(clients, template, made)
        .await
        .unwrap_or_else(|e| Some(e.to_string()));
    if let Some(why) = kept {
        let users = template_users(state, fix, template, made).await;
        stays.push(format!(
            "EC2 kept version {made} ({why}): {} still launch it with HttpTokens required; delete the version or \
             point them at $Default.",
            if users.is_empty() {
                "groups and fleets on $Latest".to_owned()
            } else {
                users.join(", ")
            }
        ));
    }
    if latest_now > made.max(made_latest) {
        stays.push(format!(
            "Version {latest_now} was made after the fix and stays: groups and fleets on $Latest launch it."
        ));
    }
    Ok((!stays.is_empty()).then(|| stays.join(" ")))
}

/// The groups and fleets of `template` that launch version `made` (on `$Latest` or pinned to it), for
/// the sentence of what a revert left; empty when the place cannot be read now.
async fn template_users(state: &AppState, fix: &SourceFix, template: &str, made: i64) -> Vec<String> {
    let place = (fix.account.clone(), fix.region.clone());
    let Ok(reading) = read_place(state, &place, &[]).await else {
        return Vec::new();
    };
    reading
        .groups
        .iter()
        .filter(|g| {
            group_template(g, &reading).is_some_and(|t| t.id == template)
                || g.overrides.iter().any(|o| o.id.as_deref() == Some(template))
        })
        .filter(|g| g.template_version == "$Latest" || g.template_version == made.to_string())
        .map(|g| format!("Auto Scaling group {} ({})", g.name, g.template_version))
        .chain(
            reading
                .fleets
                .iter()
                .filter(|f| f.templates.iter().any(|t| t.id.as_deref() == Some(template)))
                .map(|f| format!("{} (if on $Latest)", f.label())),
        )
        .collect()
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
