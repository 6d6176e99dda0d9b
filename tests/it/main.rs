//! The integration tests: one binary, a module per area (docs/testing.md). They run the
//! real binaries against a private PostgreSQL cluster, real SMTP servers, web servers and
//! a SOAP client that mailrun did not write; `common` holds the harness they share.

mod common;

mod admin;
mod api;
mod clients;
mod conformance;
mod core_dumps;
mod correctness;
mod db_tls;
mod dispatcher;
mod dispatcher_runner;
mod e2e;
mod failover;
mod fault_table;
mod faults;
mod imports;
mod lifetime;
mod listing;
mod manpages;
mod packaging;
mod php_runner;
mod pooler;
mod protocol;
mod queue;
mod quotas;
mod recurring;
mod report;
mod runner;
mod runner_e2e;
mod runner_smtp;
mod schema;
mod self_update;
mod status_page;
mod webhooks;
mod wire;

/// The harness itself works: the private cluster starts and hands out fresh databases.
#[test]
fn private_cluster_gives_fresh_databases() {
    let cluster = common::cluster();
    let a = cluster.fresh_db("harness_a");
    let b = cluster.fresh_db("harness_b");
    assert_ne!(a, b);
    let mut client = postgres::Client::connect(&a, postgres::NoTls).expect("connect");
    let row = client.query_one("SELECT current_database()", &[]).unwrap();
    let name: String = row.get(0);
    assert!(a.ends_with(&name));
}

/// The harness reads test servers' record files while they append: a line caught half
/// written is left for the next read (CI once panicked on one mid-message).
#[test]
fn record_reader_leaves_a_half_written_line_for_the_next_read() {
    let dir = common::temp_dir();
    let record = dir.path().join("record.jsonl");
    common::write(&record, "{\"kind\":\"a\"}\n{\"kind\":\"mess");
    assert_eq!(common::complete_lines(&record), vec!["{\"kind\":\"a\"}"]);
    common::write(&record, "{\"kind\":\"a\"}\n{\"kind\":\"message\"}\n");
    assert_eq!(common::complete_lines(&record).len(), 2);
    common::write(&record, "");
    assert!(common::complete_lines(&record).is_empty());
}
