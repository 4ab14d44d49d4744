//! The sandbox's EC2, CloudWatch and STS as strict as AWS where the attack on issue 28 found them
//! kinder, through the real aws-sdk clients: service-managed launch templates, filter limits, DryRun,
//! launch template warnings, version deletes, GetMetricData's options and retention, and AssumeRole's
//! session limits.

use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use e2e::{sdk_config, standalone_sandbox};
use sandbox::SandboxConfig;
use std::time::{Duration, SystemTime};

async fn clients() -> (sandbox::Sandbox, aws_config::SdkConfig) {
    let (sb, url) = standalone_sandbox(SandboxConfig {
        fleet_size: 40,
        speed: 600.0,
        accounts: 2,
        ..SandboxConfig::default()
    })
    .await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    (sb, conf)
}

/// The ID of the account's launch template of that name in us-east-1.
async fn template_id(ec2: &aws_sdk_ec2::Client, name: &str) -> String {
    ec2.describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_service_managed_template_cannot_be_changed_by_the_account() {
    let (_sb, conf) = clients().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let managed = template_id(&ec2, "ecs-managed-capacity").await;
    let data = RequestLaunchTemplateData::builder()
        .metadata_options(
            aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                .build(),
        )
        .build();
    let created = ec2
        .create_launch_template_version()
        .launch_template_id(&managed)
        .source_version("1")
        .launch_template_data(data.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(created.code(), Some("OperationNotPermitted"), "{created:?}");
    assert!(
        created
            .message()
            .unwrap_or_default()
            .contains("ecs.amazonaws.com"),
        "{created:?}"
    );
    let modified = ec2
        .modify_launch_template()
        .launch_template_id(&managed)
        .default_version("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(modified.code(), Some("OperationNotPermitted"), "{modified:?}");
    let deleted = ec2
        .delete_launch_template_versions()
        .launch_template_id(&managed)
        .versions("1")
        .send()
        .await
        .unwrap_err();
    assert_eq!(deleted.code(), Some("OperationNotPermitted"), "{deleted:?}");
    // The account's own template still takes a new version.
    let web = template_id(&ec2, "web").await;
    let version = ec2
        .create_launch_template_version()
        .launch_template_id(&web)
        .source_version("1")
        .launch_template_data(data)
        .send()
        .await
        .expect("an unmanaged template takes a new version");
    assert!(version.warning().is_none(), "{version:?}");
}

#[tokio::test]
async fn a_describe_call_takes_at_most_two_hundred_values_in_a_filter_and_fifty_filters() {
    let (_sb, conf) = clients().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let ids = |n: usize| -> Vec<String> { (0..n).map(|i| format!("i-{i:017x}")).collect() };
    let with_values = |n: usize| {
        ec2.describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-id")
                    .set_values(Some(ids(n)))
                    .build(),
            )
            .send()
    };
    with_values(200).await.expect("200 values are taken");
    let refused = with_values(201).await.unwrap_err();
    assert_eq!(refused.code(), Some("FilterLimitExceeded"), "{refused:?}");
    // Another Describe call, and too many filters.
    let mut many = ec2.describe_launch_templates();
    for n in 0..51 {
        many = many.filters(Filter::builder().name(format!("tag:k{n}")).values("v").build());
    }
    let refused = many.send().await.unwrap_err();
    assert_eq!(refused.code(), Some("FilterLimitExceeded"), "{refused:?}");
    let refused = ec2
        .describe_launch_templates()
        .filters(Filter::builder().name("tag:k").set_values(Some(ids(201))).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("FilterLimitExceeded"), "{refused:?}");
}

#[tokio::test]
async fn launch_template_calls_answer_dry_runs_warnings_and_bad_versions_as_ec2_does() {
    let (_sb, conf) = clients().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let dry = ec2
        .get_instance_metadata_defaults()
        .dry_run(true)
        .send()
        .await
        .unwrap_err();
    assert_eq!(dry.code(), Some("DryRunOperation"), "{dry:?}");

    // Data naming a malformed AMI and snapshot is taken, with EC2's warnings.
    let web = template_id(&ec2, "web").await;
    let created = ec2
        .create_launch_template_version()
        .launch_template_id(&web)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-123")
                .block_device_mappings(
                    aws_sdk_ec2::types::LaunchTemplateBlockDeviceMappingRequest::builder()
                        .device_name("/dev/xvdb")
                        .ebs(
                            aws_sdk_ec2::types::LaunchTemplateEbsBlockDeviceRequest::builder()
                                .snapshot_id("snap-bad")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("EC2 creates the version and warns");
    let codes: Vec<&str> = created
        .warning()
        .map(|w| w.errors().iter().filter_map(|e| e.code()).collect())
        .unwrap_or_default();
    assert_eq!(
        codes,
        ["InvalidAMIID.Malformed", "InvalidSnapshotID.Malformed"],
        "{created:?}"
    );
    let unknown = ec2
        .create_launch_template_version()
        .launch_template_id(&web)
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-0123456789abcdef0")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        unknown.warning().map(|w| w.errors()[0].code()),
        Some(Some("InvalidAMIID.NotFound")),
        "{unknown:?}"
    );

    // Only version numbers can be deleted.
    for word in ["$Latest", "abc"] {
        let refused = ec2
            .delete_launch_template_versions()
            .launch_template_id(&web)
            .versions(word)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Some("InvalidParameterValue"),
            "{word}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn get_metric_data_checks_its_options_and_keeps_minute_data_fifteen_days() {
    let (_sb, conf) = clients().await;
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let instance = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .reservations()[0]
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_owned();
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let query = |period: i32| {
        aws_sdk_cloudwatch::types::MetricDataQuery::builder()
            .id("q0")
            .metric_stat(
                aws_sdk_cloudwatch::types::MetricStat::builder()
                    .metric(
                        aws_sdk_cloudwatch::types::Metric::builder()
                            .namespace("AWS/EC2")
                            .metric_name("MetadataNoToken")
                            .dimensions(
                                aws_sdk_cloudwatch::types::Dimension::builder()
                                    .name("InstanceId")
                                    .value(&instance)
                                    .build(),
                            )
                            .build(),
                    )
                    .period(period)
                    .stat("Sum")
                    .build(),
            )
            .build()
    };
    let now = SystemTime::now();
    let days_ago = |d: u64| aws_smithy_types::DateTime::from(now - Duration::from_secs(d * 86_400));
    let read = |period: i32, days: u64| {
        cw.get_metric_data()
            .start_time(days_ago(days))
            .end_time(aws_smithy_types::DateTime::from(now))
            .metric_data_queries(query(period))
    };
    let refused = read(3_600, 1)
        .scan_by(aws_sdk_cloudwatch::types::ScanBy::from("Bogus"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("ValidationError"), "{refused:?}");
    let refused = read(3_600, 1).max_datapoints(0).send().await.unwrap_err();
    assert_eq!(refused.code(), Some("ValidationError"), "{refused:?}");
    // Oldest first when asked.
    let ascending = read(3_600, 1)
        .scan_by(aws_sdk_cloudwatch::types::ScanBy::TimestampAscending)
        .send()
        .await
        .unwrap();
    let stamps = ascending.metric_data_results()[0].timestamps().to_vec();
    assert!(
        stamps.len() > 1 && stamps.windows(2).all(|w| w[0] < w[1]),
        "{stamps:?}"
    );
    // Minute data is gone after 15 days: a 20-day read by the minute gets no points; by 5 minutes
    // it does.
    let points = |out: aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput| {
        out.metric_data_results()[0].values().len()
    };
    assert_eq!(points(read(60, 20).send().await.unwrap()), 0);
    assert!(points(read(300, 20).send().await.unwrap()) > 0);
}

#[tokio::test]
async fn assume_role_keeps_to_the_roles_session_limit_and_checks_external_id_and_policy() {
    let (_sb, conf) = clients().await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let member = sandbox::account_ids(2)[1].clone();
    let assume = || {
        sts.assume_role()
            .role_arn(format!("arn:aws:iam::{member}:role/ImdsConsoleMember"))
            .role_session_name("strict")
    };
    let refused = assume().duration_seconds(7_200).send().await.unwrap_err();
    assert_eq!(refused.code(), Some("ValidationError"), "{refused:?}");
    assert_eq!(
        refused.message(),
        Some("The requested DurationSeconds exceeds the MaxSessionDuration set for this role."),
        "{refused:?}"
    );
    let refused = assume().external_id("a b").send().await.unwrap_err();
    assert_eq!(refused.code(), Some("ValidationError"), "{refused:?}");
    let refused = assume().policy("not json").send().await.unwrap_err();
    assert_eq!(refused.code(), Some("MalformedPolicyDocument"), "{refused:?}");
    assume()
        .duration_seconds(3_600)
        .external_id("imds-console")
        .policy(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ec2:Describe*","Resource":"*"}]}"#)
        .send()
        .await
        .expect("within the role's limits");
}
