//! The sandbox is at least as strict as AWS's service models: the real aws-sdk clients and boto3 get
//! AWS's refusals for what AWS refuses (STS session names and durations, reserved tag keys, SSM's
//! list limits, EC2's client tokens and empty requests, CloudWatch's query IDs and periods), AWS's
//! answers for what AWS accepts (StopAutomationExecution Type=Complete, DescribeImages by owner),
//! and the calls a console may need beyond the ones it makes today (DeleteLaunchTemplateVersions,
//! DescribeLaunchConfigurations, DescribeAlarms).

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{AutomationExecutionFilter, AutomationExecutionFilterKey, Tag, Target};
use e2e::{sdk_config, standalone_sandbox};
use sandbox::{Faults, SandboxConfig};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const DOC: &str = "AWSSupport-ConfigureEC2Metadata";

fn config(accounts: usize) -> SandboxConfig {
    SandboxConfig {
        fleet_size: 20,
        speed: 600.0,
        accounts,
        ..SandboxConfig::default()
    }
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect()
}

/// A running instance of us-east-1.
async fn an_instance(url: &str) -> String {
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(url, "us-east-1", 1).await);
    let out = ec2.describe_instances().send().await.expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("running"))
        .and_then(|i| i.instance_id())
        .expect("a running instance")
        .to_owned()
}

/// The ID of the seeded launch template `name` in us-east-1.
async fn template_id(ec2: &aws_sdk_ec2::Client, name: &str) -> String {
    ec2.describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
        .expect("DescribeLaunchTemplates")
        .launch_templates()[0]
        .launch_template_id()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn sts_refuses_a_bad_session_name_and_duration() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let sts = aws_sdk_sts::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let role = format!("arn:aws:iam::{}:role/ImdsConsoleMember", sandbox::ACCOUNT_ID);
    for (session, duration) in [
        ("bad name", None),
        ("x", None),
        ("ok-session", Some(43_201)),
        ("ok-session", Some(899)),
    ] {
        let err = sts
            .assume_role()
            .role_arn(&role)
            .role_session_name(session)
            .set_duration_seconds(duration)
            .send()
            .await
            .expect_err("refused");
        assert_eq!(
            err.code(),
            Some("ValidationError"),
            "{session} {duration:?}: {err:?}"
        );
        let message = err.message().unwrap();
        let member = if duration.is_some() {
            "durationSeconds"
        } else {
            "roleSessionName"
        };
        assert!(message.contains(member), "{message}");
    }
    let ok = sts
        .assume_role()
        .role_arn(&role)
        .role_session_name("user@example.com,ops=1")
        .duration_seconds(3_600)
        .send()
        .await
        .expect("the longest session the role's MaxSessionDuration (IAM's default hour) allows");
    let expires = ok.credentials().unwrap().expiration().secs();
    let now = e2e::now_ms() as i64 / 1000;
    assert!(
        (expires - now - 3_600).abs() < 60,
        "expires in {}s",
        expires - now
    );
}

