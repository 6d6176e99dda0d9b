//! Send-later times: turn "tomorrow 9am" or an RFC 3339 stamp into one UTC instant.
//!
//! The grammar is our own, small and closed (see `docs/scheduling.md`). We looked at
//! `interim` (the maintained fork of `chrono-english`) and chose not to wrap it: it has
//! no "in 2 hours" form, silently takes the earlier reading of a time that occurs twice
//! on a DST change day, reads "tomorrow 25:00" as 01:00 the day after, and makes
//! "next friday" and "12/01/2026" mean different days depending on a dialect switch.
//! A message that goes out a week early cannot be recalled, so every reading here is
//! either unique or refused, and the caller shows `read_as` back to the operator.

use crate::schedule::Zone;
use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone,
    Timelike, Utc, Weekday,
};

/// A time this far in the past is still accepted (and is due at once): an operator
/// who types "now" or the current minute should not be refused for a few seconds.
pub const PAST_GRACE: Duration = Duration::seconds(60);

/// Times further ahead than this are refused as a likely typo (a wrong year).
pub const MAX_AHEAD_DAYS: i64 = 366;

/// The examples shown with every "cannot read" error.
pub const ACCEPTED_EXAMPLES: &str = "accepted forms: now, in 90 minutes, in 2 hours, \
in 3 days, in 1 week, tomorrow 9:00, tomorrow 9am, today 17:30, friday 9am, \
next friday 17:30, 2026-12-01 08:00 (local), 2026-12-01T08:00:00+01:00 (RFC 3339)";

/// A parsed send-later time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAt {
    /// The instant delivery becomes due.
    pub at: DateTime<Utc>,
    /// How the input was understood, for confirmation output, e.g.
    /// "Friday 2026-11-27 17:30 Europe/Berlin (16:30 UTC)".
    pub read_as: String,
}

/// Why a send-later time was refused. Every message names the input and, where it
/// could be read at all, how it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhenError {
    #[error("empty send-at time; {ACCEPTED_EXAMPLES}")]
    Empty,
    #[error("cannot read {input:?} as a send-at time: {detail}; {ACCEPTED_EXAMPLES}")]
    Unrecognised { input: String, detail: String },
    #[error(
        "{input:?} was read as {read_as}, which is in the past (now is {now}); \
         give a later time, or \"now\" to send at once"
    )]
    InPast {
        input: String,
        read_as: String,
        now: String,
    },
    #[error(
        "{input:?} was read as {read_as}, more than {MAX_AHEAD_DAYS} days ahead \
         (the limit for send-later times); check the year"
    )]
    TooFar { input: String, read_as: String },
    #[error(
        "{input:?} names {local} in {tz}, which happens twice because the clocks go back \
         that night: {earlier} or {later}; give an RFC 3339 time with the offset you mean, \
         e.g. {example}",
        input = .0.input,
        local = .0.local,
        tz = .0.tz,
        earlier = .0.earlier,
        later = .0.later,
        example = .0.earlier_rfc3339
    )]
    Ambiguous(Box<AmbiguousTime>),
    #[error(
        "{input:?} names {local} in {tz}, which does not exist because the clocks go \
         forward over it that night; choose a time outside the skipped hour"
    )]
    Nonexistent {
        input: String,
        local: String,
        tz: String,
    },
    #[error(
        "unknown time zone {0:?}; use an IANA name such as Europe/Berlin, America/New_York or UTC"
    )]
    UnknownTimeZone(String),
}

/// The two readings of a local time that happens twice (boxed: keeps `WhenError` small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmbiguousTime {
    pub input: String,
    /// The local date and time as typed, e.g. "Sunday 2026-10-25 02:30".
    pub local: String,
    pub tz: String,
    /// The first reading, e.g. "02:30 CEST +02:00 (00:30 UTC)".
    pub earlier: String,
    pub later: String,
    /// The first reading as RFC 3339, which `parse_send_at` accepts unambiguously.
    pub earlier_rfc3339: String,
}

/// Looks up an IANA time zone name (from a flag or the configuration file).
/// Case does not matter ("europe/berlin" is Europe/Berlin).
pub fn parse_time_zone(name: &str) -> Result<Zone, WhenError> {
    let name = name.trim();
    Zone::named(name).ok_or_else(|| WhenError::UnknownTimeZone(name.to_string()))
}

/// Parses a send-later time relative to `now`, reading local forms in `tz`.
///
/// Refuses times more than [`PAST_GRACE`] in the past, more than [`MAX_AHEAD_DAYS`]
/// ahead, local times that are ambiguous or skipped on a DST change day, and anything
/// outside the documented grammar.
pub fn parse_send_at(input: &str, now: DateTime<Utc>, tz: Zone) -> Result<SendAt, WhenError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(WhenError::Empty);
    }
    let at = read(trimmed, now, tz)?;
    let read_as = describe(at, tz);
    // Checked: `now` near the end of chrono's range must not panic.
    if now
        .checked_sub_signed(PAST_GRACE)
        .is_some_and(|earliest| at < earliest)
    {
        return Err(WhenError::InPast {
            input: trimmed.to_string(),
            read_as,
            now: describe(now, tz),
        });
    }
    if now
        .checked_add_signed(Duration::days(MAX_AHEAD_DAYS))
        .is_none_or(|latest| at > latest)
    {
        return Err(WhenError::TooFar {
            input: trimmed.to_string(),
            read_as,
        });
    }
    Ok(SendAt { at, read_as })
}

