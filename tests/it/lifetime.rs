//! Runners and accounts over their lifetime (issue 21, item 6): `runner revoke` and
//! `runner remove` re-queue a dead runner's batch at once, `account remove` refuses while
//! anything uses the account unless `--to` moves it.

use crate::common::pipeline::{self, Db, RunnerNode};
use crate::common::smtp::{SmtpServer, SmtpServerOptions};
use crate::common::{self, admin, assert_status, json_out};

/// A runner leases a batch and dies; `runner revoke` returns the batch to the queue at
/// once (the lease is 600 s), and after one tick another runner's single cycle delivers
/// everything. The revoked runner is refused; when it is enabled again its late reports
/// are recorded as late and change nothing.
#[test]
fn a_revoked_runners_batch_is_delivered_by_another_runner_within_one_tick() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("lifetime_revoke"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let url = dispatcher.url("dispatch-cgi");
    let dead = RunnerNode::init("dead", &url);
    let other = RunnerNode::init("other", &url);
    db.add_runner(&dead, "http://127.0.0.1:9/dead", 5);
    db.add_runner(&other, "http://127.0.0.1:9/other", 50);
    db.enqueue(20);
    assert_status(&dead.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    let leased = "SELECT count(*) FROM mailrun.messages WHERE lease_runner = 'dead'";
    assert_eq!(db.count(leased), 5);

    let out = admin(&db.url, &["--json", "runner", "revoke", "dead"]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["requeued"], 5);
    assert_eq!(db.count(leased), 0);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"),
        20
    );

    // One tick, one cycle of the other runner: all twenty delivered.
    let _ = pipeline::tick(&db.url, &[]);
    let out = other.cycle(60);
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'"),
        20
    );
    pipeline::assert_all_delivered(&db, &smtp, 0);

    // It was not dead after all: it sends what it held (the at-least-once case: the
    // duplicates of a runner that comes back), but its report is refused...
    let files = dead.leftovers();
    let sent = dead.run(pipeline::RUNNER_SEND, &["--verbose"]);
    assert_eq!(
        sent.status.code(),
        Some(0),
        "{files:?} {}",
        common::stderr(&sent)
    );
    let refused = dead.run(pipeline::RUNNER_POLL, &["--force"]);
    assert!(!refused.status.success(), "{}", common::stderr(&refused));
    assert!(
        common::stderr(&refused).contains("disabled"),
        "{}",
        common::stderr(&refused)
    );
    // ...and once it is enabled again its reports are recorded as late; every message
    // stays sent once.
    assert_status(&admin(&db.url, &["runner", "enable", "dead"]), 0);
    // Nothing left to claim: "no work" (3), with its results acknowledged.
    let report = dead.run(pipeline::RUNNER_POLL, &["--force"]);
    assert_eq!(report.status.code(), Some(3), "{}", common::stderr(&report));
    assert!(!dead.leftovers().iter().any(|f| f.starts_with("outbox/")));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM mailrun.delivery_attempts WHERE runner_id = 'dead' AND late"
        ),
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'"),
        20
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE NOT late"),
        20
    );
}

#[test]
fn runner_remove_requeues_and_forgets_the_runner() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("lifetime_remove"), smtp.port);
    let dispatcher = pipeline::serve_dispatcher(&db.url, &[]);
    let gone = RunnerNode::init("gone", &dispatcher.url("dispatch-cgi"));
    db.add_runner(&gone, "http://127.0.0.1:9/gone", 3);
    db.enqueue(5);
    assert_status(&gone.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    assert_status(
        &admin(
            &db.url,
            &["quota", "set", "runner", "gone", "--per-hour", "100"],
        ),
        0,
    );
    let out = admin(&db.url, &["--json", "runner", "remove", "gone"]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["requeued"], 3);
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"),
        5
    );
    assert_eq!(db.count("SELECT count(*) FROM mailrun.runners"), 0);
    assert_eq!(db.count("SELECT count(*) FROM mailrun.quotas"), 0);
    // Its job runs and their leases go with it.
    assert_eq!(db.count("SELECT count(*) FROM mailrun.job_runs"), 0);
    assert_eq!(db.count("SELECT count(*) FROM mailrun.leases"), 0);
    // A request from it is now from an unknown key.
    let refused = gone.run(pipeline::RUNNER_POLL, &["--force"]);
    assert!(!refused.status.success());
    assert_status(&admin(&db.url, &["runner", "remove", "gone"]), 65);
    assert_status(&admin(&db.url, &["runner", "revoke", "gone"]), 65);
}

#[test]
fn account_remove_refuses_while_used_unless_moved() {
    let db = Db::new(common::cluster().fresh_db("lifetime_account"), 2525);
    for name in ["backup", "spare"] {
        assert_status(
            &admin(
                &db.url,
                &[
                    "account",
                    "add",
                    name,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "2526",
                    "--security",
                    "none",
                ],
            ),
            0,
        );
    }
    db.enqueue(2);
    let mut c = db.client();
    c.execute(
        "SELECT mailrun.cancel((SELECT min(id) FROM mailrun.messages))",
        &[],
    )
    .unwrap();
    c.execute(
        "SELECT mailrun.enqueue('{\"from\": \"a@example.org\", \"to\": \"b@example.org\",
                                  \"text\": \"t\", \"accounts\": [\"local\", \"backup\"]}')",
        &[],
    )
    .unwrap();
    assert_status(
        &admin(&db.url, &["account-group", "set", "both", "local,backup"]),
        0,
    );
    let before = db.count("SELECT count(*) FROM mailrun.smtp_accounts");

    let out = admin(&db.url, &["account", "remove", "local"]);
    assert_status(&out, 65);
    assert!(
        common::stderr(&out).contains("2 unfinished and 1 finished"),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.smtp_accounts"),
        before
    );
    assert_status(
        &admin(&db.url, &["account", "remove", "local", "--to", "nosuch"]),
        65,
    );
    assert_status(
        &admin(&db.url, &["account", "remove", "local", "--to", "local"]),
        65,
    );
    assert_status(&admin(&db.url, &["account", "remove", "nosuch"]), 65);

    let out = admin(
        &db.url,
        &["--json", "account", "remove", "local", "--to", "backup"],
    );
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["moved_messages"], 3);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM mailrun.messages m JOIN mailrun.smtp_accounts a
              ON a.id = m.account_id WHERE a.name = 'backup'"
        ),
        3
    );
    // The failover list [local, backup] became [backup], not [backup, backup].
    assert_eq!(
        db.count(
            "SELECT max(cardinality(account_ids))::bigint FROM mailrun.messages
              WHERE cardinality(account_ids) > 0"
        ),
        1
    );
    let groups: Vec<String> = c
        .query_one(
            "SELECT accounts FROM mailrun.account_groups WHERE name = 'both'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(groups, vec!["backup".to_string()]);
    // An unused account goes at once.
    assert_status(&admin(&db.url, &["account", "remove", "spare"]), 0);
    assert_eq!(db.count("SELECT count(*) FROM mailrun.smtp_accounts"), 1);
}
