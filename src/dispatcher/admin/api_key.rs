//! `dispatch-admin api-key`: keys of the HTTP JSON API (docs/api.md).

use clap::Subcommand;
use serde_json::json;

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::api_keys::{self, Scope};

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key and print it once (only its SHA-256 is stored: it cannot be shown
    /// again). Scopes: read (GET only), send (also queue and cancel messages), admin
    /// (also add, pause, resume and remove recurring jobs).
    Add {
        /// What the key may do.
        #[arg(long, value_parser = ["send", "read", "admin"])]
        scope: String,
        /// A note to recognise the key by in `list` (which application holds it).
        #[arg(long)]
        note: Option<String>,
    },
    /// Every key with its scope, note, last use and revocation (never the key itself).
    List,
    /// Refuse a key from now on (by id or prefix); its answers stay stored.
    Revoke {
        /// Key id or prefix, as `list` shows them.
        key: String,
    },
}

pub(super) fn api_key_cmd(
    db: &mut postgres::Client,
    cmd: ApiKeyCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        ApiKeyCommand::Add { scope, note } => {
            let scope: Scope = scope
                .parse()
                .map_err(|e: String| CliError::new(EXIT_DATA, e))?;
            let key = api_keys::add(db, scope, note.as_deref())?;
            // Printed even without --verbose: this is the only time the key exists in
            // clear.
            if out.json {
                println!(
                    "{}",
                    json!({"id": key.id, "prefix": key.prefix, "scope": scope.as_str(),
                           "key": key.token})
                );
            } else {
                println!("{}", key.token);
                if out.verbose {
                    eprintln!(
                        "api key {} (prefix {}, scope {}); store it now, it is not shown again",
                        key.id,
                        key.prefix,
                        scope.as_str()
                    );
                }
            }
        }
        ApiKeyCommand::List => {
            let keys = api_keys::list(db)?;
            out.listing(serde_json::to_value(&keys)?, || {
                let mut s = format!(
                    "{:>4} {:<13} {:<6} {:<12} {:<12} {}\n",
                    "ID", "PREFIX", "SCOPE", "LAST USED", "REVOKED", "NOTE"
                );
                for k in &keys {
                    s.push_str(&format!(
                        "{:>4} {:<13} {:<6} {:<12} {:<12} {}\n",
                        k.id,
                        k.prefix,
                        k.scope,
                        ago(k.last_used_at),
                        k.revoked_at.map_or("-".to_string(), |t| ago(Some(t))),
                        k.note.as_deref().unwrap_or("")
                    ));
                }
                s
            });
        }
        ApiKeyCommand::Revoke { key } => {
            let (id, changed) = api_keys::revoke(db, &key)?
                .ok_or_else(|| CliError::new(EXIT_DATA, format!("no API key {key:?}")))?;
            out.result(json!({"id": id, "revoked": changed}), || {
                if changed {
                    format!("api key {id} revoked")
                } else {
                    format!("api key {id} was already revoked")
                }
            });
        }
    }
    Ok(EXIT_OK)
}