#[tokio::test]
async fn ssm_refuses_reserved_tags_long_targets_and_a_doubled_target_parameter_and_completes_on_request() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let id = an_instance(&url).await;

    let tag = Tag::builder().key("aws:owner").value("me").build().unwrap();
    let err = ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("InstanceId", &id)])))
        .tags(tag)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(err.message().unwrap().contains("tags.1.member.key"), "{err:?}");

    let many: Vec<String> = (0..51).map(|n| format!("i-0{n:016x}")).collect();
    let err = ssm
        .start_automation_execution()
        .document_name(DOC)
        .target_parameter_name("InstanceId")
        .targets(
            Target::builder()
                .key("ParameterValues")
                .set_values(Some(many))
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(
        err.message().unwrap().contains("targets.1.member.values"),
        "{err:?}"
    );

    let err = ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("InstanceId", &id)])))
        .target_parameter_name("InstanceId")
        .targets(
            Target::builder()
                .key("ParameterValues")
                .values(id.clone())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invalid_automation_execution_parameters_exception(),
        "{err:?}"
    );

    // Type=Complete is one of StopType's two values: a running execution stops, as for Cancel.
    let started = ssm
        .start_automation_execution()
        .document_name(DOC)
        .set_parameters(Some(params(&[("InstanceId", &id)])))
        .send()
        .await
        .expect("start");
    let exec = started.automation_execution_id().unwrap();
    ssm.stop_automation_execution()
        .automation_execution_id(exec)
        .r#type(aws_sdk_ssm::types::StopType::Complete)
        .send()
        .await
        .expect("Type=Complete is accepted");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ex = ssm
            .get_automation_execution()
            .automation_execution_id(exec)
            .send()
            .await
            .unwrap();
        let status = ex
            .automation_execution()
            .unwrap()
            .automation_execution_status()
            .unwrap()
            .clone();
        if status == aws_sdk_ssm::types::AutomationExecutionStatus::Cancelled {
            break;
        }
        assert!(Instant::now() < deadline, "still {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn ssm_refuses_more_than_ten_filters_and_long_filter_values() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let filter = |value: &str| {
        AutomationExecutionFilter::builder()
            .key(AutomationExecutionFilterKey::DocumentNamePrefix)
            .values(value)
            .build()
            .unwrap()
    };
    let ten: Vec<_> = (0..10).map(|_| filter("AWS")).collect();
    ssm.describe_automation_executions()
        .set_filters(Some(ten.clone()))
        .send()
        .await
        .expect("ten filters are the model's limit");
    let mut eleven = ten;
    eleven.push(filter("AWS"));
    let err = ssm
        .describe_automation_executions()
        .set_filters(Some(eleven))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    let err = ssm
        .describe_automation_executions()
        .filters(filter(&"A".repeat(151)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(err.message().unwrap().contains("150"), "{err:?}");
}

#[tokio::test]
async fn ec2_refuses_reused_and_long_client_tokens_and_empty_requests() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let web = template_id(&ec2, "web").await;
    let data = |tokens: aws_sdk_ec2::types::LaunchTemplateHttpTokensState| {
        aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
            .metadata_options(
                aws_sdk_ec2::types::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(tokens)
                    .build(),
            )
            .build()
    };
    use aws_sdk_ec2::types::LaunchTemplateHttpTokensState::{Optional, Required};
    let create = |token: String, tokens| {
        ec2.create_launch_template_version()
            .launch_template_id(&web)
            .source_version("$Default")
            .client_token(token)
            .launch_template_data(data(tokens))
            .send()
    };
    let first = create("fix-web-1".into(), Required).await.expect("created");
    let again = create("fix-web-1".into(), Required).await.expect("a retry");
    let number =
        |o: &aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput| {
            o.launch_template_version().unwrap().version_number()
        };
    assert_eq!(number(&first), number(&again));
    let err = create("fix-web-1".into(), Optional).await.unwrap_err();
    assert_eq!(err.code(), Some("IdempotentParameterMismatch"), "{err:?}");
    let err = create("t".repeat(129), Required).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameterValue"), "{err:?}");
    let err = ec2
        .create_launch_template_version()
        .launch_template_id(&web)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("MissingParameter"), "{err:?}");
    assert!(err.message().unwrap().contains("LaunchTemplateData"), "{err:?}");

    let err = ec2.modify_instance_metadata_defaults().send().await.unwrap_err();
    assert_eq!(err.code(), Some("MissingParameter"), "{err:?}");
    let unchanged = ec2.get_instance_metadata_defaults().send().await.unwrap();
    assert_eq!(unchanged.account_level().unwrap().http_tokens(), None);
}

