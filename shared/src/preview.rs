//! What a run will do to one instance, and what might break: shared by the server's preview and
//! readiness check and by the browser's confirmation.

use crate::api::{InstanceView, MetadataOptions, PreviewTarget};
use crate::params::{MetadataAccess, RunbookParameters};

/// Words in a name or tag that mark a container host, where IMDS calls cross one more network hop.
const CONTAINER_HINTS: &[&str] = &[
    "eks",
    "ecs",
    "k8s",
    "kube",
    "container",
    "docker",
    "fargate",
    "nomad",
];

/// Whether the instance looks like it runs containers (by its name or tags).
pub fn is_container_host(inst: &InstanceView) -> bool {
    let hit = |s: &str| {
        let s = s.to_ascii_lowercase();
        CONTAINER_HINTS.iter().any(|h| s.contains(h))
    };
    inst.name.as_deref().is_some_and(hit) || inst.tags.iter().any(|(k, v)| hit(k) || hit(v))
}

/// Tag keys whose value names an environment.
const ENVIRONMENT_KEYS: &[&str] = &["env", "environment", "stage", "tier"];

/// Whether a tag marks the instance as production (`Env=prod`, `Environment=Production`, ...).
pub fn is_production(inst: &InstanceView) -> bool {
    inst.tags.iter().any(|(k, v)| {
        ENVIRONMENT_KEYS.contains(&k.to_ascii_lowercase().as_str())
            && v.to_ascii_lowercase().starts_with("prod")
    })
}

/// How likely enforcing is to break the instance, lowest first: no IMDSv1 calls seen, then calls
/// unknown, then calls seen; within each, non-production before production.
pub fn rollout_risk(inst: &InstanceView) -> (u8, bool) {
    let usage = match inst.imdsv1_calls {
        Some(0) => 0,
        None => 1,
        Some(_) => 2,
    };
    (usage, is_production(inst))
}

/// The instances in the order a rollout should reach them: least likely to break first, so that a
/// failure threshold (MaxErrors) stops the run before it reaches the riskiest. The order is stable.
pub fn rollout_order(instances: &mut [InstanceView]) {
    instances.sort_by_key(rollout_risk);
}

/// The changed fields, as `field: before -> after`.
pub fn changes(before: &MetadataOptions, after: &MetadataOptions) -> Vec<String> {
    let mut out = Vec::new();
    if before.http_tokens != after.http_tokens {
        out.push(format!(
            "http_tokens: {} -> {}",
            before.http_tokens, after.http_tokens
        ));
    }
    if before.http_endpoint != after.http_endpoint {
        out.push(format!(
            "http_endpoint: {} -> {}",
            before.http_endpoint, after.http_endpoint
        ));
    }
    if before.http_put_response_hop_limit != after.http_put_response_hop_limit {
        out.push(format!(
            "http_put_response_hop_limit: {} -> {}",
            before.http_put_response_hop_limit, after.http_put_response_hop_limit
        ));
    }
    out
}

/// Whether the run turns IMDSv1 off on this instance while software there still uses it.
pub fn breaks_imdsv1_users(params: &RunbookParameters, inst: &InstanceView) -> bool {
    let after = params.apply_to(&inst.metadata);
    inst.imdsv1_calls.unwrap_or(0) > 0 && !inst.metadata.is_compliant() && after.is_compliant()
}

