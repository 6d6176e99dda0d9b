//! `dispatch-admin policy`: the retry policy (mailrun.policy) from the config file.

use std::path::Path;

use clap::Subcommand;
use serde_json::json;

use crate::cli::{CliError, EXIT_OK};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::retry::Policy;

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force.
    Show,
    /// Write the config file's [retry] section (defaults for what it omits) to the database.
    Sync,
}

pub(super) fn policy(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    cmd: PolicyCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        PolicyCommand::Show => {
            let p = Policy::load(db)?;
            out.listing(serde_json::to_value(&p)?, || {
                let mut s = format!(
                    "backoff_min_seconds    {}\nbackoff_max_seconds    {}\n\
                     give_up_after_seconds  {}\nmax_message_bytes      {}\n\
                     max_recipients         {}\nmessage_id_domain      {}\n",
                    p.backoff_min_seconds,
                    p.backoff_max_seconds,
                    p.give_up_after_seconds,
                    p.max_message_bytes,
                    p.max_recipients,
                    p.message_id_domain.as_deref().unwrap_or("(domain of From)"),
                );
                if p.rules.is_empty() {
                    s.push_str("rules                  (none: 5xx permanent, 4xx temporary)\n");
                }
                for r in &p.rules {
                    s.push_str(&format!(
                        "rule                   code {} enhanced {} -> {}\n",
                        r.code.as_deref().unwrap_or("any"),
                        r.enhanced.as_deref().unwrap_or("any"),
                        if r.permanent {
                            "permanent"
                        } else {
                            "temporary"
                        }
                    ));
                }
                s
            });
        }
        PolicyCommand::Sync => {
            let (config, path) = DispatcherConfig::load(config_path)?;
            if path.is_none() {
                return Err(CliError::new(
                    crate::cli::EXIT_CONFIG,
                    "no config file found to sync the policy from",
                )
                .into());
            }
            let changed = config.retry_policy().store(db)?;
            out.result(json!({"policy_changed": changed}), || {
                if changed {
                    "retry policy updated"
                } else {
                    "retry policy unchanged"
                }
                .into()
            });
        }
    }
    Ok(EXIT_OK)
}
