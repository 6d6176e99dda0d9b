//! The real `dispatch-admin` binary as an operator runs it, against the private
//! PostgreSQL cluster and Postfix's smtp-sink.
use crate::common;
use crate::common::admin;
use crate::common::smtp_sink;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};

use common::{assert_status, stderr, stdout};
use postgres::{Client, NoTls};
use serde_json::Value;

fn admin_stdin(url: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dispatch-admin");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn json_out(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

/// A database with the schema and one account "main" (no login).
fn init(name: &str) -> String {
    let url = common::cluster().fresh_db(name);
    let out = admin(&url, &["init"]);
    assert_status(&out, 0);
    assert_eq!(stdout(&out), "", "init prints nothing on success");
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

fn count(url: &str, sql: &str) -> i64 {
    Client::connect(url, NoTls)
        .unwrap()
        .query_one(sql, &[])
        .unwrap()
        .get(0)
}

#[test]
fn help_lists_exit_codes_and_retry_defaults() {
    let out = common::run(common::command(env!("CARGO_BIN_EXE_dispatch-admin")).arg("--help"));
    assert_status(&out, 0);
    let help = stdout(&out);
    for want in [
        "Exit status:",
        "75",
        "backoff_min_seconds = 300",
        "4000",
        "432000",
        "MAILRUN_DATABASE_URL",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
    // A subcommand's help stands alone: no "see below" pointing at text it lacks, and
    // every option says what it is.
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin")).args(["enqueue", "--help"]),
    );
    assert_status(&out, 0);
    let help = stdout(&out);
    assert!(!help.contains("see below"), "{help}");
    for line in help.lines().filter(|l| l.trim_start().starts_with("--")) {
        let described = line
            .trim()
            .split_once("  ")
            .is_some_and(|(_, text)| !text.trim().is_empty());
        assert!(described, "option without help: {line:?}\n{help}");
    }
}

#[test]
fn init_and_migrate_are_idempotent_and_refuse_a_newer_schema() {
    let url = common::initialised_db("admin_init");
    assert_status(&admin(&url, &["init"]), 0);
    let out = admin(&url, &["migrate", "--json"]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["applied"], serde_json::json!([]));

    Client::connect(&url, NoTls)
        .unwrap()
        .batch_execute("INSERT INTO mailrun.schema_migrations (version, name) VALUES (99, 'x')")
        .unwrap();
    let out = admin(&url, &["migrate"]);
    assert_status(&out, 78);
    assert!(stderr(&out).contains("newer"), "{}", stderr(&out));
    let out = admin(&url, &["status"]);
    assert_status(&out, 78);
}

#[test]
fn commands_need_an_initialised_database() {
    let url = common::cluster().fresh_db("admin_noinit");
    let out = admin(&url, &["status"]);
    assert_status(&out, 78);
    assert!(
        stderr(&out).contains("dispatch-admin init"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn database_url_lookup_and_connection_errors() {
    // No URL anywhere.
    let dir = common::temp_dir();
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .arg("status"),
    );
    if !Path::new("/etc/mailrun/dispatcher.toml").exists() {
        assert_status(&out, 78);
        assert!(stderr(&out).contains("no database URL"), "{}", stderr(&out));
    }

    // From the environment, then from a config file.
    let url = init("admin_lookup");
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
            .env("MAILRUN_DATABASE_URL", &url)
            .args(["status", "--json"]),
    );
    assert_status(&out, 0);
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(&config, format!("database_url = \"{url}\"\n")).unwrap();
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
            .env("MAILRUN_CONFIG", &config)
            .args(["status", "--json"]),
    );
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["counts"]["queued"], 0);

    // A named config file that does not exist, or does not parse.
    let out = common::run(common::command(env!("CARGO_BIN_EXE_dispatch-admin")).args([
        "--config",
        "/nonexistent/dispatcher.toml",
        "status",
    ]));
    assert_status(&out, 78);
    std::fs::write(&config, "database_url = 1\n").unwrap();
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
            .arg("--config")
            .arg(&config)
            .arg("status"),
    );
    assert_status(&out, 78);

    // A server that is not there: unavailable, and the password is not shown.
    let port = common::free_port();
    let out = admin(
        &format!("postgres://mailrun:s3cretpw@127.0.0.1:{port}/mailrun?connect_timeout=5"),
        &["status"],
    );
    assert_status(&out, 69);
    assert!(!stderr(&out).contains("s3cretpw"), "{}", stderr(&out));
}

