//! Send-later parsing and crontab evaluation. Pure functions: every test uses a fixed
//! `now`, never the wall clock.

use std::collections::BTreeSet;

use crate::schedule::cron::{catch_up, due_occurrence, CatchUp, CronSpec};
use crate::schedule::when::{parse_send_at, parse_time_zone, WhenError, ACCEPTED_EXAMPLES};
use crate::schedule::Zone;
use chrono::{DateTime, Duration, Utc};

const BERLIN: &str = "Europe/Berlin";
const NEW_YORK: &str = "America/New_York";
const UTC: &str = "UTC";

fn z(name: &str) -> Zone {
    Zone::named(name).expect("zone in the embedded database")
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test timestamp {s}: {e}"))
        .with_timezone(&Utc)
}

// ---------------------------------------------------------------- send-later

/// (input, time zone, now, expected instant)
const ACCEPTED: &[(&str, &str, &str, &str)] = &[
    // Monday 2026-11-23 11:00 in Berlin (CET, +01:00).
    (
        "now",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00Z",
    ),
    (
        "  NOW ",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00Z",
    ),
    (
        "in 2 hours",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T12:00:00Z",
    ),
    (
        "in 90 minutes",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T11:30:00Z",
    ),
    (
        "in 90 min",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T11:30:00Z",
    ),
    (
        "in 2h",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T12:00:00Z",
    ),
    (
        "in an hour",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T11:00:00Z",
    ),
    (
        "in a minute",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:01:00Z",
    ),
    (
        "in 3 days",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-26T10:00:00Z",
    ),
    (
        "in 1 week",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-30T10:00:00Z",
    ),
    (
        "tomorrow 9:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-24T08:00:00Z",
    ),
    (
        "tomorrow 9am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-24T08:00:00Z",
    ),
    (
        "Tomorrow at 9 AM",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-24T08:00:00Z",
    ),
    (
        "tomorrow 09:00:15",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-24T08:00:15Z",
    ),
    (
        "today 17:30",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T16:30:00Z",
    ),
    (
        "next friday 17:30",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-27T16:30:00Z",
    ),
    (
        "next friday 9am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-27T08:00:00Z",
    ),
    (
        "friday 9am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-27T08:00:00Z",
    ),
    (
        "fri 5.30pm",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-27T16:30:00Z",
    ),
    (
        "saturday noon",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-28T11:00:00Z",
    ),
    (
        "sat 12pm",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-28T11:00:00Z",
    ),
    (
        "sat 12am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-27T23:00:00Z",
    ),
    // Today is Monday 11:00: "monday 9am" has passed, so it is next week...
    (
        "monday 9am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-30T08:00:00Z",
    ),
    // ...while "monday 17:00" is still ahead today, and "next monday" never today.
    (
        "monday 17:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T16:00:00Z",
    ),
    (
        "next monday 17:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-30T16:00:00Z",
    ),
    (
        "2026-12-01 08:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T07:00:00Z",
    ),
    (
        "2026-12-01T08:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T07:00:00Z",
    ),
    (
        "2026-12-01 at 8am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T07:00:00Z",
    ),
    // RFC 3339 carries its own offset; the time zone does not apply.
    (
        "2026-12-01T08:00:00Z",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T08:00:00Z",
    ),
    (
        "2026-12-01T08:00:00+05:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T03:00:00Z",
    ),
    (
        "2026-12-01 08:00:00-05:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-12-01T13:00:00Z",
    ),
    // Within the 60 s grace: accepted, due at once.
    (
        "2026-11-23T09:59:30Z",
        BERLIN,
        "2026-11-23T10:00:00Z",
        "2026-11-23T09:59:30Z",
    ),
    // New York, Monday 2026-11-23 10:00 EST (-05:00).
    (
        "tomorrow 9:00",
        NEW_YORK,
        "2026-11-23T15:00:00Z",
        "2026-11-24T14:00:00Z",
    ),
    (
        "today 21:00",
        NEW_YORK,
        "2026-11-23T15:00:00Z",
        "2026-11-24T02:00:00Z",
    ),
    // Berlin autumn change (Sun 2026-10-25 03:00 CEST -> 02:00 CET): "in 1 day"
    // keeps the wall clock (25 h), "in 24 hours" is elapsed time.
    (
        "in 1 day",
        BERLIN,
        "2026-10-24T10:00:00Z",
        "2026-10-25T11:00:00Z",
    ),
    (
        "in 24 hours",
        BERLIN,
        "2026-10-24T10:00:00Z",
        "2026-10-25T10:00:00Z",
    ),
    (
        "tomorrow 3:30",
        BERLIN,
        "2026-10-24T10:00:00Z",
        "2026-10-25T02:30:00Z",
    ),
    (
        "tomorrow 1:30",
        BERLIN,
        "2026-10-24T10:00:00Z",
        "2026-10-24T23:30:00Z",
    ),
    // Berlin spring change (Sun 2026-03-29 02:00 CET -> 03:00 CEST).
    (
        "tomorrow 3:00",
        BERLIN,
        "2026-03-28T10:00:00Z",
        "2026-03-29T01:00:00Z",
    ),
    (
        "2026-03-29 01:59",
        BERLIN,
        "2026-03-28T10:00:00Z",
        "2026-03-29T00:59:00Z",
    ),
    (
        "in 1 day",
        BERLIN,
        "2026-03-28T10:00:00Z",
        "2026-03-29T09:00:00Z",
    ),
    // New York spring (2026-03-08 02:00 EST -> 03:00 EDT) and autumn (11-01 02:00 -> 01:00).
    (
        "tomorrow 1:30",
        NEW_YORK,
        "2026-03-07T15:00:00Z",
        "2026-03-08T06:30:00Z",
    ),
    (
        "tomorrow 3:30",
        NEW_YORK,
        "2026-03-07T15:00:00Z",
        "2026-03-08T07:30:00Z",
    ),
    (
        "tomorrow 2:30",
        NEW_YORK,
        "2026-10-31T15:00:00Z",
        "2026-11-01T07:30:00Z",
    ),
    // The escape hatch the ambiguity error suggests.
    (
        "2026-11-01T01:30:00-04:00",
        NEW_YORK,
        "2026-10-31T15:00:00Z",
        "2026-11-01T05:30:00Z",
    ),
    (
        "2026-11-01T01:30:00-05:00",
        NEW_YORK,
        "2026-10-31T15:00:00Z",
        "2026-11-01T06:30:00Z",
    ),
    // Leap day and month/year ends.
    (
        "in 2 days",
        UTC,
        "2028-02-27T12:00:00Z",
        "2028-02-29T12:00:00Z",
    ),
    (
        "tomorrow 9:00",
        UTC,
        "2028-02-28T12:00:00Z",
        "2028-02-29T09:00:00Z",
    ),
    (
        "2028-02-29 08:00",
        UTC,
        "2028-02-01T12:00:00Z",
        "2028-02-29T08:00:00Z",
    ),
    (
        "tomorrow 9:00",
        UTC,
        "2026-12-31T20:00:00Z",
        "2027-01-01T09:00:00Z",
    ),
    (
        "friday 9am",
        UTC,
        "2026-12-31T20:00:00Z",
        "2027-01-01T09:00:00Z",
    ),
    (
        "tomorrow 9:00",
        UTC,
        "2026-04-30T20:00:00Z",
        "2026-05-01T09:00:00Z",
    ),
    (
        "in 1 week",
        UTC,
        "2027-02-25T08:00:00Z",
        "2027-03-04T08:00:00Z",
    ),
    (
        "in 366 days",
        UTC,
        "2026-11-23T10:00:00Z",
        "2027-11-24T10:00:00Z",
    ),
];

