//! Rollout plans, each kept whole as JSON with its status beside it.

use crate::db::ToValue;
use crate::{Store, StoreError};

/// Rollout plans, each kept whole as JSON (a plan is a few kilobytes) with its status beside it.
impl Store {
    pub async fn save_plan(&self, plan: &shared::plans::PlanView) -> Result<(), StoreError> {
        let body = serde_json::to_string(plan).map_err(StoreError::corrupt)?;
        self.db
            .execute(
                "INSERT INTO plans (plan_id, name, requester, created_at, status, body, rolling_back) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (plan_id) DO UPDATE SET status = excluded.status, body = excluded.body,
                     rolling_back = excluded.rolling_back",
                args![
                    plan.plan_id,
                    plan.name,
                    plan.requester,
                    plan.created_at,
                    plan.status.as_str(),
                    body,
                    plan.waves.iter().any(shared::plans::WaveView::rolling_back)
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn plan(&self, plan_id: &str) -> Result<Option<shared::plans::PlanView>, StoreError> {
        match self
            .db
            .query_opt("SELECT body FROM plans WHERE plan_id = ?1", args![plan_id])
            .await?
        {
            Some(r) => serde_json::from_str(&r.get::<String>(0)?)
                .map(Some)
                .map_err(StoreError::corrupt),
            None => Ok(None),
        }
    }

    /// The plans with a wave whose rollback the console is still carrying out, whatever their status.
    pub async fn plans_rolling_back(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .query("SELECT plan_id FROM plans WHERE rolling_back = 1", args![])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Plans newest first; with `statuses`, only those (filtered by SQL: the driver asks every round
    /// for the running ones, and must not parse every finished plan to find them).
    pub async fn plans(
        &self,
        statuses: &[&str],
        limit: usize,
    ) -> Result<Vec<shared::plans::PlanView>, StoreError> {
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
            .map(|r| serde_json::from_str(&r.get::<String>(0)?).map_err(StoreError::corrupt))
            .collect()
    }
}