#[test]
fn a_reader_that_goes_away_is_not_a_crash() {
    // `dispatch-admin ... | head`: stdout is a pipe nobody reads any more. The command
    // exits 0 quietly instead of panicking with a backtrace.
    let url = init("admin_broken_pipe");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
        .env("RUST_BACKTRACE", "1")
        .arg("--database-url")
        .arg(&url)
        .args(["--json", "reply-rule", "list"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_status(&out, 0);
    assert_eq!(stderr(&out), "");
}

#[test]
fn a_refused_login_or_missing_database_is_a_config_error_naming_the_server() {
    // A server that answers but refuses us: retrying will not help (78, not 69), and the
    // message says which database on which server, never the password.
    let url = common::cluster().url("no_such_database_here");
    let with_password = url.replacen("postgres@", "postgres:s3cretpw@", 1);
    assert_ne!(with_password, url, "cluster URL shape changed: {url}");
    for cmd in [
        env!("CARGO_BIN_EXE_dispatch-admin"),
        env!("CARGO_BIN_EXE_dispatch-tick"),
    ] {
        let mut command = common::command(cmd);
        command.arg("--database-url").arg(&with_password);
        if cmd.ends_with("dispatch-admin") {
            command.arg("status");
        }
        let out = common::run(&mut command);
        assert_status(&out, 78);
        let err = stderr(&out);
        assert!(
            err.contains("cannot connect to the database no_such_database_here on 127.0.0.1:"),
            "{err}"
        );
        assert!(err.contains("does not exist"), "{err}");
        assert!(!err.contains("s3cretpw"), "{err}");
    }
}

#[test]
fn runners_keys_are_shown_once_and_rotate() {
    let url = init("admin_runners");
    let out = admin(
        &url,
        &[
            "runner",
            "add",
            "r1",
            "--endpoint",
            "https://runner1.example.net/cgi-bin/runner-cgi",
            "--dispatcher-url",
            "https://d.example.net/cgi-bin/dispatch-cgi",
        ],
    );
    assert_status(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("runner-admin init --dispatcher-url https://d.example.net/cgi-bin/dispatch-cgi --runner-id r1"), "{text}");
    let key_line = text.lines().find(|l| l.starts_with("key:")).unwrap();
    let key = key_line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(key.len(), 64);

    let out = admin(&url, &["runner", "list"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("r1"));
    assert!(!stdout(&out).contains(&key), "list must not show the key");
    // A long last status (a fault's text) cannot push the endpoint out of its column.
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.execute(
        "UPDATE mailrun.runners SET last_status = $1 WHERE id = 'r1'",
        &[&"fault: refused: BadSignature: unknown key id \"0123456789abcdef\""],
    )
    .unwrap();
    let out = admin(&url, &["runner", "list"]);
    let table = stdout(&out);
    let header = table.lines().next().unwrap();
    let row = table.lines().find(|l| l.starts_with("r1 ")).unwrap();
    assert!(header.ends_with("LAST STATUS"), "{table}");
    assert_eq!(
        header.find("ENDPOINT"),
        row.find("https://runner1.example.net"),
        "{table}"
    );
    let out = admin(&url, &["runner", "list", "--json"]);
    assert!(!stdout(&out).contains(&key));
    assert_eq!(json_out(&out)[0]["enabled"], true);

    // Same id again, bad id, bad endpoint: refused, nothing changes.
    for args in [
        vec!["runner", "add", "r1", "--endpoint", "https://x.example"],
        vec!["runner", "add", "bad id", "--endpoint", "https://x.example"],
        vec!["runner", "add", "r2", "--endpoint", "ftp://x.example"],
        vec![
            "runner",
            "add",
            "r3",
            "--endpoint",
            "https://x.example",
            "--batch-size",
            "0",
        ],
        vec!["runner", "disable", "nobody"],
    ] {
        let out = admin(&url, &args);
        assert_status(&out, 65);
    }
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.runners"), 1);

    let out = admin(&url, &["runner", "rotate-key", "r1", "--json"]);
    assert_status(&out, 0);
    let rotated = json_out(&out);
    assert_ne!(rotated["key"].as_str().unwrap(), key);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.runners WHERE previous_key_id IS NOT NULL"
        ),
        1
    );
    assert_status(&admin(&url, &["runner", "confirm-key", "r1"]), 0);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.runners WHERE previous_key_id IS NOT NULL"
        ),
        0
    );

    assert_status(&admin(&url, &["runner", "disable", "r1"]), 0);
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.runners WHERE enabled"),
        0
    );
    assert_status(&admin(&url, &["runner", "enable", "r1"]), 0);
    assert_status(
        &admin(&url, &["runner", "set", "r1", "--batch-size", "7"]),
        0,
    );
    assert_eq!(
        count(&url, "SELECT batch_size::bigint FROM mailrun.runners"),
        7
    );
}

