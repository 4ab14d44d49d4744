//! A launch template version's data as CreateLaunchTemplateVersion takes it (ec2Query) and
//! DescribeLaunchTemplateVersions answers it: the metadata options and the block device mappings,
//! checked as EC2 checks them, and EC2's rule for a version made from a SourceVersion: a parameter
//! the request gives replaces the inherited one whole, and inherited EBS snapshots are dropped.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ec2::esc;
use crate::launch::{BlockDeviceMapping, TemplateMetadata, TemplateVersion, EBS_MEMBERS};
use crate::launch_api::one_of;
use crate::wire::AwsError;

type Params<'a> = BTreeMap<&'a str, &'a str>;

const MD: &str = "LaunchTemplateData.MetadataOptions.";
const BDM: &str = "LaunchTemplateData.BlockDeviceMapping.";

/// The request's MetadataOptions, if it gives any member: only what it gives (EC2 inherits none of
/// the source's members once the request names the block).
pub(crate) fn requested_metadata(p: &Params<'_>) -> Result<Option<TemplateMetadata>, AwsError> {
    if !p.keys().any(|k| k.starts_with(MD)) {
        return Ok(None);
    }
    if let Some(k) = p.keys().find(|k| {
        k.strip_prefix(MD).is_some_and(|m| {
            ![
                "HttpTokens",
                "HttpPutResponseHopLimit",
                "HttpEndpoint",
                "HttpProtocolIpv6",
                "InstanceMetadataTags",
            ]
            .contains(&m)
        })
    }) {
        return Err(AwsError::client(
            "UnknownParameter",
            format!("The parameter {k} is not recognized"),
        ));
    }
    let enabled = ["enabled", "disabled"];
    let hop_limit = match p.get(format!("{MD}HttpPutResponseHopLimit").as_str()) {
        None => None,
        Some(raw) => Some(raw.parse::<u8>().ok().filter(|h| (1..=64).contains(h)).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Value ({raw}) for parameter HttpPutResponseHopLimit is invalid. Expecting a value between 1 and 64."),
            )
        })?),
    };
    Ok(Some(TemplateMetadata {
        http_tokens: one_of(p, &format!("{MD}HttpTokens"), &["optional", "required"])?,
        hop_limit,
        http_endpoint: one_of(p, &format!("{MD}HttpEndpoint"), &enabled)?,
        http_protocol_ipv6: one_of(p, &format!("{MD}HttpProtocolIpv6"), &enabled)?,
        instance_metadata_tags: one_of(p, &format!("{MD}InstanceMetadataTags"), &enabled)?,
    }))
}

/// The request's BlockDeviceMappings (`BlockDeviceMapping.N.*`), if it gives any.
pub(crate) fn requested_block_devices(p: &Params<'_>) -> Result<Option<Vec<BlockDeviceMapping>>, AwsError> {
    let mut by_index: BTreeMap<u32, BlockDeviceMapping> = BTreeMap::new();
    for (key, value) in p.iter().filter_map(|(k, v)| k.strip_prefix(BDM).map(|k| (k, *v))) {
        let bad = || {
            AwsError::client(
                "UnknownParameter",
                format!("The parameter {BDM}{key} is not recognized"),
            )
        };
        let (index, member) = key.split_once('.').ok_or_else(bad)?;
        let index: u32 = index.parse().map_err(|_| bad())?;
        let mapping = by_index.entry(index).or_default();
        match member {
            "DeviceName" => mapping.device_name = Some(value.to_owned()),
            "VirtualName" => mapping.virtual_name = Some(value.to_owned()),
            "NoDevice" => mapping.no_device = Some(value.to_owned()),
            _ => {
                let ebs = member
                    .strip_prefix("Ebs.")
                    .filter(|m| EBS_MEMBERS.contains(m))
                    .ok_or_else(bad)?;
                check_ebs(ebs, value)?;
                mapping.ebs.insert(ebs.to_owned(), value.to_owned());
            }
        }
    }
    if by_index.is_empty() {
        return Ok(None);
    }
    if let Some(n) = by_index
        .iter()
        .find(|(_, m)| m.device_name.is_none())
        .map(|(n, _)| n)
    {
        return Err(AwsError::client(
            "MissingParameter",
            format!("The request must contain the parameter {BDM}{n}.DeviceName"),
        ));
    }
    Ok(Some(by_index.into_values().collect()))
}

