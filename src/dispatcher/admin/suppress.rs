//! `dispatch-admin suppress`: the suppression list.

use clap::Subcommand;
use serde_json::json;

use crate::cli::EXIT_OK;
use crate::dispatcher::suppression;

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Never send to these addresses.
    Add {
        #[arg(required = true)]
        addresses: Vec<String>,
        /// Why (shown in listings and in the messages' last answer).
        #[arg(long, default_value = "operator entry")]
        reason: String,
    },
    /// Take addresses off the list.
    Remove {
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Entries, newest first.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Is this address suppressed? Exit 0 if so, 3 if not.
    Check { address: String },
}

pub(super) fn suppress_cmd(
    db: &mut postgres::Client,
    cmd: SuppressCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        SuppressCommand::Add { addresses, reason } => {
            let mut tx = db.transaction()?;
            let mut added = Vec::new();
            for a in &addresses {
                if suppression::add(&mut tx, a, &reason)? {
                    added.push(suppression::normalize(a)?);
                }
            }
            tx.commit()?;
            out.result(json!({"added": added}), || {
                format!("{} address(es) added", added.len())
            });
        }
        SuppressCommand::Remove { addresses } => {
            let mut tx = db.transaction()?;
            let mut removed = Vec::new();
            for a in &addresses {
                if suppression::remove(&mut tx, a)? {
                    removed.push(suppression::normalize(a)?);
                }
            }
            tx.commit()?;
            out.result(json!({"removed": removed}), || {
                format!("{} address(es) removed", removed.len())
            });
        }
        SuppressCommand::List { limit } => {
            let list = suppression::list(db, limit)?;
            out.listing(serde_json::to_value(&list)?, || {
                let mut s = format!(
                    "{:<40} {:<9} {:<20} {}\n",
                    "ADDRESS", "SOURCE", "SINCE", "REASON"
                );
                for e in &list {
                    s.push_str(&format!(
                        "{:<40} {:<9} {:<20} {}\n",
                        e.address,
                        e.source,
                        e.created_at.format("%Y-%m-%d %H:%M"),
                        e.reason
                    ));
                }
                s
            });
        }
        SuppressCommand::Check { address } => {
            let entry = suppression::get(db, &address)?;
            out.listing(json!({"suppressed": entry}), || match &entry {
                Some(e) => format!("{} is suppressed ({}: {})\n", e.address, e.source, e.reason),
                None => format!("{address} is not suppressed\n"),
            });
            if entry.is_none() {
                return Ok(crate::cli::EXIT_NO_WORK);
            }
        }
    }
    Ok(EXIT_OK)
}
