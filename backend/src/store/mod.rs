//! The console's own store (SQLite in the data directory, or PostgreSQL for several replicas): one
//! append-only record per run, written before the run is sent to SSM, so history outlives SSM's
//! retention and a crash loses nothing.
//!
//! The SQL is written once, in the words both databases share (see [`db`]), and the migrations are
//! the same for both.

pub mod db;

use rusqlite::Connection;
use shared::api::ExecutionSummary;
use shared::RunStatus;
use std::path::{Path, PathBuf};

use crate::error::AppError;
use db::{Db, Row, RowRef, ToValue, Value};

/// Schema versions, applied in order; `PRAGMA user_version` holds how many have run.
const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    client_token TEXT UNIQUE,
    execution_id TEXT UNIQUE,
    region TEXT NOT NULL,
    document_name TEXT NOT NULL,
    requester TEXT,
    created_at TEXT NOT NULL,
    sort_time TEXT NOT NULL,
    parameters TEXT NOT NULL,
    targets TEXT,
    instance_id TEXT,
    parent_execution_id TEXT,
    status TEXT NOT NULL,
    start_time TEXT,
    end_time TEXT,
    failure_message TEXT,
    detail TEXT,
    detail_at_ms INTEGER,
    started_here INTEGER NOT NULL,
    override_reason TEXT,
    prior_options TEXT,
    rollback_of TEXT,
    rolled_back_by TEXT
);
CREATE INDEX runs_history ON runs (parent_execution_id, sort_time DESC, id DESC);
CREATE INDEX runs_status ON runs (status);
CREATE TABLE run_instances (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    instance_id TEXT NOT NULL,
    PRIMARY KEY (run_id, instance_id)
);
CREATE INDEX run_instances_by_instance ON run_instances (instance_id);
",
    r"
ALTER TABLE runs ADD COLUMN document_version TEXT;
CREATE INDEX runs_requester ON runs (requester);
",
    r"
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    created_at TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL REFERENCES users(name),
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_used_at TEXT,
    last_used_ms INTEGER
);
CREATE TABLE auth_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    address TEXT
);
",
    // Repeated throttled sign-ins are one counted event per window, and a stop names who asked for it.
    r"
ALTER TABLE auth_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN stopped_by TEXT;
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
",
    // The tag key that finds a run's execution in SSM (the record's first ClientToken, which later
    // sends do not reuse).
    r"
ALTER TABLE runs ADD COLUMN run_tag TEXT;
UPDATE runs SET run_tag = client_token WHERE started_here = 1;
ALTER TABLE runs ADD COLUMN children_synced INTEGER NOT NULL DEFAULT 1;
",
    // The account a run acts in ('' for the console's own account).
    r"
ALTER TABLE runs ADD COLUMN account TEXT NOT NULL DEFAULT '';
",
    // The accounts a user may see and change (comma-separated IDs; NULL: every account).
    r"
ALTER TABLE users ADD COLUMN accounts TEXT;
",
    // The fleet's posture per day and account, for the dashboard's trend (kept for 400 days).
    r"
CREATE TABLE posture_days (
    day TEXT NOT NULL,
    account TEXT NOT NULL,
    total INTEGER NOT NULL,
    compliant INTEGER NOT NULL,
    broken INTEGER NOT NULL,
    imdsv1_in_use INTEGER NOT NULL,
    imdsv1_allowed INTEGER NOT NULL,
    PRIMARY KEY (day, account)
);
",
    // A token's name (what it is for) and optional expiry.
    r"
ALTER TABLE api_tokens ADD COLUMN name TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_ms INTEGER;
",
    // Fixes of the sources of new IMDSv1 instances (account defaults, launch templates): written
    // before AWS is called, with the prior state a revert restores.
    r"
CREATE TABLE source_fixes (
    fix_id TEXT PRIMARY KEY,
    source_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    resource TEXT NOT NULL,
    hop_limit INTEGER,
    requester TEXT NOT NULL,
    created_at TEXT NOT NULL,
    override_reason TEXT,
    prior TEXT NOT NULL,
    applied TEXT,
    status TEXT NOT NULL,
    error TEXT,
    reverted_by TEXT,
    reverted_at TEXT
);
CREATE INDEX source_fixes_by_time ON source_fixes (created_at);
",
    // Rollout plans (the whole plan as JSON, rewritten at each step), and the wave a run belongs to,
    // written with the run's record so a crash between the two cannot start a wave twice.
    r"