#[tokio::test]
async fn describe_images_honours_owners_and_shows_no_other_account_s_amis() {
    let (_sb, url) = standalone_sandbox(config(2)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let hub = aws_sdk_ec2::Client::new(&conf);
    let ids = |out: aws_sdk_ec2::operation::describe_images::DescribeImagesOutput| -> Vec<String> {
        out.images()
            .iter()
            .map(|i| i.image_id().unwrap().to_owned())
            .collect()
    };
    // Its own two, and Amazon's public AMI; the vendor's shared AMI is deprecated and the account's
    // own disabled AMI is disabled, so neither is answered unless asked for, as in EC2.
    let visible = ids(hub.describe_images().send().await.unwrap());
    assert_eq!(visible.len(), 3, "{visible:?}");
    let all = ids(hub.describe_images().owners("self").send().await.unwrap());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        ids(hub
            .describe_images()
            .owners(sandbox::ACCOUNT_ID)
            .send()
            .await
            .unwrap()),
        all
    );
    let amazon = ids(hub.describe_images().owners("amazon").send().await.unwrap());
    assert_eq!(amazon.len(), 1, "{amazon:?}");
    assert!(visible.contains(&amazon[0]), "{visible:?}");
    let with_hidden = ids(hub
        .describe_images()
        .include_deprecated(true)
        .include_disabled(true)
        .send()
        .await
        .unwrap());
    assert_eq!(with_hidden.len(), 5, "{with_hidden:?}");
    let err = hub.describe_images().owners("someone").send().await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidUserID.Malformed"), "{err:?}");

    // The member account, through the role it lends the console.
    let member = sandbox::account_ids(2)[1].clone();
    let creds = aws_sdk_sts::Client::new(&conf)
        .assume_role()
        .role_arn(format!("arn:aws:iam::{member}:role/ImdsConsoleMember"))
        .role_session_name("images-test")
        .send()
        .await
        .unwrap()
        .credentials()
        .unwrap()
        .clone();
    let member_conf = conf
        .to_builder()
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                creds.access_key_id(),
                creds.secret_access_key(),
                Some(creds.session_token().to_owned()),
                None,
                "assumed",
            ),
        ))
        .build();
    let theirs = aws_sdk_ec2::Client::new(&member_conf);
    let own = ids(theirs.describe_images().owners("self").send().await.unwrap());
    assert_eq!(own.len(), 2, "{own:?}");
    assert!(own.iter().all(|i| !all.contains(i)), "{own:?} {all:?}");
    assert!(ids(theirs
        .describe_images()
        .owners(sandbox::ACCOUNT_ID)
        .send()
        .await
        .unwrap())
    .is_empty());
    let err = theirs
        .describe_images()
        .image_ids(&all[0])
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidAMIID.NotFound"), "{err:?}");
}

#[tokio::test]
async fn delete_launch_template_versions_keeps_the_default_and_lists_what_it_could_not_delete() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    // batch: versions 1 and 2, the default 2.
    let batch = template_id(&ec2, "batch").await;
    let out = ec2
        .delete_launch_template_versions()
        .launch_template_id(&batch)
        .versions("1")
        .versions("2")
        .versions("9")
        .send()
        .await
        .expect("a partial success is a success");
    let deleted: Vec<i64> = out
        .successfully_deleted_launch_template_versions()
        .iter()
        .filter_map(|v| v.version_number())
        .collect();
    assert_eq!(deleted, [1]);
    let refused: Vec<(i64, String)> = out
        .unsuccessfully_deleted_launch_template_versions()
        .iter()
        .map(|v| {
            (
                v.version_number().unwrap(),
                v.response_error().unwrap().code().unwrap().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            (2, "unexpectedError".to_owned()),
            (9, "launchTemplateVersionDoesNotExist".to_owned())
        ]
    );
    let left = ec2
        .describe_launch_template_versions()
        .launch_template_id(&batch)
        .send()
        .await
        .unwrap();
    let numbers: Vec<i64> = left
        .launch_template_versions()
        .iter()
        .filter_map(|v| v.version_number())
        .collect();
    assert_eq!(numbers, [2]);
}

