//! Built-in accounts in the store: users with argon2id password hashes, sessions and API tokens (kept
//! as SHA-256 hashes of 256-bit random secrets), and the append-only log of sign-ins and account changes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use shared::api::{AuthEvent, Role, TokenView, UserView};

use crate::error::AppError;
use crate::store::db::{ToValue, Value};
use crate::store::{args, now_rfc3339, Store};

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// A fresh secret: 32 random bytes as hex.
pub fn random_secret() -> Result<String, AppError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| AppError::internal(format!("no randomness: {e}")))?;
    Ok(hex(&buf))
}

/// SHA-256 of a high-entropy secret (session IDs and tokens need no slow hash).
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// Bytes as lowercase hex, written into one string (every API request hashes its token or cookie:
/// no string formatted per byte).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

pub fn hash_password(password: &str) -> Result<String, AppError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AppError::internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&bytes).map_err(AppError::internal)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(AppError::internal)
}

/// A hash to verify against when the user does not exist, so both cases cost the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password-at-all").unwrap_or_default())
}

pub fn check_password_rules(name: &str, password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(format!("the password needs at least {MIN_PASSWORD} characters"));
    }
    if password.eq_ignore_ascii_case(name) {
        return Err("the password must not be the user name".to_owned());
    }
    Ok(())
}

pub fn check_user_name(name: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "\"{name}\" is not a user name: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        ))
    }
}

/// A sign-on user name: 1 to 64 characters as the identity provider writes it (a directory's
/// `DOMAIN\name`, spaces and apostrophes included), with no control characters or direction marks
/// and no blank at either end.
pub fn check_sso_name(name: &str) -> Result<(), String> {
    let length_ok = (1..=64).contains(&name.chars().count()) && name.trim() == name;
    if !length_ok {
        return Err(format!(
            "the sign-on name \"{}\" is not 1 to 64 characters without blanks at its ends",
            name.chars().take(80).collect::<String>()
        ));
    }
    shared::params::check_plain_text(name).map_err(|m| format!("the sign-on name: {m}"))
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// The highest role of any grant: what the identity may do somewhere.
    pub role: Role,
    /// `session`, `token` or `sso`.
    pub via: &'static str,
    /// A session of a user who must choose a new password before doing anything else.
    pub must_change_password: bool,
    /// The accounts this identity may see; None: every account the console manages.
    pub accounts: Option<Vec<String>>,
    /// Each role it holds and where. A user has one; a sign-on user one per mapped group. The role in
    /// an account is the highest grant that covers it ([`Identity::role_in`]).
    pub grants: Vec<Grant>,
    /// Whether the credential is the person's own: a session signed in with a password they chose
    /// (not one an admin set), a token they made with such a session, or a sign-on identity. Only
    /// these may approve, so an admin who sets someone's password or makes them a token cannot
    /// approve as them.
    pub own_credential: bool,
}

/// A role in some accounts (None: every account).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub accounts: Option<Vec<String>>,
}

impl Identity {
    /// An identity of one role (a built-in user, session or token).
    pub fn single(
        name: String,
        role: Role,
        via: &'static str,
        must_change_password: bool,
        accounts: Option<Vec<String>>,
    ) -> Identity {
        Identity::of_grants(name, via, must_change_password, vec![Grant { role, accounts }])
            .expect("one grant")
    }

    /// An identity from its grants; None without any.
    pub fn of_grants(
        name: String,
        via: &'static str,
        must_change_password: bool,
        grants: Vec<Grant>,
    ) -> Option<Identity> {
        let role = grants.iter().map(|g| g.role).max()?;
        // Any unlimited grant lets it see every account; otherwise the union of the grants' accounts.
        let accounts = grants.iter().try_fold(Vec::new(), |mut all, g| {
            let ids = g.accounts.as_ref()?;
            all.extend(
                ids.iter()
                    .filter(|a| !all.contains(*a))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            Some(all)
        });
        Some(Identity {
            name,
            role,
            via,
            must_change_password,
            accounts,
            grants,
            own_credential: true,
        })
    }

    /// Its role in `account`: the highest grant that covers it; None: no access there.
    pub fn role_in(&self, account: &str) -> Option<Role> {
        self.grants
            .iter()
            .filter(|g| {
                g.accounts
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|a| a == account))
            })
            .map(|g| g.role)
            .max()
    }

    /// This identity, its credential marked as the person's own or not.
    pub fn with_own_credential(mut self, own: bool) -> Identity {
        self.own_credential = own;
        self
    }

    /// Whether what it may do depends on the account: some grant is limited to accounts.
    pub fn varies_by_account(&self) -> bool {
        self.grants.iter().any(|g| g.accounts.is_some())
    }
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

