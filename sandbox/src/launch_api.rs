//! EC2's calls about where instances come from (ec2Query): Get/ModifyInstanceMetadataDefaults,
//! DescribeLaunchTemplates, DescribeLaunchTemplateVersions, CreateLaunchTemplateVersion,
//! ModifyLaunchTemplate and DescribeFleets, with EC2's validation and error codes; DescribeImages,
//! DeleteLaunchTemplateVersions and DescribeSpotFleetRequests are routed from here to `images`,
//! `template_versions` and `launch_extra`.

use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ec2::{esc, numbered, wrap};
use crate::fleet::Scope;
use crate::launch::{place_key, LaunchTemplate, TemplateVersion};
use crate::wire::{ok_xml, AwsError};
use crate::{timefmt, Sandbox};

type Params<'a> = BTreeMap<&'a str, &'a str>;

pub(crate) fn handle(
    sb: &Sandbox,
    at: &Scope<'_>,
    op: &str,
    p: &Params<'_>,
) -> Option<Result<Response, AwsError>> {
    Some(match op {
        "GetInstanceMetadataDefaults" => dry_run(p).and_then(|()| get_defaults(sb, at)),
        "ModifyInstanceMetadataDefaults" => modify_defaults(sb, at, p),
        "DescribeLaunchTemplates" => describe_templates(sb, at, p),
        "DescribeLaunchTemplateVersions" => describe_versions(sb, at, p),
        "CreateLaunchTemplateVersion" => create_version(sb, at, p),
        "ModifyLaunchTemplate" => modify_template(sb, at, p),
        "DeleteLaunchTemplateVersions" => crate::template_versions::delete_versions(sb, at, p),
        "DescribeImages" => crate::images::describe_images(sb, at, p),
        "DescribeFleets" => describe_fleets(sb, at, p),
        "DescribeSpotFleetRequests" => crate::launch_extra::describe_spot_fleet_requests(sb, at, p),
        _ => return None,
    })
}

/// EC2's DryRun: a permitted call answers DryRunOperation and changes nothing.
pub(crate) fn dry_run(p: &Params<'_>) -> Result<(), AwsError> {
    if p.get("DryRun") == Some(&"true") {
        return Err(AwsError {
            status: axum::http::StatusCode::PRECONDITION_FAILED,
            code: "DryRunOperation".into(),
            message: "Request would have succeeded, but DryRun flag is set.".into(),
        });
    }
    Ok(())
}

/// A parameter that takes one of `allowed`, or EC2's InvalidParameterValue naming them.
pub(crate) fn one_of(p: &Params<'_>, key: &str, allowed: &[&str]) -> Result<Option<String>, AwsError> {
    match p.get(key) {
        None => Ok(None),
        Some(v) if allowed.contains(v) => Ok(Some((*v).to_owned())),
        Some(v) => Err(AwsError::client(
            "InvalidParameterValue",
            format!(
                "Value ({v}) for parameter {key} is invalid. Valid values are: {}",
                allowed.join(", ")
            ),
        )),
    }
}

fn get_defaults(sb: &Sandbox, at: &Scope<'_>) -> Result<Response, AwsError> {
    let world = sb.world();
    let d = world.launch.defaults_of(at.account, at.region);
    let managed = world.declarative_policy.contains(at.account);
    let mut body = String::from("<accountLevel>");
    let mut field = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            let _ = write!(body, "<{name}>{}</{name}>", esc(&v));
        }
    };
    field("httpTokens", d.http_tokens.clone());
    field("httpPutResponseHopLimit", d.hop_limit.map(|h| h.to_string()));
    field("httpEndpoint", d.http_endpoint.clone());
    field("instanceMetadataTags", d.instance_metadata_tags.clone());
    field("httpTokensEnforced", d.http_tokens_enforced.clone());
    if managed {
        field("managedBy", Some("declarative-policy".to_owned()));
        field(
            "managedExceptionMessage",
            Some("The instance metadata defaults are managed by a declarative policy of your organization. Contact your administrator.".to_owned()),
        );
    } else {
        field("managedBy", Some("account".to_owned()));
    }
    body.push_str("</accountLevel>");
    ok_xml(wrap("GetInstanceMetadataDefaults", &body))
}