#[tokio::test]
async fn cloudwatch_refuses_bad_query_ids_and_periods_and_describes_alarms() {
    let (sb, url) = standalone_sandbox(config(1)).await;
    let conf = sdk_config(&url, "us-east-1", 1).await;
    let cw = aws_sdk_cloudwatch::Client::new(&conf);
    let id = an_instance(&url).await;
    let now = std::time::SystemTime::now();
    // `period` None leaves it out, which the model does not allow (MetricStat requires it).
    let query = |qid: &str, period: Option<i32>| {
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
        cw.get_metric_data()
            .start_time(aws_smithy_types::DateTime::from(
                now - Duration::from_secs(86_400),
            ))
            .end_time(aws_smithy_types::DateTime::from(now))
            .metric_data_queries(
                MetricDataQuery::builder()
                    .id(qid)
                    .metric_stat(
                        MetricStat::builder()
                            .metric(
                                Metric::builder()
                                    .namespace("AWS/EC2")
                                    .metric_name("MetadataNoToken")
                                    .dimensions(Dimension::builder().name("InstanceId").value(&id).build())
                                    .build(),
                            )
                            .set_period(period)
                            .stat("Sum")
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    query("q_0", Some(3600)).await.expect("a well-formed query");
    for (qid, period) in [
        ("Q0", Some(3600)),
        ("0q", Some(3600)),
        ("q0", Some(61)),
        ("q0", Some(0)),
        ("q0", None),
    ] {
        let err = query(qid, period).await.unwrap_err();
        assert_eq!(err.code(), Some("ValidationError"), "{qid} {period:?}: {err:?}");
    }

    sb.set_faults(Faults {
        alarms_in_alarm: ["imds-v1-calls".to_owned()].into(),
        ..Faults::default()
    });
    let out = cw
        .describe_alarms()
        .alarm_names("imds-v1-calls")
        .alarm_names("no-such-alarm")
        .send()
        .await
        .expect("DescribeAlarms");
    let alarms: Vec<(&str, &str)> = out
        .metric_alarms()
        .iter()
        .map(|a| (a.alarm_name().unwrap(), a.state_value().unwrap().as_str()))
        .collect();
    assert_eq!(alarms, [("imds-v1-calls", "ALARM")]);
    let ok = cw
        .describe_alarms()
        .state_value(aws_sdk_cloudwatch::types::StateValue::Ok)
        .send()
        .await
        .unwrap();
    assert!(ok.metric_alarms().is_empty());
}

#[tokio::test]
async fn auto_scaling_describes_the_launch_configuration_of_a_legacy_group() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    let asg = aws_sdk_autoscaling::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let group = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("legacy-asg")
        .send()
        .await
        .unwrap();
    let lc = group.auto_scaling_groups()[0]
        .launch_configuration_name()
        .expect("the group launches from a launch configuration")
        .to_owned();
    let out = asg
        .describe_launch_configurations()
        .launch_configuration_names(&lc)
        .send()
        .await
        .expect("DescribeLaunchConfigurations");
    let config = &out.launch_configurations()[0];
    assert_eq!(config.launch_configuration_name(), Some(lc.as_str()));
    let md = config.metadata_options().expect("MetadataOptions");
    assert_eq!(md.http_tokens().unwrap().as_str(), "optional");
    assert_eq!(md.http_put_response_hop_limit(), Some(1));
    assert_eq!(md.http_endpoint().unwrap().as_str(), "enabled");
    let none = asg
        .describe_launch_configurations()
        .launch_configuration_names("no-such-config")
        .send()
        .await
        .unwrap();
    assert!(none.launch_configurations().is_empty());
}

/// What boto3 sends and how it reads the answers back: the refusals above as botocore raises them,
/// and the new calls parsed by botocore's own models.
const BOTO3: &str = r#"
import json, os, sys
try:
    import boto3
    from botocore.exceptions import ClientError
except ImportError:
    sys.exit("boto3 is missing: ./x.sh test installs it (pip install boto3)")
kw = dict(endpoint_url=os.environ["SANDBOX"], region_name="us-east-1",
          aws_access_key_id="AKIDBOTO3", aws_secret_access_key="secret")
ssm, ec2, sts = boto3.client("ssm", **kw), boto3.client("ec2", **kw), boto3.client("sts", **kw)
cw, asg = boto3.client("cloudwatch", **kw), boto3.client("autoscaling", **kw)
instance = os.environ["INSTANCE"]
out = {}
def code(name, call):
    try:
        call()
        out[name] = "accepted"
    except ClientError as e:
        out[name] = e.response["Error"]["Code"]
code("session_name", lambda: sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/ImdsConsoleMember", RoleSessionName="bad name"))
code("duration", lambda: sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/ImdsConsoleMember", RoleSessionName="ok", DurationSeconds=43201))
code("aws_tag", lambda: ssm.start_automation_execution(DocumentName="AWSSupport-ConfigureEC2Metadata",
     Parameters={"InstanceId": [instance]}, Tags=[{"Key": "aws:team", "Value": "x"}]))
code("filters", lambda: ssm.describe_automation_executions(
     Filters=[{"Key": "DocumentNamePrefix", "Values": ["AWS"]}] * 11))
code("period", lambda: cw.get_metric_data(StartTime=0, EndTime=86400, MetricDataQueries=[{"Id": "q0",
     "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
     "Dimensions": [{"Name": "InstanceId", "Value": instance}]}, "Period": 61, "Stat": "Sum"}}]))
code("query_id", lambda: cw.get_metric_data(StartTime=0, EndTime=86400, MetricDataQueries=[{"Id": "Q0",
     "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "MetadataNoToken",
     "Dimensions": [{"Name": "InstanceId", "Value": instance}]}, "Period": 60, "Stat": "Sum"}}]))
