//! EC2's DescribeImages (ec2Query): the AMIs an account may see (its own, public ones, and ones
//! shared with it; another owner's deprecated ones only with `IncludeDeprecated`, its own disabled
//! ones only with `IncludeDisabled`), by ID, `image-id` filter and owner, with EC2's errors for
//! malformed and unknown IDs and malformed owners.

use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ec2::{esc, numbered, wrap};
use crate::fleet::Scope;
use crate::wire::{ok_xml, AwsError};
use crate::{timefmt, Sandbox};

type Params<'a> = BTreeMap<&'a str, &'a str>;

/// The owners DescribeImages takes: `self`, an owner alias, or a 12-digit account ID.
fn valid_owner(owner: &str) -> bool {
    matches!(owner, "self" | "amazon" | "aws-marketplace" | "aws-backup-vault")
        || (owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
}

/// The AMIs the caller may see, by `ImageId.N` (every one must exist, or InvalidAMIID.NotFound), an
/// `image-id` filter (those that exist) and `Owner.N` (`self`, an account ID or an owner alias).
pub(crate) fn describe_images(sb: &Sandbox, at: &Scope<'_>, p: &Params<'_>) -> Result<Response, AwsError> {
    let ids = numbered(p, "ImageId");
    let mut filter_ids: Option<Vec<&str>> = None;
    for i in 1.. {
        let Some(name) = p.get(format!("Filter.{i}.Name").as_str()) else {
            break;
        };
        let values = numbered(p, &format!("Filter.{i}.Value"));
        match *name {
            "image-id" => filter_ids = Some(values),
            other => {
                return Err(AwsError::client(
                    "InvalidParameterValue",
                    format!("The filter '{other}' is invalid"),
                ))
            }
        }
    }
    // AMI IDs have 8 hexadecimal digits (the older form) or 17.
    for id in &ids {
        let well_formed = id
            .strip_prefix("ami-")
            .is_some_and(|r| matches!(r.len(), 8 | 17) && r.chars().all(|c| c.is_ascii_hexdigit()));
        if !well_formed {
            return Err(AwsError::client(
                "InvalidAMIID.Malformed",
                format!("Invalid id: \"{id}\""),
            ));
        }
    }
    let owners = numbered(p, "Owner");
    if let Some(bad) = owners.iter().find(|o| !valid_owner(o)) {
        return Err(AwsError::client(
            "InvalidUserID.Malformed",
            format!("Invalid user id: \"{bad}\""),
        ));
    }
    let flag = |name: &str| p.get(name) == Some(&"true");
    let (deprecated, disabled) = (flag("IncludeDeprecated"), flag("IncludeDisabled"));
    let now = timefmt::now_ms();
    let world = sb.world();
    let visible: Vec<_> = world
        .launch
        .images
        .iter()
        // A deprecated AMI of another owner is hidden "unless you specify its ID" (EC2 User
        // Guide), so an ImageIds entry finds it without IncludeDeprecated.
        .filter(|i| {
            let named = ids.contains(&i.id.as_str());
            i.region == at.region && i.visible_to(at.account, now, deprecated || named, disabled)
        })
        .filter(|i| {
            owners.is_empty()
                || owners.iter().any(|o| {
                    (*o == "self" && i.account == at.account)
                        || *o == i.account
                        || i.owner_alias.as_deref() == Some(*o)
                })
        })
        .collect();
    if let Some(missing) = ids.iter().find(|id| !visible.iter().any(|i| i.id == **id)) {
        return Err(AwsError::client(
            "InvalidAMIID.NotFound",
            format!("The image id '[{missing}]' does not exist"),
        ));
    }
    let mut body = String::from("<imagesSet>");
    let mut seen = std::collections::BTreeSet::new();
    for img in visible {
        let wanted = (ids.is_empty() || ids.contains(&img.id.as_str()))
            && filter_ids.as_ref().is_none_or(|f| f.contains(&img.id.as_str()));
        if !wanted || !seen.insert(img.id.clone()) {
            continue;
        }
        let mut extra = img
            .imds_support
            .as_ref()
            .map(|v| format!("<imdsSupport>{v}</imdsSupport>"))
            .unwrap_or_default();
        if let Some(alias) = &img.owner_alias {
            let _ = write!(extra, "<imageOwnerAlias>{alias}</imageOwnerAlias>");
        }
        if let Some(t) = img.deprecation_ms {
            let _ = write!(extra, "<deprecationTime>{}</deprecationTime>", timefmt::iso(t));
        }
        let _ = write!(
            body,
            "<item><imageId>{}</imageId><imageLocation>{}/{}</imageLocation><imageState>{}</imageState>\
             <imageOwnerId>{}</imageOwnerId><creationDate>{}</creationDate><isPublic>{}</isPublic>\
             <architecture>x86_64</architecture><imageType>machine</imageType><name>{}</name>\
             <rootDeviceType>ebs</rootDeviceType><virtualizationType>hvm</virtualizationType>{extra}</item>",
            img.id,
            img.account,
            esc(&img.name),
            if img.disabled { "disabled" } else { "available" },
            img.account,
            timefmt::iso(img.created_ms),
            img.public,
            esc(&img.name)
        );
    }
    body.push_str("</imagesSet>");
    ok_xml(wrap("DescribeImages", &body))
}
