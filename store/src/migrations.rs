//! The schema's versions, applied in order at open; `PRAGMA user_version` (SQLite) or the
//! `schema_version` row (PostgreSQL) holds how many have run. The same SQL serves both databases.

/// Schema versions, applied in order; `PRAGMA user_version` holds how many have run.
pub(crate) const MIGRATIONS: &[&str] = &[
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
    // Plans with a wave being rolled back: the driver follows them whatever the plan's status.
    r"
ALTER TABLE plans ADD COLUMN rolling_back INTEGER NOT NULL DEFAULT 0;
",
    // When a start's outcome last became unclear (or it was queued): it is sent again only after
    // SSM's list has had time to show it.
    r"
ALTER TABLE runs ADD COLUMN unsettled_at_ms INTEGER;
",
    // What the requester reviewed when they asked, kept with the held start for its approver.
    r"
ALTER TABLE approvals ADD COLUMN review TEXT;
",
];