/// Each field: a value sets it, `no-preference` (or -1 for the hop limit) clears it, absent keeps it.
fn modify_defaults(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    let tokens = one_of(p, "HttpTokens", &["optional", "required", "no-preference"])?;
    let endpoint = one_of(p, "HttpEndpoint", &["enabled", "disabled", "no-preference"])?;
    let tags = one_of(
        p,
        "InstanceMetadataTags",
        &["enabled", "disabled", "no-preference"],
    )?;
    let enforced = one_of(p, "HttpTokensEnforced", &["enabled", "disabled", "no-preference"])?;
    let hop = match p.get("HttpPutResponseHopLimit") {
        None => None,
        Some(raw) => Some(raw.parse::<i32>().ok().filter(|h| *h == -1 || (1..=64).contains(h)).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Value ({raw}) for parameter HttpPutResponseHopLimit is invalid. Expecting -1 (no preference) or a value between 1 and 64."),
            )
        })?),
    };
    if tokens.is_none() && endpoint.is_none() && tags.is_none() && enforced.is_none() && hop.is_none() {
        // EC2 refuses a call that would change nothing rather than answer `true` for it.
        return Err(AwsError::client(
            "MissingParameter",
            "The request must contain at least one of the following parameters: HttpTokens, HttpPutResponseHopLimit, HttpEndpoint, InstanceMetadataTags, HttpTokensEnforced.",
        ));
    }
    dry_run(p)?;
    let mut world = sb.world();
    if world.declarative_policy.contains(at.account) {
        return Err(AwsError::client(
            "OperationNotPermitted",
            "The instance metadata defaults of this account are managed by a declarative policy of your organization and cannot be modified in the account.",
        ));
    }
    let d = world
        .launch
        .defaults
        .entry(place_key(at.account, at.region))
        .or_default();
    let set = |slot: &mut Option<String>, value: Option<String>| {
        if let Some(v) = value {
            *slot = (v != "no-preference").then_some(v);
        }
    };
    set(&mut d.http_tokens, tokens);
    set(&mut d.http_endpoint, endpoint);
    set(&mut d.instance_metadata_tags, tags);
    set(&mut d.http_tokens_enforced, enforced);
    if let Some(h) = hop {
        d.hop_limit = u8::try_from(h).ok();
    }
    world.dirty = true;
    ok_xml(wrap("ModifyInstanceMetadataDefaults", "<return>true</return>"))
}

/// Finds the template a call names by `LaunchTemplateId` or `LaunchTemplateName` (exactly one).
pub(crate) fn named_template<'a>(
    templates: &'a [LaunchTemplate],
    at: &Scope<'_>,
    p: &Params<'_>,
) -> Result<&'a LaunchTemplate, AwsError> {
    let mine = |t: &&LaunchTemplate| t.account == at.account && t.region == at.region;
    match (p.get("LaunchTemplateId"), p.get("LaunchTemplateName")) {
        (Some(_), Some(_)) => Err(AwsError::client(
            "InvalidParameterCombination",
            "Specify either a launch template ID or a launch template name, not both.",
        )),
        (Some(id), None) => templates
            .iter()
            .filter(mine)
            .find(|t| t.id == *id)
            .ok_or_else(|| {
                AwsError::client(
                    "InvalidLaunchTemplateId.NotFound",
                    format!("The specified launch template, with template ID {id}, does not exist."),
                )
            }),
        (None, Some(name)) => templates
            .iter()
            .filter(mine)
            .find(|t| t.name == *name)
            .ok_or_else(|| {
                AwsError::client(
                    "InvalidLaunchTemplateName.NotFoundException",
                    format!("The specified launch template, with template name {name}, does not exist."),
                )
            }),
        (None, None) => Err(AwsError::client(
            "MissingParameter",
            "The request must contain the parameter LaunchTemplateId or LaunchTemplateName",
        )),
    }
}

fn page(p: &Params<'_>, max: usize) -> Result<(usize, usize), AwsError> {
    let size = match p.get("MaxResults") {
        None => max,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Value ( {raw} ) for parameter maxResults is invalid. Expecting a value between 1 and {max}."),
            )
        })?,
    };
    let offset = match p.get("NextToken") {
        None => 0,
        Some(tok) => tok
            .strip_prefix("sbx")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                AwsError::client(
                    "InvalidParameterValue",
                    format!("Invalid value '{tok}' for nextToken"),
                )
            })?,
    };
    Ok((offset, size))
}

fn next_token(body: &mut String, end: usize, total: usize) {
    if end < total {
        let _ = write!(body, "<nextToken>sbx{end:x}</nextToken>");
    }
}

