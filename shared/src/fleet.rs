//! The fleet's query language and posture, one definition for the server (which filters, sorts and
//! pages the inventory) and the browser (which puts the same query in its URL): filters, sort keys,
//! an instance's posture (compliant, broken since enforcement, IMDSv1 in use, IMDSv1 allowed), the
//! IMDSv1 column and the summary counts.

use crate::api::{GroupCounts, InstanceView, PostureCounts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where an instance stands on the way to IMDSv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Posture {
    Compliant,
    /// IMDSv2 required, and IMDSv1 calls are being refused: software broke at enforcement.
    Broken,
    /// IMDSv1 allowed and called: enforcing now would break something.
    Imdsv1InUse,
    /// IMDSv1 allowed, no calls seen (or not known).
    Imdsv1Allowed,
}

impl Posture {
    pub fn of(i: &InstanceView) -> Posture {
        match (i.compliant, i.imdsv1_rejected, i.imdsv1_calls) {
            (true, Some(n), _) if n > 0 => Posture::Broken,
            (true, _, _) => Posture::Compliant,
            (false, _, Some(n)) if n > 0 => Posture::Imdsv1InUse,
            (false, _, _) => Posture::Imdsv1Allowed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Posture::Compliant => "compliant",
            Posture::Broken => "broken",
            Posture::Imdsv1InUse => "imdsv1_in_use",
            Posture::Imdsv1Allowed => "imdsv1_allowed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Posture::Compliant => "compliant",
            Posture::Broken => "broken since enforcement",
            Posture::Imdsv1InUse => "IMDSv1 in use",
            Posture::Imdsv1Allowed => "IMDSv1 allowed",
        }
    }
}

/// The most rows one page may hold.
pub const MAX_PAGE: usize = 500;
/// Rows per page when the query does not say.
pub const DEFAULT_PAGE: usize = 100;

/// `GET /api/v1/instances`'s query (and the Fleet page's URL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(default)]
pub struct FleetQuery {
    pub account: Option<String>,
    pub region: Option<String>,
    /// `compliant`, `noncompliant` (IMDSv1 allowed, used or not), or a posture (`broken`,
    /// `imdsv1_in_use`, `imdsv1_allowed`).
    pub compliance: Option<String>,
    /// The older form of the compliance filter.
    pub compliant: Option<bool>,
    /// running, stopped, ...
    pub state: Option<String>,
    /// `Key=value`, or `Key` for any value.
    pub tag: Option<String>,
    /// Free text: ID, name, region, account or `Key=value` tag.
    pub q: Option<String>,
    /// A column (see [`sort_key`]); `id` by default.
    pub sort: Option<String>,
    pub desc: Option<bool>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// A query the server refuses, naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryError {
    pub field: &'static str,
    pub message: String,
}

const SORT_COLUMNS: &[&str] = &[
    "id",
    "account",
    "region",
    "name",
    "state",
    "tokens",
    "endpoint",
    "hop",
    "md_state",
    "compliant",
    "v1",
];
const COMPLIANCE_VALUES: &[&str] = &[
    "compliant",
    "noncompliant",
    "broken",
    "imdsv1_in_use",
    "imdsv1_allowed",
];

impl FleetQuery {
    /// Checks the values a client chose, so a typo is an error and not an empty page.
    pub fn validate(&self) -> Result<(), QueryError> {
        if let Some(c) = self.compliance.as_deref().filter(|c| !c.is_empty()) {
            if !COMPLIANCE_VALUES.contains(&c) {
                return Err(QueryError {
                    field: "compliance",
                    message: format!("must be one of {}", COMPLIANCE_VALUES.join(", ")),
                });
            }
        }
        if let Some(s) = self.sort.as_deref().filter(|s| !s.is_empty()) {
            if !SORT_COLUMNS.contains(&s) {
                return Err(QueryError {
                    field: "sort",
                    message: format!("must be one of {}", SORT_COLUMNS.join(", ")),
                });
            }
        }
        if let Some(l) = self.limit {
            if l == 0 || l > MAX_PAGE {
                return Err(QueryError {
                    field: "limit",
                    message: format!("must be between 1 and {MAX_PAGE}"),
                });
            }
        }
        if let Some(c) = self.cursor.as_deref().filter(|c| !c.is_empty()) {
            if c.parse::<usize>().is_err() {
                return Err(QueryError {
                    field: "cursor",
                    message: "must be a cursor from a previous page".into(),
                });
            }
        }
        Ok(())
    }

    pub fn matches(&self, i: &InstanceView) -> bool {
        let set = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        if set(&self.account).is_some_and(|a| a != i.account)
            || set(&self.region).is_some_and(|r| r != i.region)
            || set(&self.state).is_some_and(|s| s != i.state)
            || self.compliant.is_some_and(|c| c != i.compliant)
        {
            return false;
        }
        if let Some(c) = set(&self.compliance) {
            let posture = Posture::of(i);
            let ok = match c.as_str() {
                "compliant" => i.compliant,
                "noncompliant" => !i.compliant,
                other => posture.as_str() == other,
            };
            if !ok {
                return false;
            }
        }
        if let Some(tag) = set(&self.tag) {
            let hit = match tag.split_once('=') {
                Some((k, v)) => i.tags.get(k).is_some_and(|x| x == v),
                None => i.tags.contains_key(&tag),
            };
            if !hit {
                return false;
            }
        }
        self.q.as_deref().is_none_or(|t| matches(i, t))
    }

    /// The matching instances in the query's order, the page the cursor points at, and the next cursor.
    pub fn page(&self, all: &[InstanceView]) -> (Vec<InstanceView>, usize, Option<String>) {
        self.page_within(all, |_| true)
    }

    /// [`FleetQuery::page`] over the instances `visible` keeps (the caller's accounts).
    pub fn page_within(
        &self,
        all: &[InstanceView],
        visible: impl Fn(&InstanceView) -> bool,
    ) -> (Vec<InstanceView>, usize, Option<String>) {
        let mut rows: Vec<&InstanceView> = all.iter().filter(|i| visible(i) && self.matches(i)).collect();
        let col = self.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or("id");
        // The ID breaks ties, so that pages never overlap or skip.
        rows.sort_by_cached_key(|i| (sort_key(i, col), i.instance_id.clone()));
        if self.desc == Some(true) {
            rows.reverse();
        }
        let total = rows.len();
        let start = self
            .cursor
            .as_deref()
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0)
            .min(total);
        let limit = self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let end = (start + limit).min(total);
        let next = (end < total).then(|| end.to_string());
        let page = rows[start..end].iter().map(|i| (*i).clone()).collect();
        (page, total, next)
    }
}

