//! Where instances come from: each account's instance metadata defaults per region, launch templates
//! and their versions, Auto Scaling groups, and AMIs, with EC2's rules for the metadata options of a
//! new instance. A group's scale-out launches real instances into the fleet, so a template left
//! allowing IMDSv1 shows up as new IMDSv1 instances, as it does in AWS.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::fleet::{Fleet, Instance, Metadata, Rng};
use crate::wire::AwsError;

/// Instance tags EC2 and Auto Scaling add to what they launch; AWS reserves the `aws:` prefix.
pub(crate) const TAG_GROUP: &str = "aws:autoscaling:groupName";
pub(crate) const TAG_TEMPLATE_ID: &str = "aws:ec2launchtemplate:id";
pub(crate) const TAG_TEMPLATE_VERSION: &str = "aws:ec2launchtemplate:version";

/// The account-level instance metadata defaults of one region; `None` is "no-preference".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MetadataDefaults {
    pub http_tokens: Option<String>,
    pub hop_limit: Option<u8>,
    pub http_endpoint: Option<String>,
    pub instance_metadata_tags: Option<String>,
    /// "enabled": launches that do not require tokens are refused.
    pub http_tokens_enforced: Option<String>,
}

/// A launch template version's metadata options; a field left out follows the account default, then
/// the AMI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TemplateMetadata {
    pub http_tokens: Option<String>,
    pub hop_limit: Option<u8>,
    pub http_endpoint: Option<String>,
    #[serde(default)]
    pub http_protocol_ipv6: Option<String>,
    #[serde(default)]
    pub instance_metadata_tags: Option<String>,
}

/// One block device mapping of a launch template version, as EC2 models it: the device, and either
/// an EBS volume (its members by their API names: `SnapshotId`, `VolumeSize`, `VolumeType`,
/// `Encrypted`, `DeleteOnTermination`, `Iops`, `Throughput`, `KmsKeyId`), an instance store
/// (`VirtualName`) or `NoDevice`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct BlockDeviceMapping {
    pub device_name: Option<String>,
    pub virtual_name: Option<String>,
    pub no_device: Option<String>,
    pub ebs: BTreeMap<String, String>,
}

