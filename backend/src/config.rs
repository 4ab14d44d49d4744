//! The command line: `imds-console serve` (the console) and `imds-console sandbox` (the AWS emulator).
//! Every flag can also come from an `IMDS_CONSOLE_*` environment variable, or from the `--config`
//! file (`config_file`).

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "imds-console", version, about = "Move an EC2 fleet to IMDSv2 safely.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written: text for people, json (one object per line, with the request ID)
    /// for a log pipeline.
    #[arg(long, global = true, env = "IMDS_CONSOLE_LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,
    /// A TOML file of settings: the command's long flags as keys (`listen = "0.0.0.0:8080"`,
    /// `region = ["us-east-1"]`, `aws = true`). The command line wins over the environment
    /// (`IMDS_CONSOLE_*`), which wins over the file.
    #[arg(long, global = true, env = "IMDS_CONSOLE_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the console (sandbox mode unless --aws).
    Serve(Box<ServeArgs>),
    /// Run the AWS emulator on its own, for the AWS CLI, boto3 or a console started with --sandbox-url.
    Sandbox(SandboxArgs),
    /// Manage built-in accounts (works while the server runs).
    User(UserArgs),
    /// Manage API tokens for scripts (works while the server runs).
    Token(TokenArgs),
    /// Check that the console's AWS identity (and an AutomationAssumeRole) may do every action the
    /// console and the runbook need; exits non-zero on a denial. Takes serve's flags (--aws or
    /// --sandbox-url, --region, timeouts).
    Doctor(Box<DoctorArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The AutomationAssumeRole runs will use, to check its permissions too.
    #[arg(long)]
    pub assume_role: Option<String>,
    /// Also check what runs across accounts need (on by itself with --organization,
    /// --organizational-unit or member accounts): iam:PassRole on the hub's
    /// AWS-SystemsManager-AutomationAdministrationRole, and that role's sts:AssumeRole on the
    /// execution roles.
    #[arg(long)]
    pub across_accounts: bool,
}

#[derive(Debug, Clone, Args)]
pub struct UserArgs {
    #[command(subcommand)]
    pub action: UserAction,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where the store is, for the commands that change it beside a running console (`user`, `token`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The console's data directory (as given to `serve`).
    #[arg(long, env = "IMDS_CONSOLE_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// The console's PostgreSQL database (as given to `serve`).
    #[arg(
        long,
        env = "IMDS_CONSOLE_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    #[arg(long, env = "IMDS_CONSOLE_DATABASE_CA_FILE", global = true)]
    pub database_ca_file: Option<PathBuf>,
}

impl StoreArgs {
    pub async fn open(&self) -> Result<crate::store::Store, String> {
        crate::store::Store::open_at(crate::store::Location::of(
            &self.data_dir,
            self.database_url.as_deref(),
            self.database_ca_file.as_deref(),
        )?)
        .await
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserAction {
    /// Add a user; the password is read from a prompt, or from stdin when it is not a terminal.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role)]
        role: shared::api::Role,
        /// Limit the user to these accounts (comma-separated IDs); every account when absent.
        #[arg(long, value_delimiter = ',')]
        accounts: Vec<String>,
    },
    /// Limit a user to accounts (comma-separated IDs), or `all` for every account.
    Accounts { name: String, accounts: String },
    /// List users.
    List,
    /// Disable a user (ends their sessions; their tokens stop working). The last enabled admin stays.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Change a user's role (ends their sessions). The last enabled admin stays admin.
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: shared::api::Role,
    },
    /// Set a new password (prompt or stdin); ends the user's sessions.
    Passwd { name: String },
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub action: TokenAction,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (it is shown only this once).
    Create {
        #[arg(long)]
        user: String,
        /// At most the user's role; defaults to it.
        #[arg(long, value_parser = parse_role)]
        role: Option<shared::api::Role>,
        /// What the token is for, such as "CI pipeline".
        #[arg(long)]
        name: Option<String>,
        /// Days until it stops working (1 to 365); without it, it lasts until revoked.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never the secrets).
    List,
    /// Revoke a token by its ID.
    Revoke { id: i64 },
}

/// A Region's name as AWS writes them (`us-east-1`, `us-gov-west-1`, `eusc-de-east-1`): words of
/// lower-case letters and a number last. A typo (`eu-west-l`) is refused here, not found later as a
/// Region that answers nothing.
fn parse_region(raw: &str) -> Result<String, String> {
    let parts: Vec<&str> = raw.split('-').collect();
    let (number, words) = parts.split_last().unwrap_or((&"", &[]));
    let fits = words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit());
    if fits {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "\"{raw}\" is not a Region name (like us-east-1 or eu-west-1)"
        ))
    }
}

