//! `dispatch-admin account`: SMTP accounts and their logins.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::accounts;
use crate::dispatcher::quota;
use crate::protocol::{Security, SmtpAccount};

use super::output::*;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SecurityArg {
    None,
    Starttls,
    Tls,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an SMTP account. The password is read from --password-file (or stdin with
    /// `-`), or from MAILRUN_SMTP_PASSWORD; never from the command line.
    Add {
        name: String,
        #[arg(long)]
        host: String,
        #[arg(long)]
        port: u16,
        #[arg(long, value_enum, default_value = "starttls")]
        security: SecurityArg,
        #[arg(long)]
        username: Option<String>,
        /// File holding the password (first line), `-` for stdin.
        #[arg(long, value_name = "PATH", requires = "username")]
        password_file: Option<PathBuf>,
        /// No effect, kept for old scripts: a login over --security none is accepted
        /// for loopback hosts only (127.0.0.0/8, ::1, localhost), without this flag,
        /// because runners never send a password in clear to any other host.
        #[arg(long)]
        insecure_plain_auth: bool,
        /// Most SMTP sessions a runner may hold to this account at once (the provider's
        /// cap) [default: the runner's max_sessions_per_account, 20].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        max_connections: Option<u32>,
    },
    /// Set the most SMTP sessions a runner may hold to an account at once (sent to
    /// runners with every batch).
    Limit {
        name: String,
        /// Sessions at once (1-1000).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000),
              required_unless_present = "clear")]
        max_connections: Option<u32>,
        /// Remove the account's own limit: runners use their max_sessions_per_account.
        #[arg(long, conflicts_with = "max_connections")]
        clear: bool,
    },
    /// List accounts (passwords show as "set" or "none").
    List,
    /// Connect, negotiate TLS as configured and log in; report the server's answer.
    Test { name: String },
    /// Stop sending through an account (messages fail over to their next account, or
    /// wait).
    Disable { name: String },
    /// Send through an account again.
    Enable { name: String },
    /// Delete an account. Refused while messages (unfinished or finished) or account
    /// groups use it, unless --to moves them all to another account (failover lists keep
    /// their order); its quotas and throttle state go with it.
    Remove {
        name: String,
        /// The account that takes over its messages and group memberships.
        #[arg(long, value_name = "OTHER")]
        to: Option<String>,
    },
}

pub(super) fn read_secret_file(path: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::InvalidData {
                EXIT_DATA
            } else {
                crate::cli::EXIT_SOFTWARE
            };
            CliError::new(code, format!("cannot read the password from stdin: {e}"))
        })?;
    } else {
        text = std::fs::read_to_string(path).map_err(|e| {
            CliError::new(EXIT_DATA, format!("cannot read {}: {e}", path.display()))
        })?;
    }
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(CliError::new(EXIT_DATA, "the password is empty").into());
    }
    Ok(line)
}

