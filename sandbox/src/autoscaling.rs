//! Auto Scaling (awsQuery: form-encoded requests, XML replies): DescribeAutoScalingGroups,
//! SetDesiredCapacity (a scale-out launches instances from the group's template, as EC2 would),
//! DescribeScalingActivities (where a launch refused by the account's IMDSv2 enforcement shows) and
//! DescribeLaunchConfigurations (with each configuration's MetadataOptions).

use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ec2::esc;
use crate::fleet::Scope;
use crate::launch::{group_members, AutoScalingGroup};
use crate::wire::{ok_xml, AwsError};
use crate::{timefmt, Sandbox};

const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

pub(crate) fn handle(
    sb: &Sandbox,
    at: &Scope<'_>,
    op: &str,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let p: BTreeMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    match op {
        "DescribeAutoScalingGroups" => describe_groups(sb, at, &p),
        "SetDesiredCapacity" => set_desired(sb, at, &p),
        "DescribeScalingActivities" => describe_activities(sb, at, &p),
        "DescribeLaunchConfigurations" => describe_launch_configurations(sb, at, &p),
        other => Err(AwsError::client(
            "InvalidAction",
            format!("The action {other} is not valid for this web service."),
        )),
    }
}

fn wrap(op: &str, result: &str) -> String {
    format!(
        "<{op}Response xmlns=\"{XMLNS}\"><{op}Result>{result}</{op}Result><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{op}Response>",
        uuid::Uuid::new_v4()
    )
}

fn members(p: &BTreeMap<&str, &str>, prefix: &str) -> Vec<String> {
    (1..)
        .map_while(|i| {
            p.get(format!("{prefix}.member.{i}").as_str())
                .map(|v| (*v).to_owned())
        })
        .collect()
}

fn page(p: &BTreeMap<&str, &str>) -> Result<(usize, usize), AwsError> {
    let size = match p.get("MaxRecords") {
        None => 50,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            AwsError::client("ValidationError", format!("1 validation error detected: Value '{raw}' at 'maxRecords' failed to satisfy constraint: Member must have value less than or equal to 100"))
        })?,
    };
    let offset = match p.get("NextToken") {
        None => 0,
        Some(tok) => tok
            .strip_prefix("sbx")
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| AwsError::client("InvalidNextToken", "The token is not valid."))?,
    };
    Ok((offset, size))
}

fn group_xml(partition: &str, sb_fleet: &crate::fleet::Fleet, g: &AutoScalingGroup) -> String {
    let mut instances = String::new();
    for i in group_members(sb_fleet, g) {
        let version = i.tag(crate::launch::TAG_TEMPLATE_VERSION).unwrap_or("1");
        let _ = write!(
            instances,
            "<member><InstanceId>{}</InstanceId><InstanceType>{}</InstanceType><AvailabilityZone>{}a</AvailabilityZone>\
             <LifecycleState>{}</LifecycleState><HealthStatus>Healthy</HealthStatus>\
             <LaunchTemplate><LaunchTemplateId>{}</LaunchTemplateId><Version>{version}</Version></LaunchTemplate>\
             <ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>",
            i.id,
            i.instance_type,
            g.region,
            if i.state == "running" { "InService" } else { "Standby" },
            g.template_id,
        );
    }
    format!(
        "<member><AutoScalingGroupName>{name}</AutoScalingGroupName>\
         <AutoScalingGroupARN>arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:{uuid}:autoScalingGroupName/{name}</AutoScalingGroupARN>\
         {source}<MinSize>{min}</MinSize><MaxSize>{max}</MaxSize><DesiredCapacity>{desired}</DesiredCapacity>\
         <DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>{region}a</member></AvailabilityZones>\
         <HealthCheckType>EC2</HealthCheckType><HealthCheckGracePeriod>300</HealthCheckGracePeriod>\
         <Instances>{instances}</Instances><CreatedTime>{created}</CreatedTime>\
         <Tags/><TerminationPolicies><member>Default</member></TerminationPolicies></member>",
        name = esc(&g.name),
        region = g.region,
        account = g.account,
        uuid = &crate::launch::group_uuid(g),
        source = match (&g.launch_configuration, &g.mixed_overrides) {
            (Some(lc), _) => format!("<LaunchConfigurationName>{}</LaunchConfigurationName>", esc(lc)),
            (None, Some(overrides)) => crate::launch_extra::mixed_policy_xml(g, overrides),
            (None, None) => format!(
                "<LaunchTemplate><LaunchTemplateId>{}</LaunchTemplateId><Version>{}</Version></LaunchTemplate>",
                g.template_id,
                esc(&g.template_version)
            ),
        },
        min = g.min,
        max = g.max,
        desired = g.desired,
        created = timefmt::iso(g.created_ms),
    )
}

