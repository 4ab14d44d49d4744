//! Runs: one record per start, written before it is sent, then what SSM says about it; history,
//! the audit export and the accounts a run spans.

use shared::api::ExecutionSummary;
use shared::RunStatus;

use crate::db::{Row, RowRef, ToValue, Value};
use crate::{Store, StoreError};

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
    /// The requester's review (JSON), kept with a held start for its approver.
    pub review: Option<&'a str>,
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
    /// When its outcome last became unclear, or it was last queued (epoch ms).
    pub unsettled_at_ms: Option<i64>,
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
            // The list's query reads it with the row; one run's reader adds it (`Store::approved_by`).
            approved_by: None,
        }
    }
}

const ROW_COLUMNS: &str =
    "id, client_token, execution_id, region, document_name, requester, status, instance_id, targets, \
     parent_execution_id, start_time, end_time, detail, detail_at_ms, started_here, created_at, override_reason, \
     prior_options, rollback_of, rolled_back_by, account, span, unsettled_at_ms";

/// What a history row shows ([`ExecutionSummary`]), then where it sorts: a page reads 51 rows, and
/// what lists never show (the cached detail view alone is kilobytes) stays in the database.
pub(crate) const HISTORY_COLUMNS: &str =
    "execution_id, account, region, document_name, status, instance_id, targets, parent_execution_id, \
     requester, COALESCE(start_time, created_at), end_time, started_here, sort_time, id, \
     (SELECT a.decided_by FROM approvals a WHERE a.record_id = r.id AND a.status = 'approved')";

/// A run as lists show it, from a row of [`HISTORY_COLUMNS`].
pub(crate) fn history_summary(r: &RowRef<'_>) -> Result<ExecutionSummary, StoreError> {
    let text = |i| Ok::<_, StoreError>(r.required_text(i)?.to_owned());
    let optional = |i| Ok::<_, StoreError>(r.text(i)?.map(str::to_owned));
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
        approved_by: optional(14)?,
    })
}

