//! Built-in users, their sessions and API tokens (kept only as hashes the server computes), the log
//! of sign-ins and account changes, and sign-in throttling's counts. The rules (names, passwords,
//! who may do what) are the server's; what must hold in one transaction (an enabled admin remains)
//! is kept here.

use shared::api::{AuthEvent, Role, TokenView, UserView};

use crate::db::{ToValue, Value};
use crate::{rfc3339_ms, Store, StoreError};

/// A user as sign-in reads them.
pub struct LoginRow {
    pub role: Role,
    pub password_hash: String,
    pub disabled: bool,
    pub must_change_password: bool,
    /// Who chose the password when it was not the user (an admin's reset).
    pub password_set_by: Option<String>,
}

/// Who a live session or token speaks for, with what the user may see now.
pub struct CredentialRow {
    pub user: String,
    /// The session's user's role; a token's role, never above its user's.
    pub role: Role,
    pub must_change_password: bool,
    /// The accounts the user is limited to; None: every account.
    pub accounts: Option<Vec<String>>,
    /// Signed in with a password the user chose, or a token made by such a session.
    pub own_credential: bool,
}

/// A live token's credential, its ID, and whether this use is the first in an hour (and so logged).
pub struct TokenUse {
    pub credential: CredentialRow,
    pub id: i64,
    pub log: bool,
}

/// A new token as it is kept.
pub struct NewToken<'a> {
    pub user: &'a str,
    pub role: Role,
    pub hash: &'a str,
    pub name: Option<&'a str>,
    pub expires_ms: Option<i64>,
    pub own_credential: bool,
}

/// How a limit on a user's accounts went.
#[derive(Debug, PartialEq, Eq)]
pub enum ScopeChange {
    Done,
    /// The user is an admin, whom no limit may cover.
    UserIsAdmin,
    NoSuchUser,
}

/// A key's sign-in failures in its window.
#[derive(Debug, Clone, Copy)]
pub struct Failures {
    pub count: u32,
    pub first_ms: i64,
    pub locked_until_ms: i64,
}

/// Which auth events to list.
#[derive(Debug, Clone, Default)]
pub struct AuthEventFilter {
    pub kind: Option<String>,
    /// As actor or subject.
    pub user: Option<String>,
    pub address: Option<String>,
    /// Only events older than this row (the cursor).
    pub before_id: Option<i64>,
    pub limit: usize,
}

fn role_of(raw: &str) -> Role {
    Role::parse(raw).unwrap_or(Role::Viewer)
}

/// A user's stored account list (comma-separated; NULL: every account).
fn account_list(raw: Option<String>) -> Option<Vec<String>> {
    raw.map(|s| {
        s.split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    })
}

/// Ends every session of the user `?1`.
const END_SESSIONS: &str = "DELETE FROM sessions WHERE user_name = ?1";

impl Store {
    /// Limits a user to these accounts (None: every account); never an admin.
    pub async fn limit_user_accounts(
        &self,
        name: &str,
        accounts: Option<&[String]>,
    ) -> Result<ScopeChange, StoreError> {
        let value = accounts.map(|ids| ids.join(","));
        let n = self
            .db
            .execute(
                "UPDATE users SET accounts = ?2 WHERE name = ?1 AND (CAST(?2 AS TEXT) IS NULL OR role <> 'admin')",
                args![name, value],
            )
            .await?;
        if n > 0 {
            return Ok(ScopeChange::Done);
        }
        let exists = self
            .db
            .query_opt("SELECT role FROM users WHERE name = ?1", args![name])
            .await?
            .is_some();
        Ok(if exists {
            ScopeChange::UserIsAdmin
        } else {
            ScopeChange::NoSuchUser
        })
    }

    /// The accounts a user is limited to (None: every account, or no such user).
    pub async fn user_accounts(&self, name: &str) -> Result<Option<Vec<String>>, StoreError> {
        Ok(self
            .db
            .query_opt("SELECT accounts FROM users WHERE name = ?1", args![name])
            .await?
            .map(|r| r.get::<Option<String>>(0))
            .transpose()?
            .flatten()
            .and_then(|raw| account_list(Some(raw))))
    }