#[test]
fn accounts_hide_passwords_and_test_logs_in() {
    let url = init("admin_accounts");
    let sink = smtp_sink::SmtpSink::start();
    let dir = common::temp_dir();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "correct horse battery\n").unwrap();
    let port = sink.port.to_string();
    let out = admin(
        &url,
        &[
            "account",
            "add",
            "sink",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            "none",
            "--username",
            "mailer",
            "--password-file",
            pw.to_str().unwrap(),
        ],
    );
    assert_status(&out, 0);
    let out = admin(&url, &["account", "list"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("sink"));
    assert!(stdout(&out).contains("set"));
    assert!(!stdout(&out).contains("correct horse"));
    let out = admin(&url, &["account", "list", "--json"]);
    assert!(!stdout(&out).contains("correct horse"));

    let out = admin(&url, &["account", "test", "sink"]);
    assert_status(&out, 0);
    assert!(
        stdout(&out).contains("logged in as mailer"),
        "{}",
        stdout(&out)
    );

    // Username without a password, and a server that is not there.
    let out = admin(
        &url,
        &[
            "account",
            "add",
            "nopw",
            "--host",
            "127.0.0.1",
            "--port",
            "25",
            "--security",
            "none",
            "--username",
            "u",
        ],
    );
    assert_status(&out, 64);
    // A login in clear to another host needs an explicit opt-in.
    let out = admin_stdin(
        &url,
        &[
            "account",
            "add",
            "remote",
            "--host",
            "smtp.example.net",
            "--port",
            "25",
            "--security",
            "none",
            "--username",
            "u",
            "--password-file",
            "-",
        ],
        b"pw\n",
    );
    assert_status(&out, 64);
    assert!(stderr(&out).contains("starttls"), "{}", stderr(&out));
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.smtp_accounts WHERE name = 'remote'"
        ),
        0
    );
    let closed = common::free_port().to_string();
    let out = admin_stdin(
        &url,
        &[
            "account",
            "add",
            "down",
            "--host",
            "127.0.0.1",
            "--port",
            &closed,
            "--security",
            "none",
            "--username",
            "u",
            "--password-file",
            "-",
        ],
        b"correct horse battery\n",
    );
    assert_status(&out, 0);
    let out = admin(&url, &["account", "test", "down"]);
    assert_status(&out, 69);
    assert!(!stderr(&out).contains("correct horse"), "{}", stderr(&out));
    // The cause is said once, not repeated by each layer of the error chain.
    let err = stderr(&out);
    assert_eq!(err.matches("Connection refused").count(), 1, "{err}");
    assert!(!stdout(&out).contains("correct horse"));

    // A server that offers no AUTH to a login account: a settings problem (78) with a
    // hint, not "internal client error" and 69.
    let no_auth = common::smtp::SmtpServer::start(Default::default());
    let port = no_auth.port.to_string();
    let out = admin_stdin(
        &url,
        &[
            "account",
            "add",
            "noauth",
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--security",
            "none",
            "--username",
            "u",
            "--password-file",
            "-",
        ],
        b"correct horse battery\n",
    );
    assert_status(&out, 0);
    let out = admin(&url, &["account", "test", "noauth"]);
    assert_status(&out, 78);
    let err = stderr(&out);
    assert!(
        err.contains("no login method") && err.contains("--security"),
        "{err}"
    );
    assert!(!err.contains("correct horse"), "{err}");
}

/// Runners never send a password in clear to a host that is not loopback (src/smtp.rs),
/// so `account add` refuses such an account even with --insecure-plain-auth (its mail
/// would wait until it expired); one stored earlier is flagged by `account list` and
/// `status`, and `account test` does not send its password.
#[test]
fn a_clear_text_login_to_a_remote_host_is_refused_as_the_runner_refuses_it() {
    let url = init("admin_plain_auth");
    let add = |name: &str, host: &str, extra: &[&str]| {
        let args = [
            &[
                "account",
                "add",
                name,
                "--host",
                host,
                "--port",
                "25",
                "--security",
                "none",
                "--username",
                "u",
                "--password-file",
                "-",
            ][..],
            extra,
        ]
        .concat();
        admin_stdin(&url, &args, b"canary-pw-913\n")
    };
    let out = add("remote", "smtp.example.net", &["--insecure-plain-auth"]);
    assert_status(&out, 64);
    let err = stderr(&out);
    assert!(
        err.contains("smtp.example.net") && err.contains("in clear") && err.contains("starttls"),
        "{err}"
    );
    let out = add("remote-ip", "192.0.2.7", &["--insecure-plain-auth"]);
    assert_status(&out, 64);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.smtp_accounts WHERE name LIKE 'remote%'"
        ),
        0
    );
    // Loopback (as the runner counts it: 127.0.0.0/8, ::1, localhost) needs no opt-in.
    for (name, host) in [
        ("lo2", "127.0.0.2"),
        ("lo6", "::1"),
        ("lohost", "LocalHost"),
    ] {
        assert_status(&add(name, host, &[]), 0);
    }
    assert_status(&add("lo-flag", "127.0.0.1", &["--insecure-plain-auth"]), 0);

    // An account stored before this check (or by SQL).
    Client::connect(&url, NoTls)
        .unwrap()
        .execute(
            "INSERT INTO mailrun.smtp_accounts (name, host, port, security, username, password)
             VALUES ('legacy', 'smtp.example.net', 25, 'none', 'u', 'canary-pw-913')",
            &[],
        )
        .unwrap();
    let out = admin(&url, &["account", "list"]);
    assert_status(&out, 0);
    let text = stdout(&out);
    let legacy = text.lines().find(|l| l.starts_with("legacy")).unwrap();
    assert!(legacy.contains("UNUSABLE"), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("lo2") && l.contains("UNUSABLE")),
        "{text}"
    );
    let out = admin(&url, &["account", "list", "--json"]);
    let list = json_out(&out);
    let by_name = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .cloned()
            .unwrap()
    };
    assert!(
        by_name("legacy")["problem"]
            .as_str()
            .is_some_and(|p| p.contains("in clear")),
        "{list}"
    );
    assert_eq!(by_name("lo2")["problem"], Value::Null);
    let out = admin(&url, &["status"]);
    assert_status(&out, 0);
    assert!(
        stdout(&out).contains("account legacy") && stdout(&out).contains("in clear"),
        "{}",
        stdout(&out)
    );
    let out = admin(&url, &["status", "--json"]);
    let problems = json_out(&out)["account_problems"].clone();
    assert_eq!(problems.as_array().map(Vec::len), Some(1), "{problems}");
    assert_eq!(problems[0]["account"], "legacy");
    // account test refuses before connecting, as the runner would.
    let out = admin(&url, &["account", "test", "legacy"]);
    assert_status(&out, 78);
    assert!(stderr(&out).contains("in clear"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("canary-pw-913"));
    assert!(!stdout(&out).contains("canary-pw-913"));
}