fn describe_groups(sb: &Sandbox, at: &Scope<'_>, p: &BTreeMap<&str, &str>) -> Result<Response, AwsError> {
    let names = members(p, "AutoScalingGroupNames");
    let (offset, size) = page(p)?;
    let world = sb.world();
    // Unknown names are left out, as Auto Scaling does.
    let groups: Vec<&AutoScalingGroup> = world
        .launch
        .groups
        .iter()
        .filter(|g| g.account == at.account && g.region == at.region)
        .filter(|g| names.is_empty() || names.contains(&g.name))
        .collect();
    let end = (offset + size).min(groups.len());
    let mut body = String::from("<AutoScalingGroups>");
    for g in groups.get(offset.min(end)..end).unwrap_or_default() {
        body.push_str(&group_xml(&sb.inner.config.partition, &world.fleet, g));
    }
    body.push_str("</AutoScalingGroups>");
    if end < groups.len() {
        let _ = write!(body, "<NextToken>sbx{end:x}</NextToken>");
    }
    ok_xml(wrap("DescribeAutoScalingGroups", &body))
}

fn group_index(world: &crate::engine::World, at: &Scope<'_>, name: &str) -> Result<usize, AwsError> {
    world
        .launch
        .groups
        .iter()
        .position(|g| g.account == at.account && g.region == at.region && g.name == name)
        .ok_or_else(|| {
            AwsError::client(
                "ValidationError",
                format!("AutoScalingGroup name not found - {name}"),
            )
        })
}

fn set_desired(sb: &Sandbox, at: &Scope<'_>, p: &BTreeMap<&str, &str>) -> Result<Response, AwsError> {
    let name = *p
        .get("AutoScalingGroupName")
        .ok_or_else(|| AwsError::client("ValidationError", "AutoScalingGroupName is required"))?;
    let desired: usize = p
        .get("DesiredCapacity")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| AwsError::client("ValidationError", "DesiredCapacity must be a whole number"))?;
    let now = timefmt::now_ms();
    let mut world = sb.world();
    let index = group_index(&world, at, name)?;
    let world = &mut *world;
    crate::launch::set_desired_capacity(
        &mut world.launch,
        &mut world.fleet,
        &mut world.rng,
        index,
        desired,
        now,
    )?;
    world.dirty = true;
    ok_xml(format!(
        "<SetDesiredCapacityResponse xmlns=\"{XMLNS}\"><ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></SetDesiredCapacityResponse>",
        uuid::Uuid::new_v4()
    ))
}

