//! Source fixes (launch templates, account defaults): one row per fix, written before AWS is called.

use crate::db::Row;
use crate::{Store, StoreError};

const FIX_COLUMNS: &str =
    "fix_id, source_id, kind, account, region, requester, created_at, override_reason, prior, \
     applied, status, error, reverted_by, reverted_at, resource, hop_limit";

/// A source fix row, with the resource it changes and the hop limit it asked for.
fn fix_row(r: &Row) -> Result<(shared::sources::SourceFix, String, Option<u8>), StoreError> {
    fn json<T: serde::de::DeserializeOwned>(column: &str, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::corrupt(format!("source_fixes.{column}: {e}")))
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
    ) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
        let applied = applied.map(|a| serde_json::to_string(a).unwrap_or_default());
        self.db
            .execute(
                "UPDATE source_fixes SET status = ?2, applied = COALESCE(?3, applied), error = ?4 WHERE fix_id = ?1",
                args![fix_id, status, applied, error],
            )
            .await?;
        Ok(())
    }

    /// The fix was undone; `left` says what the revert could not undo (kept in `error`, shown with it).
    pub async fn revert_source_fix(
        &self,
        fix_id: &str,
        who: &str,
        left: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE source_fixes SET status = 'reverted', reverted_by = ?2, reverted_at = ?3, error = ?4 WHERE fix_id = ?1",
                args![fix_id, who, self.clock.now_rfc3339(), left],
            )
            .await?;
        Ok(())
    }

    pub async fn source_fix(&self, fix_id: &str) -> Result<Option<shared::sources::SourceFix>, StoreError> {
        Ok(self.source_fix_with_target(fix_id).await?.map(|(f, _, _)| f))
    }

    pub async fn source_fix_with_target(
        &self,
        fix_id: &str,
    ) -> Result<Option<(shared::sources::SourceFix, String, Option<u8>)>, StoreError> {
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
    ) -> Result<Vec<(shared::sources::SourceFix, String, Option<u8>)>, StoreError> {
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
    pub async fn source_fix_list(&self, limit: usize) -> Result<Vec<shared::sources::SourceFix>, StoreError> {
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