#[test]
fn enqueue_from_flags_with_config_defaults_then_show() {
    let url = init("admin_enqueue");
    let dir = common::temp_dir();
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(
        &config,
        "[defaults]\nfrom = \"News <news@example.com>\"\naccount = \"main\"\n",
    )
    .unwrap();
    let attachment = dir.path().join("report.csv");
    std::fs::write(&attachment, "a,b\n1,2\n").unwrap();
    let out = admin(
        &url,
        &[
            "--config",
            config.to_str().unwrap(),
            "enqueue",
            "--to",
            "ann@example.org",
            "--cc",
            "Bob <bob@example.org>",
            "--subject",
            "Report",
            "--text",
            "See attached.",
            "--header",
            "X-Campaign: 42",
            "--attach",
            attachment.to_str().unwrap(),
        ],
    );
    assert_status(&out, 0);
    let id: i64 = stdout(&out).trim().parse().expect("enqueue prints the id");

    let out = admin(&url, &["show", &id.to_string(), "--json"]);
    assert_status(&out, 0);
    let shown = json_out(&out);
    assert_eq!(shown["message"]["from"], "News <news@example.com>");
    assert_eq!(shown["message"]["state"], "queued");
    assert_eq!(shown["message"]["cc"][0], "Bob <bob@example.org>");
    assert!(shown["message"]["message_id"]
        .as_str()
        .unwrap()
        .ends_with("@example.com>"));
    let out = admin(&url, &["show", &id.to_string()]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("attempts (0)"));
    assert_status(&admin(&url, &["show", "999999"]), 65);

    let out = admin(&url, &["status"]);
    assert_status(&out, 0);
    assert!(
        stdout(&out).contains("oldest due: message"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn enqueue_refuses_bad_input_and_changes_nothing() {
    let url = init("admin_enqueue_bad");
    let cases: Vec<Vec<&str>> = vec![
        vec!["enqueue", "--to", "ann@example.org", "--text", "x"],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "not-an-address",
            "--text",
            "x",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org junk",
            "--text",
            "x",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--subject",
            "hi\r\nBcc: victim@example.org",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--header",
            "X-A: 1\nBcc: victim@example.org",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--header",
            "no colon",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--account",
            "nope",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--send-at",
            "next tuesday",
        ],
        vec![
            "enqueue",
            "--from",
            "me@example.com",
            "--to",
            "a@example.org",
            "--text",
            "x",
            "--attach",
            "/nonexistent/file.pdf",
        ],
    ];
    for args in cases {
        let out = admin(&url, &args);
        assert_status(&out, 65);
        assert!(!stderr(&out).is_empty());
    }
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
}

#[test]
fn enqueue_an_eml_file() {
    let url = init("admin_eml");
    let dir = common::temp_dir();
    let eml = dir.path().join("m.eml");
    std::fs::write(
        &eml,
        "From: Shop <shop@example.com>\r\nTo: a@example.org, \"Doe, Jane\" <jane@example.org>\r\n\
         Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nMessage-ID: <order-1@example.com>\r\n\
         X-Order: 1\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\nHallo J=C3=BCrgen,\r\nbye\r\n",
    )
    .unwrap();
    let out = admin(&url, &["enqueue", "--eml", eml.to_str().unwrap(), "--json"]);
    assert_status(&out, 0);
    let id = json_out(&out)["id"].as_i64().unwrap();
    let mut c = Client::connect(&url, NoTls).unwrap();
    let row = c
        .query_one(
            "SELECT subject, to_addrs, message_id_header, text_body, headers::text
             FROM mailrun.messages WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Grüße");
    assert_eq!(
        row.get::<_, Vec<String>>(1),
        vec!["a@example.org", "\"Doe, Jane\" <jane@example.org>"]
    );
    assert_eq!(row.get::<_, String>(2), "<order-1@example.com>");
    assert_eq!(row.get::<_, String>(3), "Hallo Jürgen,\nbye\n");
    assert!(row.get::<_, String>(4).contains("X-Order"));

    let multipart = dir.path().join("mp.eml");
    std::fs::write(
        &multipart,
        "From: a@example.com\nTo: b@example.org\nContent-Type: multipart/mixed; boundary=x\n\n--x\n",
    )
    .unwrap();
    let out = admin(&url, &["enqueue", "--eml", multipart.to_str().unwrap()]);
    assert_status(&out, 65);
    assert!(stderr(&out).contains("multipart"), "{}", stderr(&out));
}

/// A NUL character (valid JSON as `\u0000`, but PostgreSQL's jsonb cannot store it) or
/// bytes that are not UTF-8 are bad input: exit 65 naming the line or the field, never
/// the database's "internal error" 70.
#[test]
fn nul_characters_and_invalid_utf8_are_bad_data_not_internal_errors() {
    let url = init("admin_bad_bytes");
    let good = "{\"from\":\"news@example.com\",\"to\":\"a@example.org\",\"text\":\"ok\"}\n";
    let mut input = good.repeat(2).into_bytes();
    input.extend_from_slice(
        b"{\"from\":\"news@example.com\",\"to\":\"a@example.org\",\"subject\":\"a\\u0000b\",\"text\":\"x\"}\n",
    );
    // The NUL alone (the reported "db error: unsupported Unicode escape sequence").
    let out = admin_stdin(&url, &["enqueue", "--jsonl"], &input);
    assert_status(&out, 65);
    assert!(
        stderr(&out).contains("line 3: \"subject\""),
        "{}",
        stderr(&out)
    );
    input.extend_from_slice(
        b"{\"from\":\"news@example.com\",\"to\":\"a@example.org\",\"text\":\"Gr\xfc\xdfe\"}\n",
    );
    input.extend_from_slice(good.as_bytes());
    let out = admin_stdin(&url, &["enqueue", "--jsonl"], &input);
    assert_status(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("line 3") && err.contains("NUL"), "{err}");
    assert!(err.contains("line 4") && err.contains("UTF-8"), "{err}");
    assert!(err.contains("nothing enqueued"), "{err}");
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);
    let out = admin_stdin(
        &url,
        &["enqueue", "--jsonl", "--skip-invalid", "--json"],
        &input,
    );
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["enqueued"], 3);
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 3);

    // The same through the other inputs: a body file, stdin, an .eml file, a template.
    let dir = common::temp_dir();
    let nul_text = dir.path().join("nul.txt");
    std::fs::write(&nul_text, b"a\0b").unwrap();
    let latin1_text = dir.path().join("latin1.txt");
    std::fs::write(&latin1_text, b"Gr\xfc\xdfe").unwrap();
    let nul_eml = dir.path().join("nul.eml");
    std::fs::write(
        &nul_eml,
        b"From: a@example.com\r\nTo: b@example.org\r\nSubject: s\r\n\r\na\0b\r\n",
    )
    .unwrap();
    let nul_template = dir.path().join("nul.json");
    std::fs::write(
        &nul_template,
        b"{\"from\":\"news@example.com\",\"to\":\"a@example.org\",\"text\":\"a\\u0000b\"}",
    )
    .unwrap();
    let flags = [
        "enqueue",
        "--from",
        "me@example.com",
        "--to",
        "a@example.org",
    ];
    let cases: Vec<(Vec<&str>, &[u8], &str)> = vec![
        (
            [&flags[..], &["--text-file", nul_text.to_str().unwrap()]].concat(),
            b"",
            "NUL",
        ),
        (
            [&flags[..], &["--html-file", nul_text.to_str().unwrap()]].concat(),
            b"",
            "NUL",
        ),
        (
            [&flags[..], &["--text-file", latin1_text.to_str().unwrap()]].concat(),
            b"",
            "UTF-8",
        ),
        (
            [&flags[..], &["--text-file", "-"]].concat(),
            b"Gr\xfc\xdfe",
            "UTF-8",
        ),
        (
            vec!["enqueue", "--eml", nul_eml.to_str().unwrap()],
            b"",
            "NUL",
        ),
        (
            vec![
                "schedule",
                "add",
                "--cron",
                "@daily",
                "--template",
                nul_template.to_str().unwrap(),
            ],
            b"",
            "NUL",
        ),
    ];
    for (args, stdin, want) in cases {
        let out = admin_stdin(&url, &args, stdin);
        assert_status(&out, 65);
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 3);
    assert_eq!(
        count(&url, "SELECT count(*) FROM mailrun.recurring_jobs"),
        0
    );
}

