//! `dispatch-admin unknown`: messages whose outcome is unknown.

use clap::Subcommand;
use serde_json::json;

use crate::cli::EXIT_OK;
use crate::dispatcher::unknown::{self, Resolution};

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum UnknownCommand {
    /// Messages whose outcome is unknown (DATA sent, no answer).
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Decide what happened to messages with an unknown outcome (all or nothing).
    Resolve {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long = "as", value_enum)]
        resolution: Resolution,
    },
}

pub(super) fn unknown_cmd(
    db: &mut postgres::Client,
    cmd: UnknownCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        UnknownCommand::List { limit } => {
            let list = unknown::list(db, limit)?;
            out.listing(serde_json::to_value(&list)?, || {
                let mut s = format!(
                    "{:>8} {:<16} {:<23} {:<30} {}\n",
                    "ID", "ACCOUNT", "ATTEMPTED", "TO", "LAST ANSWER"
                );
                for m in &list {
                    s.push_str(&format!(
                        "{:>8} {:<16} {:<23} {:<30} {}\n",
                        m.id,
                        m.account,
                        utc(m.last_attempt_at),
                        m.to.join(", "),
                        m.last_text.as_deref().unwrap_or("-")
                    ));
                }
                s
            });
        }
        UnknownCommand::Resolve { ids, resolution } => {
            let mut tx = db.transaction()?;
            for &id in &ids {
                unknown::resolve(&mut tx, id, resolution)?;
            }
            tx.commit()?;
            out.result(json!({"resolved": ids, "as": resolution.as_str()}), || {
                format!(
                    "{} message(s) resolved as {}",
                    ids.len(),
                    resolution.as_str()
                )
            });
        }
    }
    Ok(EXIT_OK)
}