impl PostureCounts {
    pub fn add(&mut self, i: &InstanceView) {
        self.total += 1;
        match Posture::of(i) {
            Posture::Compliant => self.compliant += 1,
            Posture::Broken => self.broken += 1,
            Posture::Imdsv1InUse => self.imdsv1_in_use += 1,
            Posture::Imdsv1Allowed => self.imdsv1_allowed += 1,
        }
    }
}

/// Counts per group: `region`, `account`, or `tag:KEY`. None for another grouping.
pub fn summarise<'a>(
    instances: impl IntoIterator<Item = &'a InstanceView>,
    by: &str,
) -> Option<(PostureCounts, Vec<GroupCounts>)> {
    let tag = by.strip_prefix("tag:");
    if !matches!(by, "region" | "account") && tag.is_none_or(str::is_empty) {
        return None;
    }
    let mut all = PostureCounts::default();
    let mut groups: BTreeMap<String, PostureCounts> = BTreeMap::new();
    for i in instances {
        all.add(i);
        let key = match (by, tag) {
            ("region", _) => i.region.clone(),
            ("account", _) => i.account.clone(),
            (_, Some(k)) => i.tags.get(k).cloned().unwrap_or_else(|| "(none)".into()),
            _ => unreachable!("checked above"),
        };
        groups.entry(key).or_default().add(i);
    }
    Some((
        all,
        groups
            .into_iter()
            .map(|(key, counts)| GroupCounts { key, counts })
            .collect(),
    ))
}