/// Header text and bodies in other charsets are decoded with the charset they declare
/// (RFC 2047 encoded words, the Content-Type charset); raw 8-bit header bytes that are
/// not UTF-8 are refused naming the header, never stored mangled (U+FFFD).
#[test]
fn eml_charsets_are_decoded_or_refused_never_mangled() {
    let url = init("admin_eml_charsets");
    let dir = common::temp_dir();
    let enqueue = |name: &str, raw: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, raw).unwrap();
        admin(
            &url,
            &["enqueue", "--eml", path.to_str().unwrap(), "--json"],
        )
    };
    let stored = |out: &Output| -> (String, Option<String>, Option<String>) {
        assert_status(out, 0);
        let id = json_out(out)["id"].as_i64().unwrap();
        let row = Client::connect(&url, NoTls)
            .unwrap()
            .query_one(
                "SELECT subject, text_body, html_body FROM mailrun.messages WHERE id = $1",
                &[&id],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let head = "From: a@example.com\r\nTo: b@example.org\r\n";

    // Raw Latin-1 in a header: refused, naming the header.
    let out = enqueue(
        "latin1-subject.eml",
        &[head.as_bytes(), b"Subject: Gr\xfc\xdfe\r\n\r\nhi\r\n"].concat(),
    );
    assert_status(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("Subject") && err.contains("UTF-8"), "{err}");
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);

    // Raw UTF-8 in a header (RFC 6532) stays accepted.
    let out = enqueue(
        "utf8-subject.eml",
        &[head.as_bytes(), "Subject: Grüße\r\n\r\nhi\r\n".as_bytes()].concat(),
    );
    assert_eq!(stored(&out).0, "Grüße");

    // Encoded words in the charsets they declare.
    for (subject, want) in [
        ("=?ISO-8859-1?Q?Gr=FC=DFe?=", "Grüße"),
        ("=?latin1?B?R3L832Ug?=", "Grüße "),
        ("=?iso-8859-15?q?=A4_5?=", "€ 5"),
        ("=?windows-1252?Q?=80_=93ok=94?=", "€ “ok”"),
        ("=?us-ascii?Q?plain?=", "plain"),
        ("=?UTF-8?Q?=C3=BC?= =?utf-8?b?w58=?=", "üß"),
    ] {
        let out = enqueue(
            "encoded.eml",
            format!("{head}Subject: {subject}\r\n\r\nhi\r\n").as_bytes(),
        );
        assert_eq!(stored(&out).0, want, "{subject}");
    }
    // An unknown charset, or bytes the declared charset does not have: refused.
    for (subject, says) in [
        ("=?koi8-r?B?0NLJ18XU?=", "koi8-r"),
        ("=?us-ascii?Q?Gr=FC=DFe?=", "us-ascii"),
        ("=?utf-8?Q?Gr=FC=DFe?=", "utf-8"),
    ] {
        let out = enqueue(
            "bad-charset.eml",
            format!("{head}Subject: {subject}\r\n\r\nhi\r\n").as_bytes(),
        );
        assert_status(&out, 65);
        let err = stderr(&out);
        assert!(err.contains("Subject") && err.contains(says), "{err}");
    }

    // Bodies with the Content-Type charset: 8bit, quoted-printable and base64.
    let out = enqueue(
        "latin1-body.eml",
        &[
            head.as_bytes(),
            b"Subject: s\r\nContent-Type: text/plain; charset=\"ISO-8859-1\"\r\n\
              Content-Transfer-Encoding: 8bit\r\n\r\nGr\xfc\xdfe\r\n",
        ]
        .concat(),
    );
    assert_eq!(stored(&out).1.as_deref(), Some("Grüße\n"));
    let out = enqueue(
        "cp1252-body.eml",
        format!(
            "{head}Subject: s\r\nContent-Type: text/html; charset=windows-1252\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>=80 5</p>\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(stored(&out).2.as_deref(), Some("<p>€ 5</p>\n"));
    let out = enqueue(
        "latin9-body.eml",
        format!(
            "{head}Subject: s\r\nContent-Type: text/plain; charset=iso-8859-15\r\n\
             Content-Transfer-Encoding: base64\r\n\r\npCA1\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(stored(&out).1.as_deref(), Some("€ 5"));
    // A body that is not in its declared charset, or in an unknown one: refused.
    for (name, raw) in [
        (
            "utf8-body.eml",
            [
                head.as_bytes(),
                b"Subject: s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGr\xfc\xdfe\r\n",
            ]
            .concat(),
        ),
        (
            "unknown-body.eml",
            [
                head.as_bytes(),
                b"Subject: s\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nhi\r\n",
            ]
            .concat(),
        ),
    ] {
        let out = enqueue(name, &raw);
        assert_status(&out, 65);
        assert!(stderr(&out).contains("body"), "{name}: {}", stderr(&out));
    }
    let mangled = count(
        &url,
        "SELECT count(*) FROM mailrun.messages
         WHERE subject LIKE '%' || chr(65533) || '%' OR text_body LIKE '%' || chr(65533) || '%'",
    );
    assert_eq!(mangled, 0);
}

fn jsonl(n: usize) -> Vec<u8> {
    let mut s = String::with_capacity(n * 100);
    for i in 0..n {
        s.push_str(&format!(
            "{{\"from\":\"news@example.com\",\"to\":\"user{i}@example.org\",\"subject\":\"Issue {i}\",\"text\":\"Hello {i}\"}}\n"
        ));
    }
    s.into_bytes()
}

#[test]
fn bulk_enqueue_of_100k_messages_is_atomic() {
    let url = init("admin_bulk");
    let out = admin_stdin(&url, &["enqueue", "--jsonl", "--json"], &jsonl(100_000));
    assert_status(&out, 0);
    let v = json_out(&out);
    assert_eq!(v["enqueued"], 100_000);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"
        ),
        100_000
    );
    assert_eq!(
        count(
            &url,
            "SELECT count(DISTINCT message_id_header) FROM mailrun.messages"
        ),
        100_000
    );
}

#[test]
fn a_bad_line_refuses_the_bulk_unless_skip_invalid() {
    let url = init("admin_bulk_bad");
    let mut input = String::from_utf8(jsonl(300)).unwrap();
    input.push_str("{\"from\":\"news@example.com\",\"to\":\"broken\",\"text\":\"x\"}\n");
    input.push_str("not json at all\n");
    input.push_str(&String::from_utf8(jsonl(10)).unwrap());
    input.push_str("{\"from\":\"news@example.com\",\"to\":\"a@example.org\",\"text\":\"x\",\"account\":\"ghost\"}\n");
    let out = admin_stdin(&url, &["enqueue", "--jsonl"], input.as_bytes());
    assert_status(&out, 65);
    let err = stderr(&out);
    assert!(err.contains("line 301"), "{err}");
    assert!(err.contains("line 302"), "{err}");
    assert!(err.contains("line 313"), "{err}");
    assert!(err.contains("nothing enqueued"), "{err}");
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 0);

    let out = admin_stdin(
        &url,
        &["enqueue", "--jsonl", "--skip-invalid", "--json"],
        input.as_bytes(),
    );
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["enqueued"], 310);
    assert_eq!(json_out(&out)["skipped"].as_array().unwrap().len(), 3);
    assert!(stderr(&out).contains("skipped line 301"));
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 310);

    // Message flags do not mix with --jsonl.
    let out = admin_stdin(&url, &["enqueue", "--jsonl", "--to", "x@example.org"], b"");
    assert_status(&out, 64);
}