fn template_xml(partition: &str, t: &LaunchTemplate) -> String {
    let operator = match &t.operator {
        Some(principal) => format!(
            "<operator><managed>true</managed><principal>{}</principal></operator>",
            esc(principal)
        ),
        None => "<operator><managed>false</managed></operator>".to_owned(),
    };
    format!(
        "<launchTemplateId>{}</launchTemplateId><launchTemplateName>{}</launchTemplateName>\
         <createTime>{}</createTime><createdBy>arn:{partition}:iam::{}:root</createdBy>\
         <defaultVersionNumber>{}</defaultVersionNumber><latestVersionNumber>{}</latestVersionNumber>{operator}",
        t.id,
        esc(&t.name),
        timefmt::iso(t.versions.first().map_or(0, |v| v.created_ms)),
        t.account,
        t.default_version,
        t.latest_version()
    )
}

fn describe_templates(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    let ids = numbered(p, "LaunchTemplateId");
    let names = numbered(p, "LaunchTemplateName");
    let (offset, size) = page(p, 200)?;
    let world = sb.world();
    let mine: Vec<&LaunchTemplate> = world
        .launch
        .templates
        .iter()
        .filter(|t| t.account == at.account && t.region == at.region)
        .collect();
    if let Some(missing) = ids.iter().find(|id| !mine.iter().any(|t| t.id == **id)) {
        return Err(AwsError::client(
            "InvalidLaunchTemplateId.NotFound",
            format!(
                "At least one of the launch templates specified in the request does not exist: {missing}"
            ),
        ));
    }
    if let Some(missing) = names.iter().find(|n| !mine.iter().any(|t| t.name == **n)) {
        return Err(AwsError::client(
            "InvalidLaunchTemplateName.NotFoundException",
            format!(
                "At least one of the launch templates specified in the request does not exist: {missing}"
            ),
        ));
    }
    let chosen: Vec<&&LaunchTemplate> = mine
        .iter()
        .filter(|t| {
            (ids.is_empty() && names.is_empty())
                || ids.contains(&t.id.as_str())
                || names.contains(&t.name.as_str())
        })
        .collect();
    let end = (offset + size).min(chosen.len());
    let mut body = String::from("<launchTemplates>");
    for t in chosen.get(offset.min(end)..end).unwrap_or_default() {
        let _ = write!(
            body,
            "<item>{}</item>",
            template_xml(&sb.inner.config.partition, t)
        );
    }
    body.push_str("</launchTemplates>");
    next_token(&mut body, end, chosen.len());
    ok_xml(wrap("DescribeLaunchTemplates", &body))
}

/// A version as EC2 describes it, its image ID as given (`image_id`: the AMI a `resolve:ssm:`
/// parameter names, when the caller asked for aliases resolved).
fn version_xml(partition: &str, t: &LaunchTemplate, v: &TemplateVersion, image_id: &str) -> String {
    let md =
        v.md.as_ref()
            .map(crate::template_data::metadata_xml)
            .unwrap_or_default();
    let devices = crate::template_data::block_devices_xml(&v.block_device_mappings);
    // A member the version never set is left out, as EC2 leaves it out (an empty one is no value).
    let member = |tag: &str, value: &str| {
        if value.is_empty() {
            String::new()
        } else {
            format!("<{tag}>{}</{tag}>", esc(value))
        }
    };
    format!(
        "<launchTemplateId>{}</launchTemplateId><launchTemplateName>{}</launchTemplateName>\
         <versionNumber>{}</versionNumber>{}<createTime>{}</createTime>\
         <createdBy>arn:{partition}:iam::{}:root</createdBy><defaultVersion>{}</defaultVersion>\
         <launchTemplateData>{}{}{devices}{md}</launchTemplateData>",
        t.id,
        esc(&t.name),
        v.number,
        v.description
            .as_ref()
            .map(|d| format!("<versionDescription>{}</versionDescription>", esc(d)))
            .unwrap_or_default(),
        timefmt::iso(v.created_ms),
        t.account,
        v.number == t.default_version,
        member("imageId", image_id),
        member("instanceType", &v.instance_type)
    )
}

