//! Recurring jobs against the private PostgreSQL cluster: `dispatch-admin schedule ...`
//! as an operator runs it, and `recurring::materialise_due` (what dispatch-tick calls)
//! for the exactly-once and catch-up rules, overlapping ticks included.
use crate::common;
use crate::common::admin;

use std::process::Output;
use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{assert_status, stderr, stdout};
use mailrun::dispatcher::recurring::{self, OccurrenceOutcome};
use mailrun::schedule::CronSpec;
use postgres::{Client, NoTls};
use serde_json::{json, Value};

fn json_out(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// A database with the schema and one SMTP account "main".
fn init(name: &str) -> String {
    let url = common::initialised_db(name);
    let out = admin(
        &url,
        &[
            "account",
            "add",
            "main",
            "--host",
            "127.0.0.1",
            "--port",
            "2525",
            "--security",
            "none",
        ],
    );
    assert_status(&out, 0);
    url
}

fn db(url: &str) -> Client {
    Client::connect(url, NoTls).expect("connect")
}

fn count(url: &str, sql: &str) -> i64 {
    db(url).query_one(sql, &[]).unwrap().get(0)
}

fn template() -> Value {
    json!({"from": "news@example.com", "to": ["reader@example.org"], "subject": "Weekly",
           "text": "hello", "account": "main"})
}

/// Adds a job through the library and moves its creation time to `created_at`.
fn add_job(url: &str, spec: &str, lateness: Duration, created_at: DateTime<Utc>) -> i64 {
    let mut c = db(url);
    let spec = CronSpec::parse(spec).unwrap();
    let id = recurring::add(
        &mut c,
        &recurring::NewJob {
            name: None,
            spec: &spec,
            template: &template(),
            max_lateness: lateness,
        },
    )
    .unwrap();
    c.execute(
        "UPDATE mailrun.recurring_jobs SET created_at = $2 WHERE id = $1",
        &[&id, &created_at],
    )
    .unwrap();
    id
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

#[test]
fn overlapping_ticks_enqueue_each_occurrence_once() {
    let url = init("recurring_overlap");
    let job = add_job(
        &url,
        "*/5 * * * *",
        Duration::hours(24),
        utc(2025, 3, 1, 8, 0),
    );
    // Twelve missed occurrences since 08:00; eight ticks at the same moment.
    let now = utc(2025, 3, 1, 9, 2);
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let url = url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = db(&url);
                barrier.wait();
                recurring::materialise_due(&mut c, now).unwrap()
            })
        })
        .collect();
    let done: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap().materialised)
        .collect();
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].job_id, job);
    assert_eq!(
        done[0].occurrence_at,
        utc(2025, 3, 1, 9, 0),
        "latest occurrence only"
    );
    let OccurrenceOutcome::Enqueued { message_id } = done[0].outcome else {
        panic!("{done:?}");
    };
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.messages"),
        1,
        "one message, not one per missed occurrence or per tick"
    );
    assert_eq!(
        count(
            &url,
            &format!("SELECT recurring_job_id FROM mailrun.messages WHERE id = {message_id}")
        ),
        job
    );
    assert_eq!(
        count(
            &url,
            &format!("SELECT message_id FROM mailrun.recurring_occurrences WHERE job_id = {job}")
        ),
        message_id
    );

    // A tick that read the job before the winner committed (simulated by forgetting the
    // bookkeeping) computes the same occurrence; the unique key stops it.
    db(&url)
        .execute(
            "UPDATE mailrun.recurring_jobs SET last_occurrence_at = NULL WHERE id = $1",
            &[&job],
        )
        .unwrap();
    let again = recurring::materialise_due(&mut db(&url), now).unwrap();
    assert!(again.materialised.is_empty(), "{:?}", again.materialised);
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 1);
}

#[test]
fn clock_jumps_and_missed_ticks_follow_the_catch_up_rule() {
    let url = init("recurring_clock");
    add_job(
        &url,
        "0 * * * *",
        Duration::hours(24),
        utc(2025, 3, 1, 8, 30),
    );
    let mut c = db(&url);
    let tick = |c: &mut Client, now: DateTime<Utc>| -> Vec<DateTime<Utc>> {
        recurring::materialise_due(c, now)
            .unwrap()
            .materialised
            .iter()
            .map(|m| m.occurrence_at)
            .collect()
    };
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 8, 59)),
        Vec::<DateTime<Utc>>::new()
    );
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 9, 0)),
        vec![utc(2025, 3, 1, 9, 0)]
    );
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 9, 1)),
        Vec::<DateTime<Utc>>::new()
    );
    // The clock jumps back an hour: nothing re-opens.
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 8, 5)),
        Vec::<DateTime<Utc>>::new()
    );
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 9, 30)),
        Vec::<DateTime<Utc>>::new()
    );
    // Five hours without ticks (or a jump forward): one run, for the latest occurrence.
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 14, 20)),
        vec![utc(2025, 3, 1, 14, 0)]
    );
    assert_eq!(
        tick(&mut c, utc(2025, 3, 1, 14, 40)),
        Vec::<DateTime<Utc>>::new()
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_occurrences"),
        2
    );
}

