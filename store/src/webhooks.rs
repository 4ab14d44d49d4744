//! Webhooks and their deliveries, queued in the store so a restart loses none.

use crate::{Store, StoreError};

/// A webhook as stored: ID, URL, format (`json`/`slack`), creator, creation time.
pub type WebhookRow = (i64, String, String, String, String);

/// A queued delivery: ID, webhook ID, URL, body, attempts so far.
pub type DueDelivery = (i64, i64, String, String, u32);

/// Webhooks and their deliveries.
impl Store {
    pub async fn add_webhook(&self, url: &str, format: &str, who: &str) -> Result<i64, StoreError> {
        self.db
            .query_one(
                "INSERT INTO webhooks (url, format, created_by, created_at) VALUES (?1, ?2, ?3, ?4) RETURNING webhook_id",
                args![url, format, who, self.clock.now_rfc3339()],
            )
            .await?
            .get(0)
    }

    pub async fn delete_webhook(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self
            .db
            .execute(
                "UPDATE webhooks SET deleted = 1 WHERE webhook_id = ?1 AND deleted = 0",
                args![id],
            )
            .await?
            == 1)
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StoreError> {
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
    ) -> Result<usize, StoreError> {
        let mut hooks = self.webhooks().await?;
        hooks.retain(|h| only.is_none_or(|id| h.0 == id));
        let mut conn = self.db.conn().await?;
        for (id, _, format, _, _) in &hooks {
            conn.execute(
                "INSERT INTO webhook_deliveries (webhook_id, event, summary, body, status, next_attempt_ms, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6)",
                args![id, event, summary, body_for(format), now_ms, self.clock.now_rfc3339()],
            )
            .await?;
        }
        Ok(hooks.len())
    }

    /// Deliveries due now, oldest first.
    pub async fn due_deliveries(&self, now_ms: i64, limit: usize) -> Result<Vec<DueDelivery>, StoreError> {
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
    ) -> Result<(), StoreError> {
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
                args![delivery_id, status, error, retry_at_ms, self.clock.now_rfc3339()],
            )
            .await?;
        Ok(())
    }

    pub async fn deliveries(
        &self,
        webhook_id: i64,
        limit: usize,
    ) -> Result<Vec<shared::webhooks::DeliveryView>, StoreError> {
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