CREATE TABLE plans (
    plan_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    requester TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
ALTER TABLE runs ADD COLUMN plan_wave TEXT;
CREATE INDEX runs_by_plan_wave ON runs (plan_wave);
",
    // Starts that wait for a second person (the run is recorded as AwaitingApproval in the same
    // write), and the console's settings (the approval policy).
    r"
CREATE TABLE approvals (
    record_id INTEGER PRIMARY KEY,
    why TEXT NOT NULL,
    requester TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at TEXT,
    comment TEXT
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
",
    // Webhooks and every delivery to them (queued here, so sending never holds up a run).
    r"
CREATE TABLE webhooks (
    webhook_id INTEGER PRIMARY KEY AUTOINCREMENT,
    url TEXT NOT NULL,
    format TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE webhook_deliveries (
    delivery_id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id INTEGER NOT NULL,
    event TEXT NOT NULL,
    summary TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    created_at TEXT NOT NULL,
    delivered_at TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_ms);
",
    // The SSM budgets several replicas share: each budget's next free slot, in the database's clock.
    r"
CREATE TABLE ssm_budgets (
    budget TEXT PRIMARY KEY,
    next_ms INTEGER NOT NULL
);
",
    // The leader's fleet snapshot for the followers (one row), and what they asked it to read.
    r"
CREATE TABLE fleet_snapshot (
    id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL,
    read_at_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE fleet_wanted (
    place TEXT PRIMARY KEY
);
",
    // Failed sign-ins per key (user and address, address, user) in their window, and the audit row
    // that counts a key's throttled attempts: in the store, so every replica throttles alike.
    r"
CREATE TABLE login_failures (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    locked_until_ms INTEGER NOT NULL
);
CREATE TABLE login_throttled (
    key TEXT PRIMARY KEY,
    start_ms INTEGER NOT NULL,
    row_id INTEGER NOT NULL
);
",
    // History's index for top-level runs: PostgreSQL cannot read `runs_history` in order for
    // `parent_execution_id IS NULL` (an IS NULL is no equality to its planner), and sorted the table.
    r"
CREATE INDEX runs_top_history ON runs (sort_time DESC, id DESC) WHERE parent_execution_id IS NULL;
",
    // Whose credential a request carries (issue 27): who set a password that is not the user's own
    // choice, whether a session was signed in with the user's own password, whether a token was made
    // by its owner with their own credential (earlier tokens: unknown, so not), and how an approver
    // authenticated.
    r"
ALTER TABLE users ADD COLUMN password_set_by TEXT;
ALTER TABLE sessions ADD COLUMN own_credential INTEGER NOT NULL DEFAULT 1;
ALTER TABLE api_tokens ADD COLUMN own_credential INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN decided_via TEXT;
",
    // Every account a run across accounts acts in (`,id,id,`; NULL for a run in one account), so lists
    // show such a run to a limited identity only when every one of them is theirs. Runs recorded
    // before this are marked with an account nobody has: hidden from limited identities.
    r#"
ALTER TABLE runs ADD COLUMN span TEXT;
UPDATE runs SET span = ',unknown,' WHERE parameters LIKE '%"target_locations":[{%';
UPDATE runs SET span = ',unknown,' WHERE parent_execution_id IN (SELECT execution_id FROM runs WHERE span IS NOT NULL);
"#,
];

/// Status of a record whose start has not been acknowledged by SSM yet.
pub const STATUS_RECORDED: &str = "Recorded";
/// Status of a start that waits for a second person's approval; nothing is sent until then.
pub const STATUS_AWAITING_APPROVAL: &str = "AwaitingApproval";
/// Status of a start a second person rejected, or whose approval expired (SSM's own word for it).
pub const STATUS_REJECTED: &str = "Rejected";
/// Status of a start that SSM refused (kept for the audit trail, hidden from history).
pub const STATUS_REFUSED: &str = "Refused";
/// Status of a start whose outcome SSM left unclear (a 5xx after retries, a timeout, a lost reply):
/// the run may exist. Reconciliation finds it by its tag, or sends it again.
pub const STATUS_UNKNOWN: &str = "Unknown";
/// Status of a start SSM answered "not now" (its concurrency quota full, or throttled past our
/// retries): nothing was started; the watcher sends it again.
pub const STATUS_QUEUED: &str = "Queued";

#[derive(Clone)]
pub struct Store {
    db: Db,
    /// The console's time: sessions, tokens and timestamps read it.
    pub clock: crate::clock::Clock,
}

/// A new run, as recorded before it is sent.
pub struct NewRun<'a> {
    pub client_token: &'a str,
    /// The member account it acts in; '' for the console's own.
    pub account: &'a str,
    pub region: &'a str,
    pub document_name: &'a str,
    pub requester: &'a str,
    pub parameters: &'a serde_json::Value,
    pub targets: Option<&'a serde_json::Value>,
    pub instance_id: Option<&'a str>,
    pub instance_ids: &'a [String],
    pub override_reason: Option<&'a str>,
    pub prior_options: Option<&'a serde_json::Value>,
    pub rollback_of: Option<&'a str>,
    /// `plan-id/wave-index` for a plan's wave.
    pub plan_wave: Option<&'a str>,
    /// Every account a run across accounts acts in (`,id,id,`); None for a run in one account.
    pub span: Option<&'a str>,
    /// Held for a second person: why, and until when (RFC 3339); the run is recorded as
    /// AwaitingApproval with its approval in one write.
    pub approval: Option<(&'a str, &'a str)>,
}

/// A stored run.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub id: i64,
    pub client_token: Option<String>,
    pub execution_id: Option<String>,
    /// The member account it acts in; '' for the console's own.
    pub account: String,
    pub region: String,
    pub document_name: String,
    pub requester: Option<String>,
    pub status: RunStatus,
    pub instance_id: Option<String>,
    pub targets: Option<String>,
    pub parent_execution_id: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub detail: Option<String>,
    pub detail_at_ms: Option<i64>,
    pub started_here: bool,
    pub created_at: String,
    pub override_reason: Option<String>,
    /// JSON: instance ID -> MetadataOptions before the run.
    pub prior_options: Option<String>,
    pub rollback_of: Option<String>,
    /// Comma-separated execution IDs.
    pub rolled_back_by: Option<String>,
    /// Every account a run across accounts acts in (`,id,id,`); None for a run in one account.
    pub span: Option<String>,
}

impl RunRow {
    pub fn summary(&self) -> ExecutionSummary {
        ExecutionSummary {
            execution_id: self.execution_id.clone().unwrap_or_default(),
            account: self.account.clone(),
            region: self.region.clone(),
            document_name: self.document_name.clone(),
            status: self.status.clone(),
            instance_id: self.instance_id.clone(),
            targets: self.targets.clone(),
            parent_execution_id: self.parent_execution_id.clone(),
            requester: self.requester.clone(),
            start_time: self.start_time.clone().or_else(|| Some(self.created_at.clone())),
            end_time: self.end_time.clone(),
            started_here: self.started_here,
        }
    }
}

const ROW_COLUMNS: &str =
    "id, client_token, execution_id, region, document_name, requester, status, instance_id, targets, \
     parent_execution_id, start_time, end_time, detail, detail_at_ms, started_here, created_at, override_reason, \
     prior_options, rollback_of, rolled_back_by, account, span";

/// What a history row shows ([`ExecutionSummary`]), then where it sorts: a page reads 51 rows, and
/// what lists never show (the cached detail view alone is kilobytes) stays in the database.
const HISTORY_COLUMNS: &str =
    "execution_id, account, region, document_name, status, instance_id, targets, parent_execution_id, \
     requester, COALESCE(start_time, created_at), end_time, started_here, sort_time, id";

/// A run as lists show it, from a row of [`HISTORY_COLUMNS`].
fn history_summary(r: &RowRef<'_>) -> Result<ExecutionSummary, AppError> {
    let text = |i| Ok::<_, AppError>(r.required_text(i)?.to_owned());
    let optional = |i| Ok::<_, AppError>(r.text(i)?.map(str::to_owned));
    Ok(ExecutionSummary {
        execution_id: text(0)?,
        account: text(1)?,
        region: text(2)?,
        document_name: text(3)?,
        status: RunStatus::from(r.required_text(4)?),
        instance_id: optional(5)?,
        targets: optional(6)?,
        parent_execution_id: optional(7)?,
        requester: optional(8)?,
        start_time: optional(9)?,
        end_time: optional(10)?,
        started_here: r.required_int(11)? != 0,
    })
}

fn row(mut r: Row) -> Result<RunRow, AppError> {
    Ok(RunRow {
        id: r.take(0)?,
        client_token: r.take(1)?,
        execution_id: r.take(2)?,
        region: r.take(3)?,
        document_name: r.take(4)?,
        requester: r.take(5)?,
        status: RunStatus::from(r.take::<String>(6)?),
        instance_id: r.take(7)?,
        targets: r.take(8)?,
        parent_execution_id: r.take(9)?,
        start_time: r.take(10)?,
        end_time: r.take(11)?,
        detail: r.take(12)?,
        detail_at_ms: r.take(13)?,
        started_here: r.take(14)?,
        created_at: r.take(15)?,
        override_reason: r.take(16)?,
        prior_options: r.take(17)?,
        rollback_of: r.take(18)?,
        rolled_back_by: r.take(19)?,
        account: r.take(20)?,
        span: r.take(21)?,
    })
}

/// What SSM said about an execution, to record.
#[derive(Clone, Copy)]
pub struct ExecutionUpdate<'a> {
    pub status: &'a str,
    pub start_time: Option<&'a str>,
    pub end_time: Option<&'a str>,
    pub failure_message: Option<&'a str>,
    /// The detail view as JSON, cached for viewers.
    pub detail: Option<&'a str>,
    pub document_version: Option<&'a str>,
    pub now_ms: i64,
}

/// A history position: (sort time, record ID) of the last row shown.
pub type Cursor = (String, i64);

/// History filters.
#[derive(Debug, Default)]
pub struct HistoryFilter {
    pub status: Option<String>,
    pub instance_id: Option<String>,
    pub requester: Option<String>,
    pub parent: Option<String>,
    /// Started at or after / before these times (RFC 3339, normalised by the caller).
    pub since: Option<String>,
    pub until: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: usize,
    /// Only runs in these accounts ('' for the console's own); None: every account.
    pub accounts: Option<Vec<String>>,
    /// Only runs across accounts all of whose accounts are among these (their IDs, the console's own
    /// included); None: every account.
    pub within: Option<Vec<String>>,
}

/// The data directory (0700) and the database files in it (0600) are for the console's user only, also
/// when they were created by an older version or under a looser umask.
fn restrict_to_owner(dir: &Path, db: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot restrict {}: {e}", p.display()))
    };
    set(dir, 0o700)?;
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", db.display()));
        if file.exists() {
            set(&file, 0o600)?;
        }
    }
    Ok(())
}

pub fn now_rfc3339() -> String {
    crate::aws::rfc3339(Some(&aws_smithy_types::DateTime::from(
        std::time::SystemTime::now(),
    )))
    .unwrap_or_default()
}

/// Binds parameters for [`Db`] queries: `args![a, b]` (anything [`db::ToValue`], by reference).
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$($crate::store::db::ToValue::to_value(&$x)),*]
    };
}
pub(crate) use args;

/// PostgreSQL's clock in epoch milliseconds, for the shared SSM budgets' SQL (written out once,
/// so the SQL is a constant and no string is built per SSM call).
macro_rules! postgres_now_ms {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}

/// Where the store lives: `--database-url`, else the data directory's SQLite file.
pub enum Location<'a> {
    Directory(&'a Path),
    Postgres(Box<db::PostgresTarget>),
}

