//! Failover between a primary and a streaming standby (issue 19): every dispatcher
//! command is given both hosts with `target_session_attrs=read-write`. Mid-run the
//! primary is killed (`pg_ctl -m immediate`); while only the standby is up, writes exit
//! 69 "retry later" naming the standby that answered, and the read-only commands and the
//! status page work against it; then it is promoted and the run finishes. Checked:
//! nothing lost, no duplicate beyond interrupted batches, and no command ever exited 70.
//! Replication is synchronous (`synchronous_standby_names = '*'`), as a setup that must
//! lose no acknowledged result has it.
use crate::common;
use crate::common::pipeline;
use crate::common::web;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::smtp::{SmtpServer, SmtpServerOptions};
use pipeline::{Db, RunnerNode};

/// Exit codes a command may end with during a failover: done, no work, unavailable,
/// temporary. Never 70.
const RETRY_LATER_OR_DONE: &[i32] = &[0, 3, 69, 75];

/// A standby made with pg_basebackup from `primary`, started on a port of its own;
/// stopped when dropped.
struct Standby {
    cluster: common::PgCluster,
    _root: tempfile::TempDir,
}

impl Standby {
    fn start(primary: &common::PgCluster) -> Standby {
        let root = tempfile::Builder::new()
            .prefix("mailrun-test-pg-standby-")
            .tempdir()
            .expect("temp dir");
        if common::is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(root.path())
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let data_dir = root.path().join("data");
        let out = common::pg_command("pg_basebackup")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-R", "-X", "stream", "-D"])
            .arg(&data_dir)
            .output()
            .expect("pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = common::PgCluster {
            port: common::free_port(),
            data_dir,
        };
        cluster.start();
        Standby {
            cluster,
            _root: root,
        }
    }

