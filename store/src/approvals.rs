//! Starts held for a second person's approval, and the console's settings.

use crate::db::Row;
use crate::{Store, StoreError};
use crate::{STATUS_AWAITING_APPROVAL, STATUS_RECORDED, STATUS_REJECTED};

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
    /// The requester's review (JSON).
    pub review: Option<String>,
    pub comment: Option<String>,
    /// How the approver authenticated (session, token, sso).
    pub decided_via: Option<String>,
}

const APPROVAL_COLUMNS: &str =
    "record_id, why, requester, created_at, expires_at, status, decided_by, decided_at, comment, decided_via, review";

fn approval_row(r: &Row) -> Result<ApprovalRow, StoreError> {
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
        review: r.get(10)?,
    })
}

/// Approvals and settings.
impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.db
            .query_opt("SELECT value FROM settings WHERE key = ?1", args![key])
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                args![key, value],
            )
            .await?;
        Ok(())
    }

    pub async fn approval(&self, record_id: i64) -> Result<Option<ApprovalRow>, StoreError> {
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
    pub async fn approvals(&self, pending_only: bool, limit: usize) -> Result<Vec<ApprovalRow>, StoreError> {
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
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin().await?;
        let changed = tx
            .execute(
                "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, comment = ?5, decided_via = ?6
                 WHERE record_id = ?1 AND status = 'pending'",
                // The console's clock: an approved start's age counts from this moment.
                args![record_id, status, who, crate::rfc3339_ms(self.clock.now_ms()), comment, via],
            )
            .await?;
        if changed == 1 {
            let run_status = if status == "approved" {
                STATUS_RECORDED
            } else {
                STATUS_REJECTED
            };
            // The decision is when an approved start's sending begins (see `recorded_before`).
            tx.execute(
                "UPDATE runs SET status = ?2, failure_message = COALESCE(?3, failure_message), unsettled_at_ms = ?5
                 WHERE id = ?1 AND status = ?4",
                args![record_id, run_status, run_message, STATUS_AWAITING_APPROVAL, self.clock.now_ms()],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(changed == 1)
    }
}
