//! The sources an account launches from beyond its own templates and AMIs, as EC2 and Auto Scaling
//! show them: AMIs of other owners (Amazon's public one, a vendor's shared and now deprecated one)
//! and one the account disabled; a template whose image is an SSM parameter (`resolve:ssm:`), which
//! DescribeLaunchTemplateVersions resolves only when asked (`ResolveAlias`); a template a service
//! manages (`Operator`); a group with a MixedInstancesPolicy whose override names another template;
//! and a Spot Fleet request (DescribeSpotFleetRequests) with a template and a launch specification.

use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::ec2::{esc, numbered, wrap};
use crate::fleet::{Fleet, Scope};
use crate::launch::{
    place_hash, AutoScalingGroup, Image, Launch, LaunchTemplate, TemplateVersion, TAG_GROUP,
};
use crate::wire::{ok_xml, AwsError};
use crate::{timefmt, Sandbox};

/// Amazon's account for the Amazon Linux AMIs (`imageOwnerAlias` amazon).
pub(crate) const AMAZON_OWNER: &str = "137112412989";
/// A software vendor outside the organisation that shares its golden AMI with every account.
pub(crate) const VENDOR_OWNER: &str = "210987654321";
/// The public parameter Amazon keeps pointing at the latest Amazon Linux 2023 AMI.
pub(crate) const AL2023_PARAMETER: &str =
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";
/// The service that manages the seeded managed template.
pub(crate) const MANAGING_SERVICE: &str = "ecs.amazonaws.com";

/// One override of a MixedInstancesPolicy: an instance type, and the template it launches from when
/// it names one of its own (else the policy's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupOverride {
    pub instance_type: String,
    pub template_id: Option<String>,
    pub template_version: Option<String>,
}

/// A Spot Fleet request (`maintain`): launch template configs and/or launch specifications (an AMI
/// and an instance type each, with no metadata options: EC2's model has none there).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SpotFleetRequest {
    pub id: String,
    pub account: String,
    pub region: String,
    /// (template ID, version).
    pub templates: Vec<(String, String)>,
    /// The AMI of each launch specification.
    pub spec_images: Vec<String>,
    pub created_ms: u64,
}

/// A parameter's key in `Launch::image_parameters`: its Region and name (the state file is JSON, so
/// the key is one string).
pub(crate) fn parameter_key(region: &str, name: &str) -> String {
    format!("{region} {name}")
}

impl Launch {
    /// The AMI an image ID names in a region: a `resolve:ssm:` parameter is the AMI it holds now;
    /// anything else is itself.
    pub(crate) fn resolve_image<'a>(&'a self, region: &str, image_id: &'a str) -> &'a str {
        image_id
            .strip_prefix("resolve:ssm:")
            .and_then(|name| self.image_parameters.get(&parameter_key(region, name)))
            .map_or(image_id, String::as_str)
    }
}

impl Image {
    /// Whether `account` may see this AMI in DescribeImages: its own (disabled ones only when asked),
    /// public and shared ones unless disabled (disabling removes every launch permission), and
    /// another owner's deprecated ones only when asked.
    pub(crate) fn visible_to(&self, account: &str, now_ms: u64, deprecated: bool, disabled: bool) -> bool {
        let own = self.account == account;
        if self.disabled {
            return own && disabled;
        }
        if own {
            return true;
        }
        let may_launch = self.public || self.shared_with.iter().any(|a| a == account);
        may_launch && (deprecated || self.deprecation_ms.is_none_or(|t| t > now_ms))
    }
}

