//! `--config imds-console.toml`: every long flag of the command run, set from a TOML file.
//!
//! Precedence, highest first: the command line, then `IMDS_CONSOLE_*` environment variables, then the
//! file, then the built-in defaults. The file is read before clap parses anything: each setting the
//! command line and the environment leave unset becomes a flag, so clap checks a file's value exactly
//! as it checks a typed one and names the flag when it refuses it.
//!
//! Keys are the long flags without their dashes (`listen`, `region`, `trusted-proxy`; `_` may stand
//! for `-`). A flag that can be repeated takes an array; a switch takes `true` or `false`. A key of
//! another command is left to it, so one file serves `serve`, `doctor`, `user` and `token`.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::{ArgAction, CommandFactory};

/// The environment variable that names the file when `--config` is not given.
pub const CONFIG_ENV: &str = "IMDS_CONSOLE_CONFIG";

/// Flags a file may not set: the file itself, and what one invocation asks for.
const NOT_SETTINGS: &[&str] = &["config", "check-config", "help", "version"];

/// `args` (the whole command line, program name first) with the settings of the config file added,
/// or the command line unchanged when no file is named. An unreadable file, a key that is not a flag
/// of the command, and a value of the wrong shape are errors that name the file and the key.
pub fn with_config_file(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(path) = config_path(&args) else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("{}: {}", path.display(), e.message()))?;
    let mut command = crate::config::Cli::command();
    command.build();
    // The subcommand is the first argument that names one; without one clap says what is missing.
    let Some(subcommand) = args.iter().skip(1).find_map(|a| {
        command
            .get_subcommands()
            .find(|s| OsStr::new(s.get_name()) == a.as_os_str())
    }) else {
        return Ok(args);
    };
    let mut added = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let is_setting =
            |a: &clap::Arg| a.get_long() == Some(flag.as_str()) && !NOT_SETTINGS.contains(&flag.as_str());
        // One file serves every command (IMDS_CONSOLE_CONFIG may be set for all of them): a key another
        // command takes is left to it, and only a key no command takes is a mistake.
        let Some(arg) = subcommand.get_arguments().find(|a| is_setting(a)) else {
            if command
                .get_subcommands()
                .any(|s| s.get_arguments().any(is_setting))
            {
                continue;
            }
            return Err(format!(
                "{}: `{key}` is not a setting of imds-console (settings are the commands' long flags, \
                 see `imds-console {} --help`)",
                path.display(),
                subcommand.get_name()
            ));
        };
        let on_command_line = args.iter().skip(1).any(|a| {
            let a = a.to_string_lossy();
            a.strip_prefix("--")
                .is_some_and(|given| given == flag || given.starts_with(&format!("{flag}=")))
        });
        let in_environment = arg.get_env().is_some_and(|name| std::env::var_os(name).is_some());
        if on_command_line || in_environment {
            continue;
        }
        let wrong = |expected: &str| format!("{}: `{key}` takes {expected}", path.display());
        match (arg.get_action(), value) {
            (ArgAction::SetTrue, toml::Value::Boolean(on)) => {
                if *on {
                    added.push(OsString::from(format!("--{flag}")));
                }
            }
            (ArgAction::SetTrue, _) => return Err(wrong("true or false")),
            (ArgAction::Append, toml::Value::Array(items)) => {
                for item in items {
                    added.push(OsString::from(format!(
                        "--{flag}={}",
                        scalar(item).ok_or_else(|| wrong("an array of strings or numbers"))?
                    )));
                }
            }
            (ArgAction::Append | ArgAction::Set, value) => {
                let text = scalar(value).ok_or_else(|| wrong("a string or a number"))?;
                added.push(OsString::from(format!("--{flag}={text}")));
            }
            _ => return Err(wrong("no value: it is not a setting")),
        }
    }
    let mut args = args;
    args.extend(added);
    Ok(args)
}

/// The file named by `--config PATH`, `--config=PATH` or the environment.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut given = args.iter().skip(1);
    while let Some(arg) = given.next() {
        if arg == "--config" {
            return given.next().map(PathBuf::from);
        }
        if let Some(path) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(CONFIG_ENV).map(PathBuf::from)
}

/// A string, number or date as the text a flag takes; `None` for arrays, tables and booleans.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Boolean(_) | toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(file: &str, cli: &[&str]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imds-console.toml");
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> = vec!["imds-console".into()];
        args.extend(cli.iter().map(OsString::from));
        args.push("--config".into());
        args.push(path.into());
        with_config_file(args).map(|a| {
            a.iter()
                .skip(cli.len() + 3)
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        })
    }

    #[test]
    fn settings_become_flags_of_every_shape() {
        let added = run(
            "listen = \"0.0.0.0:9000\"\nregion = [\"us-east-1\", \"eu-west-1\"]\nsecure-cookies = true\n\
             bootstrap_admin = false\nssm-read-rate = 2.5\nsandbox-fleet = 100\n",
            &["serve"],
        )
        .unwrap();
        assert_eq!(
            added,
            [
                "--listen=0.0.0.0:9000",
                "--region=us-east-1",
                "--region=eu-west-1",
                "--sandbox-fleet=100",
                "--secure-cookies",
                "--ssm-read-rate=2.5",
            ]
        );
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let added = run(
            "listen = \"0.0.0.0:9000\"\npoll-ms = 500\n",
            &["serve", "--listen=127.0.0.1:1"],
        )
        .unwrap();
        assert_eq!(added, ["--poll-ms=500"]);
        let added = run("region = [\"eu-west-1\"]\n", &["serve", "--region", "us-east-1"]).unwrap();
        assert!(added.is_empty(), "{added:?}");
    }

    #[test]
    fn unknown_keys_and_wrong_shapes_are_named() {
        let e = run("listne = \"x\"\n", &["serve"]).unwrap_err();
        assert!(e.contains("`listne` is not a setting of imds-console"), "{e}");
        let e = run("aws = \"yes\"\n", &["serve"]).unwrap_err();
        assert!(e.contains("`aws` takes true or false"), "{e}");
        let e = run("listen = [\"a\"]\n", &["serve"]).unwrap_err();
        assert!(e.contains("`listen` takes a string or a number"), "{e}");
        let e = run("config = \"other.toml\"\n", &["serve"]).unwrap_err();
        assert!(e.contains("`config` is not a setting"), "{e}");
        let e = run("check-config = true\n", &["serve"]).unwrap_err();
        assert!(e.contains("`check-config` is not a setting"), "{e}");
        let e = run("listen = \n", &["serve"]).unwrap_err();
        assert!(e.contains("imds-console.toml"), "{e}");
    }

    #[test]
    fn another_command_takes_only_its_own_settings_from_the_same_file() {
        let file = "listen = \"0.0.0.0:9000\"\ndata-dir = \"/var/lib/imds\"\nregion = [\"eu-west-1\"]\n";
        let added = run(file, &["user", "list"]).unwrap();
        assert_eq!(added, ["--data-dir=/var/lib/imds"]);
    }

    #[test]
    fn a_missing_file_is_an_error_that_names_it() {
        let e = with_config_file(vec![
            "imds-console".into(),
            "serve".into(),
            "--config".into(),
            "/nonexistent/x.toml".into(),
        ])
        .unwrap_err();
        assert!(e.starts_with("--config /nonexistent/x.toml:"), "{e}");
    }
}
