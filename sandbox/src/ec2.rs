//! EC2 (ec2Query: form-encoded requests, XML replies): DescribeInstances with filters and paging,
//! ModifyInstanceMetadataOptions, TerminateInstances and DescribeRegions; `launch_api` answers the
//! calls about templates, images and account defaults.

use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::fleet::{Instance, Scope};
use crate::wire::{ok_xml, AwsError};
use crate::{timefmt, Sandbox};

const XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

pub(crate) fn esc(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

pub(crate) fn handle(
    sb: &Sandbox,
    at: &Scope<'_>,
    op: &str,
    params: &[(String, String)],
) -> Result<Response, AwsError> {
    let p: BTreeMap<&str, &str> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if op.starts_with("Describe") {
        crate::ec2_strict::filter_limits(&p)?;
    }
    match op {
        "DescribeInstances" => describe_instances(sb, at, &p),
        "ModifyInstanceMetadataOptions" => modify_metadata_options(sb, at, &p),
        "TerminateInstances" => terminate_instances(sb, at, &p),
        "DescribeRegions" => {
            let regions = sb.world().fleet.regions.clone();
            let mut items = String::new();
            for r in regions {
                let _ = write!(
                    items,
                    "<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>"
                );
            }
            ok_xml(wrap(
                "DescribeRegions",
                &format!("<regionInfo>{items}</regionInfo>"),
            ))
        }
        "" => Err(AwsError::client(
            "MissingAction",
            "The request must contain the parameter Action.",
        )),
        other => crate::launch_api::handle(sb, at, other, &p).unwrap_or_else(|| {
            Err(AwsError::client(
                "InvalidAction",
                format!("The action {other} is not valid for this web service."),
            ))
        }),
    }
}

/// TerminateInstances: the instances end at once (no shutting-down phase), stay visible as terminated
/// for a while, then are gone.
fn terminate_instances(sb: &Sandbox, at: &Scope<'_>, p: &BTreeMap<&str, &str>) -> Result<Response, AwsError> {
    let ids: Vec<&str> = p
        .iter()
        .filter(|(k, _)| k.starts_with("InstanceId."))
        .map(|(_, v)| *v)
        .collect();
    if ids.is_empty() {
        return Err(AwsError::client(
            "MissingParameter",
            "The request must contain the parameter InstanceId",
        ));
    }
    let now = timefmt::now_ms();
    let speed = sb.speed();
    let mut world = sb.world();
    world.fleet.purge_terminated(now, speed);
    if let Some(missing) = ids.iter().find(|id| world.fleet.get(at, id).is_none()) {
        return Err(AwsError::client(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{missing}' does not exist"),
        ));
    }
    world.dirty = true;
    let mut items = String::new();
    for id in ids {
        let Some(inst) = world.fleet.get_mut(at, id) else {
            continue;
        };
        let previous = std::mem::replace(&mut inst.state, "terminated".to_owned());
        let previous_code = if previous == "running" { 16 } else { 80 };
        inst.terminated_ms.get_or_insert(now);
        let _ = write!(
            items,
            "<item><instanceId>{id}</instanceId><currentState><code>48</code><name>terminated</name></currentState>\
             <previousState><code>{previous_code}</code><name>{previous}</name></previousState></item>"
        );
    }
    ok_xml(wrap(
        "TerminateInstances",
        &format!("<instancesSet>{items}</instancesSet>"),
    ))
}

pub(crate) fn wrap(op: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{op}Response xmlns=\"{XMLNS}\"><requestId>{}</requestId>{inner}</{op}Response>",
        uuid::Uuid::new_v4()
    )
}

/// `Prefix.1`, `Prefix.2`, ... in order.
pub(crate) fn numbered<'a>(p: &BTreeMap<&str, &'a str>, prefix: &str) -> Vec<&'a str> {
    (1..)
        .map_while(|i| p.get(format!("{prefix}.{i}").as_str()).copied())
        .collect()
}

fn is_instance_id(s: &str) -> bool {
    s.strip_prefix("i-")
        .is_some_and(|r| (8..=17).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit()))
}

struct Filter<'a> {
    name: &'a str,
    values: Vec<&'a str>,
}