/// Adds, per region, Amazon's public AMI (marked v2.0, named by the AL2023 parameter) and the
/// vendor's golden AMI (deprecated a month ago, shared with every account); per account and region,
/// an AMI it disabled, the SSM-parameter template, the managed template, the mixed-instances group and
/// the Spot Fleet request. Some instances outside groups come from the vendor's and the disabled AMI.
pub(crate) fn seed(launch: &mut Launch, fleet: &mut Fleet, created: u64) {
    let mut places: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, inst) in fleet.instances.iter().enumerate() {
        places
            .entry((inst.account.clone(), inst.region.clone()))
            .or_default()
            .push(i);
    }
    let accounts: Vec<String> = places
        .keys()
        .map(|(a, _)| a.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let regions: BTreeSet<String> = places.keys().map(|(_, r)| r.clone()).collect();
    let month_ago = timefmt::now_ms().saturating_sub(30 * 86_400_000);
    for region in &regions {
        let amazon = format!("ami-0{}0000", place_hash("amazon", region));
        launch.images.push(Image {
            id: amazon.clone(),
            name: "al2023-ami-2023.9.20261101.0-kernel-6.12-x86_64".to_owned(),
            account: AMAZON_OWNER.to_owned(),
            region: region.clone(),
            imds_support: Some("v2.0".to_owned()),
            created_ms: created,
            owner_alias: Some("amazon".to_owned()),
            public: true,
            ..Image::default()
        });
        launch
            .image_parameters
            .insert(parameter_key(region, AL2023_PARAMETER), amazon);
        launch.images.push(Image {
            id: format!("ami-0{}0000", place_hash("vendor", region)),
            name: "golden-base-2021.07".to_owned(),
            account: VENDOR_OWNER.to_owned(),
            region: region.clone(),
            created_ms: created,
            shared_with: accounts.clone(),
            deprecation_ms: Some(month_ago),
            ..Image::default()
        });
    }
    for ((account, region), members) in &places {
        let h = place_hash(account, region);
        let vendor = format!("ami-0{}0000", place_hash("vendor", region));
        let retired = format!("ami-0{h}0003");
        launch.images.push(Image {
            id: retired.clone(),
            name: "retired-app-2020.01".to_owned(),
            account: account.clone(),
            region: region.clone(),
            created_ms: created,
            disabled: true,
            ..Image::default()
        });
        let outside_groups: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| fleet.instances[i].tag(TAG_GROUP).is_none())
            .collect();
        for (k, &i) in outside_groups.iter().enumerate() {
            match k % 10 {
                3 => fleet.instances[i].image_id = Some(vendor.clone()),
                7 => fleet.instances[i].image_id = Some(retired.clone()),
                _ => {}
            }
        }
        let template = |n: u32, name: &str, image: String, tokens: Option<&str>, operator: Option<&str>| {
            LaunchTemplate {
                id: format!("lt-0{h}{n:04x}"),
                name: name.to_owned(),
                account: account.clone(),
                region: region.clone(),
                default_version: 1,
                versions: vec![TemplateVersion {
                    number: 1,
                    description: Some(format!("{name} v1")),
                    image_id: image,
                    instance_type: "m7i.large".to_owned(),
                    md: tokens.map(|t| crate::launch::TemplateMetadata {
                        http_tokens: Some(t.to_owned()),
                        ..Default::default()
                    }),
                    block_device_mappings: Vec::new(),
                    created_ms: created,
                }],
                highest_version: 0,
                operator: operator.map(str::to_owned),
            }
        };
        // No metadata options, the image an SSM parameter: the AMI it resolves to decides.
        launch.templates.push(template(
            16,
            "al2023-ssm",
            format!("resolve:ssm:{AL2023_PARAMETER}"),
            None,
            None,
        ));
        // Made and kept by a service: optional tokens on the legacy AMI, changed only by its service.
        launch.templates.push(template(
            17,
            "ecs-managed-capacity",
            format!("ami-0{h}0001"),
            Some("optional"),
            Some(MANAGING_SERVICE),
        ));
        let id_of = |name: &str| {
            launch
                .templates
                .iter()
                .find(|t| &t.account == account && &t.region == region && t.name == name)
                .map(|t| t.id.clone())
                .unwrap_or_default()
        };
        let (batch, web, worker) = (id_of("batch"), id_of("web"), id_of("worker"));
        // Mostly the batch template (tokens required in its latest version), but one instance type
        // launches from the web template, which leaves IMDSv1 on.
        launch.groups.push(AutoScalingGroup {
            name: "mixed-asg".to_owned(),
            account: account.clone(),
            region: region.clone(),
            template_id: batch,
            template_version: "$Latest".to_owned(),
            launch_configuration: None,
            min: 0,
            max: 10,
            desired: 0,
            created_ms: created,
            activities: Vec::new(),
            mixed_overrides: Some(vec![
                GroupOverride {
                    instance_type: "m7i.large".to_owned(),
                    template_id: None,
                    template_version: None,
                },
                GroupOverride {
                    instance_type: "c5.large".to_owned(),
                    template_id: Some(web),
                    template_version: Some("$Default".to_owned()),
                },
            ]),
        });
        launch.spot_fleets.push(SpotFleetRequest {
            id: format!("sfr-{}-{}-4{}-8{}-{h}", &h[..8], &h[8..12], &h[..3], &h[3..6]),
            account: account.clone(),
            region: region.clone(),
            templates: vec![(worker, "$Latest".to_owned())],
            spec_images: vec![vendor.clone()],
            created_ms: created,
        });
    }
}

