//! `dispatch-admin account-group`: named failover lists of SMTP accounts.

use clap::Subcommand;
use serde_json::json;

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::quota;

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum AccountGroupCommand {
    /// Create or replace a group: its accounts in failover order. Messages take the
    /// list as it is when they are enqueued.
    Set {
        name: String,
        #[arg(required = true, value_delimiter = ',')]
        accounts: Vec<String>,
    },
    /// Remove a group (queued messages keep their list).
    Remove { name: String },
    /// List groups.
    List,
}

pub(super) fn account_group_cmd(
    db: &mut postgres::Client,
    cmd: AccountGroupCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        AccountGroupCommand::Set { name, accounts } => {
            quota::set_account_group(db, &name, &accounts)?;
            out.result(json!({"group": name, "accounts": accounts}), || {
                format!("account group {name} set: {}", accounts.join(", "))
            });
        }
        AccountGroupCommand::Remove { name } => {
            if !quota::remove_account_group(db, &name)? {
                return Err(CliError::new(EXIT_DATA, format!("no account group {name:?}")).into());
            }
            out.result(json!({"group": name, "removed": true}), || {
                format!("account group {name} removed")
            });
        }
        AccountGroupCommand::List => {
            let groups = quota::account_groups(db)?;
            out.listing(serde_json::to_value(&groups)?, || {
                groups
                    .iter()
                    .map(|g| format!("{:<24} {}\n", g.name, g.accounts.join(", ")))
                    .collect()
            });
        }
    }
    Ok(EXIT_OK)
}