fn row(mut r: Row) -> Result<RunRow, StoreError> {
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
        unsettled_at_ms: r.take(22)?,
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

impl Store {
    /// Records a run before it is sent; returns the record ID.
    pub async fn record_start(&self, run: &NewRun<'_>) -> Result<i64, StoreError> {
        let mut tx = self.db.begin().await?;
        let now = self.clock.now_rfc3339();
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
                "INSERT INTO approvals (record_id, why, requester, created_at, expires_at, status, review)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
                args![id, why, run.requester, now, expires_at, run.review],
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
    pub async fn set_execution_id(&self, id: i64, execution_id: &str) -> Result<(), StoreError> {
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
    ) -> Result<bool, StoreError> {
        let now = self.clock.now_rfc3339();
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
    pub async fn set_unknown(&self, id: i64, message: &str) -> Result<(), StoreError> {
        self.set_unacknowledged(id, STATUS_UNKNOWN, message).await
    }

    /// Marks a start SSM answered "not now"; the watcher sends it again.
    pub async fn set_queued(&self, id: i64, message: &str) -> Result<(), StoreError> {
        self.set_unacknowledged(id, STATUS_QUEUED, message).await
    }

    /// SSM refused the start for good.
    pub async fn set_refused(&self, id: i64, message: &str) -> Result<(), StoreError> {
        self.set_unacknowledged(id, STATUS_REFUSED, message).await
    }

    /// Sets the status of a start SSM has not acknowledged (an acknowledged one is the watcher's).
    async fn set_unacknowledged(&self, id: i64, status: &str, message: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE runs SET status = ?2, failure_message = ?3, unsettled_at_ms = ?4 WHERE id = ?1 AND execution_id IS NULL",
                args![id, status, message, self.clock.now_ms()],
            )
            .await?;
        Ok(())
    }

    /// One column of a record, if the record exists and the column is set.
    async fn record_text(&self, sql: &str, id: i64) -> Result<Option<String>, StoreError> {
        match self.db.query_opt(sql, args![id]).await? {
            Some(row) => row.get(0),
            None => Ok(None),
        }
    }

    /// Every account a run across accounts acts in (`,id,id,`), if it is one.
    pub async fn span_of(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.record_text("SELECT span FROM runs WHERE id = ?1", id).await
    }

    /// The execution a rollback record reverts.
    pub async fn rollback_of(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.record_text("SELECT rollback_of FROM runs WHERE id = ?1", id)
            .await
    }

    /// Records the fresh ClientToken of a start about to be sent again (recorded before it is sent).
    pub async fn set_client_token(&self, id: i64, token: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE runs SET client_token = ?2 WHERE id = ?1 AND execution_id IS NULL",
                args![id, token],
            )
            .await?;
        Ok(())
    }

    /// The tag key suffix that marks this record's execution in SSM (None for records older than it).
    pub async fn run_tag_of(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.record_text("SELECT run_tag FROM runs WHERE id = ?1", id)
            .await
    }

    /// Starts not yet settled, with the given statuses (Recorded, Unknown), oldest first.
    pub async fn unsettled(&self, statuses: &[&str]) -> Result<Vec<RunRow>, StoreError> {
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
    /// A start approved after a long hold counts from its approval (`unsettled_at_ms`), not from
    /// when it was asked for: its sender is alive.
    pub async fn recorded_before(
        &self,
        created_before: &str,
        before_ms: i64,
    ) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM runs WHERE execution_id IS NULL AND started_here = 1 AND status = ?1
               AND created_at < ?2 AND (unsettled_at_ms IS NULL OR unsettled_at_ms < ?3) ORDER BY id"
        );
        runs(
            self.db
                .query(&sql, args![STATUS_RECORDED, created_before, before_ms])
                .await?,
        )
    }

    /// The console's rollback starts of `execution_id` recorded after record `after_id`.
    pub async fn rollbacks_of(&self, execution_id: &str, after_id: i64) -> Result<Vec<RunRow>, StoreError> {
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM runs WHERE rollback_of = ?1 AND id > ?2 AND started_here = 1 ORDER BY id"
        );
        runs(self.db.query(&sql, args![execution_id, after_id]).await?)
    }

    /// The newest record's ID (0 when there is none).
    pub async fn last_record_id(&self) -> Result<i64, StoreError> {
        self.db
            .query_one("SELECT COALESCE(MAX(id), 0) FROM runs", args![])
            .await?
            .get(0)
    }

    /// Records what SSM says about an execution. Returns true when its status changed.
    pub async fn update_execution(
        &self,
        execution_id: &str,
        u: &ExecutionUpdate<'_>,
    ) -> Result<bool, StoreError> {
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
    pub async fn set_children_synced(&self, execution_id: &str, synced: bool) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE runs SET children_synced = ?2 WHERE execution_id = ?1 AND children_synced <> ?2",
                args![execution_id, synced],
            )
            .await?;
        Ok(())
    }

    /// How many instances a run recorded as its targets.
    pub async fn instance_count(&self, id: i64) -> Result<usize, StoreError> {
        let n: i64 = self
            .db
            .query_one("SELECT COUNT(*) FROM run_instances WHERE run_id = ?1", args![id])
            .await?
            .get(0)?;
        Ok(n as usize)
    }

    /// Notes who asked SSM to stop a run (the latest, if several did).
    pub async fn set_stopped_by(&self, execution_id: &str, who: &str) -> Result<(), StoreError> {
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
    ) -> Result<bool, StoreError> {
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
            let now = self.clock.now_rfc3339();
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

    async fn one_run(&self, filter: &str, arg: Value) -> Result<Option<RunRow>, StoreError> {
        let sql = format!("SELECT {ROW_COLUMNS} FROM runs WHERE {filter}");
        self.db.query_opt(&sql, &[arg]).await?.map(row).transpose()
    }

    /// The plan wave a run belongs to (`plan_id/index`), if any.
    pub async fn plan_wave_of(&self, record_id: i64) -> Result<Option<String>, StoreError> {
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
    /// The newest run recorded for a plan's wave.
    pub async fn by_plan_wave(&self, marker: &str) -> Result<Option<RunRow>, StoreError> {
        self.one_run("plan_wave = ?1 ORDER BY id DESC LIMIT 1", marker.to_value())
            .await
    }

    pub async fn by_record_id(&self, id: i64) -> Result<Option<RunRow>, StoreError> {
        self.one_run("id = ?1", id.to_value()).await
    }

    pub async fn by_execution_id(&self, execution_id: &str) -> Result<Option<RunRow>, StoreError> {
        self.one_run("execution_id = ?1", execution_id.to_value()).await
    }

    /// Top-level runs to watch: those not finished, and finished rate-control runs whose children have
    /// not been read through once since (their pages are read a round at a time).
    pub async fn in_flight(&self) -> Result<Vec<RunRow>, StoreError> {
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

    /// Links a run to a run that rolls it back.
    pub async fn add_rolled_back_by(&self, execution_id: &str, rollback_id: &str) -> Result<(), StoreError> {
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
    pub async fn plan_of(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.record_text("SELECT parameters FROM runs WHERE id = ?1", id)
            .await
    }
}

/// A run's instance, once (a run's record and its children's both list it).
const INSERT_RUN_INSTANCE: &str =
    "INSERT INTO run_instances (run_id, instance_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING";

fn runs(rows: Vec<Row>) -> Result<Vec<RunRow>, StoreError> {
    rows.into_iter().map(row).collect()
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
