//! History and the audit export: pages of runs as lists show them, filtered the same way.

use shared::api::ExecutionSummary;
use shared::RunStatus;

use crate::db::{ToValue, Value};
use crate::runs::{history_summary, Cursor, HistoryFilter, HISTORY_COLUMNS};
use crate::{Store, StoreError};

impl Store {
    /// A page of runs, newest first, as lists show them, each built straight from its row.
    pub async fn history(
        &self,
        f: &HistoryFilter,
    ) -> Result<(Vec<ExecutionSummary>, Option<Cursor>), StoreError> {
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

/// Audit export (the history filters, over every record including refused starts).
impl Store {
    /// How many runs (children included) have each status.
    pub async fn runs_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
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

    pub async fn audit(&self, f: &HistoryFilter) -> Result<Vec<shared::api::AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT r.id, r.created_at, r.requester, r.region, r.document_name, r.document_version, r.client_token,
                    r.execution_id, r.status, r.instance_id, r.targets, r.parameters, r.override_reason,
                    r.prior_options, r.detail, r.failure_message, r.start_time, r.end_time, r.rollback_of,
                    r.rolled_back_by, r.started_here,
                    (SELECT group_concat(instance_id, ' ') FROM
                        (SELECT instance_id FROM run_instances WHERE run_id = r.id ORDER BY instance_id) AS ids),
                    r.stopped_by, r.account,
                    (SELECT a.decided_by FROM approvals a WHERE a.record_id = r.id AND a.status = 'approved')
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
                    approved_by: r.get(24)?,
                })
            })
            .collect()
    }
}