/// DescribeSpotFleetRequests: the account's requests in the Region (all, or those named; an unknown
/// ID fails the call), with their launch template configs and launch specifications.
pub(crate) fn describe_spot_fleet_requests(
    sb: &Sandbox,
    at: &Scope<'_>,
    p: &BTreeMap<&str, &str>,
) -> Result<Response, AwsError> {
    let ids = numbered(p, "SpotFleetRequestId");
    let size = match p.get("MaxResults") {
        None => 1000,
        Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Value ( {raw} ) for parameter maxResults is invalid. Expecting a value between 1 and 1000."),
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
    let world = sb.world();
    let mine: Vec<&SpotFleetRequest> = world
        .launch
        .spot_fleets
        .iter()
        .filter(|f| f.account == at.account && f.region == at.region)
        .collect();
    if let Some(missing) = ids.iter().find(|id| !mine.iter().any(|f| f.id == **id)) {
        return Err(AwsError::client(
            "InvalidSpotFleetRequestId.NotFound",
            format!("The spot fleet request ID '{missing}' does not exist"),
        ));
    }
    let chosen: Vec<&&SpotFleetRequest> = mine
        .iter()
        .filter(|f| ids.is_empty() || ids.contains(&f.id.as_str()))
        .collect();
    let end = (offset + size).min(chosen.len());
    let mut body = String::from("<spotFleetRequestConfigSet>");
    for f in chosen.get(offset.min(end)..end).unwrap_or_default() {
        let mut configs = String::new();
        for (template, version) in &f.templates {
            let _ = write!(
                configs,
                "<item><launchTemplateSpecification><launchTemplateId>{template}</launchTemplateId>\
                 <version>{}</version></launchTemplateSpecification><overrides><item>\
                 <instanceType>m7i.large</instanceType></item></overrides></item>",
                esc(version)
            );
        }
        let mut specs = String::new();
        for image in &f.spec_images {
            let _ = write!(
                specs,
                "<item><imageId>{image}</imageId><instanceType>m5.large</instanceType></item>"
            );
        }
        let _ = write!(
            body,
            "<item><spotFleetRequestId>{}</spotFleetRequestId><spotFleetRequestState>active</spotFleetRequestState>\
             <activityStatus>fulfilled</activityStatus><createTime>{}</createTime><spotFleetRequestConfig>\
             <allocationStrategy>priceCapacityOptimized</allocationStrategy>\
             <iamFleetRole>arn:{}:iam::{}:role/aws-ec2-spot-fleet-tagging-role</iamFleetRole>\
             <targetCapacity>0</targetCapacity><type>maintain</type>\
             <launchTemplateConfigs>{configs}</launchTemplateConfigs>\
             <launchSpecifications>{specs}</launchSpecifications></spotFleetRequestConfig></item>",
            f.id,
            timefmt::iso(f.created_ms),
            sb.inner.config.partition,
            f.account,
        );
    }
    body.push_str("</spotFleetRequestConfigSet>");
    if end < chosen.len() {
        let _ = write!(body, "<nextToken>sbx{end:x}</nextToken>");
    }
    ok_xml(wrap("DescribeSpotFleetRequests", &body))
}

/// `<MixedInstancesPolicy>` of a group that has one, as DescribeAutoScalingGroups answers it.
pub(crate) fn mixed_policy_xml(g: &AutoScalingGroup, overrides: &[GroupOverride]) -> String {
    let mut items = String::new();
    for o in overrides {
        let spec = match (&o.template_id, &o.template_version) {
            (Some(id), version) => format!(
                "<LaunchTemplateSpecification><LaunchTemplateId>{id}</LaunchTemplateId>{}</LaunchTemplateSpecification>",
                version
                    .as_ref()
                    .map(|v| format!("<Version>{}</Version>", esc(v)))
                    .unwrap_or_default()
            ),
            (None, _) => String::new(),
        };
        let _ = write!(
            items,
            "<member><InstanceType>{}</InstanceType>{spec}</member>",
            esc(&o.instance_type)
        );
    }
    format!(
        "<MixedInstancesPolicy><LaunchTemplate><LaunchTemplateSpecification><LaunchTemplateId>{}</LaunchTemplateId>\
         <Version>{}</Version></LaunchTemplateSpecification><Overrides>{items}</Overrides></LaunchTemplate>\
         <InstancesDistribution><OnDemandBaseCapacity>0</OnDemandBaseCapacity>\
         <OnDemandPercentageAboveBaseCapacity>100</OnDemandPercentageAboveBaseCapacity>\
         <SpotAllocationStrategy>price-capacity-optimized</SpotAllocationStrategy></InstancesDistribution>\
         </MixedInstancesPolicy>",
        g.template_id,
        esc(&g.template_version)
    )
}
