//! `dispatch-admin enqueue`: messages from flags, an .eml file, or JSON lines.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::intake::{Intake, Prepared};
use crate::dispatcher::queue::{self, EnqueueError};
use crate::dispatcher::quota;
use crate::dispatcher::retry::Policy;
use crate::dispatcher::{accounts, message};
use crate::schedule::when;
use crate::schedule::Zone;

use super::output::*;

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

/// The message object the enqueue flags describe (merged over an .eml file's).
pub(super) fn message_from_flags(args: &EnqueueArgs) -> anyhow::Result<Value> {
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

pub(super) fn enqueue(
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
    if let Some(input) = &args.send_at {
        m["send_at"] = json!(input);
    }
    let Prepared {
        message: m,
        send_at_read_as: read_as,
    } = when
        .intake(&config, &policy)
        .complete(m, when.tz)
        .map_err(|e| CliError::new(EXIT_DATA, e))?;
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
pub(super) struct SendAtReader {
    tz: Zone,
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
            (None, None) => Zone::UTC,
        };
        let now: DateTime<Utc> = crate::dispatcher::connection::db_now(db)?;
        Ok(SendAtReader { tz, now })
    }

    fn intake<'a>(&self, config: &'a DispatcherConfig, policy: &Policy) -> Intake<'a> {
        Intake {
            defaults: &config.defaults,
            max_message_bytes: policy.max_message_bytes,
            now: self.now,
        }
    }
}

/// Reads input that must be UTF-8; the error names the first bad byte and its offset.
pub(super) fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("not UTF-8 (byte 0x{:02X} at offset {at})", e.as_bytes()[at])
    })
}

pub(super) fn enqueue_error(e: EnqueueError) -> anyhow::Error {
    match e {
        EnqueueError::Invalid { message, .. } => CliError::new(EXIT_DATA, message).into(),
        EnqueueError::Database(e) => e.into(),
    }
}

pub(super) fn enqueue_jsonl(
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
    let intake = when.intake(config, policy);
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
            .and_then(|m| {
                let m = intake.complete(m, when.tz)?.message;
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
