//! Built-in accounts in the store: users with argon2id password hashes, sessions and API tokens (kept
//! as SHA-256 hashes of 256-bit random secrets), and the append-only log of sign-ins and account changes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use shared::api::{AuthEvent, Role, TokenView, UserView};

use crate::error::AppError;
use crate::store::{now_rfc3339, Store};

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 12;

/// A fresh secret: 32 random bytes as hex.
pub fn random_secret() -> Result<String, AppError> {
    let mut buf = [0u8; 32];
    getrandom::fill(&mut buf).map_err(|e| AppError::internal(format!("no randomness: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// SHA-256 of a high-entropy secret (session IDs and tokens need no slow hash).
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    /// `session`, `token` or `sso`.
    pub via: &'static str,
}

fn role_of(raw: &str) -> Role {
    Role::parse(raw).unwrap_or(Role::Viewer)
}

impl Store {
    pub fn user_count(&self) -> Result<i64, AppError> {
        Ok(self
            .conn()
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?)
    }

    pub fn add_user(&self, name: &str, role: Role, password: &str) -> Result<(), AppError> {
        let field = |m: String| {
            AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
                field: "name".into(),
                message: m,
            }]))
        };
        check_user_name(name).map_err(field)?;
        check_password_rules(name, password).map_err(|m| {
            AppError::Validation(shared::ValidationErrors(vec![shared::FieldError {
                field: "password".into(),
                message: m,
            }]))
        })?;
        let hash = hash_password(password)?;
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO users (name, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, role.as_str(), hash, now_rfc3339()],
        )?;
        if n == 0 {
            return Err(AppError::Conflict {
                code: "UserExists".into(),
                message: format!("user {name} already exists"),
            });
        }
        Ok(())
    }

    pub fn set_password(&self, name: &str, password: &str) -> Result<(), AppError> {
        check_password_rules(name, password).map_err(AppError::BadQuery)?;
        let hash = hash_password(password)?;
        let n = self.conn().execute(
            "UPDATE users SET password_hash = ?2 WHERE name = ?1",
            params![name, hash],
        )?;
        if n == 0 {
            return Err(AppError::NotFound(format!("user {name}")));
        }
        // A new password ends every session of that user.
        self.conn()
            .execute("DELETE FROM sessions WHERE user_name = ?1", [name])?;
        Ok(())
    }

    pub fn disable_user(&self, name: &str) -> Result<(), AppError> {
        let n = self
            .conn()
            .execute("UPDATE users SET disabled = 1 WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(AppError::NotFound(format!("user {name}")));
        }
        self.conn()
            .execute("DELETE FROM sessions WHERE user_name = ?1", [name])?;
        Ok(())
    }

    pub fn users(&self) -> Result<Vec<UserView>, AppError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name, role, disabled, created_at FROM users ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(UserView {
                    name: r.get(0)?,
                    role: role_of(&r.get::<_, String>(1)?),
                    disabled: r.get::<_, i64>(2)? != 0,
                    created_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Checks a password; returns the identity of an enabled user whose password matches.
    pub fn verify_login(&self, name: &str, password: &str) -> Result<Option<Identity>, AppError> {
        let row: Option<(String, String, i64)> = self
            .conn()
            .query_row(
                "SELECT role, password_hash, disabled FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let hash = row
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |r| r.1.clone());
        let parsed = PasswordHash::new(&hash).map_err(AppError::internal)?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(match row {
            Some((role, _, 0)) if matches => Some(Identity {
                name: name.to_owned(),
                role: role_of(&role),
                via: "session",
            }),
            _ => None,
        })
    }

    /// Starts a session; returns the secret for the cookie.
    pub fn create_session(&self, name: &str, ttl_ms: i64) -> Result<String, AppError> {
        let secret = random_secret()?;
        let expires = crate::watcher::now_ms() + ttl_ms;
        self.conn().execute(
            "INSERT INTO sessions (id_hash, user_name, created_at, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![hash_secret(&secret), name, now_rfc3339(), expires],
        )?;
        Ok(secret)
    }

    pub fn end_session(&self, secret: &str) -> Result<(), AppError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [hash_secret(secret)])?;
        Ok(())
    }

    /// The identity behind a session cookie, if the session is live and its user enabled.
    pub fn session_identity(&self, secret: &str) -> Result<Option<Identity>, AppError> {
        let row: Option<(String, String)> = self
            .conn()
            .query_row(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.id_hash = ?1 AND s.expires_at_ms > ?2 AND u.disabled = 0",
                params![hash_secret(secret), crate::watcher::now_ms()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(row.map(|(name, role)| Identity {
            name,
            role: role_of(&role),
            via: "session",
        }))
    }

    /// Creates a token for a user, with at most the user's role; returns (id, secret).
    pub fn create_token(&self, user: &str, role: Option<Role>) -> Result<(i64, String, Role), AppError> {
        let user_role: Option<String> = self
            .conn()
            .query_row(
                "SELECT role FROM users WHERE name = ?1 AND disabled = 0",
                [user],
                |r| r.get(0),
            )
            .optional()?;
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
        let conn = self.conn();
        conn.execute(
            "INSERT INTO api_tokens (user_name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![user, role.as_str(), hash_secret(&secret), now_rfc3339()],
        )?;
        Ok((conn.last_insert_rowid(), secret, role))
    }

    pub fn revoke_token(&self, id: i64) -> Result<(), AppError> {
        let n = self
            .conn()
            .execute("UPDATE api_tokens SET revoked = 1 WHERE id = ?1", [id])?;
        if n == 0 {
            return Err(AppError::NotFound(format!("token {id}")));
        }
        Ok(())
    }

    pub fn tokens(&self) -> Result<Vec<TokenView>, AppError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, user_name, role, created_at, revoked, last_used_at FROM api_tokens ORDER BY id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TokenView {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    role: role_of(&r.get::<_, String>(2)?),
                    created_at: r.get(3)?,
                    revoked: r.get::<_, i64>(4)? != 0,
                    last_used_at: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// The identity behind a bearer token, if it is live and its user enabled. Returns whether this use
    /// should be logged (the first in an hour).
    pub fn token_identity(&self, secret: &str) -> Result<Option<(Identity, i64, bool)>, AppError> {
        let row: Option<(i64, String, String, String, Option<i64>)> = self
            .conn()
            .query_row(
                "SELECT t.id, u.name, t.role, u.role, t.last_used_ms FROM api_tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.token_hash = ?1 AND t.revoked = 0 AND u.disabled = 0",
                [hash_secret(secret)],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?;
        let Some((id, name, token_role, user_role, last_ms)) = row else {
            return Ok(None);
        };
        let now = crate::watcher::now_ms();
        let log = last_ms.is_none_or(|l| now - l > 3_600_000);
        if log || last_ms.is_none_or(|l| now - l > 60_000) {
            self.conn().execute(
                "UPDATE api_tokens SET last_used_at = ?2, last_used_ms = ?3 WHERE id = ?1",
                params![id, now_rfc3339(), now],
            )?;
        }
        // A token never has more than its user has now.
        let role = role_of(&token_role).min(role_of(&user_role));
        Ok(Some((
            Identity {
                name,
                role,
                via: "token",
            },
            id,
            log,
        )))
    }

    pub fn auth_event(
        &self,
        kind: &str,
        actor: Option<&str>,
        subject: Option<&str>,
        address: Option<&str>,
    ) -> Result<(), AppError> {
        self.conn().execute(
            "INSERT INTO auth_events (at, kind, actor, subject, address) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now_rfc3339(), kind, actor, subject, address],
        )?;
        Ok(())
    }

    pub fn auth_events(&self, limit: usize) -> Result<Vec<AuthEvent>, AppError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT at, kind, actor, subject, address FROM auth_events ORDER BY id DESC LIMIT ?1")?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok(AuthEvent {
                    at: r.get(0)?,
                    kind: r.get(1)?,
                    actor: r.get(2)?,
                    subject: r.get(3)?,
                    address: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
