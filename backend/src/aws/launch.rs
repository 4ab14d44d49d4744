//! EC2 and Auto Scaling: where new instances come from (account metadata defaults, launch templates,
//! Auto Scaling groups, AMIs), and the two changes the console makes to them.

use aws_sdk_ec2::types::{
    DefaultHttpTokensEnforcedState, Filter, LaunchTemplateBlockDeviceMapping,
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateInstanceMetadataOptions,
    LaunchTemplateInstanceMetadataOptionsRequest, MetadataDefaultHttpTokensState, RequestLaunchTemplateData,
};
use shared::sources::{MetadataDefaults, TemplateOptions};
use std::collections::BTreeSet;

use super::{sdk_error, RegionClients};
use crate::error::AppError;
use crate::sources::{
    ConfigReading, FleetReading, GroupReading, ImageReading, PlaceReading, TemplateReading, TemplateRef,
};

/// Everything one account and region launches from: about five calls, more for long lists.
pub async fn read_place(
    c: &RegionClients,
    instance_images: &BTreeSet<String>,
) -> Result<PlaceReading, AppError> {
    let defaults = metadata_defaults(c).await?;
    let templates = templates(c).await?;
    let groups = groups(c).await?;
    let config_names: BTreeSet<String> = groups
        .iter()
        .filter_map(|g| g.launch_configuration.clone())
        .collect();
    let configs = launch_configurations(c, &config_names).await?;
    let mut image_ids: BTreeSet<String> = instance_images.clone();
    for t in &templates {
        image_ids.extend(t.default.image_id.clone());
        image_ids.extend(t.latest.image_id.clone());
    }
    image_ids.extend(configs.iter().filter_map(|c| c.image_id.clone()));
    let mut fleets = fleets(c).await?;
    fleets.extend(spot_fleets(c).await?);
    image_ids.extend(fleets.iter().flat_map(|f| f.images.iter().cloned()));
    let images = images(c, &image_ids).await?;
    Ok(PlaceReading {
        defaults,
        templates,
        groups,
        configs,
        images,
        fleets,
    })
}

pub async fn metadata_defaults(c: &RegionClients) -> Result<MetadataDefaults, AppError> {
    let out = c
        .ec2
        .get_instance_metadata_defaults()
        .send()
        .await
        .map_err(|e| sdk_error("ec2:GetInstanceMetadataDefaults", &e))?;
    let level = out.account_level();
    Ok(MetadataDefaults {
        http_tokens: level.and_then(|l| l.http_tokens()).map(|t| t.as_str().to_owned()),
        http_put_response_hop_limit: level.and_then(|l| l.http_put_response_hop_limit()),
        http_tokens_enforced: level
            .and_then(|l| l.http_tokens_enforced())
            .map(|t| t.as_str().to_owned()),
        managed_by: level
            .and_then(|l| l.managed_by())
            .map_or("account", |m| m.as_str())
            .to_owned(),
        managed_exception_message: level
            .and_then(|l| l.managed_exception_message())
            .map(str::to_owned),
    })
}

/// Sets the defaults to `target`: a None field becomes "no-preference" (or -1 for the hop limit), so
/// a revert restores exactly what was there.
pub async fn set_metadata_defaults(c: &RegionClients, target: &MetadataDefaults) -> Result<(), AppError> {
    let tokens = target.http_tokens.as_deref().unwrap_or("no-preference");
    let enforced = target.http_tokens_enforced.as_deref().unwrap_or("no-preference");
    c.ec2
        .modify_instance_metadata_defaults()
        .http_tokens(MetadataDefaultHttpTokensState::from(tokens))
        .http_put_response_hop_limit(target.http_put_response_hop_limit.unwrap_or(-1))
        .http_tokens_enforced(DefaultHttpTokensEnforcedState::from(enforced))
        .send()
        .await
        .map_err(|e| sdk_error("ec2:ModifyInstanceMetadataDefaults", &e))?;
    Ok(())
}

fn options(version: Option<&aws_sdk_ec2::types::LaunchTemplateVersion>) -> TemplateOptions {
    let data = version.and_then(|v| v.launch_template_data());
    let md = data.and_then(|d| d.metadata_options());
    TemplateOptions {
        version: version.and_then(|v| v.version_number()).unwrap_or(0),
        http_tokens: md.and_then(|m| m.http_tokens()).map(|t| t.as_str().to_owned()),
        http_put_response_hop_limit: md.and_then(|m| m.http_put_response_hop_limit()),
        http_endpoint: md.and_then(|m| m.http_endpoint()).map(|t| t.as_str().to_owned()),
        image_id: data.and_then(|d| d.image_id()).map(str::to_owned),
    }
}