fn check_ebs(member: &str, value: &str) -> Result<(), AwsError> {
    let ok = match member {
        "Encrypted" | "DeleteOnTermination" => matches!(value, "true" | "false"),
        "Iops" | "VolumeSize" | "Throughput" => value.parse::<u32>().is_ok(),
        "VolumeType" => ["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"].contains(&value),
        "SnapshotId" => value
            .strip_prefix("snap-")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit())),
        _ => !value.is_empty(),
    };
    if ok {
        Ok(())
    } else {
        Err(AwsError::client(
            "InvalidParameterValue",
            format!("Value ({value}) for parameter {member} is invalid."),
        ))
    }
}

/// A new version's metadata options and block device mappings: what the request gives replaces the
/// source's whole; what it leaves out is inherited, except EBS snapshots, which EC2 drops from
/// inherited mappings ("ignored when creating a new version unless they are explicitly included").
pub(crate) fn new_version_data(
    p: &Params<'_>,
    source: Option<&TemplateVersion>,
) -> Result<(Option<TemplateMetadata>, Vec<BlockDeviceMapping>), AwsError> {
    let md = match requested_metadata(p)? {
        Some(md) => Some(md),
        None => source.and_then(|s| s.md.clone()),
    };
    let devices = match requested_block_devices(p)? {
        Some(devices) => devices,
        None => source
            .map(|s| s.block_device_mappings.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|mut m| {
                m.ebs.remove("SnapshotId");
                m
            })
            .collect(),
    };
    Ok((md, devices))
}

/// `<metadataOptions>` as DescribeLaunchTemplateVersions answers it: only the members the version has.
pub(crate) fn metadata_xml(m: &TemplateMetadata) -> String {
    let mut md = String::from("<metadataOptions><state>applied</state>");
    for (tag, value) in [
        ("httpTokens", m.http_tokens.clone()),
        ("httpPutResponseHopLimit", m.hop_limit.map(|h| h.to_string())),
        ("httpEndpoint", m.http_endpoint.clone()),
        ("httpProtocolIpv6", m.http_protocol_ipv6.clone()),
        ("instanceMetadataTags", m.instance_metadata_tags.clone()),
    ] {
        if let Some(v) = value {
            let _ = write!(md, "<{tag}>{v}</{tag}>");
        }
    }
    md.push_str("</metadataOptions>");
    md
}

/// `<blockDeviceMappingSet>`, or nothing for a version without mappings.
pub(crate) fn block_devices_xml(mappings: &[BlockDeviceMapping]) -> String {
    if mappings.is_empty() {
        return String::new();
    }
    let mut out = String::from("<blockDeviceMappingSet>");
    for m in mappings {
        out.push_str("<item>");
        for (tag, value) in [
            ("deviceName", &m.device_name),
            ("virtualName", &m.virtual_name),
            ("noDevice", &m.no_device),
        ] {
            if let Some(v) = value {
                let _ = write!(out, "<{tag}>{}</{tag}>", esc(v));
            }
        }
        if !m.ebs.is_empty() {
            out.push_str("<ebs>");
            for (member, v) in &m.ebs {
                let tag = lower_first(member);
                let _ = write!(out, "<{tag}>{}</{tag}>", esc(v));
            }
            out.push_str("</ebs>");
        }
        out.push_str("</item>");
    }
    out.push_str("</blockDeviceMappingSet>");
    out
}

/// An API member name as EC2's XML names it (`SnapshotId` → `snapshotId`).
fn lower_first(name: &str) -> String {
    let mut chars = name.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}