impl<'a> Location<'a> {
    /// `--database-url` (with `--database-ca-file`) when given, else the data directory.
    pub fn of(
        data_dir: &'a Path,
        database_url: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<Location<'a>, String> {
        Ok(match database_url {
            Some(url) => Location::Postgres(Box::new(db::PostgresTarget::parse(url, ca_file)?)),
            None => Location::Directory(data_dir),
        })
    }
}

/// How many connections one replica keeps to PostgreSQL.
const POSTGRES_POOL_SIZE: usize = 16;

/// An arbitrary, fixed key for PostgreSQL's advisory lock that serialises migrations between replicas
/// starting together.
const MIGRATION_LOCK: i64 = 0x13d5_c0de;

impl Store {
    /// Opens the store where `at` says: [`Store::open`] or [`Store::connect`].
    pub async fn open_at(at: Location<'_>) -> Result<Store, String> {
        match at {
            Location::Directory(dir) => Store::open(dir),
            Location::Postgres(target) => Store::connect_to(&target).await,
        }
    }

    /// Opens (or creates) the SQLite store in `dir`, runs pending migrations, and refuses a newer
    /// schema.
    pub fn open(dir: &Path) -> Result<Store, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        let path = dir.join("imds-console.db");
        let mut conn = Connection::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| e.to_string())?;
        restrict_to_owner(dir, &path)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(|e| e.to_string())?;
        with_connection_settings(&conn)?;
        let version: usize = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| e.to_string())?;
        check_version(version, &path.display().to_string())?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(|e| e.to_string())?;
            tx.execute_batch(sql)
                .map_err(|e| format!("migration {}: {e}", i + 1))?;
            tx.pragma_update(None, "user_version", i + 1)
                .map_err(|e| e.to_string())?;
            tx.commit().map_err(|e| e.to_string())?;
        }
        // Read-only connections for the reads of every request, one per core (at most four).
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let mut readers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let reader = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| format!("cannot open {} to read: {e}", path.display()))?;
            with_connection_settings(&reader)?;
            readers.push(reader);
        }
        Ok(Store {
            db: Db::sqlite(conn, readers),
            clock: crate::clock::Clock::default(),
        })
    }

    /// Connects to PostgreSQL at `url`, runs pending migrations (one replica at a time, each in one
    /// transaction), and refuses a newer schema.
    pub async fn connect(url: &str) -> Result<Store, String> {
        Store::connect_to(&db::PostgresTarget::parse(url, None)?).await
    }

    /// [`Store::connect`] to a parsed target.
    pub async fn connect_to(target: &db::PostgresTarget) -> Result<Store, String> {
        let db = Db::postgres(target, POSTGRES_POOL_SIZE)?;
        let fail = |e: AppError| format!("--database-url: {e}");
        let mut conn = db.begin().await.map_err(fail)?;
        conn.execute("SELECT pg_advisory_xact_lock(?1)", args![MIGRATION_LOCK])
            .await
            .map_err(fail)?;
        conn.batch("CREATE TABLE IF NOT EXISTS imds_console_schema (version BIGINT NOT NULL)")
            .await
            .map_err(fail)?;
        let version = match conn
            .query_opt("SELECT version FROM imds_console_schema", args![])
            .await
            .map_err(fail)?
        {
            Some(row) => row.get::<i64>(0).map_err(fail)? as usize,
            None => {
                conn.execute("INSERT INTO imds_console_schema (version) VALUES (0)", args![])
                    .await
                    .map_err(fail)?;
                0
            }
        };
        check_version(version, "the PostgreSQL database")?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.batch(&db::postgres_ddl(sql))
                .await
                .map_err(|e| format!("migration {}: {e}", i + 1))?;
            conn.execute("UPDATE imds_console_schema SET version = ?1", args![i + 1])
                .await
                .map_err(fail)?;
        }
        conn.commit().await.map_err(fail)?;
        Ok(Store {
            db,
            clock: crate::clock::Clock::default(),
        })
    }

    /// The database, for the store's other modules (accounts).
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    pub fn is_postgres(&self) -> bool {
        self.db.is_postgres()
    }

    /// Takes the next slot of a budget several replicas share, `gap_ms` after the slot before it;
    /// returns how long to wait for it. The database's clock decides, so replicas' clocks need not
    /// agree. PostgreSQL only (one process on SQLite keeps its budgets in memory).
    pub async fn reserve_slot(&self, budget: &str, gap_ms: i64) -> Result<std::time::Duration, AppError> {
        let wait: i64 = self
            .db
            .query_one(
                concat!(
                    "INSERT INTO ssm_budgets (budget, next_ms) VALUES (?1, ",
                    postgres_now_ms!(),
                    " + ?2)
                     ON CONFLICT (budget) DO UPDATE SET next_ms = GREATEST(ssm_budgets.next_ms, ",
                    postgres_now_ms!(),
                    ") + ?2 RETURNING next_ms - ?2 - ",
                    postgres_now_ms!()
                ),
                args![budget, gap_ms],
            )
            .await?
            .get(0)?;
        Ok(std::time::Duration::from_millis(wait.max(0) as u64))
    }

    /// Takes a shared budget's slot only if it is free now; otherwise says how long until it is.
    /// PostgreSQL only, like [`Store::reserve_slot`].
    pub async fn try_slot(
        &self,
        budget: &str,
        gap_ms: i64,
    ) -> Result<Result<(), std::time::Duration>, AppError> {
        let taken = self
            .db
            .query_opt(
                concat!(
                    "INSERT INTO ssm_budgets (budget, next_ms) VALUES (?1, ",
                    postgres_now_ms!(),
                    " + ?2)
                     ON CONFLICT (budget) DO UPDATE SET next_ms = ",
                    postgres_now_ms!(),
                    " + ?2 WHERE ssm_budgets.next_ms <= ",
                    postgres_now_ms!(),
                    " RETURNING next_ms"
                ),
                args![budget, gap_ms],
            )
            .await?;
        if taken.is_some() {
            return Ok(Ok(()));
        }
        let wait: i64 = self
            .db
            .query_one(
                concat!(
                    "SELECT next_ms - ",
                    postgres_now_ms!(),
                    " FROM ssm_budgets WHERE budget = ?1"
                ),
                args![budget],
            )
            .await?
            .get(0)?;
        Ok(Err(std::time::Duration::from_millis(wait.max(1) as u64)))
    }

    /// Pushes a shared budget's next slot back by `by_ms` (SSM said we were too fast).
    pub async fn push_back_slot(&self, budget: &str, by_ms: i64) -> Result<(), AppError> {
        self.db
            .execute(
                concat!(
                    "UPDATE ssm_budgets SET next_ms = GREATEST(next_ms, ",
                    postgres_now_ms!(),
                    ") + ?2 WHERE budget = ?1"
                ),
                args![budget, by_ms],
            )
            .await?;
        Ok(())
    }

    /// Replaces the shared fleet snapshot (a new version).
    pub async fn save_fleet(&self, read_at_ms: i64, body: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "INSERT INTO fleet_snapshot (id, version, read_at_ms, body) VALUES (1, 1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET version = fleet_snapshot.version + 1,
                     read_at_ms = excluded.read_at_ms, body = excluded.body",
                args![read_at_ms, body],
            )
            .await?;
        Ok(())
    }

    /// The shared snapshot's version and reading time, if there is one.
    pub async fn fleet_version(&self) -> Result<Option<(i64, i64)>, AppError> {
        self.db
            .query_opt(
                "SELECT version, read_at_ms FROM fleet_snapshot WHERE id = 1",
                args![],
            )
            .await?
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .transpose()
    }

    pub async fn fleet_body(&self) -> Result<Option<String>, AppError> {
        self.db
            .query_opt("SELECT body FROM fleet_snapshot WHERE id = 1", args![])
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    /// Asks the leader to read `places` again (`account/region`; '' for a fresher snapshot).
    pub async fn want_fleet(&self, places: &[String]) -> Result<(), AppError> {
        for place in places {
            self.db
                .execute(
                    "INSERT INTO fleet_wanted (place) VALUES (?1) ON CONFLICT DO NOTHING",
                    args![place],
                )
                .await?;
        }
        Ok(())
    }

    /// What the followers asked for since the last call (and no longer asked).
    pub async fn take_fleet_wanted(&self) -> Result<Vec<String>, AppError> {
        self.db
            .query("DELETE FROM fleet_wanted RETURNING place", args![])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Sends `payload` to every session listening on `channel` (PostgreSQL's NOTIFY).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), AppError> {
        self.db
            .execute("SELECT pg_notify(?1, ?2)", args![channel, payload])
            .await?;
        Ok(())
    }

    /// Records a run before it is sent; returns the record ID.
    pub async fn record_start(&self, run: &NewRun<'_>) -> Result<i64, AppError> {
        let mut tx = self.db.begin().await?;
        let now = now_rfc3339();
        let id: i64 = tx
            .query_one(
                "INSERT INTO runs (client_token, region, document_name, requester, created_at, sort_time, parameters, targets,
                    instance_id, status, started_here, override_reason, prior_options, rollback_of, run_tag, account, plan_wave, span)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?11, ?12, ?1, ?13, ?14, ?15) RETURNING id",
                args![
                    run.client_token,
                    run.region,
                    run.document_name,
                    run.requester,
                    now,
                    run.parameters.to_string(),
                    run.targets.map(|t| t.as_str().map_or_else(|| t.to_string(), str::to_owned)),
                    run.instance_id,
                    if run.approval.is_some() { STATUS_AWAITING_APPROVAL } else { STATUS_RECORDED },
                    run.override_reason,
                    run.prior_options.map(|p| p.to_string()),
                    run.rollback_of,
                    run.account,
                    run.plan_wave,
                    run.span,
                ],
            )
            .await?
            .get(0)?;
        if let Some((why, expires_at)) = run.approval {
            tx.execute(
                "INSERT INTO approvals (record_id, why, requester, created_at, expires_at, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
                args![id, why, run.requester, now, expires_at],
            )
            .await?;
        }
        for inst in run.instance_ids {
            tx.execute(INSERT_RUN_INSTANCE, args![id, inst]).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// SSM acknowledged the start.
    pub async fn set_execution_id(&self, id: i64, execution_id: &str) -> Result<(), AppError> {
        let mut tx = self.db.begin().await?;
        // Discovery may have seen the execution in SSM before we stored its ID: ours wins (and the
        // discovered record's instances go with it, which its foreign key requires).
        tx.execute(
            "DELETE FROM run_instances WHERE run_id IN
                (SELECT id FROM runs WHERE execution_id = ?1 AND id <> ?2 AND started_here = 0)",
            args![execution_id, id],
        )
        .await?;
        tx.execute(
            "DELETE FROM runs WHERE execution_id = ?1 AND id <> ?2 AND started_here = 0",
            args![execution_id, id],
        )
        .await?;
        tx.execute(
            "UPDATE runs SET execution_id = ?2, failure_message = NULL,
                status = CASE WHEN status IN (?3, ?4) THEN 'InProgress' ELSE status END WHERE id = ?1",
            args![id, execution_id, STATUS_RECORDED, STATUS_UNKNOWN],
        )
        .await?;
        tx.commit().await
    }

    /// Records a run that was started outside this console (seen in SSM). Returns false if known.
    pub async fn record_foreign(
        &self,
        region: &str,
        execution_id: &str,
        document_name: &str,
        instance_id: Option<&str>,
        status: &str,
        start_time: Option<&str>,
    ) -> Result<bool, AppError> {
        let now = now_rfc3339();
        let mut tx = self.db.begin().await?;
        let inserted = tx
            .query_opt(
                "INSERT INTO runs (execution_id, region, document_name, created_at, sort_time, parameters,
                    instance_id, status, start_time, started_here)
                 VALUES (?1, ?2, ?3, ?4, COALESCE(?7, ?4), '{}', ?5, ?6, ?7, 0)
                 ON CONFLICT DO NOTHING RETURNING id",
                args![
                    execution_id,
                    region,
                    document_name,
                    now,
                    instance_id,
                    status,
                    start_time
                ],
            )
            .await?;
        if let (Some(row), Some(inst)) = (&inserted, instance_id) {
            tx.execute(INSERT_RUN_INSTANCE, args![row.get::<i64>(0)?, inst])
                .await?;
        }
        tx.commit().await?;
        Ok(inserted.is_some())
    }

    /// Marks a start whose outcome is unclear; it keeps its place until reconciliation settles it.
    pub async fn set_unknown(&self, id: i64, message: &str) -> Result<(), AppError> {
        self.set_unacknowledged(id, STATUS_UNKNOWN, message).await
    }

    /// Marks a start SSM answered "not now"; the watcher sends it again.
    pub async fn set_queued(&self, id: i64, message: &str) -> Result<(), AppError> {
        self.set_unacknowledged(id, STATUS_QUEUED, message).await
    }

    /// SSM refused the start for good.
    pub async fn set_refused(&self, id: i64, message: &str) -> Result<(), AppError> {
        self.set_unacknowledged(id, STATUS_REFUSED, message).await
    }

    /// Sets the status of a start SSM has not acknowledged (an acknowledged one is the watcher's).
    async fn set_unacknowledged(&self, id: i64, status: &str, message: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE runs SET status = ?2, failure_message = ?3 WHERE id = ?1 AND execution_id IS NULL",
                args![id, status, message],
            )
            .await?;
        Ok(())
    }

    /// One column of a record, if the record exists and the column is set.
    async fn record_text(&self, sql: &str, id: i64) -> Result<Option<String>, AppError> {
        match self.db.query_opt(sql, args![id]).await? {
            Some(row) => row.get(0),
            None => Ok(None),
        }
    }

    /// Every account a run across accounts acts in (`,id,id,`), if it is one.
    pub async fn span_of(&self, id: i64) -> Result<Option<String>, AppError> {
        self.record_text("SELECT span FROM runs WHERE id = ?1", id).await
    }

    /// The execution a rollback record reverts.
    pub async fn rollback_of(&self, id: i64) -> Result<Option<String>, AppError> {
        self.record_text("SELECT rollback_of FROM runs WHERE id = ?1", id)
            .await
    }

    /// Records the fresh ClientToken of a start about to be sent again (recorded before it is sent).
    pub async fn set_client_token(&self, id: i64, token: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE runs SET client_token = ?2 WHERE id = ?1 AND execution_id IS NULL",
                args![id, token],
            )
            .await?;
        Ok(())
    }

    /// The tag key suffix that marks this record's execution in SSM (None for records older than it).
    pub async fn run_tag_of(&self, id: i64) -> Result<Option<String>, AppError> {
        self.record_text("SELECT run_tag FROM runs WHERE id = ?1", id)
            .await
    }

    /// Starts not yet settled, with the given statuses (Recorded, Unknown), oldest first.
    pub async fn unsettled(&self, statuses: &[&str]) -> Result<Vec<RunRow>, AppError> {
        let placeholders = (1..=statuses.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM runs WHERE execution_id IS NULL AND started_here = 1 AND status IN ({placeholders}) ORDER BY id"
        );
        let args: Vec<Value> = statuses.iter().map(ToValue::to_value).collect();
        runs(self.db.query(&sql, &args).await?)
    }

    /// Starts recorded before `created_before` (RFC 3339) and never acknowledged nor marked since:
    /// with several replicas, the ones whose sender died.
    pub async fn recorded_before(&self, created_before: &str) -> Result<Vec<RunRow>, AppError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM runs WHERE execution_id IS NULL AND started_here = 1 AND status = ?1
               AND created_at < ?2 ORDER BY id"
        );
        runs(
            self.db
                .query(&sql, args![STATUS_RECORDED, created_before])
                .await?,
        )
    }

    /// Records what SSM says about an execution. Returns true when its status changed.
    pub async fn update_execution(
        &self,
        execution_id: &str,
        u: &ExecutionUpdate<'_>,
    ) -> Result<bool, AppError> {
        let ExecutionUpdate {
            status,
            start_time,
            end_time,
            failure_message,
            detail,
            document_version,
            now_ms,
        } = *u;
        let mut conn = self.db.conn().await?;
        let old: Option<String> = conn
            .query_opt(
                "SELECT status FROM runs WHERE execution_id = ?1",
                args![execution_id],
            )
            .await?
            .map(|r| r.get(0))
            .transpose()?;
        conn.execute(
            "UPDATE runs SET status = ?2, start_time = COALESCE(?3, start_time), sort_time = COALESCE(?3, sort_time),
                end_time = ?4, failure_message = ?5, detail = COALESCE(?6, detail),
                detail_at_ms = CASE WHEN ?6 IS NULL THEN detail_at_ms ELSE ?7 END,
                document_version = COALESCE(?8, document_version)
             WHERE execution_id = ?1",
            args![execution_id, status, start_time, end_time, failure_message, detail, now_ms, document_version],
        )
        .await?;
        Ok(old.as_deref() != Some(status))
    }

    /// Whether a rate-control run's children have been read through since it finished.
    pub async fn set_children_synced(&self, execution_id: &str, synced: bool) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE runs SET children_synced = ?2 WHERE execution_id = ?1 AND children_synced <> ?2",
                args![execution_id, synced],
            )
            .await?;
        Ok(())
    }

    /// How many instances a run recorded as its targets.
    pub async fn instance_count(&self, id: i64) -> Result<usize, AppError> {
        let n: i64 = self
            .db
            .query_one("SELECT COUNT(*) FROM run_instances WHERE run_id = ?1", args![id])
            .await?
            .get(0)?;
        Ok(n as usize)
    }

    /// Notes who asked SSM to stop a run (the latest, if several did).
    pub async fn set_stopped_by(&self, execution_id: &str, who: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE runs SET stopped_by = ?2 WHERE execution_id = ?1",
                args![execution_id, who],
            )
            .await?;
        Ok(())
    }

    /// Adds or updates a child execution of a rate-control parent. Returns true when it is new or changed.
    pub async fn upsert_child(
        &self,
        parent: &RunRow,
        execution_id: &str,
        instance_id: Option<&str>,
        status: &str,
        start_time: Option<&str>,
        end_time: Option<&str>,
    ) -> Result<bool, AppError> {
        let mut tx = self.db.begin().await?;
        let old: Option<String> = tx
            .query_opt(
                "SELECT status FROM runs WHERE execution_id = ?1",
                args![execution_id],
            )
            .await?
            .map(|r| r.get(0))
            .transpose()?;
        if old.is_none() {
            let now = now_rfc3339();
            let child_id: i64 = tx
                .query_one(
                    "INSERT INTO runs (execution_id, region, document_name, requester, created_at, sort_time, parameters,
                        instance_id, parent_execution_id, status, start_time, end_time, started_here, account, span)
                     VALUES (?1, ?2, ?3, ?4, ?5, COALESCE(?9, ?5), '{}', ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) RETURNING id",
                    args![
                        execution_id,
                        parent.region,
                        parent.document_name,
                        parent.requester,
                        now,
                        instance_id,
                        parent.execution_id,
                        status,
                        start_time,
                        end_time,
                        parent.started_here,
                        parent.account,
                        parent.span
                    ],
                )
                .await?
                .get(0)?;
            if let Some(inst) = instance_id {
                tx.execute(INSERT_RUN_INSTANCE, args![child_id, inst]).await?;
                tx.execute(INSERT_RUN_INSTANCE, args![parent.id, inst]).await?;
            }
        } else if old.as_deref() != Some(status) {
            tx.execute(
                "UPDATE runs SET status = ?2, start_time = COALESCE(?3, start_time), end_time = ?4 WHERE execution_id = ?1",
                args![execution_id, status, start_time, end_time],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(old.as_deref() != Some(status))
    }

    async fn one_run(&self, filter: &str, arg: Value) -> Result<Option<RunRow>, AppError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM runs WHERE {filter}");
        self.db.query_opt(&sql, &[arg]).await?.map(row).transpose()
    }

    /// The plan wave a run belongs to (`plan_id/index`), if any.
    pub async fn plan_wave_of(&self, record_id: i64) -> Result<Option<String>, AppError> {
        match self
            .db
            .query_opt("SELECT plan_wave FROM runs WHERE id = ?1", args![record_id])
            .await?
        {
            Some(r) => r.get(0),
            None => Ok(None),
        }
    }

    /// The run a plan's wave started (`plan-id/wave-index`), if its record was written.
    pub async fn by_plan_wave(&self, marker: &str) -> Result<Option<RunRow>, AppError> {
        self.one_run("plan_wave = ?1 ORDER BY id LIMIT 1", marker.to_value())
            .await
    }

    pub async fn by_record_id(&self, id: i64) -> Result<Option<RunRow>, AppError> {
        self.one_run("id = ?1", id.to_value()).await
    }

    pub async fn by_execution_id(&self, execution_id: &str) -> Result<Option<RunRow>, AppError> {
        self.one_run("execution_id = ?1", execution_id.to_value()).await
    }

    /// Top-level runs to watch: those not finished, and finished rate-control runs whose children have
    /// not been read through once since (their pages are read a round at a time).
    pub async fn in_flight(&self) -> Result<Vec<RunRow>, AppError> {
        let placeholders = shared::RunStatus::TERMINAL
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM runs WHERE execution_id IS NOT NULL AND parent_execution_id IS NULL
               AND (status NOT IN ({placeholders}) OR children_synced = 0)
             ORDER BY id"
        );
        runs(self.db.query(&sql, args![]).await?)
    }

    /// A page of runs, newest first, as lists show them, each built straight from its row.
    pub async fn history(
        &self,
        f: &HistoryFilter,
    ) -> Result<(Vec<ExecutionSummary>, Option<Cursor>), AppError> {
        let mut sql = format!("SELECT {HISTORY_COLUMNS} FROM runs r WHERE execution_id IS NOT NULL");
        let mut args: Vec<Value> = Vec::new();
        match &f.parent {
            Some(p) => {
                args.push(p.to_value());
                sql.push_str(&format!(" AND parent_execution_id = ?{}", args.len()));
            }
            None => sql.push_str(" AND parent_execution_id IS NULL"),
        }
        push_filters(f, &mut sql, &mut args);
        if let Some((t, id)) = &f.cursor {
            args.push(t.to_value());
            let ti = args.len();
            args.push(id.to_value());
            // One row comparison, which both databases seek to in the index.
            sql.push_str(&format!(" AND (sort_time, id) < (?{ti}, ?{})", args.len()));
        }
        args.push((f.limit + 1).to_value());
        sql.push_str(&format!(
            " ORDER BY sort_time DESC, id DESC LIMIT ?{}",
            args.len()
        ));
        // The page's last row is where the next page starts, if there is one more.
        let mut last = None;
        let mut read = 0;
        let mut rows = self
            .db
            .read_map(&sql, &args, |r| {
                read += 1;
                if read == f.limit {
                    last = Some((r.required_text(12)?.to_owned(), r.required_int(13)?));
                }
                history_summary(r)
            })
            .await?;
        let next = if rows.len() > f.limit {
            rows.truncate(f.limit);
            last
        } else {
            None
        };
        Ok((rows, next))
    }

    /// Links a run to a run that rolls it back.
    pub async fn add_rolled_back_by(&self, execution_id: &str, rollback_id: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE runs SET rolled_back_by = CASE WHEN rolled_back_by IS NULL THEN ?2 ELSE rolled_back_by || ',' || ?2 END
                 WHERE execution_id = ?1",
                args![execution_id, rollback_id],
            )
            .await?;
        Ok(())
    }

    /// The validated plan a run was recorded with (JSON), for re-sending it.
    pub async fn plan_of(&self, id: i64) -> Result<Option<String>, AppError> {
        self.record_text("SELECT parameters FROM runs WHERE id = ?1", id)
            .await
    }
}

