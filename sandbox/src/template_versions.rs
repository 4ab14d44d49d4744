//! EC2's DeleteLaunchTemplateVersions (ec2Query): deletes the versions it can and lists the others
//! with EC2's per-version error codes, as EC2 answers a partial success; the default version is never
//! deleted (a template must first get another default).

use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::ec2::{esc, numbered, wrap};
use crate::fleet::Scope;
use crate::launch_api::{dry_run, named_template};
use crate::wire::{ok_xml, AwsError};
use crate::Sandbox;

/// EC2 takes at most this many versions in one call (the API reference).
const MAX_VERSIONS: usize = 200;

pub(crate) fn delete_versions(
    sb: &Sandbox,
    at: &Scope<'_>,
    p: &BTreeMap<&str, &str>,
) -> Result<Response, AwsError> {
    let specs = numbered(p, "LaunchTemplateVersion");
    if specs.is_empty() {
        return Err(AwsError::client(
            "MissingParameter",
            "The request must contain the parameter LaunchTemplateVersion",
        ));
    }
    if specs.len() > MAX_VERSIONS {
        return Err(AwsError::client(
            "InvalidParameterValue",
            format!(
                "You can specify up to {MAX_VERSIONS} launch template versions in one request; {} were given.",
                specs.len()
            ),
        ));
    }
    // Versions here are numbers: `$Latest`, `$Default` or any other word is refused whole, before
    // anything is deleted (AWS documents only numbers for this call).
    if let Some(bad) = specs.iter().find(|s| s.parse::<i64>().is_err()) {
        return Err(AwsError::client(
            "InvalidParameterValue",
            format!("Value ({bad}) for parameter LaunchTemplateVersion is invalid. Only version numbers can be deleted; $Latest and $Default cannot."),
        ));
    }
    dry_run(p)?;
    let mut world = sb.world();
    let named = named_template(&world.launch.templates, at, p)?;
    crate::ec2_strict::refuse_if_managed(named, "DeleteLaunchTemplateVersions")?;
    let id = named.id.clone();
    let template = world
        .launch
        .templates
        .iter_mut()
        .find(|t| t.id == id)
        .expect("named above");
    let mut deleted = String::new();
    let mut refused = String::new();
    let names = format!(
        "<launchTemplateId>{}</launchTemplateId><launchTemplateName>{}</launchTemplateName>",
        template.id,
        esc(&template.name)
    );
    for spec in specs {
        // Only version numbers are accepted here, not `$Latest` or `$Default`.
        let number = spec.parse::<i64>().ok();
        let found = number.and_then(|n| template.versions.iter().position(|v| v.number == n));
        let number_xml = number.map_or_else(String::new, |n| format!("<versionNumber>{n}</versionNumber>"));
        let (code, message) = match (number, found) {
            (Some(n), Some(_)) if n == template.default_version => (
                "unexpectedError",
                "Cannot delete the default version of a launch template. Set another version as the default first.",
            ),
            (_, Some(index)) => {
                template.highest_version = template.highest_version.max(template.latest_version());
                template.versions.remove(index);
                let _ = write!(deleted, "<item>{names}{number_xml}</item>");
                continue;
            }
            (_, None) => (
                "launchTemplateVersionDoesNotExist",
                "The specified launch template version does not exist.",
            ),
        };
        let _ = write!(
            refused,
            "<item>{names}{number_xml}<responseError><code>{code}</code><message>{message}</message></responseError></item>"
        );
    }
    world.dirty = true;
    ok_xml(wrap(
        "DeleteLaunchTemplateVersions",
        &format!(
            "<successfullyDeletedLaunchTemplateVersionSet>{deleted}</successfullyDeletedLaunchTemplateVersionSet>\
             <unsuccessfullyDeletedLaunchTemplateVersionSet>{refused}</unsuccessfullyDeletedLaunchTemplateVersionSet>"
        ),
    ))
}
