//! EC2, CloudWatch and STS in the sandbox are at least as strict as AWS's models, through the real
//! aws-sdk clients: launch template versions leave out members never set, GetMetricData refuses
//! duplicate IDs, unknown statistics and too many dimensions, deprecated AMIs are found by ID, AMI
//! IDs have AWS's lengths, and STS bounds AssumeRole's policies and role ARN.

use e2e::{sdk_config, standalone_sandbox};
use sandbox::SandboxConfig;

fn config(accounts: usize) -> SandboxConfig {
    SandboxConfig {
        fleet_size: 20,
        speed: 600.0,
        accounts,
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn a_version_made_from_nothing_describes_no_image_or_instance_type() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let template = ec2
        .describe_launch_templates()
        .launch_template_names("batch")
        .send()
        .await
        .unwrap()
        .launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_owned();
    let created = ec2
        .create_launch_template_version()
        .launch_template_id(&template)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .metadata_options(
                    aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                        .http_tokens(aws_sdk_ec2::types::LaunchTemplateHttpTokensState::Required)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let number = created
        .launch_template_version()
        .unwrap()
        .version_number()
        .unwrap();
    let described = ec2
        .describe_launch_template_versions()
        .launch_template_id(&template)
        .versions(number.to_string())
        .send()
        .await
        .unwrap();
    let data = described.launch_template_versions()[0]
        .launch_template_data()
        .unwrap();
    assert_eq!(data.image_id(), None, "{data:?}");
    assert_eq!(data.instance_type(), None, "{data:?}");
    assert!(data.metadata_options().is_some(), "{data:?}");
}

#[tokio::test]
async fn get_metric_data_refuses_shared_ids_unknown_statistics_and_thirty_one_dimensions() {
    use aws_sdk_cloudwatch::error::ProvideErrorMetadata;
    use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let cw = aws_sdk_cloudwatch::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let query = |id: &str, stat: &str, dimensions: usize| {
        let mut metric = Metric::builder()
            .namespace("AWS/EC2")
            .metric_name("MetadataNoToken");
        for n in 0..dimensions {
            metric = metric.dimensions(
                Dimension::builder()
                    .name(if n == 0 {
                        "InstanceId".to_owned()
                    } else {
                        format!("Extra{n}")
                    })
                    .value("i-0123456789abcdef0")
                    .build(),
            );
        }
        MetricDataQuery::builder()
            .id(id)
            .metric_stat(
                MetricStat::builder()
                    .metric(metric.build())
                    .period(3600)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let send = |queries: Vec<MetricDataQuery>| {
        cw.get_metric_data()
            .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(0))
            .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(86_400))
            .set_metric_data_queries(Some(queries))
            .send()
    };
    for stat in [
        "Sum",
        "SampleCount",
        "p99",
        "p99.9",
        "tm90",
        "TM(10%:90%)",
        "PR(:300)",
    ] {
        send(vec![query("q0", stat, 30)])
            .await
            .unwrap_or_else(|e| panic!("{stat} is a statistic: {e:?}"));
    }
    for (what, queries) in [
        ("shared Id", vec![query("q0", "Sum", 1), query("q0", "Sum", 1)]),
        ("unknown statistic", vec![query("q0", "Bogus", 1)]),
        ("31 dimensions", vec![query("q0", "Sum", 31)]),
    ] {
        let err = send(queries).await.expect_err(what);
        assert_eq!(err.code(), Some("ValidationError"), "{what}: {err:?}");
    }
}

#[tokio::test]
async fn another_owner_s_deprecated_ami_is_found_by_its_id() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let all = ec2
        .describe_images()
        .include_deprecated(true)
        .send()
        .await
        .unwrap();
    let deprecated = all
        .images()
        .iter()
        .find(|i| i.deprecation_time().is_some() && i.owner_id() != Some(sandbox::ACCOUNT_ID))
        .and_then(|i| i.image_id())
        .expect("the vendor's deprecated AMI")
        .to_owned();
    let listed = ec2.describe_images().send().await.unwrap();
    assert!(
        !listed
            .images()
            .iter()
            .any(|i| i.image_id() == Some(deprecated.as_str())),
        "hidden from a plain listing: {listed:?}"
    );
    let by_id = ec2
        .describe_images()
        .image_ids(&deprecated)
        .send()
        .await
        .expect("found by its ID");
    assert_eq!(
        by_id
            .images()
            .iter()
            .filter_map(|i| i.image_id())
            .collect::<Vec<_>>(),
        vec![deprecated.as_str()]
    );
}

#[tokio::test]
async fn ami_ids_have_eight_or_seventeen_hex_digits() {
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let all = ec2
        .describe_images()
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await
        .unwrap();
    assert!(!all.images().is_empty());
    for image in all.images() {
        let id = image.image_id().unwrap();
        let digits = id.strip_prefix("ami-").expect("ami- prefix");
        assert!(
            digits.len() == 17 && digits.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    for (id, code) in [
        ("ami-03eed400f4132", "InvalidAMIID.Malformed"),
        ("ami-0123456789abcdef", "InvalidAMIID.Malformed"),
        ("ami-1234567", "InvalidAMIID.Malformed"),
        ("ami-12345678", "InvalidAMIID.NotFound"),
        ("ami-0123456789abcdef0", "InvalidAMIID.NotFound"),
    ] {
        let err = ec2.describe_images().image_ids(id).send().await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{id}: {err:?}");
    }
}

#[tokio::test]
async fn sts_bounds_assume_role_and_its_caller_s_arn_agrees_with_its_account() {
    use aws_sdk_sts::error::ProvideErrorMetadata;
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let sts = aws_sdk_sts::Client::new(&conf);
    let member = sandbox::account_ids(2)[1].clone();
    let role = format!("arn:aws:iam::{member}:role/ImdsConsoleMember");
    let policy = |n: usize| {
        aws_sdk_sts::types::PolicyDescriptorType::builder()
            .arn(format!("arn:aws:iam::aws:policy/Policy{n}"))
            .build()
    };
    let assume = |arn: String, policies: usize| {
        sts.assume_role()
            .role_arn(arn)
            .role_session_name("bounds")
            .set_policy_arns(Some((0..policies).map(policy).collect()))
            .send()
    };
    assume(role.clone(), 10).await.expect("ten policies");
    let err = assume(role.clone(), 11).await.expect_err("eleven");
    assert_eq!(err.code(), Some("ValidationError"), "{err:?}");
    let long = format!(
        "arn:aws:iam::{member}:role/{}ImdsConsoleMember",
        "p/".repeat(1010)
    );
    assert!(long.len() > 2048);
    let err = assume(long, 0).await.expect_err("a RoleArn over 2048");
    assert_eq!(err.code(), Some("ValidationError"), "{err:?}");

    // A temporary key acts in its account, and GetCallerIdentity's ARN says the same account;
    // without its session token the key is refused, as AWS refuses it.
    let as_key = |token: Option<&str>| {
        aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&conf)
                .credentials_provider(aws_credential_types::Credentials::from_keys(
                    format!("ASIA{member}TEST"),
                    "test-secret",
                    token.map(str::to_owned),
                ))
                .build(),
        )
    };
    let me = as_key(Some("token")).get_caller_identity().send().await.unwrap();
    assert_eq!(me.account(), Some(member.as_str()));
    assert!(
        me.arn()
            .is_some_and(|a| a.starts_with(&format!("arn:aws:sts::{member}:"))),
        "{me:?}"
    );
    let err = as_key(None)
        .get_caller_identity()
        .send()
        .await
        .expect_err("no session token");
    assert_eq!(err.code(), Some("InvalidClientTokenId"), "{err:?}");
}
