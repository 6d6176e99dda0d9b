//! Delivery correctness without any fault: inputs that duplicated or stranded mail on a
//! healthy system (issue 15). Each test runs the real commands against PostgreSQL, a real
//! SMTP server and `dispatch-cgi --listen`, and checks what the SMTP server received.
use crate::common;
use crate::common::pipeline;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};

use common::smtp::{SmtpServer, SmtpServerOptions};
use pipeline::{Db, Delivered, Listening, RunnerNode};

const DISPATCH_ADMIN: &str = env!("CARGO_BIN_EXE_dispatch-admin");

fn sent(db: &Db) -> i64 {
    db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'")
}

/// Batches larger than the results one request carries (1,000): every result is reported
/// before new work is asked for, oldest first, so no lease runs out on mail whose outcome
/// the runner holds. Before, a cycle ended with results left in the outbox (chosen by
/// file name, not age), their leases expired and the mail went out twice.
#[test]
fn batches_above_the_result_cap_are_all_reported_before_new_work() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("correct_cap"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 60);
    let runner = RunnerNode::init("big", &listening.url());
    runner.set_setting("batch_size", "1500");
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/big", 1500);
    db.enqueue(3000);

    let out = runner.cycle(300);
    common::assert_status(&out, 0);
    // Nothing is left for a later cycle: every outcome reached the dispatcher.
    assert_eq!(
        runner.leftovers(),
        Vec::<String>::new(),
        "{}",
        common::stderr(&out)
    );
    assert_eq!(sent(&db), 3000, "{:?}", db.states());
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE late"),
        0,
        "no report arrived after its lease"
    );
    let delivered = pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(delivered.total(), 3000);

    // The same through runner-poll alone (cron's fallback): a backlog of 1,500 results is
    // reported in full by one run, before it asks for work.
    db.enqueue(1500);
    common::assert_status(&runner.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    common::assert_status(&runner.run(pipeline::RUNNER_SEND, &[]), 0);
    let out = runner.run(pipeline::RUNNER_POLL, &["--force", "--json"]);
    common::assert_status(&out, 3);
    assert!(
        common::stdout(&out).contains("\"acknowledged\":1500"),
        "{}",
        common::stdout(&out)
    );
    assert_eq!(runner.leftovers(), Vec::<String>::new());
    assert_eq!(sent(&db), 4500);
}

/// A message the runner's decoder refuses (here: a subject longer than the protocol
/// carries, stored before enqueue checked it) fails alone with the reason; its
/// neighbours in the batch are delivered. Before, runner-poll refused the whole batch
/// and the same messages were leased again and again until they expired.
#[test]
fn a_message_the_runner_cannot_accept_fails_alone() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("correct_bad_one"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let runner = RunnerNode::init("r1", &listening.url());
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 50);
    db.enqueue(21);
    // The oldest message gets what only an older enqueue (or a direct UPDATE) could store.
    db.client()
        .execute(
            "UPDATE mailrun.messages SET subject = repeat('s', 16385)
              WHERE id = (SELECT min(id) FROM mailrun.messages)",
            &[],
        )
        .unwrap();

    let out = runner.cycle(120);
    common::assert_status(&out, 0);
    assert_eq!(sent(&db), 20, "{:?}\n{}", db.states(), common::stderr(&out));
    let (state, text): (String, String) = db
        .client()
        .query_one(
            "SELECT state, last_text FROM mailrun.messages
              WHERE id = (SELECT min(id) FROM mailrun.messages)",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(state, "failed");
    assert!(
        text.contains("cannot accept") && text.contains("16384"),
        "reason recorded: {text}"
    );
    assert_eq!(Delivered::of(&smtp).total(), 20);
    assert_eq!(runner.leftovers(), Vec::<String>::new());
}