fn parse_role(raw: &str) -> Result<shared::api::Role, String> {
    shared::api::Role::parse(raw)
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "IMDS_CONSOLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the console keeps its store (and the embedded sandbox its state).
    #[arg(long, env = "IMDS_CONSOLE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Keep the store in PostgreSQL instead of the data directory's SQLite file
    /// (postgres://user:password@host:5432/database): several consoles can then share it. Prefer the
    /// environment variable or the config file, which other users cannot read in the process list.
    #[arg(long, env = "IMDS_CONSOLE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PEM certificates that sign the database server's certificate (a managed database's CA bundle)
    /// for a `--database-url` with `sslmode=require`; without it, the system's roots.
    #[arg(long, env = "IMDS_CONSOLE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,
    /// Use real AWS (standard credential chain; AWS_ENDPOINT_URL honoured) instead of the sandbox.
    #[arg(long, env = "IMDS_CONSOLE_AWS")]
    pub aws: bool,
    /// Regions to manage (repeat the flag). Default: the sandbox's regions, or the SDK's region with --aws.
    #[arg(long = "region", env = "IMDS_CONSOLE_REGIONS", value_delimiter = ',', value_parser = parse_region)]
    pub regions: Vec<String>,
    /// Member accounts to manage besides the console's own (repeat the flag, or separate with commas).
    #[arg(long = "account", env = "IMDS_CONSOLE_ACCOUNTS", value_delimiter = ',')]
    pub named_accounts: Vec<String>,
    /// A file of member account IDs, one per line (`#` starts a comment), for long lists.
    #[arg(long, env = "IMDS_CONSOLE_ACCOUNTS_FILE")]
    pub accounts_file: Option<PathBuf>,
    /// List the member accounts from AWS Organizations (the console runs in the management account or
    /// a delegated administrator). On by default with an embedded sandbox of several accounts.
    #[arg(long, env = "IMDS_CONSOLE_ORGANIZATION")]
    pub organization: bool,
    /// Member accounts under these organizational units or roots (repeat the flag), their child units'
    /// included, listed with Organizations' ListAccountsForParent and ListOrganizationalUnitsForParent.
    #[arg(
        long = "organizational-unit",
        env = "IMDS_CONSOLE_ORGANIZATIONAL_UNITS",
        value_delimiter = ','
    )]
    pub organizational_units: Vec<String>,
    /// The role the console assumes in each member account (read-only suffices for the inventory).
    #[arg(long, env = "IMDS_CONSOLE_MEMBER_ROLE", default_value = "ImdsConsoleMember")]
    pub member_role: String,
    /// Use an already running sandbox (`imds-console sandbox`) at this URL instead of an embedded one.
    #[arg(long, env = "IMDS_CONSOLE_SANDBOX_URL", conflicts_with = "aws")]
    pub sandbox_url: Option<String>,
    /// The built frontend (frontend/dist: index.html, main-<hash>.js, pkg-<hash>/). Optional for a
    /// binary built with the frontend inside (`./x.sh release`), which serves its own.
    #[arg(long, env = "IMDS_CONSOLE_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// SSM Get/Describe calls per second the watcher may make, per region.
    #[arg(long, env = "IMDS_CONSOLE_SSM_READ_RATE", default_value_t = 3.0)]
    pub ssm_read_rate: f64,
    /// SSM StartAutomationExecution calls per second, per region.
    #[arg(long, env = "IMDS_CONSOLE_SSM_START_RATE", default_value_t = 1.0)]
    pub ssm_start_rate: f64,
    /// EC2 DescribeInstances calls per second, per account and region, for the inventory's reads and
    /// the starts' target checks together, with a burst of five seconds' worth. EC2's own bucket
    /// refills at 20 a second (the developer guide's example); the default keeps a fifth of it for
    /// whatever else calls EC2 in the account.
    #[arg(long, env = "IMDS_CONSOLE_EC2_DESCRIBE_RATE", default_value_t = 16.0,
          value_parser = positive_rate)]
    pub ec2_describe_rate: f64,
    /// How long (seconds) a start whose outcome SSM left unclear waits before it is sent again when
    /// SSM does not list it: SSM's lists are eventually consistent, and a start it was still taking
    /// must not run twice.
    #[arg(long, env = "IMDS_CONSOLE_UNCLEAR_START_WAIT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub unclear_start_wait_secs: u64,
    /// How long (minutes) a queued or unclear start may wait to be sent. Older, it is not sent (its
    /// readiness check is stale, and whoever asked may have moved on): it is marked refused, to be
    /// started again.
    #[arg(long, env = "IMDS_CONSOLE_START_EXPIRY_MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=10080))]
    pub start_expiry_minutes: u64,
    /// How often in-flight runs are polled, in milliseconds.
    #[arg(long, env = "IMDS_CONSOLE_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,
    /// Sign-on proxy address whose identity headers are trusted (repeat). Off unless given.
    #[arg(
        long = "trusted-proxy",
        env = "IMDS_CONSOLE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Header carrying the user from the sign-on proxy (oauth2-proxy: X-Forwarded-User).
    #[arg(
        long,
        env = "IMDS_CONSOLE_SSO_USER_HEADER",
        default_value = "x-forwarded-user"
    )]
    pub sso_user_header: String,
    /// Header carrying the user's groups, comma-separated (oauth2-proxy: X-Forwarded-Groups).
    #[arg(
        long,
        env = "IMDS_CONSOLE_SSO_GROUPS_HEADER",
        default_value = "x-forwarded-groups"
    )]
    pub sso_groups_header: String,
    /// GROUP=ROLE: members of GROUP get ROLE (repeat); a user gets the highest of their groups.
    #[arg(
        long = "sso-group-role",
        env = "IMDS_CONSOLE_SSO_GROUP_ROLES",
        value_delimiter = ','
    )]
    pub sso_group_roles: Vec<String>,
    /// Trust an AWS ALB's OIDC token (x-amzn-oidc-data) signed by this load balancer ARN.
    #[arg(long, env = "IMDS_CONSOLE_ALB_ARN", requires = "alb_key_dir")]
    pub alb_arn: Option<String>,
    /// Directory of the ALB's public keys (PEM, one file per key ID, from public-keys.auth.elb.REGION.amazonaws.com).
    #[arg(long, env = "IMDS_CONSOLE_ALB_KEY_DIR", requires = "alb_arn")]
    pub alb_key_dir: Option<PathBuf>,
    /// The token claim naming the user.
    #[arg(long, env = "IMDS_CONSOLE_ALB_USER_CLAIM", default_value = "email")]
    pub alb_user_claim: String,
    /// The token claim listing the user's groups.
    #[arg(long, env = "IMDS_CONSOLE_ALB_GROUPS_CLAIM", default_value = "groups")]
    pub alb_groups_claim: String,
    /// Hours a sign-in session lasts.
    #[arg(long, env = "IMDS_CONSOLE_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u64,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key. Cookies are then Secure.
    #[arg(long, env = "IMDS_CONSOLE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "IMDS_CONSOLE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The header in which a trusted proxy names the client's address (its last entry is used).
    #[arg(
        long,
        env = "IMDS_CONSOLE_CLIENT_IP_HEADER",
        default_value = "x-forwarded-for"
    )]
    pub client_ip_header: String,
    /// The console's public origin as browsers see it (https://imds.example.com); state-changing
    /// requests must come from it. Default: the scheme served and the Host asked for.
    #[arg(long, env = "IMDS_CONSOLE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Seconds to wait for a connection to AWS (or the proxy).
    #[arg(long, env = "IMDS_CONSOLE_AWS_CONNECT_TIMEOUT", default_value_t = 5.0)]
    pub aws_connect_timeout: f64,
    /// Seconds to wait for AWS to start answering a request.
    #[arg(long, env = "IMDS_CONSOLE_AWS_READ_TIMEOUT", default_value_t = 20.0)]
    pub aws_read_timeout: f64,
    /// Seconds one AWS call may take in all, retries included (one attempt gets half).
    #[arg(long, env = "IMDS_CONSOLE_AWS_OPERATION_TIMEOUT", default_value_t = 60.0)]
    pub aws_operation_timeout: f64,
    /// Create the first admin (password in DATA_DIR/first-admin-password) even though single sign-on is
    /// configured; without SSO the first start always creates it.
    #[arg(long, env = "IMDS_CONSOLE_BOOTSTRAP_ADMIN")]
    pub bootstrap_admin: bool,
    /// Mark session cookies Secure (set this when a TLS proxy serves the console).
    #[arg(long, env = "IMDS_CONSOLE_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// How often (seconds) SSM is asked for runs of the runbook started outside the console.
    #[arg(long, env = "IMDS_CONSOLE_DISCOVER_SECS", default_value_t = 30)]
    pub discover_secs: u64,
    /// Addresses that may read `/metrics` without a token (repeat or comma-separate; the client
    /// address as the trusted proxy names it).
    #[arg(long, env = "IMDS_CONSOLE_METRICS_ALLOW", value_delimiter = ',')]
    pub metrics_allow: Vec<std::net::IpAddr>,
    /// A bearer token that may read `/metrics` from anywhere (at least 16 characters). Its value from
    /// the environment is never printed in --help.
    #[arg(long, env = "IMDS_CONSOLE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Private networks webhooks may reach (an address or CIDR such as 10.20.0.0/16; repeat or
    /// comma-separate). Without it, webhooks go to public addresses only: never loopback,
    /// link-local (the instance metadata service), private or multicast ones.
    #[arg(long, env = "IMDS_CONSOLE_WEBHOOK_ALLOW", value_delimiter = ',', value_parser = parse_network)]
    pub webhook_allow: Vec<ipnet::IpNet>,
    /// How long (seconds) the fleet inventory is served before it is read again in the background.
    #[arg(long, env = "IMDS_CONSOLE_FLEET_REFRESH_SECS", default_value_t = 15)]
    pub fleet_refresh_secs: u64,
    /// Days an API token lives when its maker gives no lifetime (1 to 365).
    #[arg(long, env = "IMDS_CONSOLE_TOKEN_DAYS", default_value_t = DEFAULT_TOKEN_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=365))]
    pub token_days: u32,
    /// How many days of IMDSv1 usage (CloudWatch MetadataNoToken) to check before enforcing.
    #[arg(long, env = "IMDS_CONSOLE_IMDSV1_WINDOW_DAYS", default_value_t = 14)]
    pub imdsv1_window_days: u32,
    /// Check the configuration (flags, environment, --config file, and the files they name) and exit
    /// without starting: 0 and a summary when it is usable, 1 and every problem when not.
    #[arg(long)]
    pub check_config: bool,
    #[command(flatten)]
    pub sandbox: SandboxOptions,
}

