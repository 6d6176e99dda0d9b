//! Recurring-job schedules: standard 5-field crontab specs evaluated in a time zone,
//! and the catch-up rule that decides which single occurrence a tick materialises.
//!
//! Evaluation is delegated to `croner` (maintained, OCPS-compliant DST handling).
//! We accept only the portable Vixie-cron subset: croner's extensions (seconds and
//! year fields, `L`, `W`, `#`, `?`, `+`) are refused so a spec means the same thing
//! here as in the operator's crontab.

use std::fmt;

use crate::schedule::Zone;
use chrono::{DateTime, Duration, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Occurrences later than this by the time a tick sees them are skipped (see
/// [`catch_up`]): a daily report is still useful an hour late, but a Monday
/// newsletter sent on Wednesday after an outage is more likely a surprise.
pub const DEFAULT_MAX_LATENESS: Duration = Duration::hours(24);

/// A parsed crontab spec with the time zone its fields are read in.
#[derive(Clone)]
pub struct CronSpec {
    source: String,
    tz: Zone,
    cron: Cron,
}

impl fmt::Debug for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSpec")
            .field("spec", &self.source)
            .field("tz", &self.tz.name())
            .finish()
    }
}

impl fmt::Display for CronSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for CronSpec {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.tz == other.tz
    }
}

/// A crontab spec that was refused, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid cron spec {spec:?}: {detail} (expected 5 fields \"minute hour day-of-month \
     month day-of-week\", e.g. \"0 9 * * MON\" or \"*/15 8-18 * * MON-FRI\", or one of \
     @yearly @annually @monthly @weekly @daily @midnight @hourly)"
)]
pub struct CronError {
    pub spec: String,
    pub detail: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

impl CronSpec {
    /// Parses a spec evaluated in UTC.
    pub fn parse(spec: &str) -> Result<CronSpec, CronError> {
        CronSpec::parse_in(spec, Zone::UTC)
    }

    /// Parses a spec whose fields are wall-clock times in `tz`.
    pub fn parse_in(spec: &str, tz: Zone) -> Result<CronSpec, CronError> {
        let source = spec.trim().to_string();
        let err = |detail: String| CronError {
            spec: source.clone(),
            detail,
        };
        let fields = expand_macro(&source).map_err(err)?;
        check_fields(&fields).map_err(err)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(&fields.join(" "))
            .map_err(|e| err(e.to_string()))?;
        let parsed = CronSpec {
            source: source.clone(),
            tz,
            cron,
        };
        // "0 0 30 2 *" parses field by field but never fires; refuse it now rather
        // than keep a job that silently never runs.
        if !ever_matches(&parsed.cron) {
            return Err(err("it never matches a real date".to_string()));
        }
        Ok(parsed)
    }

    /// The spec as the operator wrote it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The time zone the spec's fields are read in.
    pub fn time_zone(&self) -> Zone {
        self.tz
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|o| o.with_timezone(&Utc))
    }

    /// The last occurrence at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|o| o.with_timezone(&Utc))
    }
}

/// Whether some real date matches. A restricted day-of-week field matches every
/// week (alone, or or-ed with the day of month), so only a `*` weekday with days of
/// month that none of the chosen months has can never fire.
fn ever_matches(cron: &Cron) -> bool {
    const MONTH_LENGTH: [u16; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let pattern = &cron.pattern;
    if !pattern.is_dow_wildcard() {
        return true;
    }
    let months = pattern.months.values();
    pattern.days.values().iter().any(|&day| {
        months.iter().any(|&month| {
            MONTH_LENGTH
                .get(usize::from(month).wrapping_sub(1))
                .is_some_and(|&len| day <= len)
        })
    })
}

/// Turns an `@macro` into its five fields; splits a plain spec into its fields.
fn expand_macro(spec: &str) -> Result<Vec<String>, String> {
    let fields = if let Some(name) = spec.strip_prefix('@') {
        match name.to_ascii_lowercase().as_str() {
            "yearly" | "annually" => "0 0 1 1 *",
            "monthly" => "0 0 1 * *",
            "weekly" => "0 0 * * 0",
            "daily" | "midnight" => "0 0 * * *",
            "hourly" => "0 * * * *",
            "reboot" => return Err("@reboot has no meaning for a queue".to_string()),
            _ => return Err(format!("unknown macro @{name}")),
        }
    } else {
        spec
    };
    let fields: Vec<String> = fields.split_whitespace().map(str::to_string).collect();
    if fields.len() != 5 {
        return Err(format!("found {} fields", fields.len()));
    }
    Ok(fields)
}

/// Allows numbers, `*`, ranges, steps, lists, and month/day names in their fields.
fn check_fields(fields: &[String]) -> Result<(), String> {
    for (i, field) in fields.iter().enumerate() {
        let names: &[&str] = match i {
            3 => &MONTHS,
            4 => &DAYS,
            _ => &[],
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step {
                if step.is_empty() || !step.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("bad step {item:?} in the {} field", FIELD_NAMES[i]));
                }
            }
            let atoms: Vec<&str> = if range == "*" {
                Vec::new()
            } else {
                range.split('-').collect()
            };
            if atoms.len() > 2 {
                return Err(format!(
                    "bad range {item:?} in the {} field",
                    FIELD_NAMES[i]
                ));
            }
            for atom in atoms {
                let number = !atom.is_empty() && atom.bytes().all(|b| b.is_ascii_digit());
                let name = names.iter().any(|n| n.eq_ignore_ascii_case(atom));
                if !number && !name {
                    return Err(format!(
                        "{atom:?} is not allowed in the {} field",
                        FIELD_NAMES[i]
                    ));
                }
            }
        }
    }
    Ok(())
}

/// What a tick should do about one recurring job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// Materialise this occurrence (once: the database key is (job, occurrence)).
    Due(DateTime<Utc>),
    /// The most recent occurrence is older than the lateness limit: skip it.
    Stale(DateTime<Utc>),
    /// No occurrence since the last one materialised (or since creation).
    NothingDue,
}

/// The catch-up rule with the default lateness limit; `Some` only for [`CatchUp::Due`].
///
/// Returns the single most recent occurrence in `(max(last_materialised, created_at),
/// now]`: after missed ticks a job runs once, not once per missed occurrence, and
/// after the clock jumps back (`now` before the last occurrence) nothing is due.
pub fn due_occurrence(
    spec: &CronSpec,
    last_materialised: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match catch_up(
        spec,
        last_materialised,
        created_at,
        now,
        DEFAULT_MAX_LATENESS,
    ) {
        CatchUp::Due(t) => Some(t),
        CatchUp::Stale(_) | CatchUp::NothingDue => None,
    }
}

/// The catch-up rule (see [`due_occurrence`]) with an explicit lateness limit: an
/// occurrence more than `max_lateness` before `now` is reported as
/// [`CatchUp::Stale`] so the caller can log the skip.
pub fn catch_up(
    spec: &CronSpec,
    last_materialised: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    max_lateness: Duration,
) -> CatchUp {
    let after = last_materialised.map_or(created_at, |last| last.max(created_at));
    if now <= after {
        return CatchUp::NothingDue;
    }
    match spec.latest_at_or_before(now) {
        Some(t) if t > after => {
            if now - t > max_lateness {
                CatchUp::Stale(t)
            } else {
                CatchUp::Due(t)
            }
        }
        _ => CatchUp::NothingDue,
    }
}