/// `dispatch-admin enqueue` with JSON lines on stdin.
fn enqueue_jsonl(url: &str, lines: &str) -> Output {
    let mut child = common::command(DISPATCH_ADMIN)
        .args(["--database-url", url, "enqueue", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dispatch-admin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Enqueue (the stored procedure applications call, and the CLI) refuses exactly what a
/// JobRun cannot carry: the limits of one table, the same in SQL and in the code.
#[test]
fn enqueue_refuses_exactly_what_the_protocol_cannot_carry() {
    let db = Db::new(common::cluster().fresh_db("correct_limits"), 25);
    let mut c = db.client();
    let rows: Vec<(String, i32)> = c
        .query(
            "SELECT field, max_chars FROM mailrun.field_limits ORDER BY field",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut code: Vec<(String, i32)> = mailrun::protocol::limits::field::TABLE
        .iter()
        .map(|(f, n)| (f.to_string(), i32::try_from(*n).unwrap()))
        .collect();
    code.sort();
    assert_eq!(
        rows, code,
        "mailrun.field_limits and protocol::limits::field::TABLE"
    );

    use mailrun::protocol::limits::field;
    let long = |n: usize| "x".repeat(n);
    let base = || {
        serde_json::json!({
            "from": "sender@example.org", "to": ["rcpt@example.org"],
            "subject": "s", "text": "t", "account": "local"
        })
    };
    // (what, message at the limit, message one over)
    let mut cases: Vec<(&str, serde_json::Value, serde_json::Value)> = Vec::new();
    let with = |key: &str, v: serde_json::Value| {
        let mut m = base();
        m[key] = v;
        m
    };
    cases.push((
        "subject",
        with("subject", long(field::SUBJECT).into()),
        with("subject", long(field::SUBJECT + 1).into()),
    ));
    // A display name makes up the length: the local part alone is capped at 64 by lettre.
    let mailbox = |n: usize| {
        format!(
            "{} <a@example.org>",
            "N".repeat(n - " <a@example.org>".len())
        )
    };
    cases.push((
        "to",
        with("to", serde_json::json!([mailbox(field::ADDRESS)])),
        with("to", serde_json::json!([mailbox(field::ADDRESS + 1)])),
    ));
    cases.push((
        "from",
        with("from", mailbox(field::ADDRESS).into()),
        with("from", mailbox(field::ADDRESS + 1).into()),
    ));
    let header = |n: usize| serde_json::json!([{"name": "X-Long", "value": long(n)}]);
    cases.push((
        "header",
        with("headers", header(field::HEADER_VALUE)),
        with("headers", header(field::HEADER_VALUE + 1)),
    ));
    let attachment = |n: usize| {
        serde_json::json!([{"filename": format!("{}.txt", "f".repeat(n - 4)),
                            "content_type": "text/plain", "data": "aGk="}])
    };
    cases.push((
        "attachment",
        with("attachments", attachment(field::ATTACHMENT_FILENAME)),
        with("attachments", attachment(field::ATTACHMENT_FILENAME + 1)),
    ));
    // XML cannot carry these characters at all: refused in any text field.
    cases.push((
        "control",
        with("text", "a\tb\r\n".into()),
        with("text", "a\u{1}b".into()),
    ));
    cases.push((
        "control in subject",
        with("subject", "plain".into()),
        with("subject", "form\u{c}feed".into()),
    ));
    // Short messages skip the field-by-field checks when jsonb's rendering shows no
    // escape of a forbidden character: each of them, wherever it is, still shows.
    // A literal backslash before b, f or u00 looks like one and is accepted after all.
    cases.push((
        "backspace in text",
        with("text", "C:\\backup\\files and \\u0041".into()),
        with("text", "back\u{8}space".into()),
    ));
    cases.push((
        "control in html",
        with("html", "<p>fine</p>".into()),
        with("html", "<p>a\u{1}b</p>".into()),
    ));
    cases.push((
        "U+FFFE in text",
        with("text", "\u{FFFD} is fine".into()),
        with("text", "no\u{FFFE}char".into()),
    ));
    cases.push((
        "U+FFFF in a header",
        with(
            "headers",
            serde_json::json!([{"name": "X-A", "value": "fine"}]),
        ),
        with(
            "headers",
            serde_json::json!([{"name": "X-A", "value": "no\u{FFFF}char"}]),
        ),
    ));
    cases.push((
        "vertical tab in subject",
        with("subject", "tab\there".into()),
        with("subject", "tab\u{b}here".into()),
    ));
    cases.push((
        "unit separator in a filename",
        with("attachments", attachment(12)),
        with(
            "attachments",
            serde_json::json!([{"filename": "a\u{1f}b.txt", "content_type": "text/plain",
                                "data": "aGk="}]),
        ),
    ));

    for (what, ok, over) in cases {
        // SQL, as applications call it.
        let refused = c.query_one("SELECT mailrun.enqueue($1)", &[&over]);
        let e = refused.expect_err(&format!(
            "{what}: the procedure accepted one over the limit"
        ));
        assert_eq!(
            e.code(),
            Some(&postgres::error::SqlState::INVALID_PARAMETER_VALUE),
            "{what}: {e}"
        );
        c.query_one("SELECT mailrun.enqueue($1)", &[&ok])
            .unwrap_or_else(|e| panic!("{what}: the procedure refused one at the limit: {e}"));
        // The CLI: the same answers.
        let out = enqueue_jsonl(&db.url, &format!("{over}\n"));
        assert_eq!(
            out.status.code(),
            Some(65),
            "{what}: {}",
            common::stderr(&out)
        );
        let out = enqueue_jsonl(&db.url, &format!("{ok}\n"));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{what}: {}",
            common::stderr(&out)
        );
    }
    // Everything that was queued can be encoded into a JobRun and decoded by a runner.
    let key = mailrun::protocol::sign::SigningKey::generate("k");
    let mut tx = c.transaction().unwrap();
    tx.execute(
        "INSERT INTO mailrun.runners (id, endpoint, batch_size, key_id, secret)
         VALUES ('limits', 'http://127.0.0.1:9/x', 100, $1, $2)",
        &[&key.key_id, &key.secret.to_vec()],
    )
    .unwrap();
    let run = mailrun::dispatcher::queue::claim_batch(&mut tx, "limits", 100, 60).unwrap();
    assert_eq!(run.messages.len(), 26);
    let bytes = mailrun::protocol::codec::encode(&mailrun::protocol::Body::JobRun(run));
    match mailrun::protocol::codec::decode(&bytes) {
        Ok(mailrun::protocol::Body::JobRun(back)) => assert_eq!(back.messages.len(), 26),
        other => panic!("a runner would refuse the batch: {other:?}"),
    }
}

/// One mailbox rule: the stored procedure and the CLI answer the shared corpus alike
/// (src/dispatcher/message.rs checks the CLI side and lettre against the same file).
#[test]
fn the_procedure_and_the_cli_check_addresses_alike() {
    let db = Db::new(common::cluster().fresh_db("correct_addr"), 25);
    let mut c = db.client();
    for line in include_str!("../data/mailboxes.txt").lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (want, input) = line.split_once('\t').expect("ok|bad<TAB>input");
        let sql: Option<String> = c
            .query_one("SELECT mailrun.addr_spec($1)", &[&input])
            .unwrap()
            .get(0);
        let cli = mailrun::dispatcher::message::addr_spec(input);
        assert_eq!(
            sql.is_some(),
            want == "ok",
            "procedure on {input:?}: {sql:?}"
        );
        assert_eq!(sql.as_deref(), cli, "procedure and CLI differ on {input:?}");
        // And enqueue says the same as its address check.
        let m = serde_json::json!({"from": "s@example.org", "to": [input], "text": "t",
                                   "account": "local"});
        let queued = c.query_one("SELECT mailrun.enqueue($1)", &[&m]).is_ok();
        assert_eq!(queued, want == "ok", "enqueue of {input:?}");
    }
}

/// A proxy between the runner and the dispatcher that forwards requests until told to
/// replay: then it answers every request with the first answer it recorded, as someone
/// on a plain-HTTP path could.
struct ReplayProxy {
    port: u16,
    replay: Arc<Mutex<bool>>,
}

impl ReplayProxy {
    fn start(upstream: u16) -> ReplayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let replay = Arc::new(Mutex::new(false));
        let recorded: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let flag = replay.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut client) = stream else { continue };
                let request = read_http_request(&mut client);
                let mut first = recorded.lock().unwrap();
                let answer = match (first.as_ref(), *flag.lock().unwrap()) {
                    (Some(copy), true) => copy.clone(),
                    _ => {
                        let answer = forward(upstream, &request);
                        first.get_or_insert_with(|| answer.clone());
                        answer
                    }
                };
                let _ = client.write_all(&answer);
            }
        });
        ReplayProxy { port, replay }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/cgi-bin/dispatch-cgi", self.port)
    }
}