/// With a template: its versions (all, or those named, `$Latest` and `$Default` included). Without
/// one, EC2 allows only `$Latest` and/or `$Default`, and answers them for every template.
fn describe_versions(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    let specs = numbered(p, "LaunchTemplateVersion");
    let (offset, size) = page(p, 200)?;
    let world = sb.world();
    let named = p.contains_key("LaunchTemplateId") || p.contains_key("LaunchTemplateName");
    let templates: Vec<&LaunchTemplate> = if named {
        vec![named_template(&world.launch.templates, at, p)?]
    } else {
        if specs.is_empty() || specs.iter().any(|s| *s != "$Latest" && *s != "$Default") {
            return Err(AwsError::client(
                "InvalidParameterCombination",
                "To describe the versions of all launch templates, specify only $Latest and/or $Default as versions.",
            ));
        }
        world
            .launch
            .templates
            .iter()
            .filter(|t| t.account == at.account && t.region == at.region)
            .collect()
    };
    let mut found: Vec<(&LaunchTemplate, &TemplateVersion)> = Vec::new();
    for t in templates {
        if specs.is_empty() {
            found.extend(t.versions.iter().map(|v| (t, v)));
            continue;
        }
        let mut numbers: Vec<i64> = Vec::new();
        for spec in &specs {
            let v = t.version(spec).ok_or_else(|| {
                AwsError::client(
                    "InvalidLaunchTemplateId.VersionNotFound",
                    format!(
                        "Could not find launch template version {spec} for launch template ID {}.",
                        t.id
                    ),
                )
            })?;
            if !numbers.contains(&v.number) {
                numbers.push(v.number);
                found.push((t, v));
            }
        }
    }
    // Without ResolveAlias EC2 answers a `resolve:ssm:` image ID as it was given.
    let resolve = p.get("ResolveAlias") == Some(&"true");
    let end = (offset + size).min(found.len());
    let mut body = String::from("<launchTemplateVersionSet>");
    for (t, v) in found.get(offset.min(end)..end).unwrap_or_default() {
        let image = if resolve {
            world.launch.resolve_image(&t.region, &v.image_id)
        } else {
            v.image_id.as_str()
        };
        let _ = write!(
            body,
            "<item>{}</item>",
            version_xml(&sb.inner.config.partition, t, v, image)
        );
    }
    body.push_str("</launchTemplateVersionSet>");
    next_token(&mut body, end, found.len());
    ok_xml(wrap("DescribeLaunchTemplateVersions", &body))
}

/// A new version: the source version's data (if named), with the request's data on top, by EC2's
/// rules (`template_data::new_version_data`: a block the request gives replaces the source's whole,
/// inherited snapshots are dropped). A repeated ClientToken answers the version it created.
fn create_version(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    // LaunchTemplateData is required (the model); an empty one sends no member at all.
    if !p.keys().any(|k| k.starts_with("LaunchTemplateData.")) {
        return Err(AwsError::client(
            "MissingParameter",
            "The request must contain the parameter LaunchTemplateData",
        ));
    }
    if let Some(token) = p.get("ClientToken") {
        if token.len() > 128 || !token.is_ascii() {
            return Err(AwsError::client(
                "InvalidParameterValue",
                format!("Value ({token}) for parameter clientToken is invalid. Parameter must be 128 ASCII characters or less"),
            ));
        }
    }
    // Checked before anything else, as EC2 checks a request's values.
    crate::template_data::requested_metadata(p)?;
    crate::template_data::requested_block_devices(p)?;
    if let Some(d) = p.get("VersionDescription") {
        if d.chars().count() > 255 {
            return Err(AwsError::client(
                "InvalidParameterValue",
                "VersionDescription is longer than 255 characters.",
            ));
        }
    }
    dry_run(p)?;
    let now = timefmt::now_ms();
    let mut world = sb.world();
    let named = named_template(&world.launch.templates, at, p)?;
    crate::ec2_strict::refuse_if_managed(named, "CreateLaunchTemplateVersion")?;
    let template_id = named.id.clone();
    if let Some(token) = p.get("ClientToken") {
        if let Some((t, n)) = world.launch.version_tokens.get(*token) {
            let same_request = world
                .launch
                .version_token_requests
                .get(*token)
                .is_none_or(|f| *f == request_fingerprint(p));
            if *t == template_id && same_request {
                let t = world
                    .launch
                    .templates
                    .iter()
                    .find(|x| x.id == template_id)
                    .expect("named above");
                let v = t
                    .versions
                    .iter()
                    .find(|v| v.number == *n)
                    .expect("recorded version");
                let body = format!(
                    "<launchTemplateVersion>{}</launchTemplateVersion>",
                    version_xml(&sb.inner.config.partition, t, v, &v.image_id)
                );
                return ok_xml(wrap("CreateLaunchTemplateVersion", &body));
            }
            return Err(AwsError::client(
                "IdempotentParameterMismatch",
                "The client token you provided is associated with a different request: use a new token for a new version.",
            ));
        }
    }
    let template = world
        .launch
        .templates
        .iter_mut()
        .find(|t| t.id == template_id)
        .expect("named above");
    let source = match p.get("SourceVersion") {
        None => None,
        Some(spec) => Some(template.version(spec).cloned().ok_or_else(|| {
            AwsError::client(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!(
                    "Could not find launch template version {spec} for launch template ID {template_id}."
                ),
            )
        })?),
    };
    let image_id = p
        .get("LaunchTemplateData.ImageId")
        .map(|s| (*s).to_owned())
        .or_else(|| source.as_ref().map(|s| s.image_id.clone()))
        .unwrap_or_default();
    let instance_type = p
        .get("LaunchTemplateData.InstanceType")
        .map(|s| (*s).to_owned())
        .or_else(|| source.as_ref().map(|s| s.instance_type.clone()))
        .unwrap_or_default();
    let (md, block_device_mappings) = crate::template_data::new_version_data(p, source.as_ref())?;
    let warning = crate::ec2_strict::version_warning(p, |image| {
        world
            .launch
            .images
            .iter()
            .any(|i| i.id == image && i.region == at.region && i.visible_to(at.account, now, true, true))
    });
    let template = world
        .launch
        .templates
        .iter_mut()
        .find(|t| t.id == template_id)
        .expect("named above");
    let number = template.latest_version().max(template.highest_version) + 1;
    template.versions.push(TemplateVersion {
        number,
        description: p.get("VersionDescription").map(|s| (*s).to_owned()),
        image_id,
        instance_type,
        md,
        block_device_mappings,
        created_ms: now,
    });
    let body = format!("<launchTemplateVersion>{}</launchTemplateVersion>{warning}", {
        let v = template.versions.last().expect("pushed");
        version_xml(&sb.inner.config.partition, template, v, &v.image_id)
    });
    if let Some(token) = p.get("ClientToken") {
        world
            .launch
            .version_tokens
            .insert((*token).to_owned(), (template_id, number));
        world
            .launch
            .version_token_requests
            .insert((*token).to_owned(), request_fingerprint(p));
    }
    world.dirty = true;
    ok_xml(wrap("CreateLaunchTemplateVersion", &body))
}

