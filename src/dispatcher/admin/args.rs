//! Argument parsers and time helpers the dispatch-admin commands share.

use chrono::{DateTime, Duration, Utc};

use crate::cli::{CliError, EXIT_CONFIG, EXIT_USAGE};
use crate::dispatcher::config::DispatcherConfig;
use crate::schedule::when;
use crate::schedule::Zone;

pub(super) fn parse_age(s: &str) -> Result<i64, String> {
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

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: want a number and a unit, e.g. 24h"))?;
    let mult = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: unit must be m, h or d")),
    };
    n.checked_mul(mult)
        .and_then(Duration::try_seconds)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// The time zone from a flag (a usage error if bad), else the config (a config error).
pub(super) fn time_zone(flag: Option<&str>, config: &DispatcherConfig) -> anyhow::Result<Zone> {
    Ok(match (flag, &config.time_zone) {
        (Some(name), _) => {
            when::parse_time_zone(name).map_err(|e| CliError::new(EXIT_USAGE, e.to_string()))?
        }
        (None, Some(name)) => {
            when::parse_time_zone(name).map_err(|e| CliError::new(EXIT_CONFIG, e.to_string()))?
        }
        (None, None) => Zone::UTC,
    })
}

pub(super) fn fmt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}
