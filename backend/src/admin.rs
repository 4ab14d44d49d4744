//! The account commands (`imds-console user ...`, `imds-console token ...`) and the first admin.
//! They open the same store as the server (SQLite in WAL mode), so they work while it runs.

use shared::api::Role;
use std::io::{BufRead, IsTerminal};

use crate::auth::accounts::random_secret;
use crate::config::{TokenAction, TokenArgs, UserAction, UserArgs};
use crate::error::AppError;
use crate::store::Store;

fn err(e: AppError) -> String {
    match e {
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

pub fn user(args: &UserArgs) -> Result<(), String> {
    let store = Store::open(&args.data_dir)?;
    match &args.action {
        UserAction::Add { name, role } => {
            let password = read_password(name)?;
            store.add_user(name, *role, &password).map_err(err)?;
            store
                .auth_event(
                    "user-added",
                    Some("cli"),
                    Some(&format!("{name} ({})", role.as_str())),
                    None,
                )
                .map_err(err)?;
            println!("added {name} ({})", role.as_str());
        }
        UserAction::List => {
            for u in store.users().map_err(err)? {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.name,
                    u.role.as_str(),
                    if u.disabled { "disabled" } else { "enabled" },
                    u.created_at
                );
            }
        }
        UserAction::Disable { name } => {
            store.disable_user(name).map_err(err)?;
            store
                .auth_event("user-disabled", Some("cli"), Some(name), None)
                .map_err(err)?;
            println!("disabled {name}");
        }
        UserAction::Passwd { name } => {
            let password = read_password(name)?;
            store.set_password(name, &password).map_err(err)?;
            store
                .auth_event("password-changed", Some("cli"), Some(name), None)
                .map_err(err)?;
            println!("changed the password of {name}");
        }
    }
    Ok(())
}

pub fn token(args: &TokenArgs) -> Result<(), String> {
    let store = Store::open(&args.data_dir)?;
    match &args.action {
        TokenAction::Create { user, role } => {
            let (id, secret, role) = store.create_token(user, *role).map_err(err)?;
            store
                .auth_event(
                    "token-created",
                    Some("cli"),
                    Some(&format!("token {id} for {user} ({})", role.as_str())),
                    None,
                )
                .map_err(err)?;
            eprintln!("token {id} for {user} ({}); it is shown only now:", role.as_str());
            println!("{secret}");
        }
        TokenAction::List => {
            for t in store.tokens().map_err(err)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.user,
                    t.role.as_str(),
                    if t.revoked { "revoked" } else { "active" },
                    t.last_used_at.unwrap_or_else(|| "never used".into())
                );
            }
        }
        TokenAction::Revoke { id } => {
            store.revoke_token(*id).map_err(err)?;
            store
                .auth_event("token-revoked", Some("cli"), Some(&format!("token {id}")), None)
                .map_err(err)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// On the very first start (no users at all), creates `admin` with a random password and prints it
/// once. Returns the password when it did.
pub fn bootstrap_admin(store: &Store) -> Result<Option<String>, AppError> {
    if store.user_count()? > 0 {
        return Ok(None);
    }
    let password = random_secret()?[..24].to_owned();
    store.add_user("admin", Role::Admin, &password)?;
    store.auth_event("user-added", Some("first start"), Some("admin (admin)"), None)?;
    eprintln!(
        "imds-console: first start: created the user \"admin\" with the password {password}\n\
         imds-console: it is shown only now; sign in and add users, or change it with `imds-console user passwd admin`."
    );
    Ok(Some(password))
}