    /// Whether `name` is a built-in user who is disabled (sign-on users are not in the store: false).
    pub async fn user_disabled(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .query_opt("SELECT disabled FROM users WHERE name = ?1", args![name])
            .await?
            .map(|r| r.get::<bool>(0))
            .transpose()?
            .unwrap_or(false))
    }

    pub async fn user_count(&self) -> Result<i64, StoreError> {
        self.db
            .query_one("SELECT COUNT(*) FROM users", args![])
            .await?
            .get(0)
    }

    /// Adds a user with a password hash. Names are unique regardless of case: "Admin" beside "admin"
    /// would read as one person in the trail. `set_by`: who chose the password, when not the user.
    pub async fn insert_user(
        &self,
        name: &str,
        role: Role,
        password_hash: &str,
        set_by: Option<&str>,
    ) -> Result<(), StoreError> {
        let taken: i64 = self
            .db
            .query_one(
                "SELECT COUNT(*) FROM users WHERE lower(name) = lower(?1)",
                args![name],
            )
            .await?
            .get(0)?;
        let exists = || StoreError::Conflict {
            code: "UserExists",
            message: format!("a user named {name} (in any case) already exists"),
        };
        if taken > 0 {
            return Err(exists());
        }
        let n = self
            .db
            .execute(
                "INSERT INTO users (name, role, password_hash, created_at, password_set_by) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                args![name, role.as_str(), password_hash, self.clock.now_rfc3339(), set_by],
            )
            .await?;
        if n == 0 {
            return Err(exists());
        }
        Ok(())
    }

    /// Sets a password hash and ends the user's sessions. `set_by`: someone other than the user (an
    /// admin's reset), recorded, and the user must choose a new one at their next sign-in.
    pub async fn set_password_hash(
        &self,
        name: &str,
        hash: &str,
        set_by: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_set_by = ?4 WHERE name = ?1",
                args![name, hash, set_by.is_some(), set_by],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        tx.execute(END_SESSIONS, args![name]).await?;
        tx.commit().await
    }

    /// Disables a user and ends their sessions and tokens (re-enabling does not bring tokens back);
    /// refuses to leave the console without an enabled admin.
    pub async fn disable_user(&self, name: &str) -> Result<(), StoreError> {
        self.change_user(
            name,
            &[
                ("UPDATE users SET disabled = 1 WHERE name = ?1", args![name]),
                (END_SESSIONS, args![name]),
                (
                    "UPDATE api_tokens SET revoked = 1 WHERE user_name = ?1",
                    args![name],
                ),
            ],
        )
        .await
    }

    pub async fn enable_user(&self, name: &str) -> Result<(), StoreError> {
        self.change_user(
            name,
            &[("UPDATE users SET disabled = 0 WHERE name = ?1", args![name])],
        )
        .await
    }

    /// Changes a user's role; their sessions end, so the new role applies at once. Refuses to demote
    /// the last enabled admin.
    pub async fn change_role(&self, name: &str, role: Role) -> Result<(), StoreError> {
        self.change_user(
            name,
            &[
                (
                    "UPDATE users SET role = ?2 WHERE name = ?1",
                    args![name, role.as_str()],
                ),
                (END_SESSIONS, args![name]),
            ],
        )
        .await
    }

    /// Applies a change (statements and their arguments) to an existing user in one transaction, and
    /// keeps it only if an enabled admin remains (so nobody, by accident or on purpose, locks every
    /// admin out).
    async fn change_user(&self, name: &str, change: &[(&str, &[Value])]) -> Result<(), StoreError> {
        const ENABLED_ADMINS: &str = "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0";
        let mut tx = self.db.begin().await?;
        let exists = tx
            .query_one("SELECT COUNT(*) FROM users WHERE name = ?1", args![name])
            .await?
            .get::<i64>(0)?
            > 0;
        if !exists {
            return Err(StoreError::NotFound(format!("user {name}")));
        }
        let before: i64 = tx.query_one(ENABLED_ADMINS, args![]).await?.get(0)?;
        for (sql, args) in change {
            tx.execute(sql, args).await?;
        }
        let after: i64 = tx.query_one(ENABLED_ADMINS, args![]).await?.get(0)?;
        if before > 0 && after == 0 {
            return Err(StoreError::Conflict {
                code: "LastAdmin",
                message: format!("{name} is the last enabled admin; make another user admin first"),
            });
        }
        tx.commit().await
    }

    /// Makes the user choose a new password at their next sign-in (the first admin, whose password was
    /// generated and written to a file).
    pub async fn require_password_change(&self, name: &str) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE users SET must_change_password = 1 WHERE name = ?1",
                args![name],
            )
            .await?;
        Ok(())
    }

    pub async fn users(&self) -> Result<Vec<UserView>, StoreError> {
        self.db
            .query(
                "SELECT name, role, disabled, created_at, accounts FROM users ORDER BY name",
                args![],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(UserView {
                    name: r.get(0)?,
                    role: role_of(&r.get::<String>(1)?),
                    disabled: r.get(2)?,
                    created_at: r.get(3)?,
                    accounts: account_list(r.get(4)?),
                })
            })
            .collect()
    }

    /// What sign-in checks of a user.
    pub async fn login_row(&self, name: &str) -> Result<Option<LoginRow>, StoreError> {
        let Some(r) = self
            .db
            .query_opt(
                "SELECT role, password_hash, disabled, must_change_password, password_set_by FROM users WHERE name = ?1",
                args![name],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(LoginRow {
            role: role_of(&r.get::<String>(0)?),
            password_hash: r.get(1)?,
            disabled: r.get(2)?,
            must_change_password: r.get(3)?,
            password_set_by: r.get(4)?,
        }))
    }

    /// Keeps a session under the hash of its secret.
    pub async fn insert_session(
        &self,
        hash: &str,
        name: &str,
        expires_at_ms: i64,
        own_credential: bool,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO sessions (id_hash, user_name, created_at, expires_at_ms, own_credential) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![hash, name, self.clock.now_rfc3339(), expires_at_ms, i64::from(own_credential)],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, hash: &str) -> Result<(), StoreError> {
        self.db
            .execute("DELETE FROM sessions WHERE id_hash = ?1", args![hash])
            .await?;
        Ok(())
    }

    /// The user behind a live session of an enabled user. The account scope comes with the same
    /// query, so a change applies at once.
    pub async fn session_credential(&self, hash: &str) -> Result<Option<CredentialRow>, StoreError> {
        let Some(r) = self
            .db
            .read_opt(
                "SELECT u.name, u.role, u.must_change_password, u.accounts, s.own_credential FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.id_hash = ?1 AND s.expires_at_ms > ?2 AND u.disabled = 0",
                args![hash, self.clock.now_ms()],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(CredentialRow {
            user: r.get(0)?,
            role: role_of(&r.get::<String>(1)?),
            must_change_password: r.get(2)?,
            accounts: account_list(r.get(3)?),
            own_credential: r.get::<i64>(4)? != 0,
        }))
    }

    /// The role of an enabled user; None: no such enabled user.
    pub async fn enabled_user_role(&self, name: &str) -> Result<Option<Role>, StoreError> {
        Ok(self
            .db
            .query_opt(
                "SELECT role FROM users WHERE name = ?1 AND disabled = 0",
                args![name],
            )
            .await?
            .map(|r| r.get::<String>(0))
            .transpose()?
            .map(|raw| role_of(&raw)))
    }

    /// Keeps a token under the hash of its secret; returns its ID.
    pub async fn insert_token(&self, token: &NewToken<'_>) -> Result<i64, StoreError> {
        self.db
            .query_one(
                "INSERT INTO api_tokens (user_name, role, token_hash, created_at, name, expires_ms, own_credential)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                args![
                    token.user,
                    token.role.as_str(),
                    token.hash,
                    self.clock.now_rfc3339(),
                    token.name,
                    token.expires_ms,
                    i64::from(token.own_credential)
                ],
            )
            .await?
            .get(0)
    }

    pub async fn revoke_token(&self, id: i64) -> Result<(), StoreError> {
        let n = self
            .db
            .execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?1", args![id])
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, StoreError> {
        let now = self.clock.now_ms();
        self.db
            .query(
                "SELECT id, user_name, role, created_at, revoked, last_used_at, name, expires_ms FROM api_tokens ORDER BY id",
                args![],
            )
            .await?
            .iter()
            .map(|r| {
                let expires_ms: Option<i64> = r.get(7)?;
                Ok(TokenView {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    role: role_of(&r.get::<String>(2)?),
                    created_at: r.get(3)?,
                    revoked: r.get(4)?,
                    last_used_at: r.get(5)?,
                    name: r.get(6)?,
                    expires_at: expires_ms.map(rfc3339_ms),
                    expired: expires_ms.is_some_and(|e| e <= now),
                })
            })
            .collect()
    }

    /// The user behind a live, unrevoked token of an enabled user; notes its use (at most once a
    /// minute).
    pub async fn use_token(&self, hash: &str) -> Result<Option<TokenUse>, StoreError> {
        let now = self.clock.now_ms();
        let Some(r) = self
            .db
            .read_opt(
                "SELECT t.id, u.name, t.role, u.role, t.last_used_ms, u.accounts, t.own_credential FROM api_tokens t
                 JOIN users u ON u.name = t.user_name
                 WHERE t.token_hash = ?1 AND t.revoked = 0 AND u.disabled = 0
                   AND (t.expires_ms IS NULL OR t.expires_ms > ?2)",
                args![hash, now],
            )
            .await?
        else {
            return Ok(None);
        };
        let (id, last_ms): (i64, Option<i64>) = (r.get(0)?, r.get(4)?);
        let log = last_ms.is_none_or(|l| now - l > 3_600_000);
        if log || last_ms.is_none_or(|l| now - l > 60_000) {
            self.db
                .execute(
                    "UPDATE api_tokens SET last_used_at = ?2, last_used_ms = ?3 WHERE id = ?1",
                    args![id, self.clock.now_rfc3339(), now],
                )
                .await?;
        }
        // A token never has more than its user has now.
        let role = role_of(&r.get::<String>(2)?).min(role_of(&r.get::<String>(3)?));
        Ok(Some(TokenUse {
            credential: CredentialRow {
                user: r.get(1)?,
                role,
                must_change_password: false,
                accounts: account_list(r.get(5)?),
                own_credential: r.get::<i64>(6)? != 0,
            },
            id,
            log,
        }))
    }

    /// Appends an event to the log; returns its row.
    pub async fn auth_event(
        &self,
        kind: &str,
        actor: Option<&str>,
        subject: Option<&str>,
        address: Option<&str>,
    ) -> Result<i64, StoreError> {
        self.db
            .query_one(
                "INSERT INTO auth_events (at, kind, actor, subject, address) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                args![self.clock.now_rfc3339(), kind, actor, subject, address],
            )
            .await?
            .get(0)
    }

    /// Counts one more attempt on an existing event (and moves its time to now).
    pub async fn count_auth_event(&self, id: i64) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE auth_events SET count = count + 1, at = ?2 WHERE id = ?1",
                args![id, self.clock.now_rfc3339()],
            )
            .await?;
        Ok(())
    }

    /// A page of the log, newest first, filtered; and the cursor of the next page.
    pub async fn auth_events(
        &self,
        f: &AuthEventFilter,
    ) -> Result<(Vec<AuthEvent>, Option<i64>), StoreError> {
        let mut sql =
            String::from("SELECT id, at, kind, actor, subject, address, count FROM auth_events WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(kind) = &f.kind {
            args.push(kind.to_value());
            sql.push_str(&format!(" AND kind = ?{}", args.len()));
        }
        if let Some(user) = &f.user {
            args.push(user.to_value());
            sql.push_str(&format!(" AND (actor = ?{n} OR subject = ?{n})", n = args.len()));
        }
        if let Some(address) = &f.address {
            args.push(address.to_value());
            sql.push_str(&format!(" AND address = ?{}", args.len()));
        }
        if let Some(before) = f.before_id {
            args.push(before.to_value());
            sql.push_str(&format!(" AND id < ?{}", args.len()));
        }
        args.push((f.limit + 1).to_value());
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
        let mut rows = self
            .db
            .query(&sql, &args)
            .await?
            .iter()
            .map(|r| {
                Ok(AuthEvent {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    kind: r.get(2)?,
                    actor: r.get(3)?,
                    subject: r.get(4)?,
                    address: r.get(5)?,
                    count: r.get(6)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = if rows.len() > f.limit {
            rows.truncate(f.limit);
            rows.last().map(|e| e.id)
        } else {
            None
        };
        Ok((rows, next))
    }

    /// The failures counted under `keys` in windows that began after `window_start_ms`.
    pub async fn login_failures(
        &self,
        keys: &[&str],
        window_start_ms: i64,
    ) -> Result<Vec<(String, Failures)>, StoreError> {
        let marks: Vec<String> = (2..keys.len() + 2).map(|i| format!("?{i}")).collect();
        let mut args = vec![window_start_ms.to_value()];
        args.extend(keys.iter().map(ToValue::to_value));
        self.db
            .query(
                &format!(
                    "SELECT key, count, first_ms, locked_until_ms FROM login_failures
                     WHERE first_ms >= ?1 AND key IN ({})",
                    marks.join(", ")
                ),
                &args,
            )
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.get(0)?,
                    Failures {
                        count: r.get(1)?,
                        first_ms: r.get(2)?,
                        locked_until_ms: r.get(3)?,
                    },
                ))
            })
            .collect()
    }

    /// Counts one failure under `key` (a new window when the last began over `window_ms` ago);
    /// returns the window's count. One statement, so concurrent failures are all counted. Windows
    /// long over are forgotten, so the table stays as small as the window's traffic.
    pub async fn count_login_failure(
        &self,
        key: &str,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<u32, StoreError> {
        let mut conn = self.db.conn().await?;
        conn.execute(
            "DELETE FROM login_failures WHERE first_ms < ?1",
            args![now_ms - window_ms],
        )
        .await?;
        conn.query_one(
            "INSERT INTO login_failures (key, count, first_ms, locked_until_ms) VALUES (?1, 1, ?2, 0)
             ON CONFLICT (key) DO UPDATE SET
                 count = CASE WHEN ?2 - login_failures.first_ms > ?3 THEN 1 ELSE login_failures.count + 1 END,
                 locked_until_ms = CASE WHEN ?2 - login_failures.first_ms > ?3 THEN 0
                                        ELSE login_failures.locked_until_ms END,
                 first_ms = CASE WHEN ?2 - login_failures.first_ms > ?3 THEN ?2 ELSE login_failures.first_ms END
             RETURNING count",
            args![key, now_ms, window_ms],
        )
        .await?
        .get(0)
    }

    pub async fn lock_login(&self, key: &str, until_ms: i64) -> Result<(), StoreError> {
        self.db
            .execute(
                "UPDATE login_failures SET locked_until_ms = ?2 WHERE key = ?1",
                args![key, until_ms],
            )
            .await?;
        Ok(())
    }

    pub async fn forget_login_failures(&self, keys: &[&str]) -> Result<(), StoreError> {
        for key in keys {
            self.db
                .execute("DELETE FROM login_failures WHERE key = ?1", args![key])
                .await?;
        }
        Ok(())
    }

    /// The audit row counting `key`'s throttled attempts, if its window began after `window_start_ms`.
    pub async fn throttled_row(&self, key: &str, window_start_ms: i64) -> Result<Option<i64>, StoreError> {
        self.db
            .query_opt(
                "SELECT row_id FROM login_throttled WHERE key = ?1 AND start_ms >= ?2",
                args![key, window_start_ms],
            )
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    pub async fn note_throttled_row(&self, key: &str, row: i64, now_ms: i64) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO login_throttled (key, start_ms, row_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET start_ms = excluded.start_ms, row_id = excluded.row_id",
                args![key, now_ms, row],
            )
            .await?;
        Ok(())
    }
}