/// Headers (with `Connection: close` forced) and a Content-Length body.
fn read_http_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&body);
    out
}

fn forward(port: u16, request: &[u8]) -> Vec<u8> {
    let mut upstream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    upstream.write_all(request).unwrap();
    let mut answer = Vec::new();
    upstream.read_to_end(&mut answer).unwrap();
    answer
}

/// A JobRun recorded and played back to a later request (within the signature window)
/// is refused: the response's signature is bound to its request's nonce. Before, the
/// runner spooled the finished batch again and sent every message a second time.
#[test]
fn a_replayed_job_run_is_refused_and_nothing_is_sent_twice() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("correct_replay"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let proxy = ReplayProxy::start(listening.port);
    let runner = RunnerNode::init("r1", &proxy.url());
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 50);
    db.enqueue(5);

    common::assert_status(&runner.run(pipeline::RUNNER_POLL, &["--force"]), 0);
    common::assert_status(&runner.run(pipeline::RUNNER_SEND, &[]), 0);
    // The results are reported and acknowledged; the dispatcher has nothing more.
    common::assert_status(&runner.run(pipeline::RUNNER_POLL, &["--force"]), 3);
    assert_eq!(sent(&db), 5);

    *proxy.replay.lock().unwrap() = true;
    let out = runner.run(pipeline::RUNNER_POLL, &["--force"]);
    assert_ne!(out.status.code(), Some(0), "a replayed JobRun was spooled");
    assert!(
        common::stderr(&out).contains("signature"),
        "{}",
        common::stderr(&out)
    );
    common::assert_status(&runner.run(pipeline::RUNNER_SEND, &[]), 3);
    let delivered = pipeline::assert_all_delivered(&db, &smtp, 0);
    assert_eq!(delivered.total(), 5);
}