#[test]
fn cancel_retry_and_purge() {
    let url = init("admin_cancel");
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let out = admin(
                &url,
                &[
                    "enqueue",
                    "--from",
                    "a@example.com",
                    "--to",
                    "b@example.org",
                    "--text",
                    "x",
                ],
            );
            assert_status(&out, 0);
            stdout(&out).trim().to_string()
        })
        .collect();
    assert_status(&admin(&url, &["cancel", &ids[0], &ids[1]]), 0);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'cancelled'"
        ),
        2
    );
    // One bad id: nothing changes.
    let out = admin(&url, &["retry", &ids[0], "424242"]);
    assert_status(&out, 65);
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'cancelled'"
        ),
        2
    );
    let out = admin(&url, &["retry", &ids[0], "--verbose"]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("was cancelled"), "{}", stdout(&out));
    assert_eq!(
        count(
            &url,
            "SELECT count(*) FROM mailrun.messages WHERE state = 'queued'"
        ),
        1
    );

    assert_status(&admin(&url, &["purge", "--older-than", "1d"]), 0);
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);
    Client::connect(&url, NoTls)
        .unwrap()
        .batch_execute("UPDATE mailrun.messages SET finished_at = now() - interval '2 days' WHERE state = 'cancelled'")
        .unwrap();
    let out = admin(&url, &["purge", "--older-than", "1d", "--json"]);
    assert_status(&out, 0);
    assert_eq!(json_out(&out)["purged"], 1);
    let out = admin(&url, &["purge", "--older-than", "soon"]);
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn policy_is_synced_from_the_config_file() {
    let url = init("admin_policy");
    let dir = common::temp_dir();
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(
        &config,
        "max_message_bytes = 5000\n[retry]\nbackoff_min_seconds = 60\n\
         rules = [ { code = \"550\", enhanced = \"5.7.1\", permanent = false } ]\n",
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    assert_status(&admin(&url, &["--config", cfg, "migrate"]), 0);
    let out = admin(&url, &["policy", "show", "--json"]);
    assert_status(&out, 0);
    let p = json_out(&out);
    assert_eq!(p["backoff_min_seconds"], 60);
    assert_eq!(p["backoff_max_seconds"], 4000);
    assert_eq!(p["max_message_bytes"], 5000);
    assert_eq!(p["rules"][0]["code"], "550");
    let out = admin(&url, &["policy", "show"]);
    assert!(stdout(&out).contains("temporary"), "{}", stdout(&out));

    // Enforced at enqueue.
    let big = "x".repeat(6000);
    let out = admin(
        &url,
        &[
            "enqueue",
            "--from",
            "a@example.com",
            "--to",
            "b@example.org",
            "--text",
            &big,
        ],
    );
    assert_status(&out, 65);
    assert!(stderr(&out).contains("over the limit"), "{}", stderr(&out));

    // An invalid rule is a config error and changes nothing.
    std::fs::write(
        &config,
        "[retry]\nrules = [ { code = \"abc\", permanent = true } ]\n",
    )
    .unwrap();
    assert_status(&admin(&url, &["--config", cfg, "policy", "sync"]), 78);
    std::fs::write(
        &config,
        "[retry]\nbackoff_min_seconds = 10\nbackoff_max_seconds = 5\n",
    )
    .unwrap();
    assert_status(&admin(&url, &["--config", cfg, "policy", "sync"]), 78);
    assert_eq!(
        json_out(&admin(&url, &["policy", "show", "--json"]))["backoff_min_seconds"],
        60
    );
}

#[test]
fn send_at_is_read_in_the_time_zone_against_the_database_clock() {
    let url = init("admin_send_at");
    let base = [
        "enqueue",
        "--from",
        "a@example.com",
        "--to",
        "b@example.org",
        "--text",
        "x",
    ];
    let with = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        admin(&url, &args)
    };
    let out = with(&["--send-at", "in 2 hours", "--json"]);
    assert_status(&out, 0);
    let id = json_out(&out)["id"].as_i64().unwrap();
    let delay = count(
        &url,
        &format!("SELECT extract(epoch FROM send_at - created_at)::bigint FROM mailrun.messages WHERE id = {id}"),
    );
    assert!(
        (7190..=7210).contains(&delay),
        "send_at is {delay} s after enqueue"
    );
    assert_eq!(
        count(&url, &format!("SELECT count(*) FROM mailrun.messages WHERE id = {id} AND next_attempt_at = send_at")),
        1
    );

    let out = with(&[
        "--send-at",
        "2099-12-01 08:00",
        "--time-zone",
        "Europe/Berlin",
    ]);
    assert_status(&out, 65); // more than a year ahead
    let out = with(&[
        "--send-at",
        "tomorrow 08:00",
        "--time-zone",
        "Europe/Berlin",
        "--verbose",
    ]);
    assert_status(&out, 0);
    assert!(stdout(&out).contains("Europe/Berlin"), "{}", stdout(&out));
    let out = with(&["--send-at", "tomorrow", "--time-zone", "Europe/Berlin"]);
    assert_status(&out, 65);
    let out = with(&["--send-at", "2001-01-01T00:00:00Z"]);
    assert_status(&out, 65);
    assert!(stderr(&out).contains("past"), "{}", stderr(&out));
    let out = with(&["--send-at", "in 1 hour", "--time-zone", "Mars/Olympus"]);
    assert_status(&out, 64);

    // JSON lines read send_at the same way; a bad one names its line.
    let input = b"{\"from\":\"a@example.com\",\"to\":\"b@example.org\",\"text\":\"x\",\"send_at\":\"in 3 days\"}\n\
{\"from\":\"a@example.com\",\"to\":\"b@example.org\",\"text\":\"x\",\"send_at\":\"someday\"}\n";
    let out = admin_stdin(&url, &["enqueue", "--jsonl"], input);
    assert_status(&out, 65);
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
    assert_eq!(count(&url, "SELECT count(*) FROM mailrun.messages"), 2);

    // A config file's time zone must exist.
    let dir = common::temp_dir();
    let config = dir.path().join("dispatcher.toml");
    std::fs::write(&config, "time_zone = \"Nowhere/Special\"\n").unwrap();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend_from_slice(&base);
    assert_status(&admin(&url, &args), 78);
}