code("empty_defaults", lambda: ec2.modify_instance_metadata_defaults())
code("owner", lambda: ec2.describe_images(Owners=["someone"]))
run = ssm.start_automation_execution(DocumentName="AWSSupport-ConfigureEC2Metadata",
      Parameters={"InstanceId": [instance]})["AutomationExecutionId"]
code("stop_complete", lambda: ssm.stop_automation_execution(AutomationExecutionId=run, Type="Complete"))
batch = ec2.describe_launch_templates(LaunchTemplateNames=["batch"])["LaunchTemplates"][0]["LaunchTemplateId"]
deleted = ec2.delete_launch_template_versions(LaunchTemplateId=batch, Versions=["1", "2"])
out["deleted"] = [v["VersionNumber"] for v in deleted["SuccessfullyDeletedLaunchTemplateVersions"]]
out["kept"] = [[v["VersionNumber"], v["ResponseError"]["Code"]] for v in deleted["UnsuccessfullyDeletedLaunchTemplateVersions"]]
out["own_images"] = len(ec2.describe_images(Owners=["self"])["Images"])
out["with_hidden"] = len(ec2.describe_images(IncludeDeprecated=True, IncludeDisabled=True)["Images"])
ssm_lt = ec2.describe_launch_templates(LaunchTemplateNames=["al2023-ssm"])["LaunchTemplates"][0]["LaunchTemplateId"]
out["alias"] = [ec2.describe_launch_template_versions(LaunchTemplateId=ssm_lt, Versions=["$Default"], ResolveAlias=r)
    ["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"] for r in (False, True)]
out["alias"] = ["resolve" if i.startswith("resolve:ssm:/aws/service/") else i[:4] for i in out["alias"]]
managed = ec2.describe_launch_templates(LaunchTemplateNames=["ecs-managed-capacity"])["LaunchTemplates"][0]
out["operator"] = managed["Operator"]
sfr = ec2.describe_spot_fleet_requests()["SpotFleetRequestConfigs"]
out["spot"] = [[c["LaunchTemplateSpecification"]["Version"] for c in f["SpotFleetRequestConfig"]["LaunchTemplateConfigs"]]
    + [s["ImageId"][:4] for s in f["SpotFleetRequestConfig"]["LaunchSpecifications"]] for f in sfr]
mixed = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["mixed-asg"])["AutoScalingGroups"][0]
out["mixed"] = [o["LaunchTemplateSpecification"]["Version"] for o in mixed["MixedInstancesPolicy"]["LaunchTemplate"]["Overrides"]
    if "LaunchTemplateSpecification" in o]
