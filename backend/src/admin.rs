//! The account commands (`imds-console user ...`, `imds-console token ...`) and the first admin.
//! They open the same store as the server (SQLite in WAL mode), so they work while it runs.

use shared::api::Role;
use std::io::{BufRead, IsTerminal};

use crate::auth::accounts::random_secret;
use crate::auth::accounts::Accounts;
use crate::config::{TokenAction, TokenArgs, UserAction, UserArgs};
use crate::error::AppError;
use crate::store::Store;

fn err(e: impl Into<AppError>) -> String {
    match e.into() {
        AppError::Validation(v) => v.to_string(),
        other => other.to_string(),
    }
}

/// A password from a prompt (typed twice, not echoed) or, when stdin is not a terminal, its first line.
fn read_password(name: &str) -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("Password for {name}: ")).map_err(|e| e.to_string())?;
        let again = rpassword::prompt_password("Again: ").map_err(|e| e.to_string())?;
        if first != again {
            return Err("the two passwords differ".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    }
}

/// Who the audit trail and a password's record name for what is done at the shell.
const SHELL: &str = "cli";

pub async fn user(args: &UserArgs) -> Result<(), String> {
    let store = args.store.open().await?;
    match &args.action {
        UserAction::Add { name, role, accounts } => {
            if !accounts.is_empty() {
                crate::auth::accounts::check_account_list(accounts).map_err(err)?;
            }
            let password = read_password(name)?;
            // A password typed at the shell is not the user's own choice: they replace it at their
            // first sign-in, and until they sign in with their own, they cannot approve.
            Accounts(&store)
                .add_user(name, *role, &password, Some(SHELL))
                .await
                .map_err(err)?;
            if !accounts.is_empty() {
                Accounts(&store)
                    .set_user_accounts(name, Some(accounts))
                    .await
                    .map_err(err)?;
            }
            store
                .auth_event(
                    "user-added",
                    Some(SHELL),
                    Some(&format!("{name} ({})", role.as_str())),
                    None,
                )
                .await
                .map_err(err)?;
            println!("added {name} ({})", role.as_str());
        }
        UserAction::List => {
            for u in store.users().await.map_err(err)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.name,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "enabled" },
                    u.created_at,
                    u.accounts
                        .map_or_else(|| "all accounts".to_owned(), |a| a.join(","))
                );
            }
        }
        UserAction::Accounts { name, accounts } => {
            let ids: Option<Vec<String>> =
                (accounts != "all").then(|| accounts.split(',').map(|a| a.trim().to_owned()).collect());
            Accounts(&store)
                .set_user_accounts(name, ids.as_deref())
                .await
                .map_err(err)?;
            store
                .auth_event(
                    "accounts-changed",
                    Some(SHELL),
                    Some(&format!("{name}: {accounts}")),
                    None,
                )
                .await
                .map_err(err)?;
            println!("{name}: {accounts}");
        }
        UserAction::Enable { name } => {
            store.enable_user(name).await.map_err(err)?;
            store
                .auth_event("user-enabled", Some(SHELL), Some(name), None)
                .await
                .map_err(err)?;
            println!("enabled {name}");
        }
        UserAction::Role { name, role } => {
            Accounts(&store).set_role(name, *role).await.map_err(err)?;
            store
                .auth_event(
                    "role-changed",
                    Some(SHELL),
                    Some(&format!("{name} ({})", role.as_str())),
                    None,
                )
                .await
                .map_err(err)?;
            println!("{name} is now {}", role.as_str());
        }
        UserAction::Disable { name } => {
            store.disable_user(name).await.map_err(err)?;
            store
                .auth_event("user-disabled", Some(SHELL), Some(name), None)
                .await
                .map_err(err)?;
            println!("disabled {name}");
        }
        UserAction::Passwd { name } => {
            let password = read_password(name)?;
            Accounts(&store)
                .set_password(name, &password, Some(SHELL))
                .await
                .map_err(err)?;
            forget_first_password(&args.store.data_dir, name);
            store
                .auth_event("password-reset", Some(SHELL), Some(name), None)
                .await
                .map_err(err)?;
            println!("changed the password of {name}");
        }
    }
    Ok(())
}