/// Every template with its default and latest versions: DescribeLaunchTemplates, then one paged
/// DescribeLaunchTemplateVersions for `$Default` and `$Latest` of all of them (EC2 allows that
/// without naming a template). Templates services manage are asked for even where the account hides
/// them (`IncludeManagedResources`), and an image given as an SSM parameter (`resolve:ssm:`) is read
/// as the AMI it names now (`ResolveAlias`), since that AMI decides a launch.
async fn templates(c: &RegionClients) -> Result<Vec<TemplateReading>, AppError> {
    let mut listed = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .ec2
            .describe_launch_templates()
            .include_managed_resources(true)
            .max_results(200)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeLaunchTemplates", &e))?;
        listed.extend(page.launch_templates().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let mut versions = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .ec2
            .describe_launch_template_versions()
            .versions("$Default")
            .versions("$Latest")
            .resolve_alias(true)
            .include_managed_resources(true)
            .max_results(200)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeLaunchTemplateVersions", &e))?;
        versions.extend(page.launch_template_versions().iter().cloned());
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(listed
        .iter()
        .map(|t| {
            let id = t.launch_template_id().unwrap_or_default();
            let version = |n: Option<i64>| {
                versions
                    .iter()
                    .find(|v| v.launch_template_id() == Some(id) && v.version_number() == n)
            };
            TemplateReading {
                id: id.to_owned(),
                name: t.launch_template_name().unwrap_or_default().to_owned(),
                default: options(version(t.default_version_number())),
                latest: options(version(t.latest_version_number())),
                managed_by: t
                    .operator()
                    .filter(|o| o.managed() == Some(true))
                    .map(|o| o.principal().unwrap_or("an AWS service").to_owned()),
            }
        })
        .collect())
}

async fn groups(c: &RegionClients) -> Result<Vec<GroupReading>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .autoscaling
            .describe_auto_scaling_groups()
            .max_records(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("autoscaling:DescribeAutoScalingGroups", &e))?;
        for g in page.auto_scaling_groups() {
            // A group may launch from a launch configuration or a mixed-instances policy instead;
            // only templates carry metadata options the console can fix. A policy's overrides may
            // each name a template of their own, which the group launches too.
            let policy = g.mixed_instances_policy().and_then(|m| m.launch_template());
            let spec = g
                .launch_template()
                .or_else(|| policy.and_then(|t| t.launch_template_specification()));
            let overrides = policy
                .map(|t| t.overrides())
                .unwrap_or_default()
                .iter()
                .filter_map(|o| o.launch_template_specification())
                .map(|s| TemplateRef {
                    id: s.launch_template_id().map(str::to_owned),
                    name: s.launch_template_name().map(str::to_owned),
                    version: s.version().unwrap_or("$Default").to_owned(),
                })
                .collect();
            out.push(GroupReading {
                name: g.auto_scaling_group_name().unwrap_or_default().to_owned(),
                template_id: spec.and_then(|s| s.launch_template_id()).map(str::to_owned),
                template_name: spec.and_then(|s| s.launch_template_name()).map(str::to_owned),
                template_version: spec.and_then(|s| s.version()).unwrap_or("$Default").to_owned(),
                launch_configuration: g.launch_configuration_name().map(str::to_owned),
                overrides,
                instances: g
                    .instances()
                    .iter()
                    .filter_map(|i| i.instance_id())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}

/// Auto Scaling takes at most this many names in one DescribeLaunchConfigurations (the API reference).
const CONFIG_NAMES: usize = 50;

/// The launch configurations the groups launch from, with their metadata options: only those named
/// (none asked for when no group has one), 50 names a call, paged.
async fn launch_configurations(
    c: &RegionClients,
    names: &BTreeSet<String>,
) -> Result<Vec<ConfigReading>, AppError> {
    let names: Vec<String> = names.iter().cloned().collect();
    let mut out = Vec::new();
    for chunk in names.chunks(CONFIG_NAMES) {
        let mut token = None;
        loop {
            let page = c
                .autoscaling
                .describe_launch_configurations()
                .set_launch_configuration_names(Some(chunk.to_vec()))
                .max_records(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("autoscaling:DescribeLaunchConfigurations", &e))?;
            for lc in page.launch_configurations() {
                let md = lc.metadata_options();
                out.push(ConfigReading {
                    name: lc.launch_configuration_name().unwrap_or_default().to_owned(),
                    image_id: lc.image_id().map(str::to_owned),
                    http_tokens: md.and_then(|m| m.http_tokens()).map(|t| t.as_str().to_owned()),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    Ok(out)
}

/// EC2 Fleets and the launch templates of each (one config per template).
async fn fleets(c: &RegionClients) -> Result<Vec<FleetReading>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .ec2
            .describe_fleets()
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeFleets", &e))?;
        for f in page.fleets() {
            out.push(FleetReading {
                kind: "EC2 Fleet",
                id: f.fleet_id().unwrap_or_default().to_owned(),
                templates: f
                    .launch_template_configs()
                    .iter()
                    .filter_map(|c| c.launch_template_specification())
                    .map(fleet_template)
                    .collect(),
                images: Vec::new(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}

/// The template an EC2 Fleet's or a Spot Fleet's launch template config names (both take EC2's
/// `FleetLaunchTemplateSpecification`).
fn fleet_template(s: &aws_sdk_ec2::types::FleetLaunchTemplateSpecification) -> TemplateRef {
    TemplateRef {
        id: s.launch_template_id().map(str::to_owned),
        name: s.launch_template_name().map(str::to_owned),
        version: s.version().unwrap_or("$Default").to_owned(),
    }
}

/// Spot Fleet requests: the templates of their launch template configs, and the AMIs of their
/// launch specifications (which carry no metadata options, so the account default, then the AMI,
/// decide their instances' tokens).
async fn spot_fleets(c: &RegionClients) -> Result<Vec<FleetReading>, AppError> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = c
            .ec2
            .describe_spot_fleet_requests()
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeSpotFleetRequests", &e))?;
        for f in page.spot_fleet_request_configs() {
            let config = f.spot_fleet_request_config();
            out.push(FleetReading {
                kind: "Spot Fleet",
                id: f.spot_fleet_request_id().unwrap_or_default().to_owned(),
                templates: config
                    .map(|c| c.launch_template_configs())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|c| c.launch_template_specification())
                    .map(fleet_template)
                    .collect(),
                images: config
                    .map(|c| c.launch_specifications())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s.image_id())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(out)
}

/// Values one EC2 filter takes.
const FILTER_VALUES: usize = 200;

/// The AMIs by an `image-id` filter: one that was deregistered is simply not in the answer, where
/// `ImageIds` would fail the whole call. Deprecated AMIs of other owners and the account's own
/// disabled AMIs are asked for too (EC2 leaves both out by default), since instances launched from
/// them are still running.
async fn images(c: &RegionClients, ids: &BTreeSet<String>) -> Result<Vec<ImageReading>, AppError> {
    let ids: Vec<String> = ids.iter().cloned().collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(FILTER_VALUES) {
        let page = c
            .ec2
            .describe_images()
            .filters(
                Filter::builder()
                    .name("image-id")
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .include_deprecated(true)
            .include_disabled(true)
            .send()
            .await
            .map_err(|e| sdk_error("ec2:DescribeImages", &e))?;
        // AWS's time, not the console's (which tests move): EC2 deprecates an AMI by the real clock.
        let now = store::rfc3339_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        );
        out.extend(page.images().iter().map(|i| {
            ImageReading {
                id: i.image_id().unwrap_or_default().to_owned(),
                name: i.name().unwrap_or_default().to_owned(),
                imds_v2: i.imds_support().is_some_and(|s| s.as_str() == "v2.0"),
                owner: i
                    .image_owner_alias()
                    .or(i.owner_id())
                    .unwrap_or_default()
                    .to_owned(),
                owner_id: i.owner_id().unwrap_or_default().to_owned(),
                // Both are UTC with a `Z`, so their first 19 characters compare as times do.
                deprecated: i.deprecation_time().is_some_and(|t| t.get(..19) <= now.get(..19)),
                disabled: i.state().is_some_and(|s| s.as_str() == "disabled"),
            }
        }));
    }
    Ok(out)
}

/// A new version of `template_id`, copied from `source.version`, with HttpTokens required and the
/// given hop limit. EC2 lets a parameter the request gives replace the inherited one whole, and drops
/// inherited EBS snapshots unless they are given again, so the source version is read first and the
/// request carries its whole metadata block (only the tokens, and the hop limit if asked, changed;
/// an unset member stays unset) and its block device mappings with their snapshots: the new version
/// equals the old one but for the fix. `client_token` makes a retry (after a crash, or a lost reply)
/// return the same version instead of making another (versions are immutable, so a retry sends the
/// same request).
pub async fn create_required_version(
    c: &RegionClients,
    template_id: &str,
    source: &TemplateOptions,
    hop_limit: Option<u8>,
    description: &str,
    client_token: &str,
) -> Result<i64, AppError> {
    let read = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(template_id)
        .versions(source.version.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DescribeLaunchTemplateVersions", &e))?;
    let data = read
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "version {} of launch template {template_id} does not exist",
                source.version
            ))
        })?;
    let out = c
        .ec2
        .create_launch_template_version()
        .launch_template_id(template_id)
        .source_version(source.version.to_string())
        .version_description(description)
        .client_token(client_token)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .metadata_options(required_metadata(data.metadata_options(), hop_limit))
                .set_block_device_mappings(block_devices_again(data.block_device_mappings()))
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("ec2:CreateLaunchTemplateVersion", &e))?;
    out.launch_template_version()
        .and_then(|v| v.version_number())
        .ok_or_else(|| AppError::internal("CreateLaunchTemplateVersion answered no version number"))
}

/// The source's metadata block as a request, every member it has kept as it is, HttpTokens required
/// and the hop limit set when the fix sets one.
fn required_metadata(
    md: Option<&LaunchTemplateInstanceMetadataOptions>,
    hop_limit: Option<u8>,
) -> LaunchTemplateInstanceMetadataOptionsRequest {
    LaunchTemplateInstanceMetadataOptionsRequest::builder()
        .http_tokens(LaunchTemplateHttpTokensState::Required)
        .set_http_put_response_hop_limit(
            hop_limit
                .map(i32::from)
                .or(md.and_then(|m| m.http_put_response_hop_limit())),
        )
        .set_http_endpoint(md.and_then(|m| m.http_endpoint()).cloned())
        .set_http_protocol_ipv6(md.and_then(|m| m.http_protocol_ipv6()).cloned())
        .set_instance_metadata_tags(md.and_then(|m| m.instance_metadata_tags()).cloned())
        .build()
}

/// The source's block device mappings as a request, snapshots included (None when it has none, so
/// nothing is sent and nothing replaced).
fn block_devices_again(
    mappings: &[LaunchTemplateBlockDeviceMapping],
) -> Option<Vec<LaunchTemplateBlockDeviceMappingRequest>> {
    (!mappings.is_empty()).then(|| {
        mappings
            .iter()
            .map(|m| {
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .set_device_name(m.device_name().map(str::to_owned))
                    .set_virtual_name(m.virtual_name().map(str::to_owned))
                    .set_no_device(m.no_device().map(str::to_owned))
                    .set_ebs(m.ebs().map(|e| {
                        LaunchTemplateEbsBlockDeviceRequest::builder()
                            .set_encrypted(e.encrypted())
                            .set_delete_on_termination(e.delete_on_termination())
                            .set_iops(e.iops())
                            .set_kms_key_id(e.kms_key_id().map(str::to_owned))
                            .set_snapshot_id(e.snapshot_id().map(str::to_owned))
                            .set_volume_size(e.volume_size())
                            .set_volume_type(e.volume_type().cloned())
                            .set_throughput(e.throughput())
                            .set_volume_initialization_rate(e.volume_initialization_rate())
                            .set_ebs_card_index(e.ebs_card_index())
                            .build()
                    }))
                    .build()
            })
            .collect()
    })
}

pub async fn set_default_version(c: &RegionClients, template_id: &str, version: i64) -> Result<(), AppError> {
    c.ec2
        .modify_launch_template()
        .launch_template_id(template_id)
        .default_version(version.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("ec2:ModifyLaunchTemplate", &e))?;
    Ok(())
}

/// A template's default and latest version numbers as EC2 has them now (a revert checks nobody
/// changed the default since the fix).
pub async fn version_numbers(c: &RegionClients, template_id: &str) -> Result<(i64, i64), AppError> {
    let out = c
        .ec2
        .describe_launch_templates()
        .launch_template_ids(template_id)
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DescribeLaunchTemplates", &e))?;
    let t = out
        .launch_templates()
        .first()
        .ok_or_else(|| AppError::NotFound(format!("launch template {template_id} does not exist")))?;
    match (t.default_version_number(), t.latest_version_number()) {
        (Some(d), Some(l)) => Ok((d, l)),
        _ => Err(AppError::internal(format!(
            "DescribeLaunchTemplates answered no version numbers for {template_id}"
        ))),
    }
}

/// Deletes one version of a template. EC2 answers a refusal inside a successful reply (per version),
/// so Ok(Some(why)) is a version it kept; one that is already gone counts as deleted, so a revert cut
/// short can be repeated.
pub async fn delete_version(
    c: &RegionClients,
    template_id: &str,
    version: i64,
) -> Result<Option<String>, AppError> {
    let out = c
        .ec2
        .delete_launch_template_versions()
        .launch_template_id(template_id)
        .versions(version.to_string())
        .send()
        .await
        .map_err(|e| sdk_error("ec2:DeleteLaunchTemplateVersions", &e))?;
    Ok(out
        .unsuccessfully_deleted_launch_template_versions()
        .iter()
        .filter_map(|item| item.response_error())
        .find(|e| {
            e.code()
                .is_none_or(|c| c.as_str() != "launchTemplateVersionDoesNotExist")
        })
        .map(|e| {
            format!(
                "{}: {}",
                e.code().map_or("unknown", |c| c.as_str()),
                e.message().unwrap_or("no reason given")
            )
        }))
}