/// How the embedded or standalone sandbox behaves.
#[derive(Debug, Clone, Args)]
pub struct SandboxOptions {
    /// Instances in the demo fleet.
    #[arg(
        long = "sandbox-fleet",
        env = "IMDS_CONSOLE_SANDBOX_FLEET",
        default_value_t = 40
    )]
    pub fleet: usize,
    /// Accounts of the sandbox's organisation (the fleet is spread over them); the first is the
    /// management account the console runs in.
    #[arg(
        long = "sandbox-accounts",
        env = "IMDS_CONSOLE_SANDBOX_ACCOUNTS",
        default_value_t = 3,
        value_parser = clap::value_parser!(u16).range(1..=1000)
    )]
    pub accounts: u16,
    /// The AWS partition the sandbox plays (aws, aws-us-gov, aws-cn, ...): its ARNs, and the only
    /// partition whose role ARNs it accepts.
    #[arg(long = "sandbox-partition", env = "IMDS_CONSOLE_SANDBOX_PARTITION", default_value = "aws",
          value_parser = ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b", "aws-iso-e", "aws-iso-f", "aws-eusc"])]
    pub partition: String,
    /// Seed of the demo fleet.
    #[arg(long = "sandbox-seed", env = "IMDS_CONSOLE_SANDBOX_SEED", default_value_t = 7)]
    pub seed: u64,
    /// Time factor: 1 is real time; the default runs a 30-second sleep in one second. Rollout plans'
    /// bake times run at this speed against a sandbox (embedded or --sandbox-url), in real time on AWS.
    #[arg(
        long = "sandbox-speed",
        env = "IMDS_CONSOLE_SANDBOX_SPEED",
        default_value_t = 30.0
    )]
    pub speed: f64,
    /// Fault rule OPERATION:key=value,... (throttle, error_500, latency_ms), e.g. ssm:*:throttle=0.2.
    #[arg(long = "sandbox-fault")]
    pub faults: Vec<String>,
    /// IAM action the sandbox refuses with AccessDenied, e.g. ssm:StartAutomationExecution.
    #[arg(long = "sandbox-deny")]
    pub deny: Vec<String>,
    /// Instance whose metadata changes never take, so the runbook's asserts fail.
    #[arg(long = "sandbox-broken-instance")]
    pub broken_instances: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Address to listen on (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    /// Keep the sandbox's state here across restarts.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Regions of the demo fleet.
    #[arg(long = "region", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    #[command(flatten)]
    pub sandbox: SandboxOptions,
}