/// An SMTP server that keeps the exact bytes of every DATA (up to the first CRLF "."
/// CRLF, as RFC 5321 ends it) and, like real servers, answers "500 Line too long" when a
/// line passes 998 octets.
struct RawSmtp {
    port: u16,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl RawSmtp {
    fn start() -> RawSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let store = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let store = store.clone();
                std::thread::spawn(move || {
                    let _ = raw_session(stream, &store);
                });
            }
        });
        RawSmtp { port, received }
    }

    fn messages(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }
}

fn raw_session(mut stream: TcpStream, store: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    stream.write_all(b"220 raw.test ESMTP\r\n")?;
    loop {
        let mut line = Vec::new();
        if std::io::BufRead::read_until(&mut reader, b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = String::from_utf8_lossy(&line).to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            stream.write_all(
                b"250-raw.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 100000000\r\n",
            )?;
        } else if verb.starts_with("DATA") {
            stream.write_all(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            while !(data.ends_with(b"\r\n.\r\n") || data == b".\r\n") {
                let mut byte = [0u8; 1];
                if reader.read(&mut byte)? == 0 {
                    return Ok(());
                }
                data.push(byte[0]);
            }
            let too_long = data.split(|&b| b == b'\n').any(|l| l.len() > 999);
            store.lock().unwrap().push(data);
            if too_long {
                stream.write_all(b"500 5.5.2 Line too long\r\n")?;
            } else {
                stream.write_all(b"250 2.0.0 queued\r\n")?;
            }
        } else if verb.starts_with("QUIT") {
            stream.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            stream.write_all(b"250 ok\r\n")?;
        }
    }
}

/// Where a line ends in the bytes as a receiver sees them: only CRLF is allowed.
fn bare_line_ends(data: &[u8]) -> usize {
    let mut n = 0;
    for (i, &b) in data.iter().enumerate() {
        let bare_cr = b == b'\r' && data.get(i + 1) != Some(&b'\n');
        let bare_lf = b == b'\n' && (i == 0 || data[i - 1] != b'\r');
        n += usize::from(bare_cr || bare_lf);
    }
    n
}

/// Queues messages through the stored procedure; ids in order.
fn enqueue_all(db: &Db, messages: &[serde_json::Value]) -> Vec<i64> {
    let mut c = db.client();
    messages
        .iter()
        .map(|m| {
            c.query_one("SELECT mailrun.enqueue($1)", &[m])
                .unwrap_or_else(|e| panic!("enqueue {m}: {e}"))
                .get(0)
        })
        .collect()
}

/// Bodies with bare CR, bare LF, a dot after a bare CR and 8-bit text reach the server
/// with CRLF line ends only and every line-leading dot stuffed: no receiver, however it
/// ends lines, sees the end of DATA early (RFC 5321 2.3.8; SMTP smuggling). A NUL
/// cannot be queued at all.
#[test]
fn bodies_reach_the_wire_with_crlf_line_ends_only() {
    let smtp = RawSmtp::start();
    let db = Db::new(common::cluster().fresh_db("correct_crlf"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let runner = RunnerNode::init("r1", &listening.url());
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 50);
    let msg = |text: &str| {
        serde_json::json!({"from": "s@example.org", "to": ["r@example.org"],
                           "subject": "crlf", "text": text, "account": "local"})
    };
    let bodies = [
        "first\r.\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\n",
        "bare\rCR\r.\rCR.CR\r",
        "bare\nLF\n.\nend",
        "8-bit Grüße\r.\rbare CR after 8-bit\n.",
    ];
    let mut messages: Vec<serde_json::Value> = bodies.iter().map(|b| msg(b)).collect();
    messages.push(
        serde_json::json!({"from": "s@example.org", "to": ["r@example.org"],
        "subject": "html", "html": "<p>a</p>\r.\r<p>b</p>", "account": "local"}),
    );
    enqueue_all(&db, &messages);
    // NUL: neither PostgreSQL's jsonb nor XML can hold it; refused at the door.
    let nul = msg("a\u{0}b");
    assert!(db
        .client()
        .query_one("SELECT mailrun.enqueue($1)", &[&nul])
        .is_err());

    common::assert_status(&runner.cycle(60), 0);
    assert_eq!(sent(&db), 5, "{:?}", db.states());
    let received = smtp.messages();
    assert_eq!(received.len(), 5);
    for data in &received {
        let text = String::from_utf8_lossy(data);
        assert_eq!(
            bare_line_ends(data),
            0,
            "bare CR or LF on the wire:\n{text:?}"
        );
        // The only line that is a lone dot is the terminator.
        let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        let dots = lines.iter().filter(|l| *l == b".\r").count();
        assert_eq!(dots, 1, "{text:?}");
        assert!(data.ends_with(b"\r\n.\r\n"));
    }
    let all: Vec<String> = received
        .iter()
        .map(|d| String::from_utf8_lossy(d).to_string())
        .collect();
    assert!(
        all.iter().any(|m| m.contains("first\r\n..\r\nRSET\r\n")),
        "the dot after a bare CR is stuffed:\n{all:?}"
    );
}

/// A subject of 5,000 characters without a space, a header value of 998, and a display
/// name of 980: every line on the wire stays within 998 octets (RFC 5322 2.1.1), the
/// server accepts the message, and the subject reads back the same. Before, the subject
/// went out as one line and the server answered "500 Line too long".
#[test]
fn long_header_values_are_folded_or_encoded() {
    let smtp = RawSmtp::start();
    let db = Db::new(common::cluster().fresh_db("correct_long"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let runner = RunnerNode::init("r1", &listening.url());
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/r1", 50);
    let subject = format!("{}ü", "x".repeat(5000));
    let name = "N".repeat(980);
    enqueue_all(
        &db,
        &[serde_json::json!({
            "from": format!("{name} <s@example.org>"), "to": [format!("{name} <r@example.org>")],
            "subject": subject, "text": "t", "account": "local",
            "headers": [{"name": "X-Long", "value": "y".repeat(998)}]
        })],
    );
    common::assert_status(&runner.cycle(60), 0);
    assert_eq!(sent(&db), 1, "{:?}", db.states());
    let data = smtp.messages().pop().expect("one message");
    let text = String::from_utf8(data.clone()).unwrap();
    let longest = text.split("\r\n").map(str::len).max().unwrap();
    assert!(longest <= 998, "a line of {longest} octets");
    // Unfold the Subject header and decode its encoded-words.
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let raw = unfolded
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .expect("Subject header");
    assert_eq!(
        mailrun::dispatcher::message::decode_encoded_words(raw),
        Ok(subject)
    );
}

/// The fault suite's invariant with batches above the result cap: kill -9 of the runner
/// in the middle of its second 1,500-message batch (results of the first partly
/// reported), then cycles until done: nothing lost, at most the messages in flight sent
/// twice (one per session), every outcome reported in time (no late report).
#[test]
fn kill_9_during_a_batch_above_the_result_cap_loses_nothing() {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let db = Db::new(common::cluster().fresh_db("correct_cap_kill"), smtp.port);
    let listening = Listening::start(&db.url, common::free_port(), 120);
    let runner = RunnerNode::init("big", &listening.url());
    runner.set_setting("batch_size", "1500");
    runner.set_setting("lease_safety_margin_seconds", "10");
    db.add_runner(&runner, "http://127.0.0.1:9/big", 1500);
    db.enqueue(3000);

    let mut child = runner
        .command(pipeline::RUNNER_ADMIN)
        .args(["cycle", "--force", "--max-seconds", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("runner-admin cycle");
    pipeline::wait_until(
        std::time::Duration::from_secs(120),
        "the second batch under way",
        || smtp.messages().len() >= 1800,
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    for _ in 0..5 {
        if sent(&db) == 3000 && runner.leftovers().is_empty() {
            break;
        }
        let out = runner.cycle(120);
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "{}",
            common::stderr(&out)
        );
    }
    assert_eq!(runner.leftovers(), Vec::<String>::new());
    // At most the messages in their final dot at the kill: one per open session.
    pipeline::assert_all_delivered(
        &db,
        &smtp,
        mailrun::protocol::limits::DEFAULT_MAX_SESSIONS_PER_ACCOUNT as usize,
    );
    assert_eq!(
        db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE late"),
        0
    );
}