pub async fn token(args: &TokenArgs) -> Result<(), String> {
    let store = args.store.open().await?;
    match &args.action {
        TokenAction::Create {
            user,
            role,
            name,
            expires_in_days,
        } => {
            let request = shared::api::CreateTokenRequest {
                user: user.clone(),
                role: *role,
                name: name.clone(),
                expires_in_days: *expires_in_days,
            };
            let shared::api::TokenSpec { name, days } = request
                .checked()
                .map_err(|(field, m)| format!("--{}: {m}", field.replace('_', "-")))?;
            // Made at the shell, not by its owner signed in as themselves: it cannot approve.
            let days = days.or(Some(crate::config::DEFAULT_TOKEN_DAYS));
            let (id, secret, role, _) = Accounts(&store)
                .create_token(user, *role, name.as_deref(), days, false)
                .await
                .map_err(err)?;
            store
                .auth_event(
                    "token-created",
                    Some(SHELL),
                    Some(&format!("token {id} for {user} ({})", role.as_str())),
                    None,
                )
                .await
                .map_err(err)?;
            eprintln!("token {id} for {user} ({}); it is shown only now:", role.as_str());
            println!("{secret}");
        }
        TokenAction::List => {
            for t in store.tokens().await.map_err(err)? {
                let status = match (t.revoked, t.expired) {
                    (true, _) => "revoked",
                    (false, true) => "expired",
                    (false, false) => "active",
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.name.unwrap_or_default(),
                    t.user,
                    t.role.as_str(),
                    status,
                    t.expires_at
                        .map_or_else(|| "no expiry".into(), |e| format!("expires {e}")),
                    t.last_used_at.unwrap_or_else(|| "never used".into())
                );
            }
        }
        TokenAction::Revoke { id } => {
            store.revoke_token(*id).await.map_err(err)?;
            store
                .auth_event("token-revoked", Some(SHELL), Some(&format!("token {id}")), None)
                .await
                .map_err(err)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// The file, in the data directory, that holds the first admin's generated password until it is changed.
pub const FIRST_PASSWORD_FILE: &str = "first-admin-password";

/// On the very first start (no users at all), creates `admin` with a random password, which must be
/// changed at the first sign-in. The password goes to a file only its owner can read, never to the log
/// (logs outlive terminals and reach other people); the log names the file. Returns the password when it did.
pub async fn bootstrap_admin(store: &Store, data_dir: &std::path::Path) -> Result<Option<String>, AppError> {
    if store.user_count().await? > 0 {
        return Ok(None);
    }
    let password = random_secret()?[..24].to_owned();
    let file = data_dir.join(FIRST_PASSWORD_FILE);
    write_private(&file, &format!("{password}\n")).map_err(AppError::internal)?;
    Accounts(store)
        .add_user("admin", Role::Admin, &password, None)
        .await?;
    store.require_password_change("admin").await?;
    store
        .auth_event("user-added", Some("first start"), Some("admin (admin)"), None)
        .await?;
    eprintln!(
        "imds-console: first start: created the user \"admin\"; its password is in {} (readable only by this user).\n\
         imds-console: sign in with it and choose a new one; the file is deleted then.",
        file.display()
    );
    Ok(Some(password))
}

/// Writes `text` to a new file that only this user can read (mode 0600 from the start, not chmod later).
/// The file is made new (O_EXCL) and never through a link (O_NOFOLLOW): a symbolic link planted at
/// that name, or a file someone else made readable, is not written through. A leftover of ours (an
/// earlier first start that stopped before its user was saved) is removed first; removing a link
/// removes the link, not what it points to.
pub fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Deletes the first admin's password file once that admin has chosen their own.
pub fn forget_first_password(data_dir: &std::path::Path, user: &str) {
    if user == "admin" {
        let _ = std::fs::remove_file(data_dir.join(FIRST_PASSWORD_FILE));
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_password_file_is_never_written_through_a_planted_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "someone else's file\n").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = dir.path().join(super::FIRST_PASSWORD_FILE);
        std::os::unix::fs::symlink(&target, &file).unwrap();
        super::write_private(&file, "secret\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "someone else's file\n");
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert!(meta.file_type().is_file(), "a new file, not the link");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "secret\n");
    }
}