pub(super) fn account(
    db: &mut postgres::Client,
    cmd: AccountCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        AccountCommand::Add {
            name,
            host,
            port,
            security,
            username,
            password_file,
            insecure_plain_auth,
            max_connections,
        } => {
            // The runner's own rule (accounts::clear_text_login): checked before the
            // password is read, so nothing is asked for an account that cannot work.
            let loopback = crate::web::is_loopback_host(&host);
            if username.is_some() && matches!(security, SecurityArg::None) && !loopback {
                let flag = if insecure_plain_auth {
                    " (--insecure-plain-auth cannot allow it)"
                } else {
                    ""
                };
                return Err(CliError::new(
                    EXIT_USAGE,
                    format!(
                        "a login over --security none to {host}, which is not loopback, \
                         would send the password in clear; runners refuse that, so its mail \
                         would wait until it expired: use --security starttls or tls{flag}"
                    ),
                )
                .into());
            }
            let password = match (&username, password_file) {
                (None, _) => None,
                (Some(_), Some(path)) => Some(read_secret_file(&path)?),
                (Some(_), None) => match std::env::var("MAILRUN_SMTP_PASSWORD") {
                    Ok(p) if !p.is_empty() => Some(p),
                    _ => {
                        return Err(CliError::new(
                            EXIT_USAGE,
                            "--username needs a password: --password-file PATH (or - for \
                             stdin) or MAILRUN_SMTP_PASSWORD",
                        )
                        .into())
                    }
                },
            };
            let account = SmtpAccount {
                name: name.clone(),
                host,
                port,
                security: match security {
                    SecurityArg::None => Security::None,
                    SecurityArg::Starttls => Security::StartTls,
                    SecurityArg::Tls => Security::Tls,
                },
                username,
                password,
                max_connections,
            };
            accounts::add(db, &account)?;
            out.result(json!({"account": name, "added": true}), || {
                format!("account {name} added")
            });
        }
        AccountCommand::Remove { name, to } => {
            let moved = accounts::remove(db, &name, to.as_deref())?;
            out.result(
                json!({"account": name, "removed": true, "moved_messages": moved, "to": to}),
                || match &to {
                    Some(t) => format!("account {name} removed; {moved} message(s) moved to {t}"),
                    None => format!("account {name} removed"),
                },
            );
        }
        AccountCommand::List => {
            let list = accounts::list(db)?;
            let rows: Vec<Value> = list
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name, "host": a.host, "port": a.port,
                        "security": a.security.as_str(), "username": a.username,
                        "password": if a.password.is_some() { "set" } else { "none" },
                        "max_connections": a.max_connections,
                        "problem": accounts::clear_text_login(a),
                    })
                })
                .collect();
            out.listing(Value::Array(rows), || {
                let mut s = format!(
                    "{:<20} {:<30} {:>5} {:<9} {:<24} {:<8} {}\n",
                    "NAME", "HOST", "PORT", "SECURITY", "USERNAME", "PASSWORD", "SESSIONS"
                );
                let mut problems = String::new();
                for a in &list {
                    let problem = accounts::clear_text_login(a);
                    s.push_str(&format!(
                        "{:<20} {:<30} {:>5} {:<9} {:<24} {:<8} {}{}\n",
                        a.name,
                        a.host,
                        a.port,
                        a.security.as_str(),
                        a.username.as_deref().unwrap_or("-"),
                        if a.password.is_some() { "set" } else { "none" },
                        a.max_connections
                            .map_or_else(|| "runner".to_string(), |n| n.to_string()),
                        if problem.is_some() { "  UNUSABLE" } else { "" }
                    ));
                    if let Some(p) = problem {
                        problems.push_str(&format!("account {}: {p}\n", a.name));
                    }
                }
                if !problems.is_empty() {
                    s.push('\n');
                    s.push_str(&problems);
                }
                s
            });
        }
        AccountCommand::Limit {
            name,
            max_connections,
            clear,
        } => {
            let limit = if clear { None } else { max_connections };
            accounts::set_max_connections(db, &name, limit)?;
            out.result(
                json!({"account": name, "max_connections": limit}),
                || match limit {
                    Some(n) => format!("account {name}: at most {n} session(s) per runner"),
                    None => format!("account {name}: runners use their max_sessions_per_account"),
                },
            );
        }
        AccountCommand::Disable { name } => {
            quota::set_account_enabled(db, &name, false)?;
            out.result(json!({"account": name, "enabled": false}), || {
                format!("account {name} disabled")
            });
        }
        AccountCommand::Enable { name } => {
            quota::set_account_enabled(db, &name, true)?;
            out.result(json!({"account": name, "enabled": true}), || {
                format!("account {name} enabled")
            });
        }
        AccountCommand::Test { name } => {
            let account = accounts::get(db, &name)?
                .ok_or_else(|| CliError::new(EXIT_DATA, format!("no account {name:?}")))?;
            let report = accounts::test(&account)?;
            out.listing(
                json!({"account": name, "ok": true, "detail": report}),
                || format!("{report}\n"),
            );
        }
    }
    Ok(EXIT_OK)
}