fn filter_matches(f: &Filter<'_>, inst: &Instance, now: u64) -> Result<bool, AwsError> {
    let any = |v: &str| {
        f.values
            .iter()
            .any(|want| *want == v || (want.contains('*') && glob(want, v)))
    };
    Ok(match f.name {
        "instance-state-name" => any(&inst.state),
        "instance-id" => any(&inst.id),
        "instance-type" => any(&inst.instance_type),
        "tag-key" => inst.tags.iter().any(|(k, _)| any(k)),
        "metadata-options.http-tokens" => any(&inst.md.http_tokens),
        "metadata-options.http-endpoint" => any(&inst.md.http_endpoint),
        "metadata-options.http-put-response-hop-limit" => any(&inst.md.hop_limit.to_string()),
        "metadata-options.state" => any(inst.md.state(now)),
        "metadata-options.http-protocol-ipv6" => any(&inst.md.http_protocol_ipv6),
        "metadata-options.instance-metadata-tags" => any(&inst.md.instance_metadata_tags),
        name => match name.strip_prefix("tag:") {
            Some(key) => inst.tag(key).is_some_and(any),
            None => {
                return Err(AwsError::client(
                    "InvalidParameterValue",
                    format!("The filter '{name}' is invalid"),
                ));
            }
        },
    })
}

/// EC2 filter wildcards: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn describe_instances(sb: &Sandbox, at: &Scope<'_>, p: &BTreeMap<&str, &str>) -> Result<Response, AwsError> {
    let ids = numbered(p, "InstanceId");
    let mut filters = Vec::new();
    for i in 1.. {
        let Some(name) = p.get(format!("Filter.{i}.Name").as_str()) else {
            break;
        };
        filters.push(Filter {
            name,
            values: numbered(p, &format!("Filter.{i}.Value")),
        });
    }
    let max_results = match p.get("MaxResults") {
        Some(raw) => {
            let n: usize = raw
                .parse()
                .ok()
                .filter(|n| (5..=1000).contains(n))
                .ok_or_else(|| AwsError::client("InvalidParameterValue", format!("Value ( {raw} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.")))?;
            if !ids.is_empty() {
                return Err(AwsError::client(
                    "InvalidParameterCombination",
                    "The parameter instancesSet cannot be used with the parameter maxResults",
                ));
            }
            Some(n)
        }
        None => None,
    };
    let offset = match p.get("NextToken") {
        Some(tok) => decode_token(tok).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Invalid value '{tok}' for nextToken"),
            )
        })?,
        None => 0,
    };
    for id in &ids {
        if !is_instance_id(id) {
            return Err(AwsError::client(
                "InvalidInstanceID.Malformed",
                format!("Invalid id: \"{id}\""),
            ));
        }
    }
    let now = timefmt::now_ms();
    let mut world = sb.world();
    world.fleet.purge_terminated(now, sb.speed());
    let missing: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| world.fleet.get(at, id).is_none())
        .collect();
    match missing.as_slice() {
        [] => {}
        [one] => {
            return Err(AwsError::client(
                "InvalidInstanceID.NotFound",
                format!("The instance ID '{one}' does not exist"),
            ))
        }
        many => {
            return Err(AwsError::client(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", many.join(", ")),
            ))
        }
    }
    let mut matched: Vec<&Instance> = Vec::new();
    let candidates: Box<dyn Iterator<Item = &Instance>> = if ids.is_empty() {
        Box::new(world.fleet.in_scope(at))
    } else {
        Box::new(ids.iter().filter_map(|id| world.fleet.get(at, id)))
    };
    for inst in candidates {
        let mut ok = true;
        for f in &filters {
            if !filter_matches(f, inst, now)? {
                ok = false;
                break;
            }
        }
        if ok {
            matched.push(inst);
        }
    }
    let page_end = max_results.map_or(matched.len(), |n| (offset + n).min(matched.len()));
    let page = matched
        .get(offset.min(matched.len())..page_end)
        .unwrap_or_default();
    let mut body = String::from("<reservationSet>");
    for inst in page {
        body.push_str(&reservation_xml(inst, now));
    }
    body.push_str("</reservationSet>");
    if page_end < matched.len() {
        let _ = write!(body, "<nextToken>{}</nextToken>", encode_token(page_end));
    }
    ok_xml(wrap("DescribeInstances", &body))
}

fn encode_token(offset: usize) -> String {
    format!("sbx{offset:x}")
}

fn decode_token(tok: &str) -> Option<usize> {
    usize::from_str_radix(tok.strip_prefix("sbx")?, 16).ok()
}

