//! `dispatch-admin`: schema, runners, SMTP accounts, enqueue, status, show, cancel,
//! retry and purge. Human tables by default, `--json` for scripts; nothing on stdout
//! for commands that only change state, unless `--verbose`.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args as ClapArgs, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::config::{self, DispatcherConfig};
use crate::dispatcher::queue::{self, security_str, EnqueueError};
use crate::dispatcher::retry::{Policy, DEFAULTS_HELP};
use crate::dispatcher::{
    accounts, admin_results, connection, message, quota, quota_admin, runners, schema,
};
use crate::protocol::{Security, SmtpAccount};
use crate::schedule::when;

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
    /// MAILRUN_DATABASE_URL, then the config file)
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
    Schedule(admin_results::ScheduleCommand),
    /// Delivery results: every attempt with its SMTP answer (table, --json or --csv),
    /// or --summary per job run or recurring job.
    Report(Box<admin_results::ReportArgs>),
    /// Show or sync the retry policy (mailrun.policy) from the config file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage runners.
    #[command(subcommand)]
    Runner(RunnerCommand),
    /// Manage SMTP accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Queue messages: from flags, an .eml file, or JSON lines on stdin (--jsonl).
    Enqueue(Box<EnqueueArgs>),
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
        #[arg(long, value_name = "AGE", value_parser = parse_age)]
        older_than: i64,
    },
    /// Sending caps per account, runner and recipient domain; throttle state.
    #[command(subcommand)]
    Quota(quota_admin::QuotaCommand),
    /// The suppression list: recipients never sent to.
    #[command(subcommand)]
    Suppress(quota_admin::SuppressCommand),
    /// The reply policy: what SMTP answers mean (retry, another account, suppress, fail).
    #[command(subcommand)]
    ReplyRule(quota_admin::ReplyRuleCommand),
    /// Messages whose outcome is unknown (DATA sent, no answer): list and resolve.
    #[command(subcommand)]
    Unknown(quota_admin::UnknownCommand),
    /// Named failover lists of SMTP accounts (enqueue --account-group).
    #[command(subcommand)]
    AccountGroup(quota_admin::AccountGroupCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy in force.
    Show,
    /// Write the config file's [retry] section (defaults for what it omits) to the database.
    Sync,
}

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
}

#[derive(Debug, ClapArgs)]
pub struct EnqueueArgs {
    /// Recipient (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub to: Vec<String>,
    /// Copy recipient (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub cc: Vec<String>,
    /// Blind copy recipient (repeatable; not shown in the headers).
    #[arg(long, value_name = "ADDR")]
    pub bcc: Vec<String>,
    /// Sender [default: [defaults] from in the config file]
    #[arg(long, value_name = "ADDR")]
    pub from: Option<String>,
    /// Reply-To address [default: [defaults] reply_to in the config file]
    #[arg(long, value_name = "ADDR")]
    pub reply_to: Option<String>,
    /// Subject line.
    #[arg(long)]
    pub subject: Option<String>,
    /// Plain-text body.
    #[arg(long, conflicts_with = "text_file")]
    pub text: Option<String>,
    /// Plain-text body from a file (`-` for stdin).
    #[arg(long, value_name = "PATH")]
    pub text_file: Option<PathBuf>,
    /// HTML body from a file.
    #[arg(long, value_name = "PATH")]
    pub html_file: Option<PathBuf>,
    /// Extra header "Name: value" (repeatable).
    #[arg(long, value_name = "HEADER")]
    pub header: Vec<String>,
    /// Attach a file (repeatable); the content type follows the extension.
    #[arg(long, value_name = "PATH")]
    pub attach: Vec<PathBuf>,
    /// SMTP account name [default: config, else the only account]
    #[arg(long)]
    pub account: Option<String>,
    /// Failover list of SMTP accounts, tried in order when one is over quota, disabled,
    /// throttled or failing (docs/quotas.md).
    #[arg(
        long,
        value_name = "NAME,...",
        value_delimiter = ',',
        conflicts_with = "account"
    )]
    pub accounts: Vec<String>,
    /// A named failover list (dispatch-admin account-group).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["account", "accounts"])]
    pub account_group: Option<String>,
    /// Send no earlier than this: "in 2 hours", "tomorrow 9am", "friday 17:30",
    /// "2026-12-01 08:00" (local, see --time-zone) or RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub send_at: Option<String>,
    /// IANA time zone for local --send-at times [default: time_zone in the config
    /// file, else UTC]
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
    /// Message-ID to use instead of a generated <uuid@from-domain>.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// Read the message from an RFC 5322 file (single-part text in UTF-8, US-ASCII,
    /// ISO-8859-1, ISO-8859-15 or windows-1252); flags override its headers.
    #[arg(long, value_name = "PATH", conflicts_with = "jsonl")]
    pub eml: Option<PathBuf>,
    /// Read one JSON message per line from stdin (or the file given); all or nothing.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "-")]
    pub jsonl: Option<PathBuf>,
    /// With --jsonl: skip invalid lines (reported on stderr) instead of refusing all.
    #[arg(long, requires = "jsonl")]
    pub skip_invalid: bool,
}