/// Checks a list of account IDs for a user's scope.
pub fn check_account_list(ids: &[String]) -> Result<Vec<String>, AppError> {
    let mut out = Vec::new();
    for id in ids {
        let id = id.trim();
        shared::params::AccountId::parse(id).map_err(|m| AppError::field("accounts", m))?;
        if !out.iter().any(|o| o == id) {
            out.push(id.to_owned());
        }
    }
    Ok(out)
}

impl Store {
    /// Limits a user to these accounts (None: every account). Their sessions and tokens follow at
    /// once, since the scope is read on every request.
    pub async fn set_user_accounts(&self, name: &str, accounts: Option<&[String]>) -> Result<(), AppError> {
        let value = match accounts {
            Some(ids) => Some(check_account_list(ids)?.join(",")),
            None => None,
        };
        // An admin manages users, tokens and webhooks for every account: a limit on one would be a
        // promise the console cannot keep (they could lift it themselves).
        let n = self
            .db()
            .execute(
                "UPDATE users SET accounts = ?2 WHERE name = ?1 AND (CAST(?2 AS TEXT) IS NULL OR role <> 'admin')",
                args![name, value],
            )
            .await?;
        if n == 0 {
            let exists = self
                .db()
                .query_opt("SELECT role FROM users WHERE name = ?1", args![name])
                .await?
                .is_some();
            return Err(if exists {
                admin_limit_refused(name)
            } else {
                AppError::NotFound(format!("no user {name}"))
            });
        }
        Ok(())
    }

    /// Whether `name` is a built-in user who is disabled (sign-on users are not in the store: false).
    pub async fn user_disabled(&self, name: &str) -> Result<bool, AppError> {
        Ok(self
            .db()
            .query_opt("SELECT disabled FROM users WHERE name = ?1", args![name])
            .await?
            .map(|r| r.get::<bool>(0))
            .transpose()?
            .unwrap_or(false))
    }

    pub async fn user_count(&self) -> Result<i64, AppError> {
        self.db()
            .query_one("SELECT COUNT(*) FROM users", args![])
            .await?
            .get(0)
    }

    /// Adds a user. `set_by`: who chose the password when it is not the user (an admin through the
    /// API); None from the command line and for the generated first password.
    pub async fn add_user(
        &self,
        name: &str,
        role: Role,
        password: &str,
        set_by: Option<&str>,
    ) -> Result<(), AppError> {
        let field = |m: String| AppError::field("name", m);
        check_user_name(name).map_err(field)?;
        check_password_rules(name, password).map_err(|m| AppError::field("password", m))?;
        // Unique regardless of case: "Admin" beside "admin" would read as one person in the trail.
        let taken: i64 = self
            .db()
            .query_one(
                "SELECT COUNT(*) FROM users WHERE lower(name) = lower(?1)",
                args![name],
            )
            .await?
            .get(0)?;
        if taken > 0 {
            return Err(AppError::Conflict {
                code: "UserExists".into(),
                message: format!("a user named {name} (in any case) already exists"),
            });
        }
        let hash = hash_password_off_thread(password).await?;
        let n = self
            .db()
            .execute(
                "INSERT INTO users (name, role, password_hash, created_at, password_set_by) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                args![name, role.as_str(), hash, now_rfc3339(), set_by],
            )
            .await?;
        if n == 0 {
            return Err(AppError::Conflict {
                code: "UserExists".into(),
                message: format!("user {name} already exists"),
            });
        }
        Ok(())
    }