/// An account's cap on sessions: set at `account add` or with `account limit`, listed,
/// and carried with the account in every claimed batch (runners honour it).
#[test]
fn an_accounts_session_cap_travels_with_its_messages() {
    let url = common::initialised_db("admin_account_limit");
    assert_status(
        &admin(
            &url,
            &[
                "account",
                "add",
                "capped",
                "--host",
                "127.0.0.1",
                "--port",
                "2525",
                "--security",
                "none",
                "--max-connections",
                "7",
            ],
        ),
        0,
    );
    let out = admin(&url, &["--json", "account", "list"]);
    assert_status(&out, 0);
    let list: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(list[0]["max_connections"], 7, "{list}");
    assert_eq!(
        admin(
            &url,
            &["account", "limit", "capped", "--max-connections", "0"]
        )
        .status
        .code(),
        Some(64),
        "0 sessions is no limit"
    );
    assert_status(
        &admin(
            &url,
            &["account", "limit", "nobody", "--max-connections", "3"],
        ),
        65,
    );

    let mut c = Client::connect(&url, NoTls).unwrap();
    let key = mailrun::protocol::sign::SigningKey::generate("k");
    c.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('r1', 'http://127.0.0.1:9/r1', 10, $1, $2)",
        &[&key.key_id, &key.secret.to_vec()],
    )
    .unwrap();
    let m = serde_json::json!({"from": "s@example.org", "to": ["r@example.org"], "text": "t"});
    mailrun::dispatcher::queue::enqueue(&mut c, &m).unwrap();
    let run = mailrun::dispatcher::queue::claim_batch(&mut c, "r1", 10, 60).unwrap();
    assert_eq!(run.messages[0].account.max_connections, Some(7));

    assert_status(&admin(&url, &["account", "limit", "capped", "--clear"]), 0);
    mailrun::dispatcher::queue::enqueue(&mut c, &m).unwrap();
    let run = mailrun::dispatcher::queue::claim_batch(&mut c, "r1", 10, 60).unwrap();
    assert_eq!(run.messages[0].account.max_connections, None);
}