    fn promote(&self) {
        let out = common::pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster.data_dir)
            .args(["-w", "promote"])
            .output()
            .expect("pg_ctl promote");
        assert!(
            out.status.success(),
            "promote: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = common::pg_command("pg_ctl")
            .arg("-D")
            .arg(&self.cluster.data_dir)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// A raw HTTP/1.0 GET on 127.0.0.1:port: (status code, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[track_caller]
fn assert_not_internal(what: &str, out: &std::process::Output) {
    let code = out.status.code().unwrap_or(-1);
    assert!(
        RETRY_LATER_OR_DONE.contains(&code),
        "{what} exited {code}\n{}",
        common::stderr(out)
    );
}

#[test]
fn primary_killed_and_standby_promoted_mid_run_loses_nothing_and_nothing_exits_70() {
    let n: i64 = 1500;
    let primary_own = common::PrivateCluster::start();
    let primary = &primary_own.cluster;
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let direct = primary.fresh_db("failover");
    let dbname = direct.rsplit('/').next().unwrap().to_string();
    let db = Db::new(direct.clone(), smtp.port);
    let standby = Standby::start(primary);
    // Synchronous from now on: a result acknowledged to a runner is on the standby too.
    // (The test clusters run with synchronous_commit=off on the command line; the
    // database's own setting overrides it.)
    primary.configure(&[("synchronous_standby_names", "*")]);
    db.client()
        .batch_execute(&format!(
            "ALTER DATABASE {dbname} SET synchronous_commit = 'on'"
        ))
        .expect("synchronous_commit");
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{dbname}?target_session_attrs=read-write&connect_timeout=5",
        primary.port, standby.cluster.port
    );
    let standby_only = format!(
        "postgres://postgres@127.0.0.1:{}/{dbname}",
        standby.cluster.port
    );

    let listen_port = common::free_port();
    let logs = common::temp_dir();
    let mut listen = common::command(pipeline::DISPATCH_CGI)
        .args(["--database-url", &both])
        .args(["--listen", &format!("127.0.0.1:{listen_port}")])
        .args(["--lease-seconds", "600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(logs.path().join("listen.log")).unwrap())
        .spawn()
        .expect("dispatch-cgi --listen");
    common::wait_for_listener(
        &format!("127.0.0.1:{listen_port}"),
        "dispatch-cgi --listen",
        Some(&mut listen),
        String::new,
    );
    let dispatcher_url = format!("http://127.0.0.1:{listen_port}/cgi-bin/dispatch-cgi");
    let runners: Vec<RunnerNode> = ["a", "b"]
        .iter()
        .map(|id| RunnerNode::init(id, &dispatcher_url))
        .collect();
    let servers: Vec<web::Lighttpd> = runners.iter().map(RunnerNode::serve).collect();
    for (runner, server) in runners.iter().zip(&servers) {
        db.add_runner(runner, &server.url("runner-cgi"), 50);
    }
    db.enqueue(n);
    let watch =
        pipeline::InterruptionWatch::start(runners.iter().map(|r| r.dir().to_path_buf()).collect());
    let sent = "SELECT count(*) FROM mailrun.messages WHERE state = 'sent'";

    // Cron: ticks (which wake the runners), until a part is sent.
    pipeline::wait_until(Duration::from_secs(600), "a part sent", || {
        assert_not_internal("dispatch-tick", &pipeline::tick(&both, &[]));
        std::thread::sleep(Duration::from_secs(1));
        db.count(sent) >= n / 4
    });

    let first_id = db.count("SELECT min(id) FROM mailrun.messages").to_string();
    // The primary dies. Writes now find only the standby: "retry later", naming it.
    let out = common::pg_command("pg_ctl")
        .arg("-D")
        .arg(&primary.data_dir)
        .args(["-m", "immediate", "-w", "stop"])
        .output()
        .expect("pg_ctl stop");
    assert!(out.status.success());
    let standby_host = format!("127.0.0.1:{}", standby.cluster.port);
    let out = pipeline::tick(&both, &[]);
    common::assert_status(&out, 69);
    let err = common::stderr(&out);
    assert!(
        err.contains("read-only") && err.contains(&standby_host),
        "{err}"
    );
    assert!(err.contains("retry later"), "{err}");
    // A write sent straight to the standby: 69, read-only, naming the host that answered.
    let out = common::admin(&standby_only, &["cancel", &first_id]);
    common::assert_status(&out, 69);
    let err = common::stderr(&out);
    assert!(
        err.contains("read-only") && err.contains(&standby_host),
        "{err}"
    );
    // Reading works on the standby: status, runner list, the status page.
    common::assert_status(&common::admin(&standby_only, &["status"]), 0);
    common::assert_status(&common::admin(&standby_only, &["runner", "list"]), 0);
    let page_port = common::free_port();
    let mut page = common::command(pipeline::DISPATCH_CGI)
        .args(["--database-url", &standby_only])
        .args(["--listen", &format!("127.0.0.1:{page_port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dispatch-cgi --listen on the standby");
    common::wait_for_listener(
        &format!("127.0.0.1:{page_port}"),
        "status page",
        Some(&mut page),
        String::new,
    );
    let (code, body) = http_get(page_port, "/cgi-bin/dispatch-cgi");
    let _ = page.kill();
    let _ = page.wait();
    assert_eq!(code, 200, "status page on the standby: {body}");
    // Runner cycles meanwhile end with "retry later", keeping their results.
    for runner in &runners {
        assert_not_internal("runner-admin cycle", &runner.cycle(20));
    }

    // Promotion: the same URL now finds a writable server and the run completes.
    standby.promote();
    let mut rounds = 0;
    pipeline::wait_until(Duration::from_secs(600), "everything sent", || {
        rounds += 1;
        assert_not_internal("dispatch-tick", &pipeline::tick(&both, &[]));
        if rounds % 5 == 0 {
            for runner in &runners {
                assert_not_internal("runner-admin cycle", &runner.cycle(30));
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        standby_count(&standby_only, sent) == n
    });
    pipeline::wait_until(Duration::from_secs(300), "runners idle", || {
        for runner in runners.iter().filter(|r| !r.leftovers().is_empty()) {
            assert_not_internal("runner-admin cycle", &runner.cycle(30));
        }
        runners.iter().all(|r| r.leftovers().is_empty())
    });
    let _ = listen.kill();
    let _ = listen.wait();

    let interrupted = watch.finish();
    let promoted = Db {
        url: standby_only.clone(),
    };
    pipeline::assert_all_delivered(&promoted, &smtp, interrupted.len());
    let log = std::fs::read_to_string(logs.path().join("listen.log")).unwrap_or_default();
    assert!(
        !log.contains("Internal"),
        "dispatch-cgi answered Internal faults:\n{log}"
    );
}

fn standby_count(url: &str, sql: &str) -> i64 {
    postgres::Client::connect(url, postgres::NoTls)
        .expect("connect to the promoted standby")
        .query_one(sql, &[])
        .expect(sql)
        .get(0)
}