/// What every SQLite connection of the store (the writer and the readers) is set up with.
fn with_connection_settings(conn: &Connection) -> Result<(), String> {
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    // Every statement the store runs stays compiled (rusqlite keeps 16 by default, fewer than the
    // store has, so busy periods recompiled the same few over and over).
    conn.set_prepared_statement_cache_capacity(256);
    // Reads through a memory map instead of a read() call per page: the history and token queries
    // of every request read the same few pages.
    conn.pragma_update(None, "mmap_size", 256i64 << 20)
        .map_err(|e| e.to_string())
}

/// A run's instance, once (a run's record and its children's both list it).
const INSERT_RUN_INSTANCE: &str =
    "INSERT INTO run_instances (run_id, instance_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING";

fn check_version(version: usize, what: &str) -> Result<(), String> {
    if version > MIGRATIONS.len() {
        return Err(format!(
            "{what} has schema version {version}, newer than this build understands ({}); use a newer imds-console",
            MIGRATIONS.len()
        ));
    }
    Ok(())
}

fn runs(rows: Vec<Row>) -> Result<Vec<RunRow>, AppError> {
    rows.into_iter().map(row).collect()
}

/// Adds the shared filters (status, requester, instance, time window) to a query over `runs r`.
fn push_filters(f: &HistoryFilter, sql: &mut String, args: &mut Vec<Value>) {
    let mut add = |clause: &str, value: &String| {
        args.push(value.to_value());
        sql.push_str(&clause.replace("?N", &format!("?{}", args.len())));
    };
    if let Some(v) = &f.status {
        add(" AND r.status = ?N", v);
    }
    if let Some(v) = &f.requester {
        add(" AND r.requester = ?N", v);
    }
    if let Some(v) = &f.instance_id {
        add(
            " AND r.id IN (SELECT run_id FROM run_instances WHERE instance_id = ?N)",
            v,
        );
    }
    if let Some(v) = &f.since {
        add(" AND r.sort_time >= ?N", v);
    }
    if let Some(v) = &f.until {
        add(" AND r.sort_time < ?N", v);
    }
    if let Some(ids) = &f.accounts {
        if ids.is_empty() {
            sql.push_str(" AND 1 = 0");
        }
        let mut clause = String::new();
        for id in ids {
            args.push(id.to_value());
            if !clause.is_empty() {
                clause.push(',');
            }
            clause.push_str(&format!("?{}", args.len()));
        }
        if !ids.is_empty() {
            sql.push_str(&format!(" AND r.account IN ({clause})"));
        }
    }
    if let Some(ids) = &f.within {
        // Removing each allowed account from the span leaves `,` exactly when every account the run
        // acts in is allowed (REPLACE is the same in SQLite and PostgreSQL).
        let mut expr = "r.span".to_owned();
        for id in ids {
            args.push(format!(",{id},").to_value());
            expr = format!("REPLACE({expr}, ?{}, ',')", args.len());
        }
        sql.push_str(&format!(" AND (r.span IS NULL OR {expr} = ',')"));
    }
}

