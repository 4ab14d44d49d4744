//! Start-up: builds the state from the command line (starting the embedded sandbox unless --aws),
//! reconciles runs a previous process recorded but never saw acknowledged, and runs the commands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::{self, Target};
use crate::config::{Cli, Command, DoctorArgs, SandboxArgs, ServeArgs};
use crate::state::{AppState, EventHub, StateInner};
use crate::store::Store;

pub async fn run_command(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Sandbox(args) => run_sandbox(args).await,
        Command::User(args) => crate::admin::user(&args).await,
        Command::Token(args) => crate::admin::token(&args).await,
        Command::Doctor(args) => doctor(&args).await,
    }
}

/// `imds-console doctor`: the permission table, and a failure when anything is denied.
async fn doctor(args: &DoctorArgs) -> Result<(), String> {
    let serve = &args.serve;
    let (target, regions) = if serve.aws {
        (aws::Target::Aws, aws_regions(serve).await?)
    } else if let Some(url) = &serve.sandbox_url {
        (aws::Target::Sandbox(url.clone()), sandbox_regions(serve))
    } else {
        return Err("doctor checks real AWS (--aws) or a running sandbox (--sandbox-url)".into());
    };
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    let clients = aws::clients(&target, &regions, serve.aws_timeouts(), &metrics).await;
    // The accounts serve would reach, for checking the execution role in each.
    let org = crate::org::Org::new(
        serve.member_accounts()?,
        serve.organization,
        serve.organizational_units.clone(),
        serve.member_role.clone(),
        crate::org::ClientSettings {
            target: target.clone(),
            timeouts: serve.aws_timeouts(),
            regions: regions.clone(),
            metrics,
        },
    );
    if let Some(role) = &args.assume_role {
        shared::RoleArn::parse(role).map_err(|e| format!("--assume-role: {e}"))?;
    }
    let across_accounts = args.across_accounts
        || serve.organization
        || !serve.organizational_units.is_empty()
        || !serve.member_accounts()?.is_empty();
    let report = crate::doctor::check(&clients, args.assume_role.as_deref(), across_accounts, Some(&org))
        .await
        .map_err(|e| format!("cannot use AWS: {e}"))?;
    print!("{}", crate::doctor::table(&report));
    match report.denied() {
        0 => Ok(()),
        n => Err(format!("{n} permission(s) denied; see the FIX column")),
    }
}

/// The regions for --aws: the flags, or the SDK's default region.
async fn aws_regions(args: &ServeArgs) -> Result<Vec<String>, String> {
    if args.regions.is_empty() {
        Ok(vec![aws::default_region(args.aws_timeouts()).await.ok_or(
            "no region: pass --region, set AWS_REGION, or give the profile a region",
        )?])
    } else {
        Ok(args.regions.clone())
    }
}

/// The regions for --sandbox-url: the flags, or the sandbox's own (those of its partition).
fn sandbox_regions(args: &ServeArgs) -> Vec<String> {
    if args.regions.is_empty() {
        sandbox::default_regions(&args.sandbox.partition)
    } else {
        args.regions.clone()
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    if args.check_config {
        return check_config(&args);
    }
    let state = build_state(&args).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    if args.aws {
        // Say who we are before anything else, and stop at once with a clear message when AWS cannot
        // be reached or there are no credentials, instead of failing every request later.
        let who = crate::routes::identity::resolve(&state).await.map_err(|e| {
            format!(
                "cannot use AWS: {e}. Check the credentials (AWS_PROFILE, `aws sso login`, environment \
                 variables, an instance or container role) and the network (HTTPS_PROXY, NO_PROXY)"
            )
        })?;
        eprintln!(
            "imds-console: AWS identity {} (account {}), regions {}",
            who.arn,
            who.account,
            who.regions.join(", ")
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(mode = state.mode, regions = ?state.regions, "imds-console listening on {scheme}://{addr}");
    eprintln!("imds-console ({} mode) is at {scheme}://{addr}", state.mode);
    match tls {
        Some(acceptor) => crate::tls::run(listener, state, acceptor)
            .await
            .map_err(|e| e.to_string()),
        None => crate::run(listener, state).await.map_err(|e| e.to_string()),
    }
}

async fn run_sandbox(args: SandboxArgs) -> Result<(), String> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        return Err(format!(
            "{} is not a loopback address; pass --allow-remote to expose the sandbox",
            args.listen
        ));
    }
    let state_file = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            Some(dir.join("sandbox-state.json"))
        }
        None => None,
    };
    let config = args.sandbox.to_config(&args.regions, state_file)?;
    let sb = sandbox::Sandbox::start(config).map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let addr = sb
        .serve(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("sandbox listening on http://{addr} (try: aws --endpoint-url http://{addr} --region us-east-1 ec2 describe-instances)");
    let _ = tokio::signal::ctrl_c().await;
    sb.save().map_err(|e| e.to_string())
}