fn describe_activities(sb: &Sandbox, at: &Scope<'_>, p: &BTreeMap<&str, &str>) -> Result<Response, AwsError> {
    let world = sb.world();
    let groups: Vec<&AutoScalingGroup> = match p.get("AutoScalingGroupName") {
        Some(name) => vec![&world.launch.groups[group_index(&world, at, name)?]],
        None => world
            .launch
            .groups
            .iter()
            .filter(|g| g.account == at.account && g.region == at.region)
            .collect(),
    };
    let mut body = String::from("<Activities>");
    for g in groups {
        // Newest first, as Auto Scaling lists them.
        for a in g.activities.iter().rev() {
            let _ = write!(
                body,
                "<member><ActivityId>{}</ActivityId><AutoScalingGroupName>{}</AutoScalingGroupName>\
                 <Description>{}</Description><Cause>At {} a user request explicitly set group desired capacity.</Cause>\
                 <StartTime>{}</StartTime><EndTime>{}</EndTime><StatusCode>{}</StatusCode>{}<Progress>100</Progress></member>",
                a.id,
                esc(&g.name),
                esc(&a.description),
                timefmt::iso(a.at_ms),
                timefmt::iso(a.at_ms),
                timefmt::iso(a.at_ms),
                a.status,
                if a.message.is_empty() {
                    String::new()
                } else {
                    format!("<StatusMessage>{}</StatusMessage>", esc(&a.message))
                }
            );
        }
    }
    body.push_str("</Activities>");
    ok_xml(wrap("DescribeScalingActivities", &body))
}

/// DescribeLaunchConfigurations: the account's configurations in the Region (all, or those named;
/// unknown names are left out, as Auto Scaling does), at most 50 names per call.
fn describe_launch_configurations(
    sb: &Sandbox,
    at: &Scope<'_>,
    p: &BTreeMap<&str, &str>,
) -> Result<Response, AwsError> {
    let names = members(p, "LaunchConfigurationNames");
    if names.len() > 50 {
        return Err(AwsError::client(
            "ValidationError",
            "1 validation error detected: Value at 'launchConfigurationNames' failed to satisfy constraint: Member must have length less than or equal to 50",
        ));
    }
    let (offset, size) = page(p)?;
    let world = sb.world();
    let configs: Vec<&crate::launch::LaunchConfiguration> = world
        .launch
        .launch_configurations
        .iter()
        .filter(|c| c.account == at.account && c.region == at.region)
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .collect();
    let end = (offset + size).min(configs.len());
    let mut body = String::from("<LaunchConfigurations>");
    for c in configs.get(offset.min(end)..end).unwrap_or_default() {
        let mut md = String::new();
        if let Some(m) = &c.md {
            md.push_str("<MetadataOptions>");
            if let Some(x) = &m.http_tokens {
                let _ = write!(md, "<HttpTokens>{x}</HttpTokens>");
            }
            if let Some(x) = m.hop_limit {
                let _ = write!(md, "<HttpPutResponseHopLimit>{x}</HttpPutResponseHopLimit>");
            }
            if let Some(x) = &m.http_endpoint {
                let _ = write!(md, "<HttpEndpoint>{x}</HttpEndpoint>");
            }
            md.push_str("</MetadataOptions>");
        }
        let _ = write!(
            body,
            "<member><LaunchConfigurationName>{name}</LaunchConfigurationName>\
             <LaunchConfigurationARN>arn:{partition}:autoscaling:{region}:{account}:launchConfiguration:{uuid}:launchConfigurationName/{name}</LaunchConfigurationARN>\
             <ImageId>{image}</ImageId><InstanceType>{itype}</InstanceType><SecurityGroups/>\
             <BlockDeviceMappings/><InstanceMonitoring><Enabled>true</Enabled></InstanceMonitoring>\
             <CreatedTime>{created}</CreatedTime><EbsOptimized>false</EbsOptimized>{md}</member>",
            name = esc(&c.name),
            partition = sb.inner.config.partition,
            region = c.region,
            account = c.account,
            uuid = crate::launch::config_uuid(c),
            image = c.image_id,
            itype = c.instance_type,
            created = timefmt::iso(c.created_ms),
        );
    }
    body.push_str("</LaunchConfigurations>");
    if end < configs.len() {
        let _ = write!(body, "<NextToken>sbx{end:x}</NextToken>");
    }
    ok_xml(wrap("DescribeLaunchConfigurations", &body))
}