lcs = asg.describe_launch_configurations()["LaunchConfigurations"]
out["launch_configs"] = [[c["LaunchConfigurationName"], c["MetadataOptions"]["HttpTokens"]] for c in lcs]
alarms = cw.describe_alarms(AlarmNames=["imds-v1-calls"])["MetricAlarms"]
out["alarms"] = [[a["AlarmName"], a["StateValue"]] for a in alarms]
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_gets_aws_s_refusals_and_reads_the_new_calls_back() {
    let (sb, url) = standalone_sandbox(config(1)).await;
    sb.set_faults(Faults {
        alarms_in_alarm: ["imds-v1-calls".to_owned()].into(),
        ..Faults::default()
    });
    let instance = an_instance(&url).await;
    // On a blocking thread: the sandbox answers boto3 from this test's runtime meanwhile.
    let sandbox_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args(["-c", BOTO3])
            .env("SANDBOX", &sandbox_url)
            .env("INSTANCE", &instance)
            .output()
            .expect("python3 runs")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (call, code) in [
        ("session_name", "ValidationError"),
        ("duration", "ValidationError"),
        ("aws_tag", "ValidationException"),
        ("filters", "ValidationException"),
        ("period", "ValidationError"),
        ("query_id", "ValidationError"),
        ("empty_defaults", "MissingParameter"),
        ("owner", "InvalidUserID.Malformed"),
        ("stop_complete", "accepted"),
    ] {
        assert_eq!(read[call], code, "{call}: {read}");
    }
    assert_eq!(read["deleted"], serde_json::json!([1]), "{read}");
    assert_eq!(
        read["kept"],
        serde_json::json!([[2, "unexpectedError"]]),
        "{read}"
    );
    assert_eq!(read["own_images"], 2, "{read}");
    assert_eq!(read["with_hidden"], 5, "{read}");
    assert_eq!(read["alias"], serde_json::json!(["resolve", "ami-"]), "{read}");
    assert_eq!(
        read["operator"],
        serde_json::json!({"Managed": true, "Principal": "ecs.amazonaws.com"}),
        "{read}"
    );
    assert_eq!(read["spot"], serde_json::json!([["$Latest", "ami-"]]), "{read}");
    assert_eq!(read["mixed"], serde_json::json!(["$Default"]), "{read}");
    assert_eq!(
        read["launch_configs"],
        serde_json::json!([["legacy-lc", "optional"], ["imdsv2-lc", "required"]]),
        "{read}"
    );
    assert_eq!(
        read["alarms"],
        serde_json::json!([["imds-v1-calls", "ALARM"]]),
        "{read}"
    );
}

#[tokio::test]
async fn ec2_throttles_each_action_per_account_and_region_with_its_token_bucket() {
    let (_sb, url) = standalone_sandbox(config(2)).await;
    // One attempt a call: the SDK's retries would hide the refusal.
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "us-east-1", 1).await);
    let mut refused = None;
    let mut answered = 0;
    let began = std::time::Instant::now();
    for _ in 0..1_000 {
        match ec2.describe_instances().max_results(5).send().await {
            Ok(_) => answered += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    // The bucket holds 100 and refills at 20 a second: a loop of local calls answers the 100 and
    // what refilled while it ran (more on a loaded machine, where each call takes longer).
    let refilled = (began.elapsed().as_secs_f64() * 20.0).ceil() as usize;
    assert!(
        (100..=101 + refilled).contains(&answered),
        "the bucket of 100 answers 100 calls and its refill of {refilled}, got {answered}"
    );
    let err = refused.expect("a call past the bucket is refused");
    assert_eq!(err.code(), Some("RequestLimitExceeded"));
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "EC2 answers RequestLimitExceeded with HTTP 503"
    );
    // Another action has its own bucket, and so does another Region.
    ec2.describe_launch_templates()
        .send()
        .await
        .expect("DescribeLaunchTemplates draws from its own bucket");
    let west = aws_sdk_ec2::Client::new(&sdk_config(&url, "eu-west-1", 1).await);
    west.describe_instances()
        .max_results(5)
        .send()
        .await
        .expect("eu-west-1 has its own bucket");
    // The bucket refills at 20 a second.
    tokio::time::sleep(Duration::from_millis(300)).await;
    ec2.describe_instances()
        .max_results(5)
        .send()
        .await
        .expect("a refilled token");
    // Tests can turn it off.
    _sb.set_faults(Faults {
        ec2_request_budget: sandbox::Ec2RequestBudget {
            enabled: false,
            ..Default::default()
        },
        ..Faults::default()
    });
    for _ in 0..150 {
        ec2.describe_instances()
            .max_results(5)
            .send()
            .await
            .expect("no budget when it is off");
    }
}

#[tokio::test]
async fn a_region_the_account_has_not_enabled_refuses_the_credentials() {
    let (_sb, url) = standalone_sandbox(config(1)).await;
    // An opt-in Region never enabled, and a Region of another partition.
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "af-south-1", 1).await);
    let err = ec2.describe_instances().send().await.unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure"), "{err:?}");
    let ssm = aws_sdk_ssm::Client::new(&sdk_config(&url, "cn-north-1", 1).await);
    let err = ssm.describe_automation_executions().send().await.unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
    // The Regions it serves answer; IAM, a global service, answers wherever it is signed.
    let ec2 = aws_sdk_ec2::Client::new(&sdk_config(&url, "eu-west-1", 1).await);
    ec2.describe_instances().send().await.expect("an enabled Region");
}
