//! Built-in accounts in the store: users with argon2id password hashes, sessions and API tokens (kept
//! as SHA-256 hashes of 256-bit random secrets), and the append-only log of sign-ins and account changes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use shared::api::Role;
use shared::api::Via;

use crate::error::AppError;
pub use store::AuthEventFilter;
use store::{CredentialRow, NewToken, ScopeChange, Store};

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

/// A sign-on user name: 1 to 64 characters as the identity provider writes it, checked like a
/// built-in name but with what directories add: letters of any script, digits, `.`, `_`, `@`, `-`,
/// and a directory's `DOMAIN\name`, spaces, apostrophes and `+`; no blank at either end, nothing
/// invisible. Separators of the console's own lists and paths (`,`, `;`, `/`, `:`) are refused.
pub fn check_sso_name(name: &str) -> Result<(), String> {
    let shown = || name.chars().take(80).collect::<String>();
    let length_ok = (1..=64).contains(&name.chars().count()) && name.trim() == name;
    if !length_ok {
        return Err(format!(
            "the sign-on name \"{}\" is not 1 to 64 characters without blanks at its ends",
            shown()
        ));
    }
    shared::params::check_plain_text(name).map_err(|m| format!("the sign-on name: {m}"))?;
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || "._@-\\ '+".contains(*c)))
    {
        return Err(format!(
            "the sign-on name \"{}\" holds '{bad}': use letters, digits, spaces and . _ @ - \\ ' + only",
            shown()
        ));
    }
    Ok(())
}

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// The highest role of any grant: what the identity may do somewhere.
    pub role: Role,
    pub via: Via,
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
        via: Via,
        must_change_password: bool,
        accounts: Option<Vec<String>>,
    ) -> Identity {
        Identity::of_grants(name, via, must_change_password, vec![Grant { role, accounts }])
            .expect("one grant")
    }

    /// An identity from its grants; None without any.
    pub fn of_grants(
        name: String,
        via: Via,
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

/// The built-in accounts: the rules (names, passwords and their hashes, secrets, roles) over the
/// store's users, sessions and tokens. What needs no rule is read from the [`Store`] directly.
#[derive(Clone, Copy)]
pub struct Accounts<'a>(pub &'a Store);

impl Accounts<'_> {
    /// Limits a user to these accounts (None: every account). Their sessions and tokens follow at
    /// once, since the scope is read on every request.
    pub async fn set_user_accounts(&self, name: &str, accounts: Option<&[String]>) -> Result<(), AppError> {
        let checked = accounts.map(check_account_list).transpose()?;
        // An admin manages users, tokens and webhooks for every account: a limit on one would be a
        // promise the console cannot keep (they could lift it themselves).
        match self.0.limit_user_accounts(name, checked.as_deref()).await? {
            ScopeChange::Done => Ok(()),
            ScopeChange::UserIsAdmin => Err(admin_limit_refused(name)),
            ScopeChange::NoSuchUser => Err(AppError::NotFound(format!("no user {name}"))),
        }
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
        check_user_name(name).map_err(|m| AppError::field("name", m))?;
        check_password_rules(name, password).map_err(|m| AppError::field("password", m))?;
        let hash = hash_password_off_thread(password).await?;
        Ok(self.0.insert_user(name, role, &hash, set_by).await?)
    }

    /// Sets a password. `set_by`: someone other than the user (an admin's reset, or the shell's), who
    /// is then recorded and the user must choose a new one at their next sign-in; None: the user's own
    /// choice. A new password ends every session of that user.
    pub async fn set_password(
        &self,
        name: &str,
        password: &str,
        set_by: Option<&str>,
    ) -> Result<(), AppError> {
        check_password_rules(name, password).map_err(AppError::BadQuery)?;
        let hash = hash_password_off_thread(password).await?;
        Ok(self.0.set_password_hash(name, &hash, set_by).await?)
    }

    /// Changes a user's role; their sessions end, so the new role applies at once. Refuses to demote
    /// the last enabled admin, and to make an admin of a user limited to accounts.
    pub async fn set_role(&self, name: &str, role: Role) -> Result<(), AppError> {
        if role == Role::Admin && self.0.user_accounts(name).await?.is_some() {
            return Err(admin_limit_refused(name));
        }
        Ok(self.0.change_role(name, role).await?)
    }

    /// Checks a password; returns the identity of an enabled user whose password matches. The hash
    /// is checked off the request threads (argon2id takes tens of milliseconds by design), and
    /// against a dummy hash for an unknown name, so the time does not say whether it exists.
    pub async fn verify_login(&self, name: &str, password: &str) -> Result<Option<Identity>, AppError> {
        let user = self.0.login_row(name).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
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
            Some(u) if matches && !u.disabled => Some(
                Identity::single(
                    name.to_owned(),
                    u.role,
                    Via::Session,
                    u.must_change_password,
                    None,
                )
                // A password someone else chose is not the person's own credential.
                .with_own_credential(u.password_set_by.is_none_or(|by| by == name)),
            ),
            _ => None,
        })
    }

    /// Starts a session; returns the secret for the cookie. `own_credential`: signed in with a
    /// password the user chose.
    pub async fn create_session(
        &self,
        name: &str,
        ttl_ms: i64,
        own_credential: bool,
    ) -> Result<String, AppError> {
        let secret = random_secret()?;
        let expires = self.0.clock.now_ms() + ttl_ms;
        self.0
            .insert_session(&hash_secret(&secret), name, expires, own_credential)
            .await?;
        Ok(secret)
    }

    pub async fn end_session(&self, secret: &str) -> Result<(), AppError> {
        Ok(self.0.delete_session(&hash_secret(secret)).await?)
    }

    /// The identity behind a session cookie, if the session is live and its user enabled.
    pub async fn session_identity(&self, secret: &str) -> Result<Option<Identity>, AppError> {
        Ok(self
            .0
            .session_credential(&hash_secret(secret))
            .await?
            .map(|c| identity_of(c, Via::Session)))
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
        let user_role = self
            .0
            .enabled_user_role(user)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("enabled user {user}")))?;
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
        let expires_ms = days.map(|d| self.0.clock.now_ms() + i64::from(d) * 86_400_000);
        let id = self
            .0
            .insert_token(&NewToken {
                user,
                role,
                hash: &hash_secret(&secret),
                name,
                expires_ms,
                own_credential,
            })
            .await?;
        Ok((id, secret, role, expires_ms.map(store::rfc3339_ms)))
    }

    /// The identity behind a bearer token, if it is live and its user enabled. Returns whether this use
    /// should be logged (the first in an hour).
    pub async fn token_identity(&self, secret: &str) -> Result<Option<(Identity, i64, bool)>, AppError> {
        Ok(self
            .0
            .use_token(&hash_secret(secret))
            .await?
            .map(|t| (identity_of(t.credential, Via::Token), t.id, t.log)))
    }
}

/// The identity a live session or token speaks for.
fn identity_of(c: CredentialRow, via: Via) -> Identity {
    Identity::single(c.user, c.role, via, c.must_change_password, c.accounts)
        .with_own_credential(c.own_credential)
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

/// [`hash_password`] off the request threads.
async fn hash_password_off_thread(password: &str) -> Result<String, AppError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(AppError::internal)?
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
