//! Which sources let new instances allow IMDSv1, by EC2's own precedence (the template's options, then
//! the account default, then the AMI), and the rows the Sources page shows for one place.

use shared::api::{InstanceUsage, InstanceView};
use shared::sources::{
    MetadataDefaults, SourceId, SourceKind, SourcePosture, SourceState, SourceView, TemplateOptions,
};
use std::collections::BTreeSet;

use super::*;

/// The tokens a launch from `options` gets, and what decided it: EC2's order is the template, then
/// the account default, then the AMI (`v2.0`: required).
pub(super) fn launch_tokens(
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
pub(super) fn config_tokens(
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
pub(super) fn decide_tokens(
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

pub(super) fn posture(tokens: &str, defaults: &MetadataDefaults) -> SourcePosture {
    match tokens {
        "required" => SourcePosture::RequiresTokens,
        _ if defaults.http_tokens_enforced.as_deref() == Some("enabled") => SourcePosture::LaunchRefused,
        _ => SourcePosture::AllowsImdsv1,
    }
}

/// The worse of two postures (refused launches first, then IMDSv1 allowed).
pub(super) fn worse(a: SourcePosture, b: SourcePosture) -> SourcePosture {
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

pub(super) fn calls_imdsv1(i: &InstanceView) -> bool {
    i.imdsv1_calls.unwrap_or(0) > 0
}

pub(super) fn usage(instances: &[&InstanceView]) -> Vec<InstanceUsage> {
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
pub(super) fn group_options<'a>(g: &GroupReading, t: &'a TemplateReading) -> Option<&'a TemplateOptions> {
    version_options(&g.template_version, t)
}

/// `$Latest`, `$Default` or a number of `t`; None for a number that is neither (not read).
pub(super) fn version_options<'a>(version: &str, t: &'a TemplateReading) -> Option<&'a TemplateOptions> {
    match version {
        "$Latest" => Some(&t.latest),
        "$Default" => Some(&t.default),
        n => [&t.default, &t.latest]
            .into_iter()
            .find(|o| o.version.to_string() == n),
    }
}

pub(super) fn group_template<'a>(g: &GroupReading, r: &'a PlaceReading) -> Option<&'a TemplateReading> {
    r.templates.iter().find(|t| {
        g.template_id.as_deref() == Some(t.id.as_str()) || g.template_name.as_deref() == Some(t.name.as_str())
    })
}

/// The templates a group's MixedInstancesPolicy overrides launch besides its own, with the version
/// each names; an override naming a template that was not read is left out.
pub(super) fn override_templates<'a>(
    g: &'a GroupReading,
    r: &'a PlaceReading,
) -> Vec<(&'a TemplateReading, &'a str)> {
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
pub(super) fn group_uses(g: &GroupReading, r: &PlaceReading, t: &TemplateReading) -> bool {
    group_template(g, r).is_some_and(|gt| gt.id == t.id) || g.overrides.iter().any(|o| o.names(t))
}

/// The tokens a group's launches get now, and why; None where its template version or launch
/// configuration was not read. A group on several templates gets the worst of them.
pub(super) fn group_tokens(
    g: &GroupReading,
    r: &PlaceReading,
    defaults: &MetadataDefaults,
) -> Option<(String, String)> {
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
pub(super) fn group_follows_template(g: &GroupReading) -> bool {
    g.template_version == "$Default" || g.template_version == "$Latest"
}

/// The sources of one place, with the instances that came from each.
pub(super) fn place_views(
    account: &str,
    region: &str,
    r: &PlaceReading,
    here: &[&InstanceView],
) -> Vec<SourceView> {
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

/// What to do about an AMI not marked v2.0: its owner may mark it, once and for good; anyone else
/// can only use another AMI or rely on the account default.
pub(super) fn image_advice(img: &ImageReading, own: bool) -> String {
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
pub(super) fn managed_advice(template: &str, service: &str) -> String {
    format!(
        "Launch template {template} is managed by {service}: only that service changes it. Set its metadata options \
         where you configure that service (or fix the account default, which covers a template that leaves HttpTokens unset)."
    )
}