/// `serve --check-config`: everything start-up would refuse that can be known without starting (the
/// flags' combinations, the files they name, the data directory), all of it at once, changing nothing
/// and calling nothing. AWS credentials and reachability are `doctor`'s.
fn check_config(args: &ServeArgs) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut note = |r: Result<(), String>| {
        if let Err(e) = r {
            problems.push(e);
        }
    };
    note(args.auth_config().map(drop));
    note(args.member_accounts().map(drop));
    note(crate::metrics::Access::from_args(args).map(drop));
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        note(crate::tls::acceptor(cert, key).map(drop));
    }
    if let Some(dir) = &args.alb_key_dir {
        note(readable_dir(dir, "--alb-key-dir"));
    }
    if let Some(dir) = &args.static_dir {
        note(match dir.join("index.html").is_file() {
            true => Ok(()),
            false => Err(format!(
                "--static-dir {}: no index.html there (build it with ./x.sh)",
                dir.display()
            )),
        });
    }
    note(writable_data_dir(&args.data_dir));
    if let Some(url) = &args.database_url {
        note(crate::store::db::PostgresTarget::parse(url, args.database_ca_file.as_deref()).map(drop));
    }
    if !args.aws && args.sandbox_url.is_none() {
        note(args.sandbox.to_config(&args.regions, None).map(drop));
    }
    if !problems.is_empty() {
        return Err(format!(
            "the configuration has {} problem(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        ));
    }
    let mode = match (&args.aws, &args.sandbox_url) {
        (true, _) => "aws".to_owned(),
        (false, Some(url)) => format!("sandbox at {}", without_userinfo(url)),
        (false, None) => "embedded sandbox".to_owned(),
    };
    let regions = match args.regions.is_empty() {
        true if args.aws => "the SDK's region".to_owned(),
        true => "the sandbox's".to_owned(),
        false => args.regions.join(", "),
    };
    println!(
        "configuration OK: {mode}, listening on {}, data in {}, regions: {regions}",
        args.listen,
        args.data_dir.display()
    );
    Ok(())
}

/// A URL with any user name and password masked, for printing.
fn without_userinfo(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("***");
            let _ = url.set_password(None);
            url.to_string()
        }
        Ok(url) => url.to_string(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

fn readable_dir(dir: &std::path::Path, flag: &str) -> Result<(), String> {
    std::fs::read_dir(dir)
        .map(drop)
        .map_err(|e| format!("{flag} {}: {e}", dir.display()))
}

/// The data directory, or the nearest directory above it that exists, is one this user may write in.
fn writable_data_dir(dir: &std::path::Path) -> Result<(), String> {
    let existing = dir.ancestors().find(|d| d.as_os_str().is_empty() || d.exists());
    let existing = match existing {
        Some(d) if d.as_os_str().is_empty() => std::path::Path::new("."),
        Some(d) => d,
        None => std::path::Path::new("/"),
    };
    if !existing.is_dir() {
        return Err(format!(
            "--data-dir {}: {} is not a directory",
            dir.display(),
            existing.display()
        ));
    }
    rustix::fs::access(
        existing,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(|e| {
        format!(
            "--data-dir {}: cannot write in {}: {e}",
            dir.display(),
            existing.display()
        )
    })
}

/// Password checks at once: one per core of the machines we run on, so sign-ins cannot take them all.
const PASSWORD_CHECKS: usize = 2;

/// Builds the server state: AWS clients (pointed at the sandbox unless --aws), store, limiters.
pub async fn build_state(args: &ServeArgs) -> Result<AppState, String> {
    let postgres = args
        .database_url
        .as_deref()
        .map(|url| crate::store::db::PostgresTarget::parse(url, args.database_ca_file.as_deref()))
        .transpose()?;
    let (store, leadership) = match &postgres {
        Some(target) => (
            Store::connect_to(target).await?,
            crate::leader::campaign(target).await,
        ),
        None => (Store::open(&args.data_dir)?, crate::leader::Leadership::Always),
    };
    let auth = args.auth_config()?;
    // With single sign-on, people sign in through the proxy: a built-in admin is made only on request.
    let sso_only = !args.trusted_proxies.is_empty() && !args.bootstrap_admin;
    let bootstrap_password = if sso_only {
        None
    } else {
        crate::admin::bootstrap_admin(&store, &args.data_dir)
            .await
            .map_err(|e| e.to_string())?
    };
    let (mode, target, mut regions, sandbox, sandbox_url) = if args.aws {
        ("aws", Target::Aws, aws_regions(args).await?, None, None)
    } else if let Some(url) = &args.sandbox_url {
        let regions = sandbox_regions(args);
        (
            "sandbox",
            Target::Sandbox(url.clone()),
            regions,
            None,
            Some(url.clone()),
        )
    } else {
        let mut config = args
            .sandbox
            .to_config(&args.regions, Some(args.data_dir.join("sandbox-state.json")))?;
        // The embedded sandbox's accounts have the member role under the name the console uses.
        config.faults.roles.insert(args.member_role.clone());
        let regions = config.regions.clone();
        let sb = sandbox::Sandbox::start(config).map_err(|e| format!("cannot start the sandbox: {e}"))?;
        let addr = sb
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("cannot start the sandbox: {e}"))?;
        let url = format!("http://{addr}");
        (
            "sandbox",
            Target::Sandbox(url.clone()),
            regions,
            Some(sb),
            Some(url),
        )
    };
    regions.dedup();
    let metrics: Arc<crate::metrics::Metrics> = Arc::default();
    let clients = aws::clients(&target, &regions, args.aws_timeouts(), &metrics).await;
    // An embedded sandbox of several accounts is an organisation: show all of it unless told otherwise.
    let named = args.member_accounts()?;
    let organization = args.organization
        || (sandbox.is_some()
            && args.sandbox.accounts > 1
            && named.is_empty()
            && args.organizational_units.is_empty());
    let org = crate::org::Org::new(
        named,
        organization,
        args.organizational_units.clone(),
        args.member_role.clone(),
        crate::org::ClientSettings {
            target: target.clone(),
            timeouts: args.aws_timeouts(),
            regions: regions.clone(),
            metrics: metrics.clone(),
        },
    );
    let throttle_store = store.clone();
    let state = AppState {
        inner: Arc::new(StateInner {
            mode,
            regions,
            clients,
            limits: std::sync::Mutex::default(),
            metrics,
            watcher_round: std::sync::Mutex::default(),
            metrics_access: crate::metrics::Access::from_args(args)?,
            ssm_rates: crate::state::SsmRates {
                read: args.ssm_read_rate,
                start: args.ssm_start_rate,
            },
            store,
            events: EventHub::default(),
            identity: tokio::sync::OnceCell::new(),
            fleet: tokio::sync::Mutex::new(None),
            sources: tokio::sync::Mutex::default(),
            plans: crate::plans::PlanDriver::default(),
            bake_speed: if args.aws { 1.0 } else { args.sandbox.speed },
            fleet_generation: std::sync::atomic::AtomicU64::new(0),
            fleet_refreshing: std::sync::atomic::AtomicBool::new(false),
            fleet_reading: std::sync::atomic::AtomicBool::new(false),
            fleet_full_wanted: std::sync::atomic::AtomicBool::new(false),
            fleet_share: crate::inventory::FleetShare::default(),
            fleet_changed: std::sync::Mutex::default(),
            ec2_reads: std::sync::Mutex::default(),
            ec2_describe_rate: args.ec2_describe_rate,
            fleet_ttl: Duration::from_secs(args.fleet_refresh_secs.max(1)),
            detail_fetch: tokio::sync::Mutex::new(()),
            poll: Duration::from_millis(args.poll_ms.max(50)),
            settling: crate::runs::Settling {
                wait: Duration::from_secs(args.unclear_start_wait_secs),
                expiry: Duration::from_secs(args.start_expiry_minutes * 60),
            },
            discover_every: Duration::from_secs(args.discover_secs.max(1)),
            usage: crate::usage::UsageCache::default(),
            usage_window: Duration::from_secs(u64::from(args.imdsv1_window_days.max(1)) * 86_400),
            // An explicit --static-dir, else the frontend built into the binary, else this checkout's.
            static_dir: args
                .static_dir
                .clone()
                .or_else(|| default_static_dir().filter(|_| !crate::embedded::present())),
            sandbox,
            sandbox_url,
            auth,
            login_throttle: crate::auth::LoginThrottle::new(throttle_store),
            child_pages: crate::state::ChildPages::default(),
            password_checks: tokio::sync::Semaphore::new(PASSWORD_CHECKS),
            sso_sightings: crate::auth::SsoSightings::default(),
            doctor: tokio::sync::Mutex::new(None),
            org,
            access_epoch: tokio::sync::watch::Sender::new(0),
            bootstrap_password,
            data_dir: args.data_dir.clone(),
            token_days: args.token_days,
            webhook_destinations: Arc::new(crate::outbound::Destinations::new(args.webhook_allow.clone())),
            leadership,
        }),
    };
    if let Some(target) = &postgres {
        crate::relay::start(&state, target);
    }
    Ok(state)
}

/// The frontend built in this checkout, when there is one.
fn default_static_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend/dist"));
    dir.join("index.html").exists().then_some(dir)
}

#[cfg(test)]
mod printing_tests {
    #[test]
    fn a_printed_sandbox_url_hides_its_credentials() {
        let shown = super::without_userinfo("http://user:secret@127.0.0.1:4566/");
        assert!(!shown.contains("secret") && !shown.contains("user"), "{shown}");
        assert_eq!(
            super::without_userinfo("http://127.0.0.1:4566"),
            "http://127.0.0.1:4566/"
        );
    }
}
