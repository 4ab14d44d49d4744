//! Fleet-table logic for the browser (filtering, sorting, the IMDSv1 column), kept out of view code so
//! it is tested here.

use crate::api::InstanceView;

/// The value a column sorts by (numbers zero-padded so text order is number order).
pub fn sort_key(i: &InstanceView, column: &str) -> String {
    match column {
        "region" => i.region.clone(),
        "name" => i.name.clone().unwrap_or_default(),
        "state" => i.state.clone(),
        "tokens" => i.metadata.http_tokens.clone(),
        "endpoint" => i.metadata.http_endpoint.clone(),
        "hop" => format!("{:02}", i.metadata.http_put_response_hop_limit),
        "md_state" => i.metadata.state.clone(),
        "compliant" => i.compliant.to_string(),
        "v1" => format!("{:012}", i.imdsv1_calls.or(i.imdsv1_rejected).unwrap_or(0)),
        _ => i.instance_id.clone(),
    }
}

/// Whether the instance matches a free-text filter: its ID, region, name or a `Key=value` tag.
pub fn matches(i: &InstanceView, text: &str) -> bool {
    let t = text.trim().to_lowercase();
    if t.is_empty() {
        return true;
    }
    i.instance_id.contains(&t)
        || i.region.contains(&t)
        || i.name.as_deref().is_some_and(|n| n.to_lowercase().contains(&t))
        || i.tags
            .iter()
            .any(|(k, v)| format!("{k}={v}").to_lowercase().contains(&t))
}

/// The IMDSv1 column: calls that would break (IMDSv1 allowed) or that were refused (compliant).
pub fn usage_text(i: &InstanceView) -> String {
    match (i.imdsv1_calls, i.imdsv1_rejected) {
        (Some(0), _) | (_, Some(0)) => "none".to_owned(),
        (Some(n), _) => format!("{n} calls"),
        (_, Some(n)) => format!("{n} refused"),
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetadataOptions;

    fn inst(id: &str, hop: u8, calls: Option<u64>, rejected: Option<u64>) -> InstanceView {
        InstanceView {
            instance_id: id.into(),
            region: "eu-west-1".into(),
            name: Some("Web-API-1".into()),
            state: "running".into(),
            tags: [("Team".to_owned(), "web".to_owned())].into(),
            metadata: MetadataOptions {
                http_tokens: "optional".into(),
                http_endpoint: "enabled".into(),
                http_put_response_hop_limit: hop,
                state: "applied".into(),
            },
            compliant: false,
            imdsv1_calls: calls,
            imdsv1_rejected: rejected,
        }
    }

    #[test]
    fn the_filter_looks_at_id_region_name_and_tags() {
        let i = inst("i-0123456789abcdef0", 1, None, None);
        for hit in ["", "i-0123", "eu-west", "web-api", "team=web", "TEAM=WEB"] {
            assert!(matches(&i, hit), "{hit}");
        }
        assert!(!matches(&i, "team=data"));
    }

    #[test]
    fn numbers_sort_as_numbers() {
        assert!(sort_key(&inst("a", 2, None, None), "hop") < sort_key(&inst("b", 10, None, None), "hop"));
        assert!(
            sort_key(&inst("a", 1, Some(9), None), "v1") < sort_key(&inst("b", 1, Some(100), None), "v1")
        );
    }

    #[test]
    fn the_usage_column_says_what_is_known() {
        assert_eq!(usage_text(&inst("a", 1, Some(0), None)), "none");
        assert_eq!(usage_text(&inst("a", 1, Some(12), None)), "12 calls");
        assert_eq!(usage_text(&inst("a", 1, None, Some(3))), "3 refused");
        assert_eq!(usage_text(&inst("a", 1, None, None)), "unknown");
    }
}