#[test]
fn stale_occurrences_are_skipped_once_and_refused_templates_fail_once() {
    let url = init("recurring_stale");
    let job = add_job(&url, "@daily", Duration::hours(1), utc(2025, 1, 5, 12, 0));
    let now = utc(2025, 1, 10, 12, 0);
    let mut c = db(&url);
    let r = recurring::materialise_due(&mut c, now).unwrap();
    assert_eq!(r.materialised.len(), 1);
    assert_eq!(r.materialised[0].outcome, OccurrenceOutcome::Skipped);
    assert_eq!(r.materialised[0].occurrence_at, utc(2025, 1, 10, 0, 0));
    assert!(recurring::materialise_due(&mut c, now)
        .unwrap()
        .materialised
        .is_empty());
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);

    // The template's account disappears: the occurrence is recorded as failed, with the
    // reason, and later ticks do not try it again.
    c.batch_execute("UPDATE mailrun.smtp_accounts SET name = 'renamed'")
        .unwrap();
    let r = recurring::materialise_due(&mut c, utc(2025, 1, 11, 0, 10)).unwrap();
    match &r.materialised[..] {
        [m] => match &m.outcome {
            OccurrenceOutcome::Failed { detail } => {
                assert!(detail.contains("main"), "{detail}")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(recurring::materialise_due(&mut c, utc(2025, 1, 11, 0, 20))
        .unwrap()
        .materialised
        .is_empty());
    let occ = recurring::occurrences(&mut c, job, 10).unwrap();
    let statuses: Vec<&str> = occ.iter().map(|o| o.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "skipped"]);
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
}

#[test]
fn paused_jobs_do_not_run_and_resume_without_catching_up() {
    let url = init("recurring_pause");
    let job = add_job(
        &url,
        "*/10 * * * *",
        Duration::hours(24),
        utc(2025, 3, 1, 8, 0),
    );
    let mut c = db(&url);
    assert!(recurring::pause(&mut c, job).unwrap());
    assert!(!recurring::pause(&mut c, job).unwrap());
    assert!(recurring::materialise_due(&mut c, utc(2025, 3, 1, 9, 0))
        .unwrap()
        .materialised
        .is_empty());
    assert!(recurring::resume(&mut c, job).unwrap());
    // Resumed now (database clock, years after 2025): the paused-over occurrences in
    // 2025 are not caught up.
    assert!(recurring::materialise_due(&mut c, utc(2025, 3, 1, 9, 0))
        .unwrap()
        .materialised
        .is_empty());
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
}

#[test]
fn schedule_commands_add_list_show_pause_resume_remove() {
    let url = init("recurring_cli");
    let dir = common::temp_dir();
    let path = dir.path().join("weekly.json");
    std::fs::write(&path, template().to_string()).unwrap();
    let file = path.to_str().unwrap();

    let out = admin(
        &url,
        &[
            "schedule",
            "add",
            "--cron",
            "0 9 * * MON",
            "--template",
            file,
            "--time-zone",
            "Europe/Berlin",
            "--name",
            "weekly",
            "--verbose",
        ],
    );
    assert_status(&out, 0);
    let text = stdout(&out);
    let id: i64 = text.lines().next().unwrap().parse().unwrap();
    assert!(
        text.contains("next run Monday") && text.contains("09:00 Europe/Berlin"),
        "{text}"
    );

    let out = admin(
        &url,
        &["schedule", "add", "--cron", "@daily", "--template", file],
    );
    assert_status(&out, 0);

    let list = json_out(&admin(&url, &["schedule", "list", "--json"]));
    let jobs = list.as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["id"], id);
    assert_eq!(jobs[0]["name"], "weekly");
    assert_eq!(jobs[0]["cron"], "0 9 * * MON");
    assert_eq!(jobs[0]["time_zone"], "Europe/Berlin");
    let next: DateTime<Utc> = serde_json::from_value(jobs[0]["next_run"].clone()).unwrap();
    assert_eq!(
        next.with_timezone(&mailrun::schedule::Zone::named("Europe/Berlin").unwrap())
            .format("%a %H:%M")
            .to_string(),
        "Mon 09:00"
    );
    assert_eq!(jobs[1]["time_zone"], "UTC");
    let table = stdout(&admin(&url, &["schedule", "list"]));
    assert!(
        table.contains("weekly") && table.contains("0 9 * * MON"),
        "{table}"
    );

    assert_status(&admin(&url, &["schedule", "pause", "weekly"]), 0);
    let shown = json_out(&admin(&url, &["schedule", "show", "weekly", "--json"]));
    assert_eq!(shown["paused"], true);
    assert_eq!(shown["next_run"], Value::Null);
    assert_eq!(shown["template"]["subject"], "Weekly");
    let out = admin(&url, &["schedule", "resume", &id.to_string(), "--json"]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["resumed"], true);
    assert_status(&admin(&url, &["schedule", "remove", "weekly"]), 0);
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_jobs"),
        1
    );
    let out = admin(&url, &["schedule", "remove", "weekly"]);
    assert_status(&out, 65);
    assert!(
        stderr(&out).contains("no recurring job"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn schedule_add_refuses_bad_input_and_changes_nothing() {
    let url = init("recurring_refuse");
    let dir = common::temp_dir();
    let write = |name: &str, v: &Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let good = write("good.json", &template());
    let mut with_send_at = template();
    with_send_at["send_at"] = json!("2030-01-01T00:00:00Z");
    let with_send_at = write("send_at.json", &with_send_at);
    let mut bad_account = template();
    bad_account["account"] = json!("nope");
    let bad_account = write("account.json", &bad_account);
    let mut bad_to = template();
    bad_to["to"] = json!(["not an address"]);
    let bad_to = write("to.json", &bad_to);

    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--cron", "0 9 * *", "--template", &good], 65, "field"),
        (
            vec!["--cron", "0 0 30 2 *", "--template", &good],
            65,
            "never",
        ),
        (
            vec!["--cron", "@reboot", "--template", &good],
            65,
            "@reboot",
        ),
        (
            vec!["--cron", "0 9 * * *", "--template", &with_send_at],
            65,
            "send_at",
        ),
        (
            vec!["--cron", "0 9 * * *", "--template", &bad_account],
            65,
            "nope",
        ),
        (
            vec!["--cron", "0 9 * * *", "--template", &bad_to],
            65,
            "not an address",
        ),
        (
            vec!["--cron", "0 9 * * *", "--template", "/nonexistent.json"],
            65,
            "cannot read",
        ),
        (
            vec![
                "--cron",
                "0 9 * * *",
                "--template",
                &good,
                "--time-zone",
                "Mars/Base",
            ],
            64,
            "Mars/Base",
        ),
        (
            vec!["--cron", "0 9 * * *", "--template", &good, "--name", "a b"],
            65,
            "name",
        ),
        (
            vec![
                "--cron",
                "0 9 * * *",
                "--template",
                &good,
                "--max-lateness",
                "0m",
            ],
            65,
            "lateness",
        ),
    ];
    for (args, code, says) in cases {
        let mut all = vec!["schedule", "add"];
        all.extend_from_slice(&args);
        let out = admin(&url, &all);
        assert_status(&out, code);
        assert!(
            stderr(&out).contains(says),
            "{args:?}: stderr lacks {says:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_jobs"),
        0
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);

    let args = [
        "schedule",
        "add",
        "--cron",
        "0 9 * * *",
        "--template",
        &good,
        "--name",
        "x",
    ];
    assert_status(&admin(&url, &args), 0);
    let out = admin(&url, &args);
    assert_status(&out, 65);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_jobs"),
        1
    );
}