/// Formats an instant the way confirmations show it:
/// "Friday 2026-11-27 17:30 Europe/Berlin (16:30 UTC)"; seconds appear only when not
/// zero, and the UTC date only when it differs from the local one.
pub fn describe(at: DateTime<Utc>, tz: Zone) -> String {
    let local = at.with_timezone(&tz);
    let time_fmt = if local.second() != 0 || local.nanosecond() != 0 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    let local_part = local.format(&format!("%A %Y-%m-%d {time_fmt}")).to_string();
    if tz == Zone::UTC {
        return format!("{local_part} UTC");
    }
    let utc_part = if local.date_naive() == at.date_naive() {
        at.format(time_fmt).to_string()
    } else {
        at.format(&format!("%Y-%m-%d {time_fmt}")).to_string()
    };
    format!("{local_part} {} ({utc_part} UTC)", tz.name())
}

fn unrecognised(input: &str, detail: impl Into<String>) -> WhenError {
    WhenError::Unrecognised {
        input: input.to_string(),
        detail: detail.into(),
    }
}

fn read(input: &str, now: DateTime<Utc>, tz: Zone) -> Result<DateTime<Utc>, WhenError> {
    // RFC 3339 carries its own offset, so the time zone does not apply.
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    let lower = input.to_ascii_lowercase();
    let mut tokens: Vec<&str> = lower.split_whitespace().collect();
    // "2026-12-01T08:00" without an offset is the local form written with a T.
    if let Some((date, time)) = tokens.first().and_then(|t| t.split_once('t')) {
        if looks_like_iso_date(date) {
            tokens.splice(0..1, [date, time]);
        }
    }
    let now_local = now.with_timezone(&tz).naive_local();
    match tokens.as_slice() {
        ["now"] => Ok(now),
        ["in", rest @ ..] => read_relative(input, rest, now, now_local, tz),
        _ => {
            let (date, rest) = read_day(input, &tokens, now_local)?;
            let time = read_time_of_day(input, rest)?;
            let date = match date {
                Day::Fixed(d) => d,
                // A bare weekday means its next occurrence still ahead: "friday 9am"
                // said on a Friday at 10:00 means next week.
                Day::Weekday(wd) => {
                    let d = on_or_after(now_local.date(), wd);
                    if d.and_time(time) <= now_local {
                        d + Duration::days(7)
                    } else {
                        d
                    }
                }
            };
            resolve_local(input, date.and_time(time), tz)
        }
    }
}

enum Day {
    Fixed(NaiveDate),
    Weekday(Weekday),
}

/// Reads the day part; returns it with the remaining tokens (the time of day).
fn read_day<'t>(
    input: &str,
    tokens: &'t [&'t str],
    now_local: NaiveDateTime,
) -> Result<(Day, &'t [&'t str]), WhenError> {
    let today = now_local.date();
    match tokens {
        ["today", rest @ ..] => Ok((Day::Fixed(today), rest)),
        ["tomorrow", rest @ ..] => Ok((Day::Fixed(today + Duration::days(1)), rest)),
        ["next", day, rest @ ..] => match weekday(day) {
            // "next friday" is the first Friday after today, never today itself. On a
            // Monday that is this week's Friday; `read_as` shows the date to confirm.
            Some(wd) => Ok((Day::Fixed(on_or_after(today + Duration::days(1), wd)), rest)),
            None => Err(unrecognised(
                input,
                format!("expected a weekday after \"next\", found {day:?}"),
            )),
        },
        [first, rest @ ..] => {
            if let Some(wd) = weekday(first) {
                return Ok((Day::Weekday(wd), rest));
            }
            if looks_like_iso_date(first) {
                let date = NaiveDate::parse_from_str(first, "%Y-%m-%d")
                    .map_err(|_| unrecognised(input, format!("{first} is not a calendar date")))?;
                return Ok((Day::Fixed(date), rest));
            }
            // The accepted forms follow in the message; name the word that did not fit.
            Err(unrecognised(
                input,
                format!("{first:?} is not a day, a date or \"in ...\""),
            ))
        }
        [] => Err(WhenError::Empty),
    }
}