    /// Sets a password. `set_by`: someone other than the user (an admin's reset), who is then recorded
    /// and the user must choose a new one at their next sign-in; None: the user's own choice (or the
    /// command line's).
    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        set_by: Option<&str>,
    ) -> Result<(), AppError> {
        check_password_rules(name, password).map_err(AppError::BadQuery)?;
        let hash = hash_password_off_thread(password).await?;
        let mut tx = self.db().begin().await?;
        let n = tx
            .execute(
                "UPDATE users SET password_hash = ?2, must_change_password = ?3, password_set_by = ?4 WHERE name = ?1",
                args![name, hash, set_by.is_some(), set_by],
            )
            .await?;
        if n == 0 {
            return Err(AppError::NotFound(format!("user {name}")));
        }
        // A new password ends every session of that user.
        tx.execute("DELETE FROM sessions WHERE user_name = ?1", args![name])
            .await?;
        tx.commit().await
    }

    /// Disables a user and ends their sessions; refuses to leave the console without an enabled admin.
    pub async fn disable_user(&self, name: &str) -> Result<(), AppError> {
        self.change_user(
            name,
            &[
                ("UPDATE users SET disabled = 1 WHERE name = ?1", args![name]),
                (END_SESSIONS, args![name]),
                // Re-enabling the user later does not bring their tokens back.
                (
                    "UPDATE api_tokens SET revoked = 1 WHERE user_name = ?1",
                    args![name],
                ),
            ],
        )
        .await
    }

    pub async fn enable_user(&self, name: &str) -> Result<(), AppError> {
        self.change_user(
            name,
            &[("UPDATE users SET disabled = 0 WHERE name = ?1", args![name])],
        )
        .await
    }

    /// Changes a user's role; their sessions end, so the new role applies at once. Refuses to demote
    /// the last enabled admin.
    pub async fn set_role(&self, name: &str, role: Role) -> Result<(), AppError> {
        if role == Role::Admin {
            let limited = self
                .db()
                .query_opt("SELECT accounts FROM users WHERE name = ?1", args![name])
                .await?
                .map(|r| r.get::<Option<String>>(0))
                .transpose()?
                .flatten()
                .is_some();
            if limited {
                return Err(admin_limit_refused(name));
            }
        }
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
    async fn change_user(&self, name: &str, change: &[(&str, &[Value])]) -> Result<(), AppError> {
        const ENABLED_ADMINS: &str = "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0";
        let mut tx = self.db().begin().await?;
        let exists = tx
            .query_one("SELECT COUNT(*) FROM users WHERE name = ?1", args![name])
            .await?
            .get::<i64>(0)?
            > 0;
        if !exists {
            return Err(AppError::NotFound(format!("user {name}")));
        }
        let before: i64 = tx.query_one(ENABLED_ADMINS, args![]).await?.get(0)?;
        for (sql, args) in change {
            tx.execute(sql, args).await?;
        }
        let after: i64 = tx.query_one(ENABLED_ADMINS, args![]).await?.get(0)?;
        if before > 0 && after == 0 {
            return Err(AppError::Conflict {
                code: "LastAdmin".into(),
                message: format!("{name} is the last enabled admin; make another user admin first"),
            });
        }
        tx.commit().await
    }

    /// Makes the user choose a new password at their next sign-in (the first admin, whose password was
    /// generated and written to a file).
    pub async fn require_password_change(&self, name: &str) -> Result<(), AppError> {
        self.db()
            .execute(
                "UPDATE users SET must_change_password = 1 WHERE name = ?1",
                args![name],
            )
            .await?;
        Ok(())
    }

    pub async fn users(&self) -> Result<Vec<UserView>, AppError> {
        self.db()
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

    /// Checks a password; returns the identity of an enabled user whose password matches. The hash
    /// is checked off the request threads (argon2id takes tens of milliseconds by design).
    pub async fn verify_login(&self, name: &str, password: &str) -> Result<Option<Identity>, AppError> {
        let row = self
            .db()
            .query_opt(
                "SELECT role, password_hash, disabled, must_change_password, password_set_by FROM users WHERE name = ?1",
                args![name],
            )
            .await?;
        let user = match &row {
            Some(r) => Some((
                r.get::<String>(0)?,
                r.get::<String>(1)?,
                r.get::<bool>(2)?,
                r.get::<bool>(3)?,
                r.get::<Option<String>>(4)?,
            )),
            None => None,
        };
        let hash = user
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |u| u.1.clone());
        let password = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&hash).map_err(AppError::internal)?;
            Ok::<_, AppError>(
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
            )
        })
        .await
        .map_err(AppError::internal)??;
        Ok(match user {
            Some((role, _, false, must_change, set_by)) if matches => Some(
                Identity::single(name.to_owned(), role_of(&role), "session", must_change, None)
                    // A password someone else chose is not the person's own credential.
                    .with_own_credential(set_by.is_none_or(|by| by == name)),
            ),
            _ => None,
        })
    }

    /// Starts a session; returns the secret for the cookie.
    /// Starts a session; `own_credential`: signed in with a password the user chose.
    pub async fn create_session(
        &self,
        name: &str,
        ttl_ms: i64,
        own_credential: bool,
    ) -> Result<String, AppError> {
        let secret = random_secret()?;
        let expires = self.clock.now_ms() + ttl_ms;
        self.db()
            .execute(
                "INSERT INTO sessions (id_hash, user_name, created_at, expires_at_ms, own_credential) VALUES (?1, ?2, ?3, ?4, ?5)",
                args![hash_secret(&secret), name, now_rfc3339(), expires, i64::from(own_credential)],
            )
            .await?;
        Ok(secret)
    }

    pub async fn end_session(&self, secret: &str) -> Result<(), AppError> {
        self.db()
            .execute(
                "DELETE FROM sessions WHERE id_hash = ?1",
                args![hash_secret(secret)],
            )
            .await?;
        Ok(())
    }

    /// The identity behind a session cookie, if the session is live and its user enabled.
    pub async fn session_identity(&self, secret: &str) -> Result<Option<Identity>, AppError> {
        // The user's account scope comes with the same query, so a change applies at once.
        let Some(r) = self
            .db()
            .read_opt(
                "SELECT u.name, u.role, u.must_change_password, u.accounts, s.own_credential FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.id_hash = ?1 AND s.expires_at_ms > ?2 AND u.disabled = 0",
                args![hash_secret(secret), self.clock.now_ms()],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(
            Identity::single(
                r.get(0)?,
                role_of(&r.get::<String>(1)?),
                "session",
                r.get(2)?,
                account_list(r.get(3)?),
            )
            .with_own_credential(r.get::<i64>(4)? != 0),
        ))
    }

    /// A new token of `user`, at most their role, named and living `days` (None: until revoked).
    /// Returns its ID, its secret (shown once), its role and when it expires.
    pub async fn create_token(
        &self,
        user: &str,
        role: Option<Role>,
        name: Option<&str>,
        days: Option<u32>,
        own_credential: bool,
    ) -> Result<(i64, String, Role, Option<String>), AppError> {
        let user_role: Option<String> = self
            .db()
            .query_opt(
                "SELECT role FROM users WHERE name = ?1 AND disabled = 0",
                args![user],
            )
            .await?
            .map(|r| r.get(0))
            .transpose()?;
        let user_role =
            role_of(&user_role.ok_or_else(|| AppError::NotFound(format!("enabled user {user}")))?);
        let role = role.unwrap_or(user_role);
        if role > user_role {
            return Err(AppError::Conflict {
                code: "RoleTooHigh".into(),
                message: format!(
                    "a token of {user} can have at most the role {}",
                    user_role.as_str()
                ),
            });
        }
        let secret = format!("imds_{}", random_secret()?);
        let expires_ms = days.map(|d| self.clock.now_ms() + i64::from(d) * 86_400_000);
        let id: i64 = self
            .db()
            .query_one(
                "INSERT INTO api_tokens (user_name, role, token_hash, created_at, name, expires_ms, own_credential)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                args![
                    user,
                    role.as_str(),
                    hash_secret(&secret),
                    now_rfc3339(),
                    name,
                    expires_ms,
                    i64::from(own_credential)
                ],
            )
            .await?
            .get(0)?;
        Ok((id, secret, role, expires_ms.map(rfc3339_ms)))
    }

    pub async fn revoke_token(&self, id: i64) -> Result<(), AppError> {
        let n = self
            .db()
            .execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?1", args![id])
            .await?;
        if n == 0 {
            return Err(AppError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    pub async fn tokens(&self) -> Result<Vec<TokenView>, AppError> {
        let now = self.clock.now_ms();
        self.db()
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

    /// The identity behind a bearer token, if it is live and its user enabled. Returns whether this use
    /// should be logged (the first in an hour).
    pub async fn token_identity(&self, secret: &str) -> Result<Option<(Identity, i64, bool)>, AppError> {
        let Some(r) = self
            .db()
            .read_opt(
                "SELECT t.id, u.name, t.role, u.role, t.last_used_ms, u.accounts, t.own_credential FROM api_tokens t
                 JOIN users u ON u.name = t.user_name
                 WHERE t.token_hash = ?1 AND t.revoked = 0 AND u.disabled = 0
                   AND (t.expires_ms IS NULL OR t.expires_ms > ?2)",
                args![hash_secret(secret), self.clock.now_ms()],
            )
            .await?
        else {
            return Ok(None);
        };
        let (id, last_ms): (i64, Option<i64>) = (r.get(0)?, r.get(4)?);
        let now = self.clock.now_ms();
        let log = last_ms.is_none_or(|l| now - l > 3_600_000);
        if log || last_ms.is_none_or(|l| now - l > 60_000) {
            self.db()
                .execute(
                    "UPDATE api_tokens SET last_used_at = ?2, last_used_ms = ?3 WHERE id = ?1",
                    args![id, now_rfc3339(), now],
                )
                .await?;
        }
        // A token never has more than its user has now.
        let role = role_of(&r.get::<String>(2)?).min(role_of(&r.get::<String>(3)?));
        Ok(Some((
            Identity::single(r.get(1)?, role, "token", false, account_list(r.get(5)?))
                .with_own_credential(r.get::<i64>(6)? != 0),
            id,
            log,
        )))
    }

    /// Appends an event to the log; returns its row.
    pub async fn auth_event(
        &self,
        kind: &str,
        actor: Option<&str>,
        subject: Option<&str>,
        address: Option<&str>,
    ) -> Result<i64, AppError> {
        self.db()
            .query_one(
                "INSERT INTO auth_events (at, kind, actor, subject, address) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                args![now_rfc3339(), kind, actor, subject, address],
            )
            .await?
            .get(0)
    }

    /// Counts one more attempt on an existing event (and moves its time to now).
    pub async fn count_auth_event(&self, id: i64) -> Result<(), AppError> {
        self.db()
            .execute(
                "UPDATE auth_events SET count = count + 1, at = ?2 WHERE id = ?1",
                args![id, now_rfc3339()],
            )
            .await?;
        Ok(())
    }

    /// A page of the log, newest first, filtered.
    pub async fn auth_events(&self, f: &AuthEventFilter) -> Result<(Vec<AuthEvent>, Option<i64>), AppError> {
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
            .db()
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
            .collect::<Result<Vec<_>, AppError>>()?;
        let next = if rows.len() > f.limit {
            rows.truncate(f.limit);
            rows.last().map(|e| e.id)
        } else {
            None
        };
        Ok((rows, next))
    }
}

/// Sign-in throttling's counts ([`crate::auth::LoginThrottle`] decides what they mean).
impl Store {
    /// The failures counted under `keys` in windows that began after `window_start_ms`.
    pub async fn login_failures(
        &self,
        keys: &[&str],
        window_start_ms: i64,
    ) -> Result<Vec<(String, crate::auth::Failures)>, AppError> {
        let marks: Vec<String> = (2..keys.len() + 2).map(|i| format!("?{i}")).collect();
        let mut args = vec![window_start_ms.to_value()];
        args.extend(keys.iter().map(ToValue::to_value));
        self.db()
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
                    crate::auth::Failures {
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
    pub async fn count_login_failure(&self, key: &str, now_ms: i64, window_ms: i64) -> Result<u32, AppError> {
        let mut conn = self.db().conn().await?;
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

    pub async fn lock_login(&self, key: &str, until_ms: i64) -> Result<(), AppError> {
        self.db()
            .execute(
                "UPDATE login_failures SET locked_until_ms = ?2 WHERE key = ?1",
                args![key, until_ms],
            )
            .await?;
        Ok(())
    }

    pub async fn forget_login_failures(&self, keys: &[&str]) -> Result<(), AppError> {
        for key in keys {
            self.db()
                .execute("DELETE FROM login_failures WHERE key = ?1", args![key])
                .await?;
        }
        Ok(())
    }

    /// The audit row counting `key`'s throttled attempts, if its window began after `window_start_ms`.
    pub async fn throttled_row(&self, key: &str, window_start_ms: i64) -> Result<Option<i64>, AppError> {
        self.db()
            .query_opt(
                "SELECT row_id FROM login_throttled WHERE key = ?1 AND start_ms >= ?2",
                args![key, window_start_ms],
            )
            .await?
            .map(|r| r.get(0))
            .transpose()
    }

    pub async fn note_throttled_row(&self, key: &str, row: i64, now_ms: i64) -> Result<(), AppError> {
        self.db()
            .execute(
                "INSERT INTO login_throttled (key, start_ms, row_id) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET start_ms = excluded.start_ms, row_id = excluded.row_id",
                args![key, now_ms, row],
            )
            .await?;
        Ok(())
    }
}

/// The refusal of an account limit on an admin.
pub fn admin_limit_refused(name: &str) -> AppError {
    AppError::field(
        "accounts",
        format!(
            "{name} is or would be an admin: admins manage every account, so they cannot be limited to some. \
             Make them an operator or viewer to limit them, or remove the limit first"
        ),
    )
}

/// Ends every session of the user `?1`.
const END_SESSIONS: &str = "DELETE FROM sessions WHERE user_name = ?1";

/// [`hash_password`] off the request threads.
async fn hash_password_off_thread(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(AppError::internal)?
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

/// A time in milliseconds since the epoch as RFC 3339.
fn rfc3339_ms(ms: i64) -> String {
    crate::aws::rfc3339(Some(&aws_smithy_types::DateTime::from_millis(ms))).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_s_hash_is_its_sha256_in_lowercase_hex() {
        // FIPS 180-2's example: stored hashes of tokens and sessions must keep matching.
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