#[test]
fn send_later_shows_how_the_time_was_read() {
    let url = init("recurring_send_at");
    let base = [
        "enqueue",
        "--from",
        "a@example.com",
        "--to",
        "b@example.org",
        "--text",
        "x",
    ];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        admin(&url, &args)
    };
    let out = run(&["--send-at", "in 2 hours", "--json"]);
    assert_status(&out, 0);
    let v = json_out(&out);
    assert!(v["read_as"].as_str().unwrap().contains("UTC"), "{v}");
    let out = run(&["--send-at", "in 2 hours", "--verbose"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("send at "), "{}", stdout(&out));

    let out = run(&[
        "--send-at",
        "2020-06-01 09:00",
        "--time-zone",
        "Europe/Berlin",
    ]);
    assert_status(&out, 65);
    let err = stderr(&out);
    assert!(
        err.contains("was read as")
            && err.contains("2020-06-01 09:00 Europe/Berlin")
            && err.contains("past"),
        "{err}"
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
}

#[test]
fn overlapping_dispatch_ticks_enqueue_once() {
    let url = init("recurring_tick");
    let job = add_job(
        &url,
        "*/5 * * * *",
        Duration::hours(24),
        Utc::now() - Duration::hours(3),
    );
    let ticks: Vec<_> = (0..4)
        .map(|_| {
            common::command(env!("CARGO_BIN_EXE_dispatch-tick"))
                .arg("--database-url")
                .arg(&url)
                .arg("--json")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start dispatch-tick")
        })
        .collect();
    let mut enqueued = 0;
    for t in ticks {
        let out = t.wait_with_output().unwrap();
        // No runner is registered: 69 when the tick saw the message due, 3 when it
        // counted before the winning tick committed; the summary is printed either way.
        let code = out.status.code();
        assert!(
            matches!(code, Some(3) | Some(69)),
            "exit {code:?}: {}",
            stderr(&out)
        );
        let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        for m in summary["recurring"].as_array().unwrap() {
            assert_eq!(m["job_id"], job);
            assert_eq!(m["status"], "enqueued");
            enqueued += 1;
        }
    }
    assert_eq!(enqueued, 1, "one tick enqueued the occurrence");
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 1);
    assert_eq!(
        count(
            &url,
            &format!("SELECT count(*) FROM mailrun.messages WHERE recurring_job_id = {job}")
        ),
        1
    );
}