/// The EBS members a template's block device mapping keeps (EC2's API names).
pub(crate) const EBS_MEMBERS: &[&str] = &[
    "Encrypted",
    "DeleteOnTermination",
    "Iops",
    "KmsKeyId",
    "SnapshotId",
    "VolumeSize",
    "VolumeType",
    "Throughput",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TemplateVersion {
    pub number: i64,
    pub description: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    /// None: the version has no MetadataOptions at all.
    pub md: Option<TemplateMetadata>,
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub account: String,
    pub region: String,
    pub default_version: i64,
    pub versions: Vec<TemplateVersion>,
    /// The highest version number ever given, so a version created after the latest was deleted
    /// gets a new number, as in EC2 (0: none deleted yet).
    #[serde(default)]
    pub highest_version: i64,
    /// The service that manages the template (`Operator.Principal`, with `Managed` true), if any.
    #[serde(default)]
    pub operator: Option<String>,
}

impl LaunchTemplate {
    pub(crate) fn latest_version(&self) -> i64 {
        self.versions.last().map_or(1, |v| v.number)
    }

    /// `$Latest`, `$Default` or a number.
    pub(crate) fn version(&self, spec: &str) -> Option<&TemplateVersion> {
        let number = match spec {
            "$Latest" => self.latest_version(),
            "$Default" => self.default_version,
            n => n.parse().ok()?,
        };
        self.versions.iter().find(|v| v.number == number)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AutoScalingGroup {
    pub name: String,
    pub account: String,
    pub region: String,
    /// Empty for a group that launches from a launch configuration.
    pub template_id: String,
    /// `$Default`, `$Latest` or a version number, as the group names it.
    pub template_version: String,
    /// The launch configuration of a group that has no launch template.
    #[serde(default)]
    pub launch_configuration: Option<String>,
    pub min: usize,
    pub max: usize,
    pub desired: usize,
    pub created_ms: u64,
    /// What the group's last scaling did: launches refused by the account's enforcement land here.
    #[serde(default)]
    pub activities: Vec<Activity>,
    /// A group with a MixedInstancesPolicy: its template (above) is the policy's, and these are its
    /// overrides; None for a group that names its template or configuration directly.
    #[serde(default)]
    pub mixed_overrides: Option<Vec<crate::launch_extra::GroupOverride>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Activity {
    pub id: String,
    pub at_ms: u64,
    /// Successful or Failed.
    pub status: String,
    pub description: String,
    pub message: String,
}

/// An Auto Scaling launch configuration (deprecated by AWS, still found on old groups): its metadata
/// options are fixed once created, so requiring IMDSv2 means a new configuration or a template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LaunchConfiguration {
    pub name: String,
    pub account: String,
    pub region: String,
    pub image_id: String,
    pub instance_type: String,
    /// None: created without MetadataOptions.
    pub md: Option<TemplateMetadata>,
    pub created_ms: u64,
}

/// An EC2 Fleet that keeps capacity from a launch template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Ec2Fleet {
    pub id: String,
    pub account: String,
    pub region: String,
    pub template_id: String,
    pub template_version: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Image {
    pub id: String,
    pub name: String,
    /// The owner's account ID.
    pub account: String,
    pub region: String,
    /// `v2.0`: instances launched from it require tokens unless something says otherwise.
    pub imds_support: Option<String>,
    pub created_ms: u64,
    /// `amazon`, `aws-marketplace` or `aws-backup-vault` for AMIs those owners publish.
    #[serde(default)]
    pub owner_alias: Option<String>,
    /// Public launch permission: every account may see and launch it.
    #[serde(default)]
    pub public: bool,
    /// The accounts it is shared with (explicit launch permissions).
    #[serde(default)]
    pub shared_with: Vec<String>,
    /// When it was (or will be) deprecated.
    #[serde(default)]
    pub deprecation_ms: Option<u64>,
    /// Disabled by its owner: only the owner sees it, and only when asking for disabled AMIs.
    #[serde(default)]
    pub disabled: bool,
}

/// Every source of new instances in the sandbox.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Launch {
    /// By `account/region`.
    pub defaults: BTreeMap<String, MetadataDefaults>,
    pub templates: Vec<LaunchTemplate>,
    pub groups: Vec<AutoScalingGroup>,
    pub images: Vec<Image>,
    /// EC2 Fleets (`maintain`), each launching from a template.
    #[serde(default)]
    pub fleets: Vec<Ec2Fleet>,
    #[serde(default)]
    pub launch_configurations: Vec<LaunchConfiguration>,
    /// CreateLaunchTemplateVersion's ClientToken -> (template, version), so a retry creates nothing.
    pub version_tokens: BTreeMap<String, (String, i64)>,
    /// ClientToken -> the request it came with, so a reuse for another request is refused.
    #[serde(default)]
    pub version_token_requests: BTreeMap<String, String>,
    /// Spot Fleet requests, each launching from templates or from launch specifications.
    #[serde(default)]
    pub spot_fleets: Vec<crate::launch_extra::SpotFleetRequest>,
    /// Public SSM parameters that name an AMI, by `launch_extra::parameter_key` (`resolve:ssm:`
    /// image IDs).
    #[serde(default)]
    pub image_parameters: BTreeMap<String, String>,
}

pub(crate) fn place_key(account: &str, region: &str) -> String {
    format!("{account}/{region}")
}

/// A short, stable hexadecimal name for a place, so seeded IDs are the same for the same fleet.
pub(crate) fn place_hash(account: &str, region: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account.bytes().chain([b'/']).chain(region.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// A seeded template: name, image kind, HttpTokens of version 1 (None: no metadata options), of
/// version 2 if there is one, its group's name, and the version the group launches.
type SeededTemplate = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const SEEDED: &[SeededTemplate] = &[
    // Written before IMDSv2 and never revisited: explicitly optional, on an AMI without v2.0.
    ("web", "legacy", Some("optional"), None, "web-asg", "$Default"),
    // Already fixed in version 2, launched as $Latest.
    (
        "batch",
        "al2023",
        Some("optional"),
        Some("required"),
        "batch-asg",
        "$Latest",
    ),
    // No metadata options at all: the account default decides, then the (legacy) AMI.
    ("worker", "legacy", None, None, "worker-asg", "$Default"),
];

/// A seeded template version's metadata options. The web template's block is full (instance tags in
/// IMDS, the IPv6 endpoint) and leaves the endpoint unset, so a fix that copies only some members, or
/// fills in an unset one, shows.
fn seeded_metadata(template: &str, tokens: &str) -> TemplateMetadata {
    let web = template == "web";
    TemplateMetadata {
        http_tokens: Some(tokens.to_owned()),
        hop_limit: Some(2),
        http_endpoint: (!web).then(|| "enabled".to_owned()),
        http_protocol_ipv6: web.then(|| "enabled".to_owned()),
        instance_metadata_tags: web.then(|| "enabled".to_owned()),
    }
}

/// A seeded template's volumes: the web and batch templates boot from and attach snapshots (which a
/// new version made with SourceVersion drops unless they are sent again, as in EC2).
fn seeded_volumes(template: &str, place: &str) -> Vec<BlockDeviceMapping> {
    if template == "worker" {
        return Vec::new();
    }
    let ebs = |members: &[(&str, String)]| -> BTreeMap<String, String> {
        members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    vec![
        BlockDeviceMapping {
            device_name: Some("/dev/xvda".to_owned()),
            ebs: ebs(&[
                ("SnapshotId", format!("snap-0{place}0001")),
                ("VolumeSize", "30".to_owned()),
                ("VolumeType", "gp3".to_owned()),
                ("Iops", "3000".to_owned()),
                ("Throughput", "125".to_owned()),
                ("Encrypted", "true".to_owned()),
                ("DeleteOnTermination", "true".to_owned()),
            ]),
            ..BlockDeviceMapping::default()
        },
        BlockDeviceMapping {
            device_name: Some("/dev/sdf".to_owned()),
            ebs: ebs(&[
                ("SnapshotId", format!("snap-0{place}0002")),
                ("VolumeSize", "100".to_owned()),
                ("VolumeType", "io2".to_owned()),
                ("Iops", "5000".to_owned()),
                ("DeleteOnTermination", "false".to_owned()),
            ]),
            ..BlockDeviceMapping::default()
        },
        BlockDeviceMapping {
            device_name: Some("/dev/sdg".to_owned()),
            virtual_name: Some("ephemeral0".to_owned()),
            ..BlockDeviceMapping::default()
        },
    ]
}

/// Links the seeded fleet to templates, groups and AMIs: in each account and region, three templates
/// with a group each, and two AMIs (one marked `ImdsSupport: v2.0`). Every tenth instance of a place
/// belongs to each group (and carries the tags EC2 gives such instances); every instance gets an AMI.
pub(crate) fn seed(fleet: &mut Fleet) -> Launch {
    let mut launch = Launch::default();
    let mut places: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, inst) in fleet.instances.iter().enumerate() {
        places
            .entry((inst.account.clone(), inst.region.clone()))
            .or_default()
            .push(i);
    }
    let created = crate::timefmt::now_ms().saturating_sub(400 * 86_400_000);
    for ((account, region), members) in &places {
        let h = place_hash(account, region);
        let image = |kind: &str| format!("ami-0{h}{}", if kind == "legacy" { "0001" } else { "0002" });
        launch.images.push(Image {
            id: image("legacy"),
            name: "legacy-app-2019.03".to_owned(),
            account: account.clone(),
            region: region.clone(),
            imds_support: None,
            created_ms: created,
            ..Image::default()
        });
        launch.images.push(Image {
            id: image("al2023"),
            name: "al2023-ami-2026.11".to_owned(),
            account: account.clone(),
            region: region.clone(),
            imds_support: Some("v2.0".to_owned()),
            created_ms: created,
            ..Image::default()
        });
        launch
            .defaults
            .insert(place_key(account, region), MetadataDefaults::default());
        for (n, (name, image_kind, v1, v2, group, spec)) in SEEDED.iter().enumerate() {
            let id = format!("lt-0{h}{n:04x}");
            let version = |number: i64, tokens: Option<&str>| TemplateVersion {
                number,
                description: Some(format!("{name} v{number}")),
                image_id: image(image_kind),
                instance_type: "m6i.large".to_owned(),
                md: tokens.map(|t| seeded_metadata(name, t)),
                block_device_mappings: seeded_volumes(name, &h),
                created_ms: created + number as u64 * 86_400_000,
            };
            let mut versions = vec![version(1, *v1)];
            if v2.is_some() {
                versions.push(version(2, *v2));
            }
            let default_version = versions.last().map_or(1, |v| v.number);
            let template = LaunchTemplate {
                id: id.clone(),
                name: (*name).to_owned(),
                account: account.clone(),
                region: region.clone(),
                default_version,
                versions,
                highest_version: 0,
                operator: None,
            };
            let launched = template.version(spec).map_or(1, |v| v.number);
            let in_group: Vec<usize> = members.iter().copied().skip(n).step_by(10).collect();
            for &i in &in_group {
                let inst = &mut fleet.instances[i];
                inst.image_id = template.version(spec).map(|v| v.image_id.clone());
                set_tag(inst, TAG_GROUP, group);
                set_tag(inst, TAG_TEMPLATE_ID, &id);
                set_tag(inst, TAG_TEMPLATE_VERSION, &launched.to_string());
            }
            launch.groups.push(AutoScalingGroup {
                name: (*group).to_owned(),
                account: account.clone(),
                region: region.clone(),
                template_id: id,
                template_version: (*spec).to_owned(),
                launch_configuration: None,
                min: 0,
                max: in_group.len() + 20,
                desired: in_group.len(),
                created_ms: created,
                activities: Vec::new(),
                mixed_overrides: None,
            });
            if *name == "worker" {
                // The batch workers also run as an EC2 Fleet from the same template.
                launch.fleets.push(Ec2Fleet {
                    id: format!("fleet-0{h}-0001"),
                    account: account.clone(),
                    region: region.clone(),
                    template_id: template.id.clone(),
                    template_version: "$Latest".to_owned(),
                    created_ms: created,
                });
            }
            launch.templates.push(template);
        }
        // Groups nobody moved to a launch template, scaled to zero: one on a launch configuration
        // from before IMDSv2, which allows IMDSv1, one on a configuration made to require tokens
        // (on the legacy AMI, so only its own options make it IMDSv2-only).
        for (group, config, tokens) in [
            ("legacy-asg", "legacy-lc", "optional"),
            ("imdsv2-lc-asg", "imdsv2-lc", "required"),
        ] {
            launch.launch_configurations.push(LaunchConfiguration {
                name: config.to_owned(),
                account: account.clone(),
                region: region.clone(),
                image_id: image("legacy"),
                instance_type: "m5.large".to_owned(),
                md: Some(TemplateMetadata {
                    http_tokens: Some(tokens.to_owned()),
                    hop_limit: Some(1),
                    http_endpoint: Some("enabled".to_owned()),
                    ..TemplateMetadata::default()
                }),
                created_ms: created,
            });
            launch.groups.push(AutoScalingGroup {
                name: group.to_owned(),
                account: account.clone(),
                region: region.clone(),
                template_id: String::new(),
                template_version: String::new(),
                launch_configuration: Some(config.to_owned()),
                min: 0,
                max: 0,
                desired: 0,
                created_ms: created,
                activities: Vec::new(),
                mixed_overrides: None,
            });
        }
        for (k, &i) in members.iter().enumerate() {
            let inst = &mut fleet.instances[i];
            if inst.image_id.is_none() {
                inst.image_id = Some(image(if k % 2 == 0 { "al2023" } else { "legacy" }));
            }
        }
    }
    crate::launch_extra::seed(&mut launch, fleet, created);
    launch
}

/// The UUID in a group's ARN, stable for the same group.
pub(crate) fn group_uuid(g: &AutoScalingGroup) -> String {
    let h = place_hash(&g.account, &format!("{}/{}", g.region, g.name));
    format!("{}-{}-4{}-8{}-{h}", &h[..8], &h[8..12], &h[..3], &h[3..6])
}

/// The UUID in a launch configuration's ARN, stable for the same configuration.
pub(crate) fn config_uuid(c: &LaunchConfiguration) -> String {
    let h = place_hash(&c.account, &format!("{}/lc/{}", c.region, c.name));
    format!("{}-{}-4{}-8{}-{h}", &h[..8], &h[8..12], &h[..3], &h[3..6])
}

fn set_tag(inst: &mut Instance, key: &str, value: &str) {
    inst.tags.retain(|(k, _)| k != key);
    inst.tags.push((key.to_owned(), value.to_owned()));
    inst.tags.sort();
}

impl Launch {
    /// Whether the account requires IMDSv2 at launch in a Region (`HttpTokensEnforced` enabled): EC2
    /// then refuses to set any instance's `HttpTokens` to optional there.
    pub(crate) fn tokens_enforced(&self, account: &str, region: &str) -> bool {
        self.defaults
            .get(&place_key(account, region))
            .is_some_and(|d| d.http_tokens_enforced.as_deref() == Some("enabled"))
    }

    pub(crate) fn defaults_of(&self, account: &str, region: &str) -> MetadataDefaults {
        self.defaults
            .get(&place_key(account, region))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn template(&self, account: &str, region: &str, id: &str) -> Option<&LaunchTemplate> {
        self.templates
            .iter()
            .find(|t| t.id == id && t.account == account && t.region == region)
    }

    pub(crate) fn image(&self, region: &str, id: &str) -> Option<&Image> {
        // AMIs are regional and each seeded one has an ID of its own, so the region and ID find it;
        // an SSM parameter (`resolve:ssm:`) is the AMI it names now, as at launch.
        let id = self.resolve_image(region, id);
        self.images.iter().find(|i| i.id == id && i.region == region)
    }

    /// The metadata options EC2 gives an instance launched from `version`: the template's own, else
    /// the account default's, else the AMI's (`v2.0`: tokens required and a hop limit of 2). Refused
    /// while the account enforces tokens at launch and the result would still allow IMDSv1.
    pub(crate) fn launch_options(
        &self,
        account: &str,
        region: &str,
        version: &TemplateVersion,
    ) -> Result<Metadata, AwsError> {
        let defaults = self.defaults_of(account, region);
        let template = version.md.clone().unwrap_or_default();
        let v2_image = self
            .image(region, &version.image_id)
            .is_some_and(|i| i.imds_support.as_deref() == Some("v2.0"));
        let http_tokens = template
            .http_tokens
            .or(defaults.http_tokens.clone())
            .unwrap_or_else(|| if v2_image { "required" } else { "optional" }.to_owned());
        if defaults.http_tokens_enforced.as_deref() == Some("enabled") && http_tokens != "required" {
            return Err(AwsError::client(
                "InvalidParameterCombination",
                "The instance could not be launched: the account requires IMDSv2 at launch (HttpTokensEnforced is enabled), \
                 and the launch request sets HttpTokens to optional. Set HttpTokens to required.",
            ));
        }
        Ok(Metadata {
            http_tokens,
            hop_limit: template
                .hop_limit
                .or(defaults.hop_limit)
                .unwrap_or(if v2_image { 2 } else { 1 }),
            http_endpoint: template
                .http_endpoint
                .or(defaults.http_endpoint.clone())
                .unwrap_or_else(|| "enabled".to_owned()),
            http_protocol_ipv6: template
                .http_protocol_ipv6
                .unwrap_or_else(|| "disabled".to_owned()),
            instance_metadata_tags: template
                .instance_metadata_tags
                .or(defaults.instance_metadata_tags.clone())
                .unwrap_or_else(|| "disabled".to_owned()),
            applied_at_ms: 0,
        })
    }
}

/// Software on a group's instances keeps what it did: a new instance calls IMDSv1 as often as the
/// group's existing ones do on average.
fn group_v1_rate(fleet: &Fleet, group: &AutoScalingGroup) -> f64 {
    let rates: Vec<f64> = fleet
        .instances
        .iter()
        .filter(|i| {
            i.account == group.account && i.region == group.region && i.tag(TAG_GROUP) == Some(&group.name)
        })
        .map(|i| i.imdsv1_per_hour)
        .collect();
    if rates.is_empty() {
        0.0
    } else {
        (rates.iter().sum::<f64>() / rates.len() as f64).round()
    }
}

/// The group's instances that are not terminated.
pub(crate) fn group_members<'a>(fleet: &'a Fleet, group: &AutoScalingGroup) -> Vec<&'a Instance> {
    fleet
        .instances
        .iter()
        .filter(|i| {
            i.account == group.account
                && i.region == group.region
                && i.state != "terminated"
                && i.tag(TAG_GROUP) == Some(&group.name)
        })
        .collect()
}

/// SetDesiredCapacity: scales the group out (launching instances from its template as EC2 would) or
/// in (terminating its newest). A launch the account's enforcement refuses is a failed activity, as
/// in Auto Scaling, and the group stays short.
pub(crate) fn set_desired_capacity(
    launch: &mut Launch,
    fleet: &mut Fleet,
    rng: &mut u64,
    group_index: usize,
    desired: usize,
    now_ms: u64,
) -> Result<(), AwsError> {
    let group = launch.groups[group_index].clone();
    if desired < group.min || desired > group.max {
        return Err(AwsError::client(
            "ValidationError",
            format!(
                "New SetDesiredCapacity value {desired} is outside of the group's min ({}) and max ({}) size.",
                group.min, group.max
            ),
        ));
    }
    let members: Vec<String> = group_members(fleet, &group)
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let mut activities = Vec::new();
    let mut random = Rng::new(*rng);
    if desired > members.len() {
        let template = launch
            .template(&group.account, &group.region, &group.template_id)
            .cloned()
            .ok_or_else(|| {
                AwsError::client("ValidationError", "The group's launch template does not exist.")
            })?;
        let version = template
            .version(&group.template_version)
            .cloned()
            .ok_or_else(|| {
                AwsError::client(
                    "ValidationError",
                    "The group's launch template version does not exist.",
                )
            })?;
        let template_like = members
            .first()
            .and_then(|id| fleet.instances.iter().find(|i| &i.id == id))
            .cloned();
        let rate = group_v1_rate(fleet, &group);
        let image_id = launch.resolve_image(&group.region, &version.image_id).to_owned();
        let existing: BTreeSet<String> = fleet.instances.iter().map(|i| i.id.clone()).collect();
        for _ in members.len()..desired {
            match launch.launch_options(&group.account, &group.region, &version) {
                Ok(md) => {
                    let id = loop {
                        let id = format!("i-0{:016x}", random.next_u64());
                        if !existing.contains(&id) {
                            break id;
                        }
                    };
                    let mut tags: Vec<(String, String)> = template_like
                        .as_ref()
                        .map(|t| {
                            t.tags
                                .iter()
                                .filter(|(k, _)| !k.starts_with("aws:") && k != "Name")
                                .cloned()
                                .collect()
                        })
                        .unwrap_or_default();
                    tags.push(("Name".to_owned(), format!("{}-{}", group.name, &id[2..8])));
                    tags.push((TAG_GROUP.to_owned(), group.name.clone()));
                    tags.push((TAG_TEMPLATE_ID.to_owned(), template.id.clone()));
                    tags.push((TAG_TEMPLATE_VERSION.to_owned(), version.number.to_string()));
                    tags.sort();
                    let blocked = md.http_tokens == "required" || md.http_endpoint == "disabled";
                    let n = fleet.instances.len();
                    fleet.instances.push(Instance {
                        id: id.clone(),
                        account: group.account.clone(),
                        region: group.region.clone(),
                        instance_type: version.instance_type.clone(),
                        state: "running".to_owned(),
                        launch_ms: now_ms,
                        private_ip: format!("10.200.{}.{}", n / 256 % 256, n % 256),
                        tags,
                        md,
                        imdsv1_per_hour: rate,
                        v1_blocked_log: vec![(now_ms, blocked)],
                        changed_at_speed: 1.0,
                        terminated_ms: None,
                        image_id: Some(image_id.clone()),
                    });
                    activities.push(activity(
                        &mut random,
                        now_ms,
                        "Successful",
                        format!("Launching a new EC2 instance: {id}"),
                        String::new(),
                    ));
                }
                Err(e) => {
                    activities.push(activity(
                        &mut random,
                        now_ms,
                        "Failed",
                        "Launching a new EC2 instance.  Status Reason: the launch was refused.".to_owned(),
                        e.message,
                    ));
                    break;
                }
            }
        }
        fleet.reindex();
    } else {
        // Scale-in: the newest go first.
        let mut newest: Vec<(u64, String)> = members
            .iter()
            .filter_map(|id| fleet.instances.iter().find(|i| &i.id == id))
            .map(|i| (i.launch_ms, i.id.clone()))
            .collect();
        newest.sort_by(|a, b| b.cmp(a));
        for (_, id) in newest.into_iter().take(members.len() - desired) {
            if let Some(inst) = fleet.instances.iter_mut().find(|i| i.id == id) {
                inst.state = "terminated".to_owned();
                inst.terminated_ms = Some(now_ms);
            }
            activities.push(activity(
                &mut random,
                now_ms,
                "Successful",
                format!("Terminating EC2 instance: {id}"),
                String::new(),
            ));
        }
    }
    *rng = random.next_u64();
    let group = &mut launch.groups[group_index];
    group.desired = desired;
    group.activities.extend(activities);
    Ok(())
}

fn activity(rng: &mut Rng, at_ms: u64, status: &str, description: String, message: String) -> Activity {
    let r = rng.next_u64();
    Activity {
        id: format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            r >> 32,
            (r >> 16) & 0xffff,
            r & 0xffff,
            (r >> 48) & 0xffff,
            r & 0xffff_ffff_ffff
        ),
        at_ms,
        status: status.to_owned(),
        description,
        message,
    }
}

/// EC2's refusal of `HttpTokens=optional` where the account enforces IMDSv2 at launch.
pub(crate) fn optional_refused(id: &str) -> (&'static str, String) {
    (
        "UnsupportedOperation",
        format!(
            "You can't set HttpTokens to optional for instance {id}: IMDSv2 is enforced for this account in this Region \
             (the instance metadata defaults have HttpTokensEnforced enabled). Disable HttpTokensEnforced first."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded() -> (Fleet, Launch) {
        let mut fleet =
            crate::fleet::generate(60, 7, &["us-east-1".to_owned()], &[crate::ACCOUNT_ID.to_owned()]);
        let launch = seed(&mut fleet);
        (fleet, launch)
    }

    #[test]
    fn every_place_gets_templates_groups_and_images_linked_to_its_instances() {
        let (fleet, launch) = seeded();
        assert_eq!(launch.templates.len(), 5);
        assert_eq!(launch.groups.len(), 6);
        assert_eq!(launch.launch_configurations.len(), 2);
        assert_eq!(
            launch.groups[3].launch_configuration.as_deref(),
            Some("legacy-lc")
        );
        // Two of its own, one it disabled, the Amazon AMI and the vendor's shared one.
        assert_eq!(launch.images.len(), 5);
        assert_eq!(group_members(&fleet, &launch.groups[0]).len(), 6);
        assert!(fleet.instances.iter().all(|i| i.image_id.is_some()));
    }

    #[test]
    fn a_launch_takes_the_template_then_the_account_default_then_the_ami() {
        let (_, mut launch) = seeded();
        let worker = launch.templates[2].clone();
        let v = worker.version("$Default").unwrap();
        // No options anywhere, a legacy AMI: IMDSv1 allowed.
        assert_eq!(
            launch
                .launch_options(crate::ACCOUNT_ID, "us-east-1", v)
                .unwrap()
                .http_tokens,
            "optional"
        );
        let key = place_key(crate::ACCOUNT_ID, "us-east-1");
        launch.defaults.get_mut(&key).unwrap().http_tokens = Some("required".into());
        assert_eq!(
            launch
                .launch_options(crate::ACCOUNT_ID, "us-east-1", v)
                .unwrap()
                .http_tokens,
            "required"
        );
        // The web template says optional itself: the default does not override it, and enforcement refuses it.
        let web = launch.templates[0].clone();
        let wv = web.version("$Default").unwrap();
        assert_eq!(
            launch
                .launch_options(crate::ACCOUNT_ID, "us-east-1", wv)
                .unwrap()
                .http_tokens,
            "optional"
        );
        launch.defaults.get_mut(&key).unwrap().http_tokens_enforced = Some("enabled".into());
        assert!(launch.launch_options(crate::ACCOUNT_ID, "us-east-1", wv).is_err());
    }

    #[test]
    fn a_refused_scale_out_is_a_failed_activity_and_launches_nothing() {
        let (mut fleet, mut launch) = seeded();
        let key = place_key(crate::ACCOUNT_ID, "us-east-1");
        launch.defaults.get_mut(&key).unwrap().http_tokens_enforced = Some("enabled".into());
        let before = fleet.instances.len();
        let mut rng = 1;
        set_desired_capacity(&mut launch, &mut fleet, &mut rng, 0, 8, 1_000).unwrap();
        assert_eq!(fleet.instances.len(), before);
        assert_eq!(launch.groups[0].activities.last().unwrap().status, "Failed");
        // The batch group launches version 2, which requires tokens.
        set_desired_capacity(&mut launch, &mut fleet, &mut rng, 1, 7, 1_000).unwrap();
        assert_eq!(fleet.instances.len(), before + 1);
        assert_eq!(fleet.instances.last().unwrap().md.http_tokens, "required");
    }
}
