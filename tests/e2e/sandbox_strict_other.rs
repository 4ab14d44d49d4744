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