/// The occurrence a tick enqueues is work of that same tick: the tick looks for due work
/// before it evaluates the jobs (one statement, `mailrun.tick_begin`), so it counts again
/// when it enqueued something.
#[test]
fn a_tick_wakes_for_the_occurrence_it_enqueued() {
    let url = init("recurring_tick_wakes");
    let job = add_job(
        &url,
        "*/5 * * * *",
        Duration::hours(24),
        Utc::now() - Duration::hours(3),
    );
    let out = common::pipeline::tick(&url, &["--json"]);
    // No runner is registered: work due and nobody to take it is 69, not 3.
    assert_status(&out, 69);
    let summary: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["recurring"][0]["job_id"], job, "{summary}");
    assert_eq!(summary["due"], 1, "{summary}");
}

#[test]
fn dispatch_tick_says_when_an_occurrence_is_skipped() {
    let url = init("recurring_tick_skip");
    add_job(
        &url,
        "@daily",
        Duration::minutes(1),
        Utc::now() - Duration::days(3),
    );
    // Unless the test runs within a minute after midnight UTC, today's run is too late.
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-tick"))
            .arg("--database-url")
            .arg(&url),
    );
    let late = Utc::now().time() > chrono::NaiveTime::from_hms_opt(0, 1, 0).unwrap();
    if late {
        assert_status(&out, 3);
        assert!(stderr(&out).contains("skipped"), "{}", stderr(&out));
        assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
        // Said once: the next tick is silent.
        let out = common::run(
            common::command(env!("CARGO_BIN_EXE_dispatch-tick"))
                .arg("--database-url")
                .arg(&url),
        );
        assert_status(&out, 3);
        assert_eq!(stderr(&out), "");
    }
}

/// Fires `now` on four overlapping ticks at once (what cron does when one is slow).
fn overlapping_ticks(url: &str, now: DateTime<Utc>) {
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.to_string(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let mut c = db(&url);
                barrier.wait();
                recurring::materialise_due(&mut c, now).unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn count_3_runs_three_times_with_overlapping_ticks() {
    let url = init("recurring_count");
    let dir = common::temp_dir();
    let path = dir.path().join("t.json");
    std::fs::write(&path, template().to_string()).unwrap();
    let out = admin(
        &url,
        &[
            "--json",
            "schedule",
            "add",
            "--cron",
            "0 * * * *",
            "--count",
            "3",
            "--template",
            path.to_str().unwrap(),
            "--name",
            "three",
        ],
    );
    assert_status(&out, 0);
    let job = json_out(&out);
    assert_eq!(
        (job["max_runs"].as_i64(), job["runs"].as_i64()),
        (Some(3), Some(0))
    );
    let id = job["id"].as_i64().unwrap();
    db(&url)
        .execute(
            "UPDATE mailrun.recurring_jobs SET created_at = $2 WHERE id = $1",
            &[&id, &utc(2025, 3, 1, 8, 30)],
        )
        .unwrap();
    for hour in 9..=14 {
        overlapping_ticks(&url, utc(2025, 3, 1, hour, 1));
    }
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 3);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.recurring_occurrences WHERE status = 'enqueued'"
        ),
        3
    );
    let list = json_out(&admin(&url, &["--json", "schedule", "list"]));
    assert_eq!(list[0]["runs"], 3, "{list}");
    assert_eq!(list[0]["finished"], true, "{list}");
    assert!(list[0]["next_run"].is_null(), "{list}");
    let table = stdout(&admin(&url, &["schedule", "list"]));
    assert!(
        table.contains("3/3") && table.contains("finished"),
        "{table}"
    );
    assert_status(
        &admin(
            &url,
            &[
                "schedule",
                "add",
                "--cron",
                "@daily",
                "--count",
                "0",
                "--template",
                path.to_str().unwrap(),
            ],
        ),
        64,
    );
}