/// The value a column sorts by (numbers zero-padded so text order is number order).
pub fn sort_key(i: &InstanceView, column: &str) -> String {
    match column {
        "region" => i.region.clone(),
        "account" => i.account.clone(),
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
        || i.account.contains(&t)
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

/// Where an instance was launched from, in a line: its group, its launch template and version, its
/// AMI (empty when EC2 told none of them).
pub fn origin_text(i: &InstanceView) -> String {
    let mut parts = Vec::new();
    if let Some(group) = i.auto_scaling_group() {
        parts.push(format!("group {group}"));
    }
    if let Some((template, version)) = i.launch_template() {
        parts.push(if version.is_empty() {
            format!("template {template}")
        } else {
            format!("template {template} v{version}")
        });
    }
    if let Some(image) = &i.image_id {
        parts.push(image.clone());
    }
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MetadataOptions;

    fn inst(id: &str, hop: u8, calls: Option<u64>, rejected: Option<u64>) -> InstanceView {
        InstanceView {
            instance_id: id.into(),
            account: "123456789012".into(),
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
            image_id: None,
        }
    }

    #[test]
    fn an_instance_says_where_it_was_launched_from() {
        let mut i = inst("i-0123456789abcdef0", 1, None, None);
        assert_eq!(origin_text(&i), "");
        i.image_id = Some("ami-0123".into());
        i.tags
            .insert(crate::api::TAG_AUTO_SCALING_GROUP.into(), "web-asg".into());
        i.tags
            .insert(crate::api::TAG_LAUNCH_TEMPLATE_ID.into(), "lt-01".into());
        i.tags
            .insert(crate::api::TAG_LAUNCH_TEMPLATE_VERSION.into(), "3".into());
        assert_eq!(origin_text(&i), "group web-asg · template lt-01 v3 · ami-0123");
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
    fn a_query_filters_sorts_and_pages_without_overlap() {
        let fleet: Vec<InstanceView> = (0..250)
            .map(|n| {
                let mut i = inst(&format!("i-{n:05}"), 1, Some(n % 3), None);
                i.compliant = n % 5 == 0;
                if i.compliant {
                    i.imdsv1_calls = None;
                    i.imdsv1_rejected = Some(u64::from(n % 10 == 0));
                }
                i
            })
            .collect();
        let q = FleetQuery {
            compliance: Some("noncompliant".into()),
            limit: Some(100),
            ..FleetQuery::default()
        };
        let (first, total, next) = q.page(&fleet);
        assert_eq!(total, 200);
        assert_eq!(first.len(), 100);
        let q2 = FleetQuery {
            cursor: next,
            ..q.clone()
        };
        let (second, _, next) = q2.page(&fleet);
        assert_eq!(second.len(), 100);
        assert!(next.is_none());
        assert!(first.last().unwrap().instance_id < second[0].instance_id);
        let broken = FleetQuery {
            compliance: Some("broken".into()),
            ..FleetQuery::default()
        };
        assert_eq!(broken.page(&fleet).1, 25, "every tenth is refusing calls");
        let (all, groups) = summarise(&fleet, "region").unwrap();
        assert_eq!((all.total, all.compliant, all.broken), (250, 25, 25));
        assert_eq!(all.imdsv1_in_use + all.imdsv1_allowed, 200);
        assert_eq!(groups.len(), 1);
        assert!(summarise(&fleet, "colour").is_none());
        assert_eq!(
            FleetQuery {
                sort: Some("colour".into()),
                ..FleetQuery::default()
            }
            .validate()
            .unwrap_err()
            .field,
            "sort"
        );
        assert_eq!(
            FleetQuery {
                limit: Some(5000),
                ..FleetQuery::default()
            }
            .validate()
            .unwrap_err()
            .field,
            "limit"
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
