//! `dispatch-admin`: schema, runners, SMTP accounts, enqueue, status, show, cancel,
//! retry and purge. Human tables by default, `--json` for scripts; nothing on stdout
//! for commands that only change state, unless `--verbose`.

mod account;
mod account_group;
mod api_key;
mod args;
mod enqueue;
mod list;
mod messages;
mod migrate;
mod output;
mod policy;
mod quota;
mod reply_rule;
mod report;
mod report_mail;
mod runner;
mod schedule;
mod suppress;
mod unknown;
mod webhook;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_OK};
use crate::dispatcher::retry::DEFAULTS_HELP;
use crate::dispatcher::{config, connection, queue, schema};

use output::Output;

const AFTER_HELP: &str = "\
Database URL: --database-url, else MAILRUN_DATABASE_URL, else database_url in the config
file (--config, else MAILRUN_CONFIG, else ~/.config/mailrun/dispatcher.toml, else
/etc/mailrun/dispatcher.toml). See docs/queue.md for the schema and stored procedures, and
docs/quotas.md for quotas, throttling, failover, the reply policy and suppression.";

fn after_help() -> String {
    format!("{AFTER_HELP}\n\n{DEFAULTS_HELP}\n\n{EXIT_CODES_HELP}")
}

/// Administer the mailrun dispatcher: schema, runners, SMTP accounts and the queue.
#[derive(Debug, Parser)]
#[command(name = "dispatch-admin", version, after_help = after_help())]
pub struct Args {
    // The shared options are listed after each subcommand's own (display_order).
    /// PostgreSQL URL, e.g. postgres://mailrun@localhost/mailrun (default:
    /// MAILRUN_DATABASE_URL, then the config file); TLS: ?sslmode=verify-full&sslrootcert=FILE;
    /// primary and standby: HOST1,HOST2 with target_session_attrs=read-write
    #[arg(long, global = true, value_name = "URL", display_order = 900)]
    pub database_url: Option<String>,
    /// Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml,
    /// /etc/mailrun/dispatcher.toml)
    #[arg(long, global = true, value_name = "FILE", display_order = 901)]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON.
    #[arg(long, global = true, display_order = 902)]
    pub json: bool,
    /// Say what was done.
    #[arg(long, short, global = true, display_order = 903)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the mailrun schema (or bring it up to date) and sync the retry policy.
    Init,
    /// Apply pending schema migrations and sync the retry policy; refuses a newer schema.
    Migrate,
    /// Recurring jobs: add (cron spec + message template), list, show, pause, resume,
    /// remove. dispatch-tick enqueues each due occurrence exactly once.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Delivery results: every attempt with its SMTP answer (table, --json or --csv),
    /// or --summary per job run or recurring job.
    Report(Box<report::ReportArgs>),
    /// Show or sync the retry policy (mailrun.policy) from the config file.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Manage runners.
    #[command(subcommand)]
    Runner(runner::RunnerCommand),
    /// Manage SMTP accounts.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// Queue messages: from flags, an .eml file, or JSON lines on stdin (--jsonl).
    Enqueue(Box<enqueue::EnqueueArgs>),
    /// Messages by send time with filters (state, account, recipient domain, send-at
    /// range, recurring job), a page at a time or --all.
    List(Box<list::ListArgs>),
    /// Counts by state, the oldest due message, and the runners.
    Status,
    /// One message with every delivery attempt, per recipient.
    Show {
        /// Message id (as printed by enqueue).
        id: i64,
    },
    /// Cancel queued, deferred or leased messages.
    Cancel {
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Make messages due now again (deferred, failed, expired, cancelled, or sent with
    /// failed recipients: only those are retried).
    Retry {
        /// Message ids.
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Delete finished messages (sent, failed, cancelled, expired) older than an age.
    Purge {
        /// Age such as 30d, 12h, 90m or 3600s.
        #[arg(long, value_name = "AGE", value_parser = args::parse_age)]
        older_than: i64,
    },
    /// Sending caps per account, runner and recipient domain; throttle state.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// The suppression list: recipients never sent to.
    #[command(subcommand)]
    Suppress(suppress::SuppressCommand),
    /// The reply policy: what SMTP answers mean (retry, another account, suppress, fail).
    #[command(subcommand)]
    ReplyRule(reply_rule::ReplyRuleCommand),
    /// Messages whose outcome is unknown (DATA sent, no answer): list and resolve.
    #[command(subcommand)]
    Unknown(unknown::UnknownCommand),
    /// Named failover lists of SMTP accounts (enqueue --account-group).
    #[command(subcommand)]
    AccountGroup(account_group::AccountGroupCommand),
    /// Print dispatch-cgi's WSDL with its real address and the schema inlined, for SOAP
    /// stacks (zeep, SoapClient...) to load as it is; needs no database.
    Wsdl {
        /// The URL runners post to, e.g. https://mail.example.com/cgi-bin/dispatch-cgi.
        #[arg(long, value_name = "URL")]
        url: String,
    },
    /// Keys of the HTTP JSON API (dispatch-cgi under /api/v1/): add, list, revoke.
    #[command(subcommand)]
    ApiKey(api_key::ApiKeyCommand),
    /// Endpoints that receive delivery events (signed JSON posts from dispatch-tick):
    /// add, list, remove, test.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    if let Command::Wsdl { url } = &args.command {
        return print_wsdl(crate::protocol::wsdl::Service::Dispatcher, url);
    }
    let url = config::database_url(args.database_url.as_deref(), args.config.as_deref())?;
    let mut db = connection::connect(&url).map_err(CliError::from)?;
    let out = Output {
        json: args.json,
        verbose: args.verbose,
    };
    // A database error mid-command (lost connection, a write to a standby) is "retry
    // later" (69), not an internal error.
    run(&mut db, args, out).map_err(connection::exit_context)
}

fn run(db: &mut postgres::Client, args: Args, out: Output) -> anyhow::Result<u8> {
    match args.command {
        Command::Init | Command::Migrate => migrate::migrate(db, args.config.as_deref(), out),
        command => {
            schema::require_current(db)?;
            match command {
                Command::Init | Command::Migrate => {
                    migrate::migrate(db, args.config.as_deref(), out)
                }
                Command::Policy(p) => policy::policy(db, args.config.as_deref(), p, out),
                Command::Runner(r) => runner::runner(db, r, out),
                Command::Account(a) => account::account(db, a, out),
                Command::Enqueue(e) => enqueue::enqueue(db, args.config.as_deref(), *e, out),
                Command::List(l) => list::list(db, args.config.as_deref(), *l, out),
                Command::Status => messages::status(db, out),
                Command::Schedule(s) => {
                    schedule::schedule(db, args.config.as_deref(), s, out.json, out.verbose)
                }
                Command::Report(r) => report::report(db, args.config.as_deref(), *r, out.json),
                Command::Show { id } => messages::show(db, id, out),
                Command::Cancel { ids } => messages::each(db, &ids, messages::Op::Cancel, out),
                Command::Retry { ids } => messages::each(db, &ids, messages::Op::Retry, out),
                Command::Quota(q) => quota::quota_cmd(db, q, out),
                Command::Suppress(s) => suppress::suppress_cmd(db, s, out),
                Command::ReplyRule(r) => reply_rule::reply_rule_cmd(db, r, out),
                Command::Unknown(u) => unknown::unknown_cmd(db, u, out),
                Command::AccountGroup(g) => account_group::account_group_cmd(db, g, out),
                Command::Wsdl { url } => {
                    print_wsdl(crate::protocol::wsdl::Service::Dispatcher, &url)
                }
                Command::ApiKey(k) => api_key::api_key_cmd(db, k, out),
                Command::Webhook(w) => webhook::webhook_cmd(db, w, out),
                Command::Purge { older_than } => {
                    let n = queue::purge(db, older_than)?;
                    out.result(json!({"purged": n}), || format!("purged {n} messages"));
                    Ok(EXIT_OK)
                }
            }
        }
    }
}

/// `wsdl --url`: the service's WSDL on stdout (shared with runner-admin).
pub fn print_wsdl(service: crate::protocol::wsdl::Service, url: &str) -> anyhow::Result<u8> {
    let wsdl = crate::protocol::wsdl::with_address(service, url)
        .map_err(|e| CliError::new(crate::cli::EXIT_USAGE, e))?;
    print!("{wsdl}");
    Ok(EXIT_OK)
}