fn looks_like_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn weekday(word: &str) -> Option<Weekday> {
    Some(match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn on_or_after(date: NaiveDate, wd: Weekday) -> NaiveDate {
    let ahead = (7 + wd.num_days_from_monday() - date.weekday().num_days_from_monday()) % 7;
    date + Duration::days(i64::from(ahead))
}

/// Reads "9:00", "17:30:15", "9am", "9 am", "5.30pm", "12pm", "noon", optionally
/// after "at". A day without a time is refused rather than guessed (midnight? now?).
fn read_time_of_day(input: &str, tokens: &[&str]) -> Result<NaiveTime, WhenError> {
    let tokens = match tokens {
        ["at", rest @ ..] => rest,
        other => other,
    };
    if tokens.is_empty() {
        return Err(unrecognised(
            input,
            "a time of day is required after the day, e.g. \"tomorrow 9:00\" or \"friday 5pm\"",
        ));
    }
    let text = tokens.concat();
    let bad = || {
        unrecognised(
            input,
            format!("{text:?} is not a time of day (use 17:30, 9:00, 9am or 5.30pm)"),
        )
    };
    if text == "noon" {
        return Ok(NaiveTime::MIN + Duration::hours(12));
    }
    let (clock, meridiem) = if let Some(c) = text.strip_suffix("am") {
        (c, Some(false))
    } else if let Some(c) = text.strip_suffix("pm") {
        (c, Some(true))
    } else {
        (text.as_str(), None)
    };
    let parts: Vec<&str> = clock.split([':', '.']).collect();
    let number = |s: &str, max_len: usize, exact: bool| -> Option<u32> {
        let ok_len = if exact {
            s.len() == max_len
        } else {
            (1..=max_len).contains(&s.len())
        };
        (ok_len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (hour, minute, second) = match parts.as_slice() {
        [h] if meridiem.is_some() => (number(h, 2, false), Some(0), Some(0)),
        [h, m] => (number(h, 2, false), number(m, 2, true), Some(0)),
        [h, m, s] if meridiem.is_none() => {
            (number(h, 2, false), number(m, 2, true), number(s, 2, true))
        }
        _ => return Err(bad()),
    };
    let (Some(mut hour), Some(minute), Some(second)) = (hour, minute, second) else {
        return Err(bad());
    };
    if let Some(pm) = meridiem {
        if !(1..=12).contains(&hour) {
            return Err(bad());
        }
        hour = match (hour, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, false) => h,
            (h, true) => h + 12,
        };
    }
    NaiveTime::from_hms_opt(hour, minute, second).ok_or_else(bad)
}

/// "in 90 minutes", "in 2 hours", "in an hour", "in 3 days", "in 1 week", "in 2h".
/// Minutes and hours are elapsed time; days and weeks keep the local clock time
/// (so "in 1 day" across a DST change is still the same time of day).
fn read_relative(
    input: &str,
    tokens: &[&str],
    now: DateTime<Utc>,
    now_local: NaiveDateTime,
    tz: Zone,
) -> Result<DateTime<Utc>, WhenError> {
    let text = tokens.concat();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (amount, unit) = if digits > 0 {
        let amount: i64 = text[..digits]
            .parse()
            .ok()
            .filter(|n| *n <= 1_000_000)
            .ok_or_else(|| unrecognised(input, "the amount is too large"))?;
        (amount, &text[digits..])
    } else if let Some(unit) = text.strip_prefix("an").or_else(|| text.strip_prefix('a')) {
        (1, unit)
    } else {
        return Err(unrecognised(
            input,
            "expected an amount after \"in\", e.g. \"in 2 hours\"",
        ));
    };
    let overflow = || unrecognised(input, "the time is out of range");
    match unit {
        "m" | "min" | "mins" | "minute" | "minutes" => now
            .checked_add_signed(Duration::minutes(amount))
            .ok_or_else(overflow),
        "h" | "hr" | "hrs" | "hour" | "hours" => now
            .checked_add_signed(Duration::hours(amount))
            .ok_or_else(overflow),
        "d" | "day" | "days" | "w" | "week" | "weeks" => {
            let days = if unit.starts_with('w') {
                amount * 7
            } else {
                amount
            };
            let local = now_local
                .checked_add_signed(Duration::days(days))
                .ok_or_else(overflow)?;
            resolve_local(input, local, tz)
        }
        "" => Err(unrecognised(
            input,
            "missing unit: say minutes, hours, days or weeks",
        )),
        other => Err(unrecognised(
            input,
            format!("unknown unit {other:?} (use minutes, hours, days or weeks)"),
        )),
    }
}

/// Maps a local wall-clock time to its one instant, refusing DST folds and gaps.
fn resolve_local(input: &str, local: NaiveDateTime, tz: Zone) -> Result<DateTime<Utc>, WhenError> {
    let shown = local.format("%A %Y-%m-%d %H:%M").to_string();
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => {
            let reading = |t: DateTime<Zone>| {
                format!(
                    "{} {} ({} UTC)",
                    t.format("%H:%M %Z"),
                    t.format("%:z"),
                    t.with_timezone(&Utc).format("%H:%M")
                )
            };
            Err(WhenError::Ambiguous(Box::new(AmbiguousTime {
                input: input.to_string(),
                local: shown,
                tz: tz.name().to_string(),
                earlier: reading(a),
                later: reading(b),
                earlier_rfc3339: a.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            })))
        }
        LocalResult::None => Err(WhenError::Nonexistent {
            input: input.to_string(),
            local: shown,
            tz: tz.name().to_string(),
        }),
    }
}