/// The preview of one target: current and resulting options, the changes, and warnings.
pub fn preview(params: &RunbookParameters, inst: &InstanceView, window_days: u32) -> PreviewTarget {
    let after = params.apply_to(&inst.metadata);
    let changes = changes(&inst.metadata, &after);
    let mut warnings = Vec::new();
    if breaks_imdsv1_users(params, inst) {
        warnings.push(format!(
            "{} IMDSv1 calls in the last {window_days} days: the software making them will break",
            inst.imdsv1_calls.unwrap_or(0)
        ));
    }
    if inst.imdsv1_calls.is_none() && !inst.metadata.is_compliant() && after.is_compliant() {
        warnings.push("IMDSv1 usage unknown (CloudWatch gave no answer): check before enforcing".to_owned());
    }
    if after.http_endpoint == "enabled" && after.http_put_response_hop_limit < 2 && is_container_host(inst) {
        warnings.push("hop limit 1 on a container host: containers will not reach IMDSv2 (use 2)".to_owned());
    }
    if params.metadata_access == MetadataAccess::Disabled && !changes.is_empty() {
        warnings.push("instance metadata will be off: nothing on the instance can read it".to_owned());
    }
    if inst.state != "running" {
        warnings.push(format!(
            "the instance is {}: the change applies when it next starts",
            inst.state
        ));
    }
    if changes.is_empty() {
        warnings.push("already configured so: nothing changes".to_owned());
    }
    PreviewTarget {
        account: inst.account.clone(),
        region: inst.region.clone(),
        instance_id: inst.instance_id.clone(),
        name: inst.name.clone(),
        state: inst.state.clone(),
        current: inst.metadata.clone(),
        after,
        changes,
        imdsv1_calls: inst.imdsv1_calls,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_rollout_reaches_quiet_non_production_instances_first() {
        use crate::api::InstanceView;
        let inst = |id: &str, calls: Option<u64>, env: &str| InstanceView {
            instance_id: id.into(),
            imdsv1_calls: calls,
            tags: [("Env".to_owned(), env.to_owned())].into(),
            ..InstanceView::default()
        };
        let mut list = vec![
            inst("i-prod-user", Some(5), "prod"),
            inst("i-dev-user", Some(3), "dev"),
            inst("i-prod-quiet", Some(0), "Production"),
            inst("i-unknown", None, "dev"),
            inst("i-dev-quiet", Some(0), "dev"),
        ];
        super::rollout_order(&mut list);
        let ids: Vec<&str> = list.iter().map(|i| i.instance_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "i-dev-quiet",
                "i-prod-quiet",
                "i-unknown",
                "i-dev-user",
                "i-prod-user"
            ]
        );
    }

    use super::*;
    use crate::params::{EnforceImdsV2, HopLimit};
    use std::collections::BTreeMap;

    fn inst(name: &str, tokens: &str, hop: u8, calls: Option<u64>) -> InstanceView {
        let metadata = MetadataOptions {
            http_tokens: tokens.into(),
            http_endpoint: "enabled".into(),
            http_put_response_hop_limit: hop,
            state: "applied".into(),
        };
        InstanceView {
            instance_id: "i-0123456789abcdef0".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            name: Some(name.into()),
            state: "running".into(),
            tags: BTreeMap::new(),
            compliant: metadata.is_compliant(),
            metadata,
            imdsv1_calls: calls,
            imdsv1_rejected: None,
            image_id: None,
        }
    }

    fn enforce(hop: u8) -> RunbookParameters {
        RunbookParameters {
            instance_id: None,
            enforce_imdsv2: EnforceImdsV2::Required,
            metadata_access: MetadataAccess::Enabled,
            hop_limit: HopLimit::try_from(hop).unwrap(),
            assume_role: None,
        }
    }

    #[test]
    fn enforcing_an_instance_with_imdsv1_callers_warns_and_lists_the_change() {
        let p = preview(&enforce(0), &inst("web-api-1", "optional", 2, Some(40)), 14);
        assert_eq!(p.changes, ["http_tokens: optional -> required"]);
        assert!(p.warnings[0].starts_with("40 IMDSv1 calls in the last 14 days"));
        assert!(breaks_imdsv1_users(
            &enforce(0),
            &inst("x", "optional", 2, Some(1))
        ));
        assert!(!breaks_imdsv1_users(
            &enforce(0),
            &inst("x", "optional", 2, Some(0))
        ));
    }

    #[test]
    fn hop_limit_one_on_a_container_host_is_flagged() {
        let p = preview(
            &enforce(1),
            &inst("payments-eks-node-3", "optional", 2, Some(0)),
            14,
        );
        assert!(
            p.warnings.iter().any(|w| w.contains("container host")),
            "{:?}",
            p.warnings
        );
        let p = preview(&enforce(1), &inst("payments-api-3", "optional", 2, Some(0)), 14);
        assert!(!p.warnings.iter().any(|w| w.contains("container host")));
    }

    #[test]
    fn an_already_compliant_instance_changes_nothing() {
        let p = preview(&enforce(0), &inst("db", "required", 1, None), 14);
        assert!(p.changes.is_empty());
        assert_eq!(p.warnings, ["already configured so: nothing changes"]);
    }
}
