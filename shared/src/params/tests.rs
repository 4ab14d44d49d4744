//! Unit tests for parameter validation: the runbook's patterns, field by field.

use super::*;
use crate::api::{ParametersInput, RateControlInput, StartExecutionRequest, TargetsInput};
use serde_json::json;

fn simple(params: &serde_json::Value) -> StartExecutionRequest {
    serde_json::from_value(json!({ "parameters": params })).expect("request shape")
}

#[test]
fn instance_ids_follow_the_runbook_pattern() {
    for ok in ["i-12345678", "i-0123456789abcdef0", "i-abcdefghijklmnopq"] {
        assert!(InstanceId::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "i-1234567",
        "i-0123456789abcdef01",
        "i-ABCDEF12",
        "x-12345678",
        "i_12345678",
        " i-12345678",
    ] {
        assert!(InstanceId::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn hop_limit_accepts_exactly_zero_to_sixty_four() {
    for n in 0..=64u32 {
        assert_eq!(HopLimit::parse(&n.to_string()).map(HopLimit::get), Ok(n as u8));
    }
    for bad in ["65", "99", "-1", "07", "00", "1.0", "", "x", "100"] {
        assert!(HopLimit::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn max_concurrency_and_errors_follow_ssm_syntax() {
    for ok in ["1", "10", "250", "1%", "50%", "100%"] {
        assert!(MaxConcurrency::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["0", "0%", "101%", "05", "a", "", "-1", "10 %"] {
        assert!(MaxConcurrency::parse(bad).is_err(), "{bad}");
    }
    for ok in ["0", "1", "25", "0%", "9%", "10%", "100%"] {
        assert!(MaxErrors::parse(ok).is_ok(), "{ok}");
    }
    for bad in ["-1", "101%", "01", "x", ""] {
        assert!(MaxErrors::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(MaxConcurrency::parse("50%").unwrap().resolve(5), 2);
    assert_eq!(MaxConcurrency::parse("1%").unwrap().resolve(5), 1);
    assert_eq!(MaxErrors::parse("20%").unwrap().resolve(10), 2);
}

#[test]
fn role_arns_must_name_an_iam_role() {
    assert!(RoleArn::parse("arn:aws:iam::123456789012:role/ImdsAutomation").is_ok());
    assert!(RoleArn::parse("arn:aws:iam::123456789012:role/path/to/Role_1").is_ok());
    for region in [
        "us-gov-west-1",
        "cn-north-1",
        "us-iso-east-1",
        "us-isob-east-1",
        "eu-isoe-west-1",
        "us-isof-south-1",
        "eusc-de-east-1",
    ] {
        assert!(Region::parse(region).is_ok(), "{region}");
    }
    for partition in [
        "aws-cn",
        "aws-us-gov",
        "aws-iso",
        "aws-iso-b",
        "aws-iso-e",
        "aws-iso-f",
        "aws-eusc",
    ] {
        assert!(
            RoleArn::parse(&format!("arn:{partition}:iam::123456789012:role/Imds")).is_ok(),
            "{partition}"
        );
    }
    assert!(RoleArn::parse("arn:aws-mars:iam::123456789012:role/Imds").is_err());
    for bad in [
        "role",
        "arn:aws:iam::12345:role/x",
        "arn:aws:iam::123456789012:user/x",
        "arn:aws:s3:::bucket",
    ] {
        assert!(RoleArn::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_good_simple_request_becomes_a_plan_with_every_parameter_sent() {
    let plan = simple(&json!({"InstanceId": "i-0123456789abcdef0", "HttpPutResponseHopLimit": 2}))
        .validate()
        .expect("valid");
    let ssm = plan.parameters.to_ssm();
    assert_eq!(
        ssm,
        vec![
            ("InstanceId".to_owned(), vec!["i-0123456789abcdef0".to_owned()]),
            ("EnforceIMDSv2".to_owned(), vec!["required".to_owned()]),
            ("MetadataAccess".to_owned(), vec!["enabled".to_owned()]),
            ("HttpPutResponseHopLimit".to_owned(), vec!["2".to_owned()]),
        ]
    );
}

#[test]
fn every_bad_field_is_reported_once_by_name() {
    let errors = simple(&json!({
        "InstanceId": "i-nope",
        "EnforceIMDSv2": "always",
        "MetadataAccess": "off",
        "HttpPutResponseHopLimit": 65,
        "AutomationAssumeRole": "admin"
    }))
    .validate()
    .expect_err("invalid");
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "parameters.InstanceId",
            "parameters.EnforceIMDSv2",
            "parameters.MetadataAccess",
            "parameters.HttpPutResponseHopLimit",
            "parameters.AutomationAssumeRole"
        ]
    );
    assert!(errors
        .for_field("parameters.HttpPutResponseHopLimit")
        .unwrap()
        .contains("0 to 64"));
    assert!(errors
        .for_field("parameters.EnforceIMDSv2")
        .unwrap()
        .contains("required or optional"));
}

#[test]
fn hop_limit_of_the_wrong_json_type_is_a_field_error() {
    let errors = simple(&json!({"InstanceId": "i-0123456789abcdef0", "HttpPutResponseHopLimit": true}))
        .validate()
        .expect_err("invalid");
    assert_eq!(errors.0[0].field, "parameters.HttpPutResponseHopLimit");
}

#[test]
fn rate_control_takes_instances_from_targets_and_checks_each() {
    let req = StartExecutionRequest {
        account: None,
        region: None,
        alarm_name: None,
        target_locations: None,
        parameters: ParametersInput::default(),
        rate_control: Some(RateControlInput {
            targets: TargetsInput::InstanceIds(vec![
                "i-0123456789abcdef0".into(),
                "bad".into(),
                "i-0123456789abcdef0".into(),
            ]),
            max_concurrency: "0".into(),
            max_errors: "1".into(),
        }),
        override_gate: None,
    };
    let errors = req.validate().expect_err("invalid");
    let fields: Vec<&str> = errors.0.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "rate_control.targets.instance_ids[1]",
            "rate_control.targets.instance_ids[2]",
            "rate_control.max_concurrency"
        ]
    );
}

#[test]
fn rate_control_by_tag_is_sent_as_a_tag_target() {
    let req: StartExecutionRequest = serde_json::from_value(json!({
        "parameters": {"EnforceIMDSv2": "required"},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "50%", "max_errors": "1"}
    }))
    .unwrap();
    let plan = req.validate().expect("valid");
    let rc = plan.rate_control.expect("rate control");
    assert_eq!(
        rc.targets.to_ssm(),
        ("tag:Team".to_owned(), vec!["web".to_owned()])
    );
    assert_eq!(plan.parameters.instance_id, None);
}

#[test]
fn a_missing_instance_id_is_required_without_rate_control() {
    let errors = simple(&json!({})).validate().expect_err("invalid");
    assert_eq!(errors.0[0].field, "parameters.InstanceId");
}

fn opts(tokens: &str, endpoint: &str, hop: u8) -> MetadataOptions {
    MetadataOptions {
        http_tokens: tokens.into(),
        http_endpoint: endpoint.into(),
        http_put_response_hop_limit: hop,
        state: "applied".into(),
    }
}

#[test]
fn applying_parameters_follows_the_runbook_branches() {
    let base = simple(&json!({"InstanceId": "i-0123456789abcdef0"}))
        .validate()
        .unwrap()
        .parameters;
    // Hop limit 0 keeps the current limit; the endpoint is (re-)enabled.
    assert_eq!(
        base.apply_to(&opts("optional", "disabled", 3)),
        MetadataOptions {
            state: "pending".into(),
            ..opts("required", "enabled", 3)
        }
    );
    // Disabled ignores the other parameters.
    let disable = RunbookParameters {
        metadata_access: MetadataAccess::Disabled,
        hop_limit: HopLimit::parse("1").unwrap(),
        ..base.clone()
    };
    assert_eq!(
        disable.apply_to(&opts("optional", "enabled", 2)),
        MetadataOptions {
            state: "pending".into(),
            ..opts("optional", "disabled", 2)
        }
    );
    // Nothing changes on an already compliant instance.
    assert_eq!(
        base.apply_to(&opts("required", "enabled", 2)),
        opts("required", "enabled", 2)
    );
    assert!(opts("optional", "disabled", 1).is_compliant());
    assert!(!opts("optional", "enabled", 1).is_compliant());
}

#[test]
fn pasted_lists_split_on_any_separator() {
    assert_eq!(
        split_list("i-1, i-2\ni-3;i-4\r\n\ti-5  "),
        ["i-1", "i-2", "i-3", "i-4", "i-5"]
    );
    assert!(split_list(" ,\n").is_empty());
}

#[test]
fn an_override_needs_a_real_reason() {
    let short = serde_json::from_value::<StartExecutionRequest>(
        json!({"parameters": {"InstanceId": "i-0123456789abcdef0"}, "override": {"reason": "  ok  "}}),
    )
    .unwrap();
    assert_eq!(short.validate().unwrap_err().0[0].field, "override.reason");
    let good = serde_json::from_value::<StartExecutionRequest>(
        json!({"parameters": {"InstanceId": "i-0123456789abcdef0"}, "override": {"reason": "canary host, agent updated"}}),
    )
    .unwrap();
    assert_eq!(
        good.validate().unwrap().override_reason.as_deref(),
        Some("canary host, agent updated")
    );
}

#[test]
fn target_locations_take_account_ids_organizational_units_and_roots() {
    use crate::params::OrgUnitId;
    for ok in ["ou-abcd-12345678", "ou-sand-workloads", "r-abcd", "r-sand"] {
        assert!(OrgUnitId::parse(ok).is_ok(), "{ok}");
    }
    for bad in [
        "ou-x",
        "ou-abcd-1234567",
        "r-abc",
        "OU-abcd-12345678",
        "ou-abcd",
        "123456789012",
        "r-ab_cd",
    ] {
        let err = OrgUnitId::parse(bad).unwrap_err();
        assert!(err.contains("organizational unit"), "{bad}: {err}");
    }
}

#[test]
fn a_location_of_more_than_fifty_accounts_goes_to_ssm_in_pieces_of_fifty() {
    let accounts: Vec<String> = (0..120).map(|n| format!("2{n:011}")).collect();
    let req: crate::api::StartExecutionRequest = serde_json::from_value(serde_json::json!({
        "parameters": {},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "5", "max_errors": "1"},
        "target_locations": [{"accounts": accounts, "regions": ["us-east-1", "eu-west-1"],
                              "target_location_max_concurrency": "3"}]
    }))
    .unwrap();
    let plan = req.validate().unwrap();
    let pieces = plan.target_locations[0].ssm_pieces();
    assert_eq!(
        pieces.iter().map(|(a, r)| (a.len(), r.len())).collect::<Vec<_>>(),
        [(50, 2), (50, 2), (20, 2)]
    );
    let covered: Vec<&String> = pieces.iter().flat_map(|(a, _)| a).collect();
    assert_eq!(covered.len(), 120);

    // More than a hundred pieces is more than SSM takes: a field error, not a refusal later.
    let too_many: Vec<String> = (0..5_001).map(|n| format!("2{n:011}")).collect();
    let req: crate::api::StartExecutionRequest = serde_json::from_value(serde_json::json!({
        "parameters": {},
        "rate_control": {"targets": {"tag": {"key": "Team", "value": "web"}}, "max_concurrency": "5", "max_errors": "1"},
        "target_locations": [{"accounts": too_many, "regions": ["us-east-1"]}]
    }))
    .unwrap();
    let errors = req.validate().unwrap_err();
    assert!(
        errors.0.iter().any(|e| e.field == "target_locations"),
        "{errors:?}"
    );
}

#[test]
fn free_text_refuses_every_invisible_character_and_keeps_the_visible_ones() {
    for hidden in [
        '\u{00AD}',
        '\u{034F}',
        '\u{0600}',
        '\u{200B}',
        '\u{2063}',
        '\u{2065}',
        '\u{206A}',
        '\u{3164}',
        '\u{115F}',
        '\u{FFA0}',
        '\u{17B4}',
        '\u{FEFF}',
        '\u{FFF9}',
        '\u{1D173}',
        '\u{E0001}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{2800}',
        '\u{FFFC}',
        '\u{180B}',
        '\u{E000}',
        '\u{F8FF}',
        '\u{F0000}',
    ] {
        let text = format!("ok{hidden}x");
        assert!(
            crate::params::check_plain_text(&text).is_err(),
            "U+{:04X} passed",
            hidden as u32
        );
    }
    for stray in [
        "\u{FE0F}\u{FE0F}\u{FE0F}",
        "ok \u{FE0F}",
        "ok\u{2764}\u{FE0F}\u{FE0F}",
        "\u{E0100}x",
    ] {
        assert!(
            crate::params::check_plain_text(stray).is_err(),
            "{stray:?} passed"
        );
    }
    for visible in [
        "Jürgen's reason",
        "東京の再起動",
        "👍🏽 signed off",
        "a – b — c",
        "naïve café",
        "signed off \u{2764}\u{FE0F}",
    ] {
        assert_eq!(crate::params::check_plain_text(visible), Ok(()), "{visible}");
    }
}