impl ServeArgs {
    /// The AWS call timeouts these flags set.
    pub fn aws_timeouts(&self) -> crate::aws::Timeouts {
        let secs = |s: f64| std::time::Duration::from_secs_f64(s.clamp(0.1, 3600.0));
        crate::aws::Timeouts {
            connect: secs(self.aws_connect_timeout),
            read: secs(self.aws_read_timeout),
            attempt: secs(self.aws_operation_timeout / 2.0),
            operation: secs(self.aws_operation_timeout),
        }
    }

    /// The member accounts named by --account and --accounts-file, checked.
    pub fn member_accounts(&self) -> Result<Vec<String>, String> {
        let mut ids = self.named_accounts.clone();
        if let Some(path) = &self.accounts_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--accounts-file {}: {e}", path.display()))?;
            ids.extend(
                text.lines()
                    .map(|l| l.split('#').next().unwrap_or_default().trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
        }
        for id in &ids {
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("account \"{id}\" is not an AWS account ID (12 digits)"));
            }
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The identity settings these flags describe.
    pub fn auth_config(&self) -> Result<crate::auth::AuthConfig, String> {
        let mut roles = std::collections::BTreeMap::new();
        let mut group_accounts = std::collections::BTreeMap::new();
        for pair in &self.sso_group_roles {
            let (group, rest) = pair.split_once('=').ok_or_else(|| {
                format!("--sso-group-role \"{pair}\": expected GROUP=ROLE or GROUP=ROLE@ID+ID")
            })?;
            let (role, accounts) = match rest.split_once('@') {
                Some((role, ids)) => (role, Some(ids)),
                None => (rest, None),
            };
            let role = shared::api::Role::parse(role.trim())
                .map_err(|m| format!("--sso-group-role \"{pair}\": {m}"))?;
            roles.insert(group.trim().to_owned(), role);
            if let Some(ids) = accounts {
                if role == shared::api::Role::Admin {
                    return Err(format!(
                        "--sso-group-role \"{pair}\": admins manage every account and cannot be limited to some; map the group to operator or viewer"
                    ));
                }
                let ids: Vec<String> = ids.split('+').map(|i| i.trim().to_owned()).collect();
                for id in &ids {
                    shared::params::AccountId::parse(id)
                        .map_err(|m| format!("--sso-group-role \"{pair}\": {m}"))?;
                }
                group_accounts.insert(group.trim().to_owned(), ids);
            }
        }
        Ok(crate::auth::AuthConfig {
            trusted_proxies: self.trusted_proxies.clone(),
            sso_user_header: self.sso_user_header.to_ascii_lowercase(),
            sso_groups_header: self.sso_groups_header.to_ascii_lowercase(),
            sso_group_roles: roles,
            sso_group_accounts: group_accounts,
            alb: match (&self.alb_arn, &self.alb_key_dir) {
                (Some(signer), Some(dir)) => Some(crate::auth::alb::AlbConfig {
                    key_dir: dir.clone(),
                    signer: signer.clone(),
                    user_claim: self.alb_user_claim.clone(),
                    groups_claim: self.alb_groups_claim.clone(),
                }),
                _ => None,
            },
            session_ttl: std::time::Duration::from_secs(self.session_hours.max(1) * 3600),
            secure_cookies: self.secure_cookies || self.tls_cert.is_some(),
            client_ip_header: self.client_ip_header.to_ascii_lowercase(),
            public_origin: match &self.public_url {
                Some(url) => Some(
                    crate::auth::normalise_origin(url)
                        .ok_or_else(|| format!("--public-url \"{url}\": expected http(s)://host[:port]"))?,
                ),
                None => None,
            },
            // A request by a name the console was not told (a rebound DNS name) is refused, on loopback
            // too (a page in any browser on the host could otherwise reach it, with a trusted proxy's
            // headers); addresses and localhost always answer.
            known_host: Some(
                self.public_url
                    .as_deref()
                    .and_then(|url| url::Url::parse(url).ok())
                    .and_then(|u| u.host_str().map(str::to_ascii_lowercase)),
            ),
        })
    }
}

impl SandboxOptions {
    /// The sandbox configuration these options describe.
    pub fn to_config(
        &self,
        regions: &[String],
        state_file: Option<PathBuf>,
    ) -> Result<sandbox::SandboxConfig, String> {
        let mut faults = sandbox::Faults::default();
        for raw in &self.faults {
            faults.rules.push(sandbox::FaultRule::parse(raw)?);
        }
        faults.deny = self.deny.iter().cloned().collect();
        faults.broken_instances = self.broken_instances.iter().cloned().collect();
        if self.speed.is_nan() || self.speed <= 0.0 {
            return Err(format!("--sandbox-speed must be above 0, got {}", self.speed));
        }
        let regions = if regions.is_empty() {
            sandbox::default_regions(&self.partition)
        } else {
            regions.to_vec()
        };
        Ok(sandbox::SandboxConfig {
            fleet_size: self.fleet,
            seed: self.seed,
            regions,
            accounts: usize::from(self.accounts),
            speed: self.speed,
            state_file,
            faults,
            partition: self.partition.clone(),
        })
    }
}

/// An address (one host) or a CIDR network.
fn parse_network(raw: &str) -> Result<ipnet::IpNet, String> {
    let raw = raw.trim();
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("\"{raw}\" is not an address or CIDR network such as 10.20.0.0/16"))
}

/// Days an API token lives unless its maker says otherwise.
pub const DEFAULT_TOKEN_DAYS: u32 = 90;

/// A rate of calls per second: a positive number.
fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "\"{raw}\" is not a rate: give calls per second, a number above 0 (such as 16)"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn region_names_are_checked_as_aws_writes_them() {
        for good in [
            "us-east-1",
            "eu-west-1",
            "us-gov-west-1",
            "cn-northwest-1",
            "eusc-de-east-1",
            "ap-southeast-10",
        ] {
            assert_eq!(super::parse_region(good).as_deref(), Ok(good));
        }
        for bad in [
            "eu-west-l",
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "",
            "-1",
            "us--east-1",
            "us-east-123",
        ] {
            let e = super::parse_region(bad).unwrap_err();
            assert!(e.contains("is not a Region name"), "{bad}: {e}");
        }
    }
}
