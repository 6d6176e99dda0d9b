//! `dispatch-admin webhook`: endpoints that receive delivery events (docs/webhooks.md).

use std::time::Duration;

use clap::Subcommand;
use serde_json::json;

use crate::cli::{CliError, EXIT_CONFIG, EXIT_DATA, EXIT_OK, EXIT_UNAVAILABLE};
use crate::dispatcher::webhooks;
use crate::web::client::{self, Client, ClientOptions};

use super::output::*;

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Register an endpoint and print its signing secret once (docs/webhooks.md says how
    /// to verify a post). https://, or http:// to loopback only unless allowed.
    Add {
        /// Where dispatch-tick posts the events.
        url: String,
        /// Comma-separated: queued, sent, deferred, failed, cancelled, expired, unknown,
        /// or all.
        #[arg(long, value_name = "LIST")]
        events: String,
        /// Allow plain http:// to a host that is not on loopback. MAILRUN_ALLOW_PLAIN_HTTP
        /// takes 1/0, yes/no, on/off or true/false.
        #[arg(long, env = "MAILRUN_ALLOW_PLAIN_HTTP", value_parser = crate::cli::SwitchParser)]
        allow_plain_http: bool,
    },
    /// Every endpoint with its events, pending count, failures and last error (never the
    /// secret).
    List,
    /// Remove an endpoint; its undelivered events are dropped for it.
    Remove {
        /// Endpoint id, as `list` shows it.
        id: i64,
    },
    /// Post a signed test body (no events) to an endpoint now and say how it answered.
    Test {
        /// Endpoint id, as `list` shows it.
        id: i64,
        /// Connect and answer timeout, in seconds.
        #[arg(long, value_name = "SECONDS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=600))]
        timeout: u64,
        /// Allow plain http:// to a host that is not on loopback.
        #[arg(long, env = "MAILRUN_ALLOW_PLAIN_HTTP", value_parser = crate::cli::SwitchParser)]
        allow_plain_http: bool,
    },
}

pub(super) fn webhook_cmd(
    db: &mut postgres::Client,
    cmd: WebhookCommand,
    out: Output,
) -> anyhow::Result<u8> {
    match cmd {
        WebhookCommand::Add {
            url,
            events,
            allow_plain_http,
        } => {
            let events =
                webhooks::parse_events(&events).map_err(|e| CliError::new(EXIT_DATA, e))?;
            client::check_target(&url, allow_plain_http)
                .map_err(|e| CliError::new(EXIT_CONFIG, e.to_string()))?;
            if url.len() > 2000 || url.chars().any(|ch| ch.is_whitespace() || ch == '@') {
                return Err(CliError::new(
                    EXIT_DATA,
                    "the URL is longer than 2000 characters or contains a space or @",
                )
                .into());
            }
            let added = webhooks::add(db, &url, &events)?;
            // Printed even without --verbose: the only time the secret is shown.
            if out.json {
                println!(
                    "{}",
                    json!({"id": added.id, "url": url, "events": events, "secret": added.secret})
                );
            } else {
                println!("{}", added.secret);
                if out.verbose {
                    eprintln!(
                        "webhook {} for {}; store the secret now, it is not shown again",
                        added.id,
                        events.join(",")
                    );
                }
            }
        }
        WebhookCommand::List => {
            let list = webhooks::list(db)?;
            out.listing(serde_json::to_value(&list)?, || {
                let mut s = format!(
                    "{:>4} {:<8} {:>8} {:<12} {:<40} {}\n",
                    "ID", "FAILURES", "PENDING", "LAST OK", "URL", "EVENTS / LAST ERROR"
                );
                for e in &list {
                    s.push_str(&format!(
                        "{:>4} {:<8} {:>8} {:<12} {:<40} {}\n",
                        e.id,
                        e.failures,
                        e.pending,
                        ago(e.last_success_at),
                        e.url,
                        e.events.join(",")
                    ));
                    if e.failures > 0 {
                        if let Some(error) = &e.last_error {
                            s.push_str(&format!("{:>4} {error}\n", ""));
                        }
                    }
                }
                s
            });
        }
        WebhookCommand::Remove { id } => {
            if !webhooks::remove(db, id)? {
                return Err(CliError::new(EXIT_DATA, format!("no webhook {id}")).into());
            }
            out.result(json!({"id": id, "removed": true}), || {
                format!("webhook {id} removed")
            });
        }
        WebhookCommand::Test {
            id,
            timeout,
            allow_plain_http,
        } => {
            let timeout = Duration::from_secs(timeout);
            let client = Client::new(ClientOptions {
                connect_timeout: timeout,
                timeout,
                allow_plain_http,
                max_response_bytes: 64 * 1024,
            });
            match webhooks::test(db, &client, id, timeout)? {
                None => return Err(CliError::new(EXIT_DATA, format!("no webhook {id}")).into()),
                Some(Err(error)) => {
                    return Err(
                        CliError::new(EXIT_UNAVAILABLE, format!("webhook {id}: {error}")).into(),
                    )
                }
                Some(Ok(())) => out.result(json!({"id": id, "accepted": true}), || {
                    format!("webhook {id} accepted the test post")
                }),
            }
        }
    }
    Ok(EXIT_OK)
}
