//! What replicas share besides runs: SSM budget slots, the leader's fleet snapshot and the places
//! followers want read, and the daily posture trend.

use crate::db::Row;
use crate::span_within;
use crate::{Store, StoreError};

impl Store {
    /// Takes the next slot of a budget several replicas share, `gap_ms` after the slot before it;
    /// returns how long to wait for it. The database's clock decides, so replicas' clocks need not
    /// agree. PostgreSQL only (one process on SQLite keeps its budgets in memory).
    pub async fn reserve_slot(&self, budget: &str, gap_ms: i64) -> Result<std::time::Duration, StoreError> {
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
    ) -> Result<Result<(), std::time::Duration>, StoreError> {
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
    pub async fn push_back_slot(&self, budget: &str, by_ms: i64) -> Result<(), StoreError> {
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
    pub async fn save_fleet(&self, read_at_ms: i64, body: &str) -> Result<(), StoreError> {
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
    pub async fn fleet_version(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.db
            .query_opt(
                "SELECT version, read_at_ms FROM fleet_snapshot WHERE id = 1",
                args![],
            )
            .await?
            .map(|r| Ok((r.get(0)?, r.get(1)?)))
            .transpose()
    }

    pub async fn fleet_body(&self) -> Result<Option<String>, StoreError> {
        self.db
            .query_opt("SELECT body FROM fleet_snapshot WHERE id = 1", args![])
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    /// Asks the leader to read `places` again (`account/region`; '' for a fresher snapshot).
    pub async fn want_fleet(&self, places: &[String]) -> Result<(), StoreError> {
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
    pub async fn take_fleet_wanted(&self) -> Result<Vec<String>, StoreError> {
        self.db
            .query("DELETE FROM fleet_wanted RETURNING place", args![])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Sends `payload` to every session listening on `channel` (PostgreSQL's NOTIFY).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        self.db
            .execute("SELECT pg_notify(?1, ?2)", args![channel, payload])
            .await?;
        Ok(())
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
    ) -> Result<(), StoreError> {
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
    pub async fn prune_posture(&self, day: &str) -> Result<(), StoreError> {
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
    ) -> Result<Vec<(String, shared::api::PostureCounts)>, StoreError> {
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
    ) -> Result<(usize, usize, Vec<String>), StoreError> {
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