#[test]
fn accepted_forms() {
    let mut failures = Vec::new();
    for (input, tz, now, want) in ACCEPTED {
        match parse_send_at(input, utc(now), z(tz)) {
            Ok(got) if got.at == utc(want) => {}
            Ok(got) => failures.push(format!(
                "{input:?} in {tz} at {now}: got {} ({}), want {want}",
                got.at, got.read_as
            )),
            Err(e) => failures.push(format!("{input:?} in {tz} at {now}: refused: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn read_as_shows_local_and_utc() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "next friday 17:30",
            BERLIN,
            "2026-11-23T10:00:00Z",
            "Friday 2026-11-27 17:30 Europe/Berlin (16:30 UTC)",
        ),
        (
            "today 21:00",
            NEW_YORK,
            "2026-11-23T15:00:00Z",
            "Monday 2026-11-23 21:00 America/New_York (2026-11-24 02:00 UTC)",
        ),
        (
            "tomorrow 9:00",
            UTC,
            "2026-11-23T10:00:00Z",
            "Tuesday 2026-11-24 09:00 UTC",
        ),
        (
            "tomorrow 09:00:15",
            UTC,
            "2026-11-23T10:00:00Z",
            "Tuesday 2026-11-24 09:00:15 UTC",
        ),
        (
            "2026-12-01T08:00:00Z",
            BERLIN,
            "2026-11-23T10:00:00Z",
            "Tuesday 2026-12-01 09:00 Europe/Berlin (08:00 UTC)",
        ),
    ];
    for (input, tz, now, want) in cases {
        let got = parse_send_at(input, utc(now), z(tz))
            .unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
        assert_eq!(&got.read_as, want, "{input:?}");
    }
}

/// (input, time zone, now, substrings the message must contain)
const REFUSED: &[(&str, &str, &str, &[&str])] = &[
    (
        "",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["empty", "tomorrow 9:00"],
    ),
    ("   ", BERLIN, "2026-11-23T10:00:00Z", &["empty"]),
    (
        "yesterday 9:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["\"yesterday 9:00\"", "accepted forms"],
    ),
    (
        "tomorrow",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["time of day is required"],
    ),
    (
        "friday",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["time of day is required"],
    ),
    (
        "2026-12-01",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["time of day is required"],
    ),
    (
        "tomorrow 25:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["\"25:00\" is not a time of day"],
    ),
    (
        "tomorrow 9:60",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "tomorrow 13pm",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "tomorrow 0am",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "tomorrow 9",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "tomorrow 9:0",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "tomorrow 9:00 please",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["not a time of day"],
    ),
    (
        "next week",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["expected a weekday after \"next\""],
    ),
    (
        "in 2 fortnights",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["unknown unit"],
    ),
    ("in 2", BERLIN, "2026-11-23T10:00:00Z", &["missing unit"]),
    (
        "in hours",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["expected an amount"],
    ),
    (
        "in 99999999999 hours",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["too large"],
    ),
    (
        "12/01/2026 08:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["cannot read"],
    ),
    (
        "2027-02-29 08:00",
        UTC,
        "2027-01-01T10:00:00Z",
        &["2027-02-29 is not a calendar date"],
    ),
    (
        "2026-13-01 08:00",
        UTC,
        "2026-11-23T10:00:00Z",
        &["not a calendar date"],
    ),
    // Past: the message shows how the input was read.
    (
        "today 9:00",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &[
            "in the past",
            "Monday 2026-11-23 09:00 Europe/Berlin (08:00 UTC)",
        ],
    ),
    (
        "2026-11-23T09:58:59Z",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["in the past", "10:58:59 Europe/Berlin (09:58:59 UTC)"],
    ),
    (
        "2025-12-01 08:00",
        UTC,
        "2026-11-23T10:00:00Z",
        &["in the past", "Monday 2025-12-01 08:00 UTC"],
    ),
    // Too far ahead.
    (
        "2027-12-01 08:00",
        UTC,
        "2026-11-23T10:00:00Z",
        &["more than 366 days ahead", "Wednesday 2027-12-01 08:00 UTC"],
    ),
    (
        "in 367 days",
        UTC,
        "2026-11-23T10:00:00Z",
        &["more than 366 days"],
    ),
    // DST fold: both readings are shown, with an RFC 3339 way out.
    (
        "tomorrow 2:30",
        BERLIN,
        "2026-10-24T10:00:00Z",
        &[
            "happens twice",
            "Sunday 2026-10-25 02:30",
            "02:30 CEST +02:00 (00:30 UTC)",
            "02:30 CET +01:00 (01:30 UTC)",
            "2026-10-25T02:30:00+02:00",
        ],
    ),
    (
        "tomorrow 1:30",
        NEW_YORK,
        "2026-10-31T15:00:00Z",
        &[
            "happens twice",
            "01:30 EDT -04:00 (05:30 UTC)",
            "01:30 EST -05:00 (06:30 UTC)",
            "2026-11-01T01:30:00-04:00",
        ],
    ),
    (
        "in 1 day",
        NEW_YORK,
        "2026-10-31T05:30:00Z",
        &["happens twice"],
    ),
    // DST gap: the local time does not exist.
    (
        "tomorrow 2:30",
        BERLIN,
        "2026-03-28T10:00:00Z",
        &["does not exist", "Sunday 2026-03-29 02:30", "Europe/Berlin"],
    ),
    (
        "2026-03-08 02:15",
        NEW_YORK,
        "2026-03-07T15:00:00Z",
        &["does not exist", "America/New_York"],
    ),
];