#[test]
fn until_ends_a_job_after_its_last_occurrence() {
    let url = init("recurring_until");
    let mut c = db(&url);
    let spec = CronSpec::parse("0 * * * *").unwrap();
    let id = recurring::add_limited(
        &mut c,
        &recurring::NewJob {
            name: None,
            spec: &spec,
            template: &template(),
            max_lateness: Duration::hours(24),
        },
        &recurring::RunLimits {
            count: None,
            until: Some(Utc::now() + Duration::days(1)),
        },
    )
    .unwrap();
    // Moved into the past so the ticks can be simulated: created 08:30, until 11:30.
    c.execute(
        "UPDATE mailrun.recurring_jobs SET created_at = $2, until = $3 WHERE id = $1",
        &[&id, &utc(2025, 3, 1, 8, 30), &utc(2025, 3, 1, 11, 30)],
    )
    .unwrap();
    for hour in 9..=14 {
        overlapping_ticks(&url, utc(2025, 3, 1, hour, 1));
    }
    let times: Vec<DateTime<Utc>> = c
        .query(
            "SELECT occurrence_at FROM mailrun.recurring_occurrences
             WHERE status = 'enqueued' AND message_id IS NOT NULL ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        times,
        vec![
            utc(2025, 3, 1, 9, 0),
            utc(2025, 3, 1, 10, 0),
            utc(2025, 3, 1, 11, 0)
        ]
    );
    let job = recurring::find(&mut c, &id.to_string()).unwrap();
    assert!(job.finished() && job.next_run().is_none());
    let past = admin(
        &url,
        &[
            "schedule",
            "add",
            "--cron",
            "@daily",
            "--until",
            "2001-01-01T00:00:00Z",
            "--template",
            "/dev/null",
        ],
    );
    assert_status(&past, 65);
}

/// Applications that use the database directly add jobs with mailrun.add_recurring_job;
/// bad input is refused with the procedure's words and stores nothing.
#[test]
fn the_sql_procedure_adds_recurring_jobs_and_refuses_bad_ones() {
    let url = init("recurring_sql");
    let mut c = db(&url);
    let id: i64 = c
        .query_one(
            "SELECT mailrun.add_recurring_job('0 9 * * MON', $1, 'Europe/Berlin', 'sql-job', 2)",
            &[&template()],
        )
        .unwrap()
        .get(0);
    let job = recurring::find(&mut c, "sql-job").unwrap();
    assert_eq!(
        (job.id, job.max_runs, job.time_zone.as_str()),
        (id, Some(2), "Europe/Berlin")
    );
    assert!(job.next_run().is_some());
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.messages"),
        0,
        "the trial enqueue stayed"
    );
    let mut refused = |sql: &str, template: Value| -> String {
        let e = c.query_one(sql, &[&template]).unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(db.code().code(), "22023", "{}", db.message());
        db.message().to_string()
    };
    let mut no_from = template();
    no_from.as_object_mut().unwrap().remove("from");
    let m = refused("SELECT mailrun.add_recurring_job('@daily', $1)", no_from);
    assert!(m.starts_with("template: "), "{m}");
    let mut with_send_at = template();
    with_send_at["send_at"] = json!("2030-01-01T00:00:00Z");
    assert!(refused(
        "SELECT mailrun.add_recurring_job('@daily', $1)",
        with_send_at
    )
    .contains("per occurrence"));
    assert!(refused(
        "SELECT mailrun.add_recurring_job('@daily', $1, 'Mars/Olympus')",
        template()
    )
    .contains("time zone"));
    assert!(refused(
        "SELECT mailrun.add_recurring_job('every day', $1)",
        template()
    )
    .contains("cron spec"));
    assert!(refused(
        "SELECT mailrun.add_recurring_job('@daily', $1, 'UTC', NULL, NULL, now() - interval '1 day')",
        template()
    )
    .contains("past"));
    assert!(refused(
        "SELECT mailrun.add_recurring_job('@daily', $1, 'UTC', 'sql-job')",
        template()
    )
    .contains("exists already"));
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_jobs"),
        1
    );
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
}