/// Whether every account of a run's span (`,id,id,`) is among `allowed` (None: every account).
pub fn span_within(span: Option<&str>, allowed: Option<&[String]>) -> bool {
    match (span, allowed) {
        (None, _) | (_, None) => true,
        (Some(span), Some(ids)) => span
            .split(',')
            .filter(|a| !a.is_empty())
            .all(|a| ids.iter().any(|id| id == a)),
    }
}

/// The accounts of a span, for the wire.
pub fn span_accounts(span: Option<&str>) -> Vec<String> {
    span.map(|s| {
        s.split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Audit export (the history filters, over every record including refused starts).
impl Store {
    /// How many runs (children included) have each status.
    pub async fn runs_by_status(&self) -> Result<Vec<(String, i64)>, AppError> {
        self.db
            .query(
                "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status",
                args![],
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .collect()
    }

    pub async fn audit(&self, f: &HistoryFilter) -> Result<Vec<shared::api::AuditRecord>, AppError> {
        let mut sql = String::from(
            "SELECT r.id, r.created_at, r.requester, r.region, r.document_name, r.document_version, r.client_token,
                    r.execution_id, r.status, r.instance_id, r.targets, r.parameters, r.override_reason,
                    r.prior_options, r.detail, r.failure_message, r.start_time, r.end_time, r.rollback_of,
                    r.rolled_back_by, r.started_here,
                    (SELECT group_concat(instance_id, ' ') FROM
                        (SELECT instance_id FROM run_instances WHERE run_id = r.id ORDER BY instance_id) AS ids),
                    r.stopped_by, r.account
             FROM runs r WHERE r.parent_execution_id IS NULL",
        );
        let mut args: Vec<Value> = Vec::new();
        push_filters(f, &mut sql, &mut args);
        args.push(f.limit.to_value());
        sql.push_str(&format!(" ORDER BY r.id DESC LIMIT ?{}", args.len()));
        self.db
            .query(&sql, &args)
            .await?
            .iter()
            .map(|r| {
                let detail: Option<String> = r.get(14)?;
                let outputs = detail
                    .as_deref()
                    .and_then(|d| serde_json::from_str::<shared::api::ExecutionDetail>(d).ok())
                    .map(|d| serde_json::to_string(&d.outputs).unwrap_or_default())
                    .filter(|o| o != "{}");
                Ok(shared::api::AuditRecord {
                    record_id: r.get(0)?,
                    created_at: r.get(1)?,
                    requester: r.get(2)?,
                    region: r.get(3)?,
                    document_name: r.get(4)?,
                    document_version: r.get(5)?,
                    client_token: r.get(6)?,
                    execution_id: r.get(7)?,
                    status: RunStatus::from(r.get::<String>(8)?),
                    instance_id: r.get(9)?,
                    targets: r.get(10)?,
                    parameters: r.get(11)?,
                    override_reason: r.get(12)?,
                    prior_options: r.get(13)?,
                    outputs,
                    failure_message: r.get(15)?,
                    start_time: r.get(16)?,
                    end_time: r.get(17)?,
                    rollback_of: r.get(18)?,
                    rolled_back_by: r.get(19)?,
                    started_here: r.get(20)?,
                    instance_ids: r.get::<Option<String>>(21)?.unwrap_or_default(),
                    stopped_by: r.get(22)?,
                    account: r.get(23)?,
                })
            })
            .collect()
    }
}

/// How long the posture trend is kept: a year, and a little more for a year-on-year view.
pub const POSTURE_KEEP_DAYS: i64 = 400;

impl Store {
    /// Records an account's posture for a day (`YYYY-MM-DD`, UTC); the day's last reading wins.
    pub async fn record_posture(
        &self,
        day: &str,
        account: &str,
        c: &shared::api::PostureCounts,
    ) -> Result<(), AppError> {
        self.db
            .execute(
                "INSERT INTO posture_days (day, account, total, compliant, broken, imdsv1_in_use, imdsv1_allowed)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (day, account) DO UPDATE SET total = ?3, compliant = ?4, broken = ?5,
                     imdsv1_in_use = ?6, imdsv1_allowed = ?7",
                args![day, account, c.total, c.compliant, c.broken, c.imdsv1_in_use, c.imdsv1_allowed],
            )
            .await?;
        Ok(())
    }

    /// Forgets days before `day`.
    pub async fn prune_posture(&self, day: &str) -> Result<(), AppError> {
        self.db
            .execute("DELETE FROM posture_days WHERE day < ?1", args![day])
            .await?;
        Ok(())
    }

    /// The posture per day since `since_day`, summed over `accounts` (None: all), oldest first.
    pub async fn posture_trend(
        &self,
        since_day: &str,
        accounts: Option<&[String]>,
    ) -> Result<Vec<(String, shared::api::PostureCounts)>, AppError> {
        let rows = self
            .db
            .query(
                "SELECT day, account, total, compliant, broken, imdsv1_in_use, imdsv1_allowed
                 FROM posture_days WHERE day >= ?1 ORDER BY day",
                args![since_day],
            )
            .await?;
        let count = |r: &Row, i| r.get::<i64>(i).map(|n| n as usize);
        let mut out: Vec<(String, shared::api::PostureCounts)> = Vec::new();
        for r in &rows {
            let (day, account): (String, String) = (r.get(0)?, r.get(1)?);
            if accounts.is_some_and(|a| !a.contains(&account)) {
                continue;
            }
            let c = shared::api::PostureCounts {
                total: count(r, 2)?,
                compliant: count(r, 3)?,
                broken: count(r, 4)?,
                imdsv1_in_use: count(r, 5)?,
                imdsv1_allowed: count(r, 6)?,
            };
            match out.last_mut() {
                Some((d, sum)) if *d == day => {
                    sum.total += c.total;
                    sum.compliant += c.compliant;
                    sum.broken += c.broken;
                    sum.imdsv1_in_use += c.imdsv1_in_use;
                    sum.imdsv1_allowed += c.imdsv1_allowed;
                }
                _ => out.push((day, c)),
            }
        }
        Ok(out)
    }

    /// Runs started since `since` (RFC 3339) in `accounts` ('' for the console's own; None: all):
    /// how many, how many instances they covered, and who started them.
    pub async fn started_since(
        &self,
        since: &str,
        accounts: Option<&[String]>,
        within: Option<&[String]>,
    ) -> Result<(usize, usize, Vec<String>), AppError> {
        let rows = self
            .db
            .query(
                "SELECT r.id, r.account, r.requester, (SELECT COUNT(*) FROM run_instances i WHERE i.run_id = r.id), r.span
                 FROM runs r WHERE r.started_here = 1 AND r.parent_execution_id IS NULL AND r.execution_id IS NOT NULL
                   AND r.created_at >= ?1",
                args![since],
            )
            .await?;
        let mut runs = 0;
        let mut instances = 0;
        let mut people: Vec<String> = Vec::new();
        for r in &rows {
            let account: String = r.get(1)?;
            if accounts.is_some_and(|a| !a.contains(&account))
                || !span_within(r.get::<Option<String>>(4)?.as_deref(), within)
            {
                continue;
            }
            runs += 1;
            instances += r.get::<i64>(3)? as usize;
            if let Some(p) = r.get::<Option<String>>(2)? {
                if !people.contains(&p) {
                    people.push(p);
                }
            }
        }
        people.sort();
        Ok((runs, instances, people))
    }
}

/// A start held for approval, as the store keeps it.
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub record_id: i64,
    pub why: String,
    pub requester: String,
    pub created_at: String,
    pub expires_at: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub comment: Option<String>,
    /// How the approver authenticated (session, token, sso).
    pub decided_via: Option<String>,
}

const APPROVAL_COLUMNS: &str =
    "record_id, why, requester, created_at, expires_at, status, decided_by, decided_at, comment, decided_via";

fn approval_row(r: &Row) -> Result<ApprovalRow, AppError> {
    Ok(ApprovalRow {
        record_id: r.get(0)?,
        why: r.get(1)?,
        requester: r.get(2)?,
        created_at: r.get(3)?,
        expires_at: r.get(4)?,
        status: r.get(5)?,
        decided_by: r.get(6)?,
        decided_at: r.get(7)?,
        comment: r.get(8)?,
        decided_via: r.get(9)?,
    })
}

/// Approvals and settings.
impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>, AppError> {
        self.db
            .query_opt("SELECT value FROM settings WHERE key = ?1", args![key])
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                args![key, value],
            )
            .await?;
        Ok(())
    }

    pub async fn approval(&self, record_id: i64) -> Result<Option<ApprovalRow>, AppError> {
        self.db
            .query_opt(
                &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE record_id = ?1"),
                args![record_id],
            )
            .await?
            .map(|r| approval_row(&r))
            .transpose()
    }

    /// Approvals newest first: the pending ones, or every one.
    pub async fn approvals(&self, pending_only: bool, limit: usize) -> Result<Vec<ApprovalRow>, AppError> {
        let filter = if pending_only {
            "WHERE status = 'pending'"
        } else {
            ""
        };
        self.db
            .query(
                &format!(
                    "SELECT {APPROVAL_COLUMNS} FROM approvals {filter} ORDER BY record_id DESC LIMIT ?1"
                ),
                args![limit],
            )
            .await?
            .iter()
            .map(approval_row)
            .collect()
    }

    /// Decides a pending approval, and moves its run on: approved to Recorded (to be sent), anything
    /// else to Rejected with why. One transaction, and only while both are still pending, so two
    /// people deciding at once cannot both win. Returns whether this decision was the one.
    pub async fn decide_approval(
        &self,
        record_id: i64,
        status: &str,
        who: &str,
        via: Option<&str>,
        comment: Option<&str>,
        run_message: Option<&str>,
    ) -> Result<bool, AppError> {
        let mut tx = self.db.begin().await?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, comment = ?5, decided_via = ?6
                 WHERE record_id = ?1 AND status = 'pending'",
                args![record_id, status, who, now_rfc3339(), comment, via],
            )
            .await?;
        if changed == 1 {
            let run_status = if status == "approved" {
                STATUS_RECORDED
            } else {
                STATUS_REJECTED
            };
            tx.execute(
                "UPDATE runs SET status = ?2, failure_message = COALESCE(?3, failure_message)
                 WHERE id = ?1 AND status = ?4",
                args![record_id, run_status, run_message, STATUS_AWAITING_APPROVAL],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}

/// A webhook as stored: ID, URL, format (`json`/`slack`), creator, creation time.
pub type WebhookRow = (i64, String, String, String, String);

/// A queued delivery: ID, webhook ID, URL, body, attempts so far.
pub type DueDelivery = (i64, i64, String, String, u32);

/// Webhooks and their deliveries.
impl Store {
    pub async fn add_webhook(&self, url: &str, format: &str, who: &str) -> Result<i64, AppError> {
        self.db
            .query_one(
                "INSERT INTO webhooks (url, format, created_by, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING webhook_id",
                args![url, format, who, now_rfc3339()],
            )
            .await?
            .get(0)
    }

    pub async fn delete_webhook(&self, id: i64) -> Result<bool, AppError> {
        Ok(self
            .db
            .execute(
                "UPDATE webhooks SET deleted = 1 WHERE webhook_id = ?1 AND deleted = 0",
                args![id],
            )
            .await?
            == 1)
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, AppError> {
        self.db
            .query(
                "SELECT webhook_id, url, format, created_by, created_at FROM webhooks WHERE deleted = 0 ORDER BY webhook_id",
                args![],
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .collect()
    }

    /// Queues one delivery of `body` to every webhook (each in its own format, built by `body_for`).
    /// Queues a delivery to every webhook, or to the one `only` names.
    pub async fn queue_deliveries(
        &self,
        event: &str,
        summary: &str,
        now_ms: i64,
        only: Option<i64>,
        body_for: impl Fn(&str) -> String,
    ) -> Result<usize, AppError> {
        let mut hooks = self.webhooks().await?;
        hooks.retain(|h| only.is_none_or(|id| h.0 == id));
        let mut conn = self.db.conn().await?;
        for (id, _, format, _, _) in &hooks {
            conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, event, summary, body, status, next_attempt_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
                args![id, event, summary, body_for(format), now_ms, now_rfc3339()],
            )
            .await?;
        }
        Ok(hooks.len())
    }

    /// Deliveries due now, oldest first.
    pub async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<DueDelivery>, AppError> {
        self.db
            .query(
                "SELECT d.delivery_id, d.webhook_id, w.url, d.body, d.attempts FROM webhook_deliveries d
                 JOIN webhooks w ON w.webhook_id = d.webhook_id
                 WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1 AND w.deleted = 0
                 ORDER BY d.delivery_id LIMIT ?2",
                args![now_ms, limit],
            )
            .await?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .collect()
    }

    /// Records one attempt: delivered, retried at `retry_at_ms`, or given up (`retry_at_ms` None). The
    /// last error stays after a later success, so admins see that a delivery needed retries.
    pub async fn record_attempt(
        &self,
        delivery_id: i64,
        delivered: bool,
        error: Option<&str>,
        retry_at_ms: Option<i64>,
    ) -> Result<(), AppError> {
        let status = match (delivered, retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        self.db
            .execute(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?2, last_error = COALESCE(?3, last_error),
                    next_attempt_ms = COALESCE(?4, next_attempt_ms),
                    delivered_at = CASE WHEN ?2 = 'delivered' THEN ?5 ELSE delivered_at END
                 WHERE delivery_id = ?1",
                args![delivery_id, status, error, retry_at_ms, now_rfc3339()],
            )
            .await?;
        Ok(())
    }

    pub async fn deliveries(
        &self,
        webhook_id: i64,
        limit: usize,
    ) -> Result<Vec<shared::webhooks::DeliveryView>, AppError> {
        self.db
            .query(
                "SELECT delivery_id, event, summary, status, attempts, last_error, created_at, delivered_at
                 FROM webhook_deliveries WHERE webhook_id = ?1 ORDER BY delivery_id DESC LIMIT ?2",
                args![webhook_id, limit],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(shared::webhooks::DeliveryView {
                    delivery_id: r.get(0)?,
                    event: r.get(1)?,
                    summary: r.get(2)?,
                    status: r.get(3)?,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    created_at: r.get(6)?,
                    delivered_at: r.get(7)?,
                })
            })
            .collect()
    }
}

/// Rollout plans, each kept whole as JSON (a plan is a few kilobytes) with its status beside it.
impl Store {
    pub async fn save_plan(&self, plan: &shared::plans::PlanView) -> Result<(), AppError> {
        let body = serde_json::to_string(plan).map_err(AppError::internal)?;
        self.db
            .execute(
                "INSERT INTO plans (plan_id, name, requester, created_at, status, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (plan_id) DO UPDATE SET status = excluded.status, body = excluded.body",
                args![plan.plan_id, plan.name, plan.requester, plan.created_at, plan.status.as_str(), body],
            )
            .await?;
        Ok(())
    }

    pub async fn plan(&self, plan_id: &str) -> Result<Option<shared::plans::PlanView>, AppError> {
        match self
            .db
            .query_opt("SELECT body FROM plans WHERE plan_id = ?1", args![plan_id])
            .await?
        {
            Some(r) => serde_json::from_str(&r.get::<String>(0)?)
                .map(Some)
                .map_err(AppError::internal),
            None => Ok(None),
        }
    }

    /// Plans newest first; with `statuses`, only those (filtered by SQL: the driver asks every round
    /// for the running ones, and must not parse every finished plan to find them).
    pub async fn plans(
        &self,
        statuses: &[&str],
        limit: usize,
    ) -> Result<Vec<shared::plans::PlanView>, AppError> {
        let filter = if statuses.is_empty() {
            String::new()
        } else {
            let marks: Vec<String> = (2..statuses.len() + 2).map(|i| format!("?{i}")).collect();
            format!("WHERE status IN ({})", marks.join(", "))
        };
        let mut args = vec![limit.to_value()];
        args.extend(statuses.iter().map(ToValue::to_value));
        self.db
            .query(
                &format!("SELECT body FROM plans {filter} ORDER BY created_at DESC, plan_id LIMIT ?1"),
                &args,
            )
            .await?
            .iter()
            .map(|r| serde_json::from_str(&r.get::<String>(0)?).map_err(AppError::internal))
            .collect()
    }
}

const FIX_COLUMNS: &str =
    "fix_id, source_id, kind, account, region, requester, created_at, override_reason, prior, \
     applied, status, error, reverted_by, reverted_at, resource, hop_limit";

/// A source fix row, with the resource it changes and the hop limit it asked for.
fn fix_row(r: &Row) -> Result<(shared::sources::SourceFix, String, Option<u8>), AppError> {
    fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, AppError> {
        serde_json::from_str(text)
            .map_err(|e| AppError::internal(format!("store: source_fixes.{column}: {e}")))
    }
    let kind: String = r.get(2)?;
    let fix = shared::sources::SourceFix {
        fix_id: r.get(0)?,
        source_id: r.get(1)?,
        kind: json("kind", &format!("\"{kind}\""))?,
        account: r.get(3)?,
        region: r.get(4)?,
        requester: r.get(5)?,
        created_at: r.get(6)?,
        override_reason: r.get(7)?,
        prior: json("prior", &r.get::<String>(8)?)?,
        applied: r
            .get::<Option<String>>(9)?
            .map(|t| json("applied", &t))
            .transpose()?,
        status: r.get(10)?,
        error: r.get(11)?,
        reverted_by: r.get(12)?,
        reverted_at: r.get(13)?,
    };
    let hop: Option<i64> = r.get(15)?;
    Ok((fix, r.get(14)?, hop.and_then(|h| u8::try_from(h).ok())))
}

/// The audit trail of source fixes: one row per fix, written before AWS is called.
impl Store {
    pub async fn record_source_fix(
        &self,
        fix: &shared::sources::SourceFix,
        resource: &str,
        hop_limit: Option<u8>,
    ) -> Result<(), AppError> {
        let to_json = |v: &shared::sources::SourceState| serde_json::to_string(v).unwrap_or_default();
        self.db
            .execute(
                "INSERT INTO source_fixes (fix_id, source_id, kind, account, region, resource, hop_limit, requester,
                    created_at, override_reason, prior, applied, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                args![
                    fix.fix_id,
                    fix.source_id,
                    fix.kind.as_str(),
                    fix.account,
                    fix.region,
                    resource,
                    hop_limit.map(u32::from),
                    fix.requester,
                    fix.created_at,
                    fix.override_reason,
                    to_json(&fix.prior),
                    fix.applied.as_ref().map(to_json),
                    fix.status,
                ],
            )
            .await?;
        Ok(())
    }

    /// The fix was sent: `applied` (with the state AWS now has) or `failed` (with why).
    pub async fn finish_source_fix(
        &self,
        fix_id: &str,
        status: &str,
        applied: Option<&shared::sources::SourceState>,
        error: Option<&str>,
    ) -> Result<(), AppError> {
        let applied = applied.map(|a| serde_json::to_string(a).unwrap_or_default());
        self.db
            .execute(
                "UPDATE source_fixes SET status = ?2, applied = COALESCE(?3, applied), error = ?4 WHERE fix_id = ?1",
                args![fix_id, status, applied, error],
            )
            .await?;
        Ok(())
    }

    pub async fn revert_source_fix(&self, fix_id: &str, who: &str) -> Result<(), AppError> {
        self.db
            .execute(
                "UPDATE source_fixes SET status = 'reverted', reverted_by = ?2, reverted_at = ?3 WHERE fix_id = ?1",
                args![fix_id, who, now_rfc3339()],
            )
            .await?;
        Ok(())
    }

    pub async fn source_fix(&self, fix_id: &str) -> Result<Option<shared::sources::SourceFix>, AppError> {
        Ok(self.source_fix_with_target(fix_id).await?.map(|(f, _, _)| f))
    }

    pub async fn source_fix_with_target(
        &self,
        fix_id: &str,
    ) -> Result<Option<(shared::sources::SourceFix, String, Option<u8>)>, AppError> {
        self.db
            .query_opt(
                &format!("SELECT {FIX_COLUMNS} FROM source_fixes WHERE fix_id = ?1"),
                args![fix_id],
            )
            .await?
            .map(|r| fix_row(&r))
            .transpose()
    }

    pub async fn source_fixes_in(
        &self,
        status: &str,
    ) -> Result<Vec<(shared::sources::SourceFix, String, Option<u8>)>, AppError> {
        self.db
            .query(
                &format!("SELECT {FIX_COLUMNS} FROM source_fixes WHERE status = ?1 ORDER BY created_at"),
                args![status],
            )
            .await?
            .iter()
            .map(fix_row)
            .collect()
    }

    /// The newest `limit` fixes, newest first.
    pub async fn source_fix_list(&self, limit: usize) -> Result<Vec<shared::sources::SourceFix>, AppError> {
        self.db
            .query(
                &format!("SELECT {FIX_COLUMNS} FROM source_fixes ORDER BY created_at DESC, fix_id LIMIT ?1"),
                args![limit],
            )
            .await?
            .iter()
            .map(|r| fix_row(r).map(|(f, _, _)| f))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_written_by_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).expect("new store");
        let conn = Connection::open(dir.path().join("imds-console.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(dir.path()).err().expect("refused");
        assert!(err.contains("schema version 99"), "{err}");
    }
}