/// What a CreateLaunchTemplateVersion asked for, to tell a retry (same token, same request) from a
/// reuse of the token for another request.
fn request_fingerprint(p: &Params<'_>) -> String {
    p.iter()
        .filter(|(k, _)| !matches!(**k, "Action" | "Version" | "DryRun"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn modify_template(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    dry_run(p)?;
    let mut world = sb.world();
    let named = named_template(&world.launch.templates, at, p)?;
    crate::ec2_strict::refuse_if_managed(named, "ModifyLaunchTemplate")?;
    let id = named.id.clone();
    let template = world
        .launch
        .templates
        .iter_mut()
        .find(|t| t.id == id)
        .expect("named above");
    if let Some(spec) = p.get("SetDefaultVersion") {
        let number = template.version(spec).map(|v| v.number).ok_or_else(|| {
            AwsError::client(
                "InvalidLaunchTemplateId.VersionNotFound",
                format!("Could not find launch template version {spec} for launch template ID {id}."),
            )
        })?;
        template.default_version = number;
    }
    let body = format!(
        "<launchTemplate>{}</launchTemplate>",
        template_xml(&sb.inner.config.partition, template)
    );
    world.dirty = true;
    ok_xml(wrap("ModifyLaunchTemplate", &body))
}

/// DescribeFleets: the account's EC2 Fleets in the region, each with its launch template.
fn describe_fleets(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    let ids = numbered(p, "FleetId");
    let (offset, size) = page(p, 1000)?;
    let world = sb.world();
    let fleets: Vec<_> = world
        .launch
        .fleets
        .iter()
        .filter(|f| f.account == at.account && f.region == at.region)
        .filter(|f| ids.is_empty() || ids.contains(&f.id.as_str()))
        .collect();
    let end = (offset + size).min(fleets.len());
    let mut body = String::from("<fleetSet>");
    for f in fleets.get(offset.min(end)..end).unwrap_or_default() {
        let _ = write!(
            body,
            "<item><fleetId>{}</fleetId><fleetState>active</fleetState><type>maintain</type>\
             <createTime>{}</createTime><launchTemplateConfigs><item><launchTemplateSpecification>\
             <launchTemplateId>{}</launchTemplateId><version>{}</version></launchTemplateSpecification>\
             </item></launchTemplateConfigs></item>",
            f.id,
            timefmt::iso(f.created_ms),
            f.template_id,
            esc(&f.template_version)
        );
    }
    body.push_str("</fleetSet>");
    next_token(&mut body, end, fleets.len());
    ok_xml(wrap("DescribeFleets", &body))
}
