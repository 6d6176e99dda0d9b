//! `dispatch-admin runner`: runners, their keys and endpoints.

use clap::Subcommand;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::runners;

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum RunnerCommand {
    /// Register a runner; prints its new key once, with the runner-admin line to paste.
    Add {
        id: String,
        /// The runner's runner-cgi URL (JobRunnerReady and config pushes go there).
        #[arg(long, value_name = "URL")]
        endpoint: String,
        /// Most messages per JobRun.
        #[arg(long, default_value_t = runners::DEFAULT_BATCH_SIZE)]
        batch_size: u32,
        /// This dispatcher's dispatch-cgi URL, for the printed runner-admin line.
        #[arg(long, value_name = "URL")]
        dispatcher_url: Option<String>,
    },
    /// List runners.
    List,
    /// Change a runner's endpoint or batch size.
    Set {
        id: String,
        #[arg(long, value_name = "URL")]
        endpoint: Option<String>,
        #[arg(long)]
        batch_size: Option<u32>,
    },
    /// Stop handing work to a runner.
    Disable { id: String },
    /// Hand work to a runner again.
    Enable { id: String },
    /// Take a runner out of service now (a dead host, a stolen key): disable it, so its
    /// requests are refused, and return the messages leased to it to the queue at once
    /// (the next dispatch-tick hands them to another runner) instead of when the lease
    /// ends. Reports it sends after a later `enable` are recorded as late, never applied
    /// twice.
    Revoke { id: String },
    /// Revoke a runner, then delete it with its job runs, leases and runner quotas (its
    /// delivery attempts stay, naming it).
    Remove { id: String },
    /// Make a new key (printed once); the old key stays valid until confirm-key.
    RotateKey {
        id: String,
        /// This dispatcher's dispatch-cgi URL, for the printed runner-admin line.
        #[arg(long, value_name = "URL")]
        dispatcher_url: Option<String>,
    },
    /// Forget the previous key after a rotation (the dispatcher also does this when the
    /// runner first signs with the new key).
    ConfirmKey { id: String },
}

pub(super) fn print_key(
    runner: &str,
    key: &crate::protocol::sign::SigningKey,
    dispatcher_url: Option<&str>,
    out: Output,
) {
    let hex_key = hex::encode(key.secret);
    if out.json {
        println!(
            "{}",
            json!({"runner": runner, "key_id": key.key_id, "key": hex_key})
        );
        return;
    }
    let url = dispatcher_url.unwrap_or("https://DISPATCHER/cgi-bin/dispatch-cgi");
    println!("runner:  {runner}");
    println!("key id:  {}", key.key_id);
    println!("key:     {hex_key}");
    println!();
    println!("This key is shown once. On the runner, run:");
    println!(
        "  echo {hex_key} | runner-admin init --dispatcher-url {url} --runner-id {runner} \
         --key-id {} --key-file -",
        key.key_id
    );
}

pub(super) fn runner(
    db: &mut postgres::Client,
    cmd: RunnerCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        RunnerCommand::Add {
            id,
            endpoint,
            batch_size,
            dispatcher_url,
        } => {
            let key = runners::add(db, &id, &endpoint, batch_size)?;
            print_key(&id, &key, dispatcher_url.as_deref(), out);
        }
        RunnerCommand::List => {
            let list = runners::list(db)?;
            let rows: Vec<Value> = list
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id, "endpoint": r.endpoint, "enabled": r.enabled,
                        "batch_size": r.batch_size,
                        "key_ids": r.keys.iter().map(|k| k.key_id.clone()).collect::<Vec<_>>(),
                        "last_seen": r.last_seen, "last_status": r.last_status,
                        "software_version": r.software_version,
                        "config_version": r.config_version,
                    })
                })
                .collect();
            out.listing(Value::Array(rows), || runner_table(&list));
        }
        RunnerCommand::Set {
            id,
            endpoint,
            batch_size,
        } => {
            if endpoint.is_none() && batch_size.is_none() {
                return Err(
                    CliError::new(EXIT_USAGE, "give --endpoint and/or --batch-size").into(),
                );
            }
            runners::update(db, &id, endpoint.as_deref(), batch_size)?;
            out.result(json!({"runner": id, "updated": true}), || {
                format!("runner {id} updated")
            });
        }
        RunnerCommand::Disable { id } => {
            runners::set_enabled(db, &id, false)?;
            out.result(json!({"runner": id, "enabled": false}), || {
                format!("runner {id} disabled")
            });
        }
        RunnerCommand::Enable { id } => {
            runners::set_enabled(db, &id, true)?;
            out.result(json!({"runner": id, "enabled": true}), || {
                format!("runner {id} enabled")
            });
        }
        RunnerCommand::Revoke { id } => {
            let n = runners::revoke(db, &id)?;
            out.result(
                json!({"runner": id, "revoked": true, "requeued": n}),
                || format!("runner {id} revoked; {n} leased message(s) back in the queue"),
            );
        }
        RunnerCommand::Remove { id } => {
            let n = runners::remove(db, &id)?;
            out.result(
                json!({"runner": id, "removed": true, "requeued": n}),
                || format!("runner {id} removed; {n} leased message(s) back in the queue"),
            );
        }
        RunnerCommand::RotateKey { id, dispatcher_url } => {
            let key = runners::rotate_key(db, &id)?;
            print_key(&id, &key, dispatcher_url.as_deref(), out);
        }
        RunnerCommand::ConfirmKey { id } => {
            let runner = runners::require(db, &id)?;
            let dropped = runners::confirm_key(db, &id, &runner.keys[0].key_id)?;
            out.result(
                json!({"runner": id, "previous_key_dropped": dropped}),
                || {
                    if dropped {
                        format!("runner {id}: previous key forgotten")
                    } else {
                        format!("runner {id}: no previous key")
                    }
                },
            );
        }
    }
    Ok(EXIT_OK)
}

pub(super) fn runner_table(list: &[runners::Runner]) -> String {
    // The last status can be a long fault text: it goes last, in full, so the other
    // columns stay aligned; the endpoint column is as wide as the longest endpoint.
    let width = list
        .iter()
        .map(|r| r.endpoint.chars().count())
        .max()
        .unwrap_or(0)
        .max("ENDPOINT".len());
    let mut s = format!(
        "{:<20} {:<8} {:>6} {:<12} {:<width$} {}\n",
        "ID", "ENABLED", "BATCH", "LAST SEEN", "ENDPOINT", "LAST STATUS"
    );
    for r in list {
        s.push_str(&format!(
            "{:<20} {:<8} {:>6} {:<12} {:<width$} {}\n",
            r.id,
            if r.enabled { "yes" } else { "no" },
            r.batch_size,
            ago(r.last_seen),
            r.endpoint,
            r.last_status.as_deref().unwrap_or("-"),
        ));
    }
    s
}