#[test]
fn refusals_explain_themselves() {
    let mut failures = Vec::new();
    for (input, tz, now, needles) in REFUSED {
        match parse_send_at(input, utc(now), z(tz)) {
            Ok(got) => failures.push(format!(
                "{input:?} in {tz} at {now}: accepted as {}, want a refusal",
                got.read_as
            )),
            Err(e) => {
                let msg = e.to_string();
                for needle in *needles {
                    if !msg.contains(needle) {
                        failures.push(format!("{input:?}: message lacks {needle:?}: {msg}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unrecognised_input_lists_the_accepted_forms() {
    let err = parse_send_at("whenever", utc("2026-11-23T10:00:00Z"), z(BERLIN)).unwrap_err();
    assert!(matches!(err, WhenError::Unrecognised { .. }), "{err:?}");
    assert!(err.to_string().contains(ACCEPTED_EXAMPLES), "{err}");
    // The word that did not fit is named, and the forms are listed once, not twice.
    let text = err.to_string();
    assert!(text.contains("\"whenever\" is not a day"), "{text}");
    assert_eq!(text.matches("tomorrow").count(), 2, "{text}");
}

#[test]
fn the_suggested_offset_form_of_an_ambiguous_time_parses() {
    let now = utc("2026-10-24T10:00:00Z");
    let err = parse_send_at("tomorrow 2:30", now, z(BERLIN)).unwrap_err();
    let WhenError::Ambiguous(amb) = err else {
        panic!("want Ambiguous, got {err:?}");
    };
    assert_eq!(amb.local, "Sunday 2026-10-25 02:30");
    let got = parse_send_at(&amb.earlier_rfc3339, now, z(BERLIN)).expect("suggestion parses");
    assert_eq!(got.at, utc("2026-10-25T00:30:00Z"));
}

#[test]
fn time_zone_names() {
    assert_eq!(parse_time_zone("Europe/Berlin"), Ok(z(BERLIN)));
    assert_eq!(parse_time_zone(" UTC "), Ok(Zone::UTC));
    assert_eq!(parse_time_zone("america/new_york"), Ok(z(NEW_YORK)));
    let err = parse_time_zone("Mars/Olympus").unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown time zone \"Mars/Olympus\""),
        "{err}"
    );
}

// ---------------------------------------------------------------- crontab

#[test]
fn cron_specs_accepted() {
    for spec in [
        "0 9 * * MON",
        "0 9 * * mon",
        "*/15 8-18 * * MON-FRI",
        "0 0 1 JAN,JUL *",
        "0 9 * jan-mar sat,sun",
        "30 4 1-7 * *",
        "0 22 * * 1-5",
        "0-30/10 * * * *",
        "5 0 * 8 *",
        "0 0 * * 7",
        "0 0 29 2 *",
        "0 0 31 2,3 *",
        "0 0 30 2 MON",
        "  0 9 * * 1  ",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@DAILY",
    ] {
        if let Err(e) = CronSpec::parse_in(spec, z(BERLIN)) {
            panic!("{spec:?} refused: {e}");
        }
    }
}

#[test]
fn cron_specs_refused() {
    let cases: &[(&str, &str)] = &[
        ("", "found 0 fields"),
        ("* * * *", "found 4 fields"),
        ("0 0 9 * * MON", "found 6 fields"),
        ("0 9 * * MON#2", "not allowed in the day-of-week field"),
        ("0 0 L * *", "not allowed in the day-of-month field"),
        ("0 0 15W * *", "not allowed in the day-of-month field"),
        ("0 0 ? * MON", "not allowed in the day-of-month field"),
        ("0 0 * * +MON", "not allowed in the day-of-week field"),
        ("0 9 * MON *", "\"MON\" is not allowed in the month field"),
        (
            "0 9 * * FOO",
            "\"FOO\" is not allowed in the day-of-week field",
        ),
        ("1-2-3 * * * *", "bad range"),
        ("*/x * * * *", "bad step"),
        ("*/ * * * *", "bad step"),
        ("60 * * * *", ""),
        ("0 24 * * *", ""),
        ("0 0 32 * *", ""),
        ("0 0 0 * *", ""),
        ("0 0 * 13 *", ""),
        ("0 0 * * 8", ""),
        ("*/0 * * * *", ""),
        ("0 0 30 2 *", "never matches"),
        ("0 0 31 4,6,9,11 *", "never matches"),
        ("0 0 30,31 2 *", "never matches"),
        ("@reboot", "@reboot"),
        ("@often", "unknown macro @often"),
    ];
    for (spec, needle) in cases {
        match CronSpec::parse(spec) {
            Ok(_) => panic!("{spec:?} accepted, want a refusal"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{spec:?}: {msg}");
                assert!(
                    msg.contains(&format!("{:?}", spec.trim())),
                    "{spec:?}: {msg}"
                );
                assert!(msg.contains("0 9 * * MON"), "no example in: {msg}");
            }
        }
    }
}

/// (spec, time zone, after, the next occurrences in order)
const NEXT: &[(&str, &str, &str, &[&str])] = &[
    // Monday 11:00 in Berlin: the next "Monday 9:00" is a week away.
    (
        "0 9 * * MON",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["2026-11-30T08:00:00Z", "2026-12-07T08:00:00Z"],
    ),
    (
        "*/15 8-18 * * MON-FRI",
        UTC,
        "2026-11-27T18:40:00Z",
        &[
            "2026-11-27T18:45:00Z",
            "2026-11-30T08:00:00Z",
            "2026-11-30T08:15:00Z",
        ],
    ),
    (
        "0 0 1 JAN,JUL *",
        UTC,
        "2026-11-23T10:00:00Z",
        &["2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"],
    ),
    (
        "@monthly",
        UTC,
        "2026-01-31T12:00:00Z",
        &["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"],
    ),
    (
        "@yearly",
        UTC,
        "2026-11-23T10:00:00Z",
        &["2027-01-01T00:00:00Z"],
    ),
    (
        "@weekly",
        UTC,
        "2026-11-23T10:00:00Z",
        &["2026-11-29T00:00:00Z"],
    ),
    (
        "@hourly",
        UTC,
        "2026-11-23T10:00:00Z",
        &["2026-11-23T11:00:00Z", "2026-11-23T12:00:00Z"],
    ),
    (
        "@midnight",
        BERLIN,
        "2026-11-23T10:00:00Z",
        &["2026-11-23T23:00:00Z"],
    ),
    (
        "0 0 * * 7",
        UTC,
        "2026-11-23T10:00:00Z",
        &["2026-11-29T00:00:00Z"],
    ),
    // Month ends: the 31st skips the short months.
    (
        "0 0 31 * *",
        UTC,
        "2026-04-01T00:00:00Z",
        &["2026-05-31T00:00:00Z", "2026-07-31T00:00:00Z"],
    ),
    // Leap day: next in 2028.
    (
        "0 0 29 2 *",
        UTC,
        "2026-03-01T00:00:00Z",
        &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
    ),
    // Vixie semantics: day-of-month and day-of-week both restricted means either.
    (
        "0 12 13 * FRI",
        UTC,
        "2026-12-01T00:00:00Z",
        &[
            "2026-12-04T12:00:00Z",
            "2026-12-11T12:00:00Z",
            "2026-12-13T12:00:00Z",
            "2026-12-18T12:00:00Z",
        ],
    ),
    // Berlin spring: 02:30 does not exist on 03-29; the job runs at 03:00 CEST instead.
    (
        "30 2 * * *",
        BERLIN,
        "2026-03-28T12:00:00Z",
        &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
    ),
    // Berlin autumn: 02:30 happens twice on 10-25; a fixed-time job runs once (the first).
    (
        "30 2 * * *",
        BERLIN,
        "2026-10-24T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
    ),
    // An interval job keeps its real-time rhythm through the repeated hour.
    (
        "*/30 * * * *",
        BERLIN,
        "2026-10-25T00:15:00Z",
        &[
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-25T02:00:00Z",
        ],
    ),
    // New York: 9:00 local follows the offset change.
    (
        "0 9 * * *",
        NEW_YORK,
        "2026-03-07T15:00:00Z",
        &["2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"],
    ),
    (
        "0 9 * * *",
        NEW_YORK,
        "2026-10-31T15:00:00Z",
        &["2026-11-01T14:00:00Z"],
    ),
];

#[test]
fn cron_next_occurrences() {
    let mut failures = Vec::new();
    for (spec, tz, after, want) in NEXT {
        let cron = CronSpec::parse_in(spec, z(tz)).unwrap_or_else(|e| panic!("{e}"));
        let mut t = utc(after);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            match cron.next_after(t) {
                Some(n) => {
                    got.push(n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    t = n;
                }
                None => break,
            }
        }
        if got != *want {
            failures.push(format!(
                "{spec:?} in {tz} after {after}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cron_spec_keeps_source_and_zone() {
    let cron = CronSpec::parse_in(" 0 9 * * MON ", z(BERLIN)).expect("valid");
    assert_eq!(cron.as_str(), "0 9 * * MON");
    assert_eq!(cron.time_zone(), z(BERLIN));
    assert_eq!(cron.to_string(), "0 9 * * MON");
    assert_eq!(
        format!("{cron:?}"),
        "CronSpec { spec: \"0 9 * * MON\", tz: \"Europe/Berlin\" }"
    );
}

// ---------------------------------------------------------------- catch-up rule

fn hourly() -> CronSpec {
    CronSpec::parse("0 * * * *").expect("valid")
}

#[test]
fn five_missed_hours_run_once() {
    let spec = hourly();
    let created = utc("2026-11-23T00:30:00Z");
    let last = Some(utc("2026-11-23T05:00:00Z"));
    // Ticks stopped after 05:00 and resume at 10:20: only 10:00 is due, not 06..10.
    let now = utc("2026-11-23T10:20:00Z");
    assert_eq!(
        due_occurrence(&spec, last, created, now),
        Some(utc("2026-11-23T10:00:00Z"))
    );
    // Once 10:00 is materialised, the next tick finds nothing until 11:00.
    let last = Some(utc("2026-11-23T10:00:00Z"));
    assert_eq!(
        due_occurrence(&spec, last, created, utc("2026-11-23T10:25:00Z")),
        None
    );
    assert_eq!(
        due_occurrence(&spec, last, created, utc("2026-11-23T10:59:59Z")),
        None
    );
    assert_eq!(
        due_occurrence(&spec, last, created, utc("2026-11-23T11:00:00Z")),
        Some(utc("2026-11-23T11:00:00Z"))
    );
}

/// Database timestamps carry microseconds; occurrences are whole seconds.
#[test]
fn sub_second_instants() {
    let spec = hourly();
    let t = utc("2026-11-23T09:00:00.5Z");
    assert_eq!(
        spec.latest_at_or_before(t),
        Some(utc("2026-11-23T09:00:00Z"))
    );
    assert_eq!(spec.next_after(t), Some(utc("2026-11-23T10:00:00Z")));
    let t = utc("2026-11-23T08:59:59.999999Z");
    assert_eq!(
        spec.latest_at_or_before(t),
        Some(utc("2026-11-23T08:00:00Z"))
    );
    assert_eq!(spec.next_after(t), Some(utc("2026-11-23T09:00:00Z")));
    let created = utc("2026-11-23T00:00:00.25Z");
    let last = Some(utc("2026-11-23T08:00:00Z"));
    let now = utc("2026-11-23T09:00:00.5Z");
    assert_eq!(
        due_occurrence(&spec, last, created, now),
        Some(utc("2026-11-23T09:00:00Z"))
    );
}

#[test]
fn clock_jumped_back_yields_nothing_new() {
    let spec = hourly();
    let created = utc("2026-11-23T00:30:00Z");
    let last = Some(utc("2026-11-23T10:00:00Z"));
    for now in [
        "2026-11-23T08:00:00Z",
        "2026-11-23T09:59:59Z",
        "2026-11-23T10:00:00Z",
        "2026-11-22T12:00:00Z",
    ] {
        assert_eq!(
            due_occurrence(&spec, last, created, utc(now)),
            None,
            "now={now}"
        );
    }
    // A clock before the job's creation yields nothing either.
    assert_eq!(
        due_occurrence(&spec, None, created, utc("2026-11-22T23:00:00Z")),
        None
    );
}

#[test]
fn clock_jumped_forward_runs_once() {
    let spec = hourly();
    let last = Some(utc("2026-11-23T10:00:00Z"));
    assert_eq!(
        due_occurrence(
            &spec,
            last,
            utc("2026-11-23T00:30:00Z"),
            utc("2026-11-23T20:05:00Z")
        ),
        Some(utc("2026-11-23T20:00:00Z"))
    );
}

#[test]
fn first_occurrence_is_after_creation() {
    let spec = CronSpec::parse("0 9 * * *").expect("valid");
    // Created before 09:00: the 09:00 occurrence is due at or after 09:00.
    let created = utc("2026-11-23T08:59:30Z");
    assert_eq!(
        due_occurrence(&spec, None, created, utc("2026-11-23T08:59:59Z")),
        None
    );
    assert_eq!(
        due_occurrence(&spec, None, created, utc("2026-11-23T09:00:00Z")),
        Some(utc("2026-11-23T09:00:00Z"))
    );
    // Created exactly at or after an occurrence: that occurrence is not the job's.
    for created in ["2026-11-23T09:00:00Z", "2026-11-23T09:03:00Z"] {
        assert_eq!(
            due_occurrence(&spec, None, utc(created), utc("2026-11-23T09:05:00Z")),
            None,
            "created={created}"
        );
    }
}

#[test]
fn stale_occurrences_are_skipped_and_reported() {
    let spec = CronSpec::parse("0 9 * * MON").expect("valid");
    let created = utc("2026-11-01T00:00:00Z");
    let last = Some(utc("2026-11-16T09:00:00Z"));
    // Tuesday 10:00: Monday 09:00 is 25 hours late, beyond the default 24 h.
    let now = utc("2026-11-24T10:00:00Z");
    assert_eq!(due_occurrence(&spec, last, created, now), None);
    assert_eq!(
        catch_up(&spec, last, created, now, Duration::hours(24)),
        CatchUp::Stale(utc("2026-11-23T09:00:00Z"))
    );
    assert_eq!(
        catch_up(&spec, last, created, now, Duration::hours(48)),
        CatchUp::Due(utc("2026-11-23T09:00:00Z"))
    );
    assert_eq!(
        catch_up(
            &spec,
            Some(utc("2026-11-23T09:00:00Z")),
            created,
            now,
            Duration::hours(48)
        ),
        CatchUp::NothingDue
    );
    // Exactly at the limit is still due.
    assert_eq!(
        catch_up(
            &spec,
            last,
            created,
            utc("2026-11-24T09:00:00Z"),
            Duration::hours(24)
        ),
        CatchUp::Due(utc("2026-11-23T09:00:00Z"))
    );
}

/// Drives the rule the way `dispatch-tick` will: irregular ticks (overlapping, missed
/// for hours, clock jumps both ways), a set standing in for the unique
/// (job_id, occurrence_at) constraint, and `last` = the greatest occurrence stored.
#[test]
fn irregular_ticks_materialise_each_occurrence_at_most_once() {
    let spec = CronSpec::parse_in("*/20 * * * *", z(BERLIN)).expect("valid");
    let created = utc("2026-10-24T22:05:00Z");
    let start = utc("2026-10-24T22:00:00Z");
    // Minutes after `start`; the same minute twice is two overlapping ticks.
    let ticks = [
        1, 7, 20, 20, 21, 45, 45, 61, 30, 62, 300, 301, 290, 320, 321, 900, 901, 905, 1000, 999,
    ];
    let mut stored: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    let mut inserted = Vec::new();
    for minute in ticks {
        let now = start + Duration::minutes(minute);
        let last = stored.iter().next_back().copied();
        if let Some(t) = due_occurrence(&spec, last, created, now) {
            assert!(t <= now && t > created, "{t} not in ({created}, {now}]");
            assert!(last.is_none_or(|l| t > l), "{t} not after last {last:?}");
            if stored.insert(t) {
                inserted.push(t);
            }
        }
    }
    let want: Vec<DateTime<Utc>> = [
        "2026-10-24T22:20:00Z",
        "2026-10-24T22:40:00Z",
        "2026-10-24T23:00:00Z",
        "2026-10-25T03:00:00Z",
        "2026-10-25T03:20:00Z",
        "2026-10-25T13:00:00Z",
        "2026-10-25T14:40:00Z",
    ]
    .iter()
    .map(|s| utc(s))
    .collect();
    assert_eq!(inserted, want);
}

/// A daily job at 01:30 in New York on the night the clocks go back (01:00-02:00
/// happens twice): ticks every 10 minutes through the night materialise it once.
#[test]
fn fixed_time_job_runs_once_through_the_dst_fold() {
    let spec = CronSpec::parse_in("30 1 * * *", z(NEW_YORK)).expect("valid");
    let created = utc("2026-10-31T12:00:00Z");
    let mut last = None;
    let mut got = Vec::new();
    let mut now = utc("2026-11-01T03:00:00Z");
    while now <= utc("2026-11-01T09:00:00Z") {
        if let Some(t) = due_occurrence(&spec, last, created, now) {
            got.push(t);
            last = Some(t);
        }
        now += Duration::minutes(10);
    }
    assert_eq!(got, vec![utc("2026-11-01T05:30:00Z")]);
}