pub fn main(args: Args) -> anyhow::Result<u8> {
    let url = config::database_url(args.database_url.as_deref(), args.config.as_deref())?;
    let mut db = connection::connect(&url)?;
    let out = Output {
        json: args.json,
        verbose: args.verbose,
    };
    match args.command {
        Command::Init | Command::Migrate => migrate(&mut db, args.config.as_deref(), out),
        command => {
            schema::require_current(&mut db)?;
            match command {
                Command::Init | Command::Migrate => migrate(&mut db, args.config.as_deref(), out),
                Command::Policy(p) => policy(&mut db, args.config.as_deref(), p, out),
                Command::Runner(r) => runner(&mut db, r, out),
                Command::Account(a) => account(&mut db, a, out),
                Command::Enqueue(e) => enqueue(&mut db, args.config.as_deref(), *e, out),
                Command::Status => status(&mut db, out),
                Command::Schedule(s) => admin_results::schedule(
                    &mut db,
                    args.config.as_deref(),
                    s,
                    out.json,
                    out.verbose,
                ),
                Command::Report(r) => {
                    admin_results::report(&mut db, args.config.as_deref(), *r, out.json)
                }
                Command::Show { id } => show(&mut db, id, out),
                Command::Cancel { ids } => each(&mut db, &ids, Op::Cancel, out),
                Command::Retry { ids } => each(&mut db, &ids, Op::Retry, out),
                Command::Quota(q) => quota_admin::quota_cmd(&mut db, q, out),
                Command::Suppress(s) => quota_admin::suppress_cmd(&mut db, s, out),
                Command::ReplyRule(r) => quota_admin::reply_rule_cmd(&mut db, r, out),
                Command::Unknown(u) => quota_admin::unknown_cmd(&mut db, u, out),
                Command::AccountGroup(g) => quota_admin::account_group_cmd(&mut db, g, out),
                Command::Purge { older_than } => {
                    let n = queue::purge(&mut db, older_than)?;
                    out.result(json!({"purged": n}), || format!("purged {n} messages"));
                    Ok(EXIT_OK)
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Output {
    json: bool,
    verbose: bool,
}

impl Output {
    /// A result of a state-changing command: JSON with --json, text with --verbose.
    pub(crate) fn result(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else if self.verbose {
            println!("{}", text());
        }
    }

    /// A listing: always printed.
    pub(crate) fn listing(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            print!("{}", text());
        }
    }
}

fn parse_age(s: &str) -> Result<i64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: want a number and a unit, e.g. 30d"))?;
    let mult = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn migrate(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    out: Output,
) -> anyhow::Result<u8> {
    let migrated = schema::migrate(db)?;
    let (config, path) = DispatcherConfig::load(config_path)?;
    let changed = match path {
        Some(_) => Policy::from_config(&config).store(db)?,
        None => false,
    };
    let applied = &migrated.versions;
    out.result(
        json!({"applied": applied, "version": schema::latest_version(),
               "routines_applied": migrated.sources, "policy_changed": changed}),
        || {
            let mut s = if migrated.is_noop() {
                format!("schema already at version {}", schema::latest_version())
            } else if applied.is_empty() {
                format!(
                    "schema at version {}; stored procedures updated from sql/",
                    schema::latest_version()
                )
            } else {
                format!("applied migrations {applied:?} and the stored procedures of sql/")
            };
            if changed {
                s.push_str("; retry policy updated from the config file");
            }
            s
        },
    );
    Ok(EXIT_OK)
}

fn policy(
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
            let changed = Policy::from_config(&config).store(db)?;
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

fn print_key(
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

fn runner(db: &mut postgres::Client, cmd: RunnerCommand, out: Output) -> anyhow::Result<u8> {
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

fn ago(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (Utc::now() - t).num_seconds().max(0);
            match s {
                0..=119 => format!("{s}s ago"),
                120..=7199 => format!("{}m ago", s / 60),
                7200..=172_799 => format!("{}h ago", s / 3600),
                _ => format!("{}d ago", s / 86400),
            }
        }
    }
}

fn runner_table(list: &[runners::Runner]) -> String {
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

fn read_secret_file(path: &Path) -> anyhow::Result<String> {
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

fn account(db: &mut postgres::Client, cmd: AccountCommand, out: Output) -> anyhow::Result<u8> {
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
        AccountCommand::List => {
            let list = accounts::list(db)?;
            let rows: Vec<Value> = list
                .iter()
                .map(|a| {
                    json!({
                        "name": a.name, "host": a.host, "port": a.port,
                        "security": security_str(a.security), "username": a.username,
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
                        security_str(a.security),
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

/// The message object the enqueue flags describe (merged over an .eml file's).
fn message_from_flags(args: &EnqueueArgs) -> anyhow::Result<Value> {
    let data_err = |msg: String| CliError::new(EXIT_DATA, msg);
    let mut m = match &args.eml {
        Some(path) => {
            let raw = std::fs::read(path)
                .map_err(|e| data_err(format!("cannot read {}: {e}", path.display())))?;
            message::from_eml(&raw).map_err(|e| data_err(format!("{}: {e}", path.display())))?
        }
        None => json!({}),
    };
    let obj = m
        .as_object_mut()
        .ok_or_else(|| data_err("not a message object".into()))?;
    let mut set = |k: &str, v: Value| {
        obj.insert(k.to_string(), v);
    };
    if !args.to.is_empty() {
        set("to", json!(args.to));
    }
    if !args.cc.is_empty() {
        set("cc", json!(args.cc));
    }
    if !args.bcc.is_empty() {
        set("bcc", json!(args.bcc));
    }
    if !args.accounts.is_empty() {
        set("accounts", json!(args.accounts));
    }
    if let Some(g) = &args.account_group {
        set("account_group", json!(g));
    }
    for (k, v) in [
        ("from", &args.from),
        ("reply_to", &args.reply_to),
        ("subject", &args.subject),
        ("text", &args.text),
        ("account", &args.account),
        ("message_id", &args.message_id),
    ] {
        if let Some(v) = v {
            set(k, json!(v));
        }
    }
    let read = |path: &Path| -> anyhow::Result<String> {
        let bytes = if path == Path::new("-") {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("cannot read stdin")?;
            bytes
        } else {
            std::fs::read(path)
                .map_err(|e| data_err(format!("cannot read {}: {e}", path.display())))?
        };
        let name = if path == Path::new("-") {
            "stdin".to_string()
        } else {
            path.display().to_string()
        };
        Ok(utf8(bytes).map_err(|e| data_err(format!("{name}: {e}")))?)
    };
    if let Some(path) = &args.text_file {
        set("text", json!(read(path)?));
    }
    if let Some(path) = &args.html_file {
        set("html", json!(read(path)?));
    }
    if !args.header.is_empty() {
        let mut headers = obj
            .get("headers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for h in &args.header {
            let (name, value) = h
                .split_once(':')
                .ok_or_else(|| data_err(format!("--header {h:?}: want \"Name: value\"")))?;
            headers.push(json!({"name": name.trim(), "value": value.trim()}));
        }
        obj.insert("headers".into(), Value::Array(headers));
    }
    if !args.attach.is_empty() {
        let mut list = Vec::new();
        for path in &args.attach {
            let data = std::fs::read(path)
                .map_err(|e| data_err(format!("cannot read {}: {e}", path.display())))?;
            let filename = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "attachment".into());
            list.push(message::attachment(
                &filename,
                message::guess_content_type(&filename),
                &data,
            ));
        }
        obj.insert("attachments".into(), Value::Array(list));
    }
    Ok(m)
}

fn enqueue(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    args: EnqueueArgs,
    out: Output,
) -> anyhow::Result<u8> {
    let (config, _) = DispatcherConfig::load(config_path)?;
    let policy = Policy::load(db)?;
    if let Some(path) = &args.jsonl {
        let a = &args;
        let flags_given = !(a.to.is_empty()
            && a.cc.is_empty()
            && a.bcc.is_empty()
            && a.header.is_empty()
            && a.attach.is_empty())
            || [
                &a.from,
                &a.reply_to,
                &a.subject,
                &a.text,
                &a.account,
                &a.send_at,
                &a.message_id,
            ]
            .iter()
            .any(|v| v.is_some())
            || a.text_file.is_some()
            || a.html_file.is_some();
        if flags_given {
            return Err(CliError::new(
                EXIT_USAGE,
                "--jsonl takes every field from its lines (defaults from the config file); \
                 message flags cannot be combined with it",
            )
            .into());
        }
        let when = SendAtReader::new(db, args.time_zone.as_deref(), &config)?;
        return enqueue_jsonl(db, &config, &policy, &when, path, args.skip_invalid, out);
    }
    let when = SendAtReader::new(db, args.time_zone.as_deref(), &config)?;
    let mut m = message_from_flags(&args)?;
    let mut read_as = None;
    if let Some(input) = &args.send_at {
        let at = when.read(input).map_err(|e| CliError::new(EXIT_DATA, e))?;
        m["send_at"] = json!(at.at.to_rfc3339());
        read_as = Some(at.read_as);
    }
    message::apply_defaults(&mut m, &config.defaults);
    message::check_no_nul(&m).map_err(|e| CliError::new(EXIT_DATA, e))?;
    message::check(&m, Some(policy.max_message_bytes)).map_err(|e| CliError::new(EXIT_DATA, e))?;
    let id = queue::enqueue(db, &m).map_err(enqueue_error)?;
    if out.json {
        println!(
            "{}",
            json!({"id": id, "send_at": m.get("send_at"), "read_as": read_as})
        );
    } else {
        println!("{id}");
        if let (true, Some(r)) = (out.verbose, &read_as) {
            println!("send at {r}");
        }
    }
    Ok(EXIT_OK)
}

/// Reads send-later times with `schedule::when` in the chosen time zone, against the
/// database's clock so every host agrees on what is past.
struct SendAtReader {
    tz: chrono_tz::Tz,
    now: DateTime<Utc>,
}

impl SendAtReader {
    fn new(
        db: &mut postgres::Client,
        flag: Option<&str>,
        config: &DispatcherConfig,
    ) -> anyhow::Result<SendAtReader> {
        let tz = match (flag, &config.time_zone) {
            (Some(name), _) => {
                when::parse_time_zone(name).map_err(|e| CliError::new(EXIT_USAGE, e.to_string()))?
            }
            (None, Some(name)) => when::parse_time_zone(name)
                .map_err(|e| CliError::new(crate::cli::EXIT_CONFIG, e.to_string()))?,
            (None, None) => chrono_tz::UTC,
        };
        let now: DateTime<Utc> = db.query_one("SELECT now()", &[])?.get(0);
        Ok(SendAtReader { tz, now })
    }

    fn read(&self, input: &str) -> Result<when::SendAt, String> {
        when::parse_send_at(input, self.now, self.tz).map_err(|e| format!("\"send_at\": {e}"))
    }
}

/// Reads input that must be UTF-8; the error names the first bad byte and its offset.
pub(crate) fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("not UTF-8 (byte 0x{:02X} at offset {at})", e.as_bytes()[at])
    })
}

fn enqueue_error(e: EnqueueError) -> anyhow::Error {
    match e {
        EnqueueError::Invalid { message, .. } => CliError::new(EXIT_DATA, message).into(),
        EnqueueError::Database(e) => e.into(),
    }
}

fn enqueue_jsonl(
    db: &mut postgres::Client,
    config: &DispatcherConfig,
    policy: &Policy,
    when: &SendAtReader,
    path: &Path,
    skip_invalid: bool,
    out: Output,
) -> anyhow::Result<u8> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(path).map_err(
            |e| CliError::new(EXIT_DATA, format!("cannot read {}: {e}", path.display())),
        )?))
    };
    let account_names: Vec<String> = accounts::list(db)?.into_iter().map(|a| a.name).collect();
    let group_names: Vec<String> = quota::account_groups(db)?
        .into_iter()
        .map(|g| g.name)
        .collect();
    // (line number, message) of every valid line; errors by line.
    let mut messages: Vec<(usize, Value)> = Vec::new();
    let mut errors: Vec<(usize, String)> = Vec::new();
    // Split on bytes, not `lines()`: a line that is not UTF-8 is that line's error, not
    // an I/O error that ends the whole run.
    for (i, line) in reader.split(b'\n').enumerate() {
        let n = i + 1;
        let mut line = line.with_context(|| format!("cannot read line {n}"))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let parsed = utf8(line)
            .and_then(|line| {
                serde_json::from_str::<Value>(&line).map_err(|e| format!("not JSON: {e}"))
            })
            .and_then(|mut m| {
                message::check_no_nul(&m)?;
                if let Some(input) = m.get("send_at").and_then(Value::as_str) {
                    let at = when.read(input)?;
                    m["send_at"] = json!(at.at.to_rfc3339());
                }
                message::apply_defaults(&mut m, &config.defaults);
                message::check(&m, Some(policy.max_message_bytes))?;
                if let Some(acc) = m.get("account").and_then(Value::as_str) {
                    if !account_names.iter().any(|a| a == acc) {
                        return Err(format!("unknown SMTP account {acc:?}"));
                    }
                }
                if let Some(g) = m.get("account_group").and_then(Value::as_str) {
                    if !group_names.iter().any(|n| n == g) {
                        return Err(format!("unknown account group {g:?}"));
                    }
                }
                for acc in m
                    .get("accounts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if !account_names.iter().any(|a| a == acc) {
                        return Err(format!("unknown SMTP account {acc:?}"));
                    }
                }
                Ok(m)
            });
        match parsed {
            Ok(m) => messages.push((n, m)),
            Err(e) => errors.push((n, e)),
        }
    }
    if !errors.is_empty() && !skip_invalid {
        let shown: Vec<String> = errors
            .iter()
            .take(20)
            .map(|(n, e)| format!("line {n}: {e}"))
            .collect();
        let more = if errors.len() > 20 {
            format!("\n... and {} more", errors.len() - 20)
        } else {
            String::new()
        };
        return Err(CliError::new(
            EXIT_DATA,
            format!(
                "{} invalid line(s), nothing enqueued (--skip-invalid enqueues the rest):\n{}{more}",
                errors.len(),
                shown.join("\n")
            ),
        )
        .into());
    }
    // The procedure checks again; with --skip-invalid a line it refuses is dropped and
    // the (rolled back) transaction retried without it.
    let ids = loop {
        let mut tx = db.transaction()?;
        let values: Vec<Value> = messages.iter().map(|(_, m)| m.clone()).collect();
        match queue::enqueue_many(&mut tx, &values) {
            Ok(ids) => {
                tx.commit()?;
                break ids;
            }
            Err(EnqueueError::Invalid {
                position: Some(p),
                message,
            }) if p < messages.len() => {
                drop(tx);
                let (line, _) = messages.remove(p);
                if !skip_invalid {
                    return Err(CliError::new(
                        EXIT_DATA,
                        format!("line {line}: {message}; nothing enqueued"),
                    )
                    .into());
                }
                errors.push((line, message));
            }
            Err(e) => return Err(enqueue_error(e)),
        }
    };
    errors.sort();
    for (n, e) in &errors {
        eprintln!("dispatch-admin: skipped line {n}: {e}");
    }
    out.result(
        json!({
            "enqueued": ids.len(),
            "first_id": ids.first(), "last_id": ids.last(),
            "skipped": errors.iter().map(|(n, e)| json!({"line": n, "error": e})).collect::<Vec<_>>(),
        }),
        || format!("enqueued {} messages, skipped {}", ids.len(), errors.len()),
    );
    Ok(if ids.is_empty() && !errors.is_empty() {
        EXIT_DATA
    } else {
        EXIT_OK
    })
}

fn status(db: &mut postgres::Client, out: Output) -> anyhow::Result<u8> {
    let mut counts = serde_json::Map::new();
    for s in [
        "queued",
        "leased",
        "deferred",
        "sent",
        "failed",
        "cancelled",
        "expired",
        "unknown",
    ] {
        counts.insert(s.into(), json!(0));
    }
    for row in db.query(
        "SELECT state, count(*) FROM mailrun.messages GROUP BY state",
        &[],
    )? {
        counts.insert(row.get(0), json!(row.get::<_, i64>(1)));
    }
    let due = queue::count_due(db)?;
    let oldest: Option<(i64, DateTime<Utc>)> = db
        .query_opt(
            "SELECT id, next_attempt_at FROM mailrun.messages
             WHERE state IN ('queued', 'deferred') AND next_attempt_at <= now()
             ORDER BY next_attempt_at, id LIMIT 1",
            &[],
        )?
        .map(|r| (r.get(0), r.get(1)));
    let list = runners::list(db)?;
    let (quota_value, quota_text) = quota_admin::status_section(db)?;
    let account_problems: Vec<(String, String)> = accounts::list(db)?
        .iter()
        .filter_map(|a| accounts::clear_text_login(a).map(|p| (a.name.clone(), p)))
        .collect();
    let mut value = json!({
        "account_problems": account_problems
            .iter()
            .map(|(name, problem)| json!({"account": name, "problem": problem}))
            .collect::<Vec<_>>(),
        "counts": counts,
        "due": due,
        "oldest_due": oldest.map(|(id, at)| json!({"id": id, "due_since": at})),
        "runners": list.iter().map(|r| json!({
            "id": r.id, "enabled": r.enabled, "last_seen": r.last_seen,
            "last_status": r.last_status, "software_version": r.software_version,
            "config_version": r.config_version,
        })).collect::<Vec<_>>(),
    });
    if let (Some(v), Value::Object(q)) = (value.as_object_mut(), quota_value) {
        v.extend(q);
    }
    out.listing(value, || {
        let mut s = String::new();
        for (k, v) in &counts {
            s.push_str(&format!("{k:<10} {v}\n"));
        }
        s.push_str(&format!("{:<10} {due}\n", "due now"));
        match oldest {
            Some((id, at)) => s.push_str(&format!(
                "oldest due: message {id}, due since {} ({})\n",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ago(Some(at))
            )),
            None => s.push_str("oldest due: -\n"),
        }
        s.push('\n');
        s.push_str(&runner_table(&list));
        if !account_problems.is_empty() {
            s.push('\n');
            for (name, problem) in &account_problems {
                s.push_str(&format!("account {name}: {problem}\n"));
            }
        }
        if !quota_text.is_empty() {
            s.push('\n');
            s.push_str(&quota_text);
        }
        s
    });
    Ok(EXIT_OK)
}

fn show(db: &mut postgres::Client, id: i64, out: Output) -> anyhow::Result<u8> {
    let row = db
        .query_opt(
            "SELECT m.id, m.state, a.name, m.from_addr, m.reply_to, m.to_addrs, m.cc_addrs,
                    m.bcc_addrs, m.subject, m.message_id_header, m.size_bytes, m.created_at,
                    m.send_at, m.next_attempt_at, m.expires_at, m.attempts, m.lease_runner,
                    m.lease_expires_at, m.recipients_sent, m.recipients_failed, m.last_code,
                    m.last_enhanced, m.last_text, m.finished_at, m.job_run_id::text,
                    m.recurring_job_id, m.held_for_review,
                    CASE WHEN m.held_until > now() THEN m.held_reason END,
                    array(SELECT x.name FROM unnest(m.account_ids) WITH ORDINALITY u(id, i)
                          JOIN mailrun.smtp_accounts x ON x.id = u.id ORDER BY u.i)
             FROM mailrun.messages m JOIN mailrun.smtp_accounts a ON a.id = m.account_id
             WHERE m.id = $1",
            &[&id],
        )?
        .ok_or_else(|| CliError::new(EXIT_DATA, format!("no message {id}")))?;
    let ts = |i: usize| row.get::<_, Option<DateTime<Utc>>>(i);
    let message = json!({
        "id": row.get::<_, i64>(0), "state": row.get::<_, String>(1),
        "account": row.get::<_, String>(2), "from": row.get::<_, String>(3),
        "reply_to": row.get::<_, Option<String>>(4), "to": row.get::<_, Vec<String>>(5),
        "cc": row.get::<_, Vec<String>>(6), "bcc": row.get::<_, Vec<String>>(7),
        "subject": row.get::<_, String>(8), "message_id": row.get::<_, String>(9),
        "size_bytes": row.get::<_, i64>(10), "created_at": ts(11), "send_at": ts(12),
        "next_attempt_at": ts(13), "expires_at": ts(14), "attempts": row.get::<_, i32>(15),
        "lease_runner": row.get::<_, Option<String>>(16), "lease_expires_at": ts(17),
        "recipients_sent": row.get::<_, Vec<String>>(18),
        "recipients_failed": row.get::<_, Vec<String>>(19),
        "last_code": row.get::<_, Option<i32>>(20),
        "last_enhanced": row.get::<_, Option<String>>(21),
        "last_text": row.get::<_, Option<String>>(22), "finished_at": ts(23),
        "job_run_id": row.get::<_, Option<String>>(24),
        "recurring_job_id": row.get::<_, Option<i64>>(25),
        "held_for_review": row.get::<_, bool>(26),
        "held": row.get::<_, Option<String>>(27),
        "failover_accounts": row.get::<_, Vec<String>>(28),
    });
    let attempts: Vec<Value> = db
        .query(
            "SELECT attempted_at, recorded_at, runner_id, job_run_id::text, outcome, smtp_code,
                    enhanced_status, text, recipients, late
             FROM mailrun.delivery_attempts WHERE message_id = $1 ORDER BY recorded_at, id",
            &[&id],
        )?
        .iter()
        .map(|r| {
            json!({
                "attempted_at": r.get::<_, DateTime<Utc>>(0),
                "recorded_at": r.get::<_, DateTime<Utc>>(1),
                "runner": r.get::<_, String>(2), "job_run_id": r.get::<_, Option<String>>(3),
                "outcome": r.get::<_, String>(4), "smtp_code": r.get::<_, Option<i32>>(5),
                "enhanced_status": r.get::<_, Option<String>>(6),
                "text": r.get::<_, Option<String>>(7), "recipients": r.get::<_, Value>(8),
                "late": r.get::<_, bool>(9),
            })
        })
        .collect();
    let value = json!({"message": message, "attempts": attempts});
    out.listing(value, || show_text(&message, &attempts));
    Ok(EXIT_OK)
}

fn show_text(m: &Value, attempts: &[Value]) -> String {
    let answer = |v: &Value| {
        let text = crate::dispatcher::report::smtp_answer(
            v["smtp_code"].as_i64(),
            v["enhanced_status"].as_str(),
            v["text"].as_str(),
        );
        if text.is_empty() {
            "-".to_string()
        } else {
            text
        }
    };
    let field = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let mut s = String::new();
    for key in [
        "id",
        "state",
        "account",
        "from",
        "reply_to",
        "to",
        "cc",
        "bcc",
        "subject",
        "message_id",
        "size_bytes",
        "created_at",
        "send_at",
        "next_attempt_at",
        "expires_at",
        "attempts",
        "lease_runner",
        "lease_expires_at",
        "recipients_sent",
        "recipients_failed",
        "last_code",
        "last_enhanced",
        "last_text",
        "finished_at",
        "recurring_job_id",
        "held_for_review",
        "held",
        "failover_accounts",
    ] {
        s.push_str(&format!("{key:<18} {}\n", field(&m[key])));
    }
    s.push_str(&format!("\nattempts ({}):\n", attempts.len()));
    for a in attempts {
        s.push_str(&format!(
            "  {}  runner {}  {}{}  {}\n",
            field(&a["attempted_at"]),
            field(&a["runner"]),
            field(&a["outcome"]),
            if a["late"] == json!(true) {
                " (late, not applied)"
            } else {
                ""
            },
            answer(a),
        ));
        if let Some(list) = a["recipients"].as_array() {
            for r in list {
                s.push_str(&format!(
                    "      {}  {}  {}\n",
                    field(&r["address"]),
                    field(&r["outcome"]),
                    answer(r),
                ));
            }
        }
    }
    s
}

#[derive(Clone, Copy)]
enum Op {
    Cancel,
    Retry,
}

fn each(db: &mut postgres::Client, ids: &[i64], op: Op, out: Output) -> anyhow::Result<u8> {
    let verb = match op {
        Op::Cancel => "cancelled",
        Op::Retry => "retried",
    };
    // All or nothing: one bad id leaves every message as it was.
    let mut tx = db.transaction()?;
    let mut done = Vec::new();
    for &id in ids {
        let before = match op {
            Op::Cancel => queue::cancel(&mut tx, id)?,
            Op::Retry => queue::retry(&mut tx, id)?,
        };
        done.push((id, before));
    }
    tx.commit()?;
    out.result(
        json!({ verb: done.iter().map(|(id, was)| json!({"id": id, "was": was})).collect::<Vec<_>>() }),
        || {
            done.iter()
                .map(|(id, was)| format!("message {id} {verb} (was {was})"))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(EXIT_OK)
}
