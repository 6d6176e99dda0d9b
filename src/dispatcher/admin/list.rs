//! `dispatch-admin list`: every message matching filters, by send time, a page at a time
//! (the query the HTTP API's `GET /api/v1/messages` uses: `dispatcher::listing`).

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::Args as ClapArgs;
use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::connection::db_now;
use crate::dispatcher::listing::{self, Cursor, Filter, StateFilter};
use crate::dispatcher::{recurring, report};
use crate::schedule::when;

use super::args::{fmt_time, time_zone};
use super::output::Output;

#[derive(Debug, ClapArgs)]
#[command(after_help = "\
Messages are ordered by send time, then id. A page ends with the --cursor that continues
it (on stderr for tables, as next_cursor with --json); --all prints every page. Times are
RFC 3339, a local date or date and time (2026-12-01, \"2026-12-01 08:00\"), an age back
from now (2h, 7d) or a send-later phrase (\"tomorrow 9am\", \"in 3 days\").")]
pub struct ListArgs {
    /// Only this state: scheduled (queued, never tried, due later than now) or a message
    /// state (queued, leased, deferred, sent, failed, cancelled, expired, unknown).
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only messages of this SMTP account.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Only messages with a recipient (To, Cc or Bcc) in this domain.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Only messages due at or after this time.
    #[arg(long, value_name = "TIME")]
    pub send_after: Option<String>,
    /// Only messages due before this time.
    #[arg(long, value_name = "TIME")]
    pub send_before: Option<String>,
    /// Only messages of this recurring job (id or name).
    #[arg(long, value_name = "JOB")]
    pub recurring_job: Option<String>,
    /// Messages per page (1-1000).
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(i64).range(1..=1000))]
    pub limit: i64,
    /// Continue after the page that printed this cursor.
    #[arg(long, value_name = "CURSOR", conflicts_with = "all")]
    pub cursor: Option<String>,
    /// Print every page, not only the first.
    #[arg(long)]
    pub all: bool,
    /// IANA time zone for local times [default: time_zone in the config file, else UTC]
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
}

pub(super) fn list(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    args: ListArgs,
    out: Output,
) -> anyhow::Result<u8> {
    let (config, _) = DispatcherConfig::load(config_path)?;
    let tz = time_zone(args.time_zone.as_deref(), &config)?;
    let now = db_now(db)?;
    let usage = |m: String| anyhow::Error::from(CliError::new(EXIT_USAGE, m));
    let read = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<DateTime<Utc>>> {
        let Some(s) = v.as_deref() else {
            return Ok(None);
        };
        match report::parse_time(s, now, tz) {
            Ok(t) => Ok(Some(t)),
            Err(e) => match when::parse_send_at(s, now, tz) {
                Ok(at) => Ok(Some(at.at)),
                Err(_) => Err(usage(format!("--{flag}: {e}"))),
            },
        }
    };
    let filter = Filter {
        state: args
            .state
            .as_deref()
            .map(str::parse::<StateFilter>)
            .transpose()
            .map_err(|e| usage(format!("--state: {e}")))?,
        account: args.account.clone(),
        domain: args.domain.clone(),
        send_after: read("send-after", &args.send_after)?,
        send_before: read("send-before", &args.send_before)?,
        recurring_job: match &args.recurring_job {
            Some(j) => Some(recurring::find(db, j)?.id),
            None => None,
        },
    };
    let mut cursor = args
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| usage(format!("--cursor: {e}")))?;
    let mut all = Vec::new();
    let mut header = true;
    loop {
        let (rows, next) = listing::page(db, &filter, cursor, args.limit)?;
        if out.json {
            all.extend(rows.iter().map(listing::Listed::to_json));
        } else {
            print!("{}", table(&rows, header));
            header = false;
        }
        cursor = next;
        if !args.all || cursor.is_none() {
            break;
        }
    }
    let next = cursor.map(|c| c.encode());
    if out.json {
        println!(
            "{}",
            json!({"messages": Value::Array(all), "next_cursor": next})
        );
    } else if let Some(c) = next {
        eprintln!("more: dispatch-admin list ... --cursor {c}");
    }
    Ok(EXIT_OK)
}

fn table(rows: &[listing::Listed], header: bool) -> String {
    let mut s = String::new();
    if header {
        s.push_str(&format!(
            "{:>8} {:<9} {:<20} {:<12} {:<30} {}\n",
            "ID", "STATE", "SEND AT (UTC)", "ACCOUNT", "TO", "SUBJECT"
        ));
    }
    for r in rows {
        s.push_str(&format!(
            "{:>8} {:<9} {:<20} {:<12} {:<30} {}\n",
            r.id,
            r.state,
            fmt_time(Some(r.send_at)),
            r.account,
            r.to.join(", "),
            r.subject
        ));
    }
    s
}