fn metadata_xml(inst: &Instance, now: u64) -> String {
    format!(
        "<state>{}</state><httpTokens>{}</httpTokens><httpPutResponseHopLimit>{}</httpPutResponseHopLimit><httpEndpoint>{}</httpEndpoint><httpProtocolIpv6>{}</httpProtocolIpv6><instanceMetadataTags>{}</instanceMetadataTags>",
        inst.md.state(now),
        inst.md.http_tokens,
        inst.md.hop_limit,
        inst.md.http_endpoint,
        inst.md.http_protocol_ipv6,
        inst.md.instance_metadata_tags
    )
}

fn reservation_xml(inst: &Instance, now: u64) -> String {
    let code = match inst.state.as_str() {
        "running" => 16,
        "terminated" => 48,
        _ => 80,
    };
    let mut tags = String::new();
    for (k, v) in &inst.tags {
        let _ = write!(
            tags,
            "<item><key>{}</key><value>{}</value></item>",
            esc(k),
            esc(v)
        );
    }
    format!(
        "<item><reservationId>r-{rid}</reservationId><ownerId>{acct}</ownerId><instancesSet><item>\
         <instanceId>{id}</instanceId><imageId>{image}</imageId>\
         <instanceState><code>{code}</code><name>{state}</name></instanceState>\
         <instanceType>{itype}</instanceType><launchTime>{launch}</launchTime>\
         <placement><availabilityZone>{region}a</availabilityZone></placement>\
         <privateIpAddress>{ip}</privateIpAddress><tagSet>{tags}</tagSet>\
         <metadataOptions>{md}</metadataOptions></item></instancesSet></item>",
        rid = &inst.id[2..],
        acct = inst.account,
        id = inst.id,
        state = inst.state,
        itype = inst.instance_type,
        launch = timefmt::iso(inst.launch_ms),
        region = inst.region,
        ip = inst.private_ip,
        md = metadata_xml(inst, now),
        image = inst.image_id.as_deref().unwrap_or("ami-0abcdef1234567890"),
    )
}

fn modify_metadata_options(
    sb: &Sandbox,
    at: &Scope<'_>,
    p: &BTreeMap<&str, &str>,
) -> Result<Response, AwsError> {
    let id = *p.get("InstanceId").ok_or_else(|| {
        AwsError::client(
            "MissingParameter",
            "The request must contain the parameter InstanceId",
        )
    })?;
    if !is_instance_id(id) {
        return Err(AwsError::client(
            "InvalidInstanceID.Malformed",
            format!("Invalid id: \"{id}\""),
        ));
    }
    let one_of = |key: &str, allowed: &[&str]| crate::launch_api::one_of(p, key, allowed);
    let tokens = one_of("HttpTokens", &["optional", "required"])?;
    let endpoint = one_of("HttpEndpoint", &["enabled", "disabled"])?;
    let hop = match p.get("HttpPutResponseHopLimit") {
        None => None,
        Some(raw) => Some(raw.parse::<u8>().ok().filter(|h| (1..=64).contains(h)).ok_or_else(|| {
            AwsError::client(
                "InvalidParameterValue",
                format!("Value ({raw}) for parameter HttpPutResponseHopLimit is invalid. Expecting a value between 1 and 64."),
            )
        })?),
    };
    crate::launch_api::dry_run(p)?;
    let broken = sb.faults().broken_instances.contains(id);
    let now = timefmt::now_ms();
    let speed = sb.speed();
    let mut world = sb.world();
    if world.fleet.get(at, id).is_none() {
        return Err(AwsError::client(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{id}' does not exist"),
        ));
    }
    if tokens.as_deref() == Some("optional") && world.launch.tokens_enforced(at.account, at.region) {
        let (code, message) = crate::launch::optional_refused(id);
        return Err(AwsError::client(code, message));
    }
    world.dirty = true;
    let inst = world.fleet.get_mut(at, id).ok_or_else(|| {
        AwsError::client(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{id}' does not exist"),
        )
    })?;
    inst.modify_metadata(tokens.as_deref(), hop, endpoint.as_deref(), now, speed, broken);
    let body = format!(
        "<instanceId>{id}</instanceId><instanceMetadataOptions>{}</instanceMetadataOptions>",
        metadata_xml(inst, now)
    );
    ok_xml(wrap("ModifyInstanceMetadataOptions", &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_wildcards_work_like_ec2() {
        assert!(glob("web-*", "web-api-0001"));
        assert!(glob("*-000?", "data-db-0003"));
        assert!(!glob("web-*", "data-web"));
    }

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        assert_eq!(decode_token(&encode_token(1234)), Some(1234));
        assert_eq!(decode_token("garbage"), None);
    }
}
