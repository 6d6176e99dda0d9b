//! Walks `protocol/faults.md`, the one fault table, against the real dispatch-cgi and
//! runner-cgi run as CGI programs (the environment and stdin a web server gives them):
//! for every row and endpoint the HTTP status, `m:reason`, `faultcode`, signature, the
//! quoted `SOAPAction` header and the message's words must be what the table says.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use mailrun::protocol::codec;
use mailrun::protocol::faults::{self, Row};
use mailrun::protocol::sign::{self, SigningKey};
use mailrun::protocol::{Body, FaultCode, JobRunRequest, JobRunnerReady, ReadyStatus};

use crate::common;
use crate::common::pipeline::{self, Db, RunnerNode};

const NS: &str = "urn:mailrun:soap:v1";
const SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Dispatcher,
    Runner,
}

/// One CGI request: method, headers as `HTTP_*`, the body, an optional CONTENT_LENGTH
/// override (`None` = the body's length, `Some(None)` = unset).
struct Cgi {
    method: &'static str,
    action: Option<String>,
    signature: Option<Vec<(String, String)>>,
    body: Vec<u8>,
    content_length: Option<Option<String>>,
    env: Vec<(String, String)>,
}

/// What came back, parsed from the CGI output.
struct Answer {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct Fixture {
    db: Db,
    runner: RunnerNode,
    disabled: RunnerNode,
    dispatcher_key: SigningKey,
}

impl Side {
    fn path(self) -> &'static str {
        match self {
            Side::Dispatcher => "/cgi-bin/dispatch-cgi",
            Side::Runner => "/cgi-bin/runner-cgi",
        }
    }

    fn program(self) -> &'static str {
        match self {
            Side::Dispatcher => pipeline::DISPATCH_CGI,
            Side::Runner => pipeline::RUNNER_CGI,
        }
    }

    fn operation(self) -> &'static str {
        match self {
            Side::Dispatcher => "JobRunRequest",
            Side::Runner => "JobRunnerReady",
        }
    }

    fn column(self, row: &Row) -> String {
        match self {
            Side::Dispatcher => row.dispatcher.clone(),
            Side::Runner => row.runner.clone(),
        }
    }
}

fn action(op: &str) -> String {
    format!("{NS}#{op}")
}

/// A valid request of the endpoint's main operation, from `runner_id`.
fn good_body(side: Side, runner_id: &str) -> Vec<u8> {
    codec::encode(&match side {
        Side::Dispatcher => Body::JobRunRequest(JobRunRequest {
            runner_id: runner_id.into(),
            capacity: 1,
            software_version: "0.1.0".into(),
            config_version: 0,
            results: Vec::new(),
            held_job_runs: None,
        }),
        Side::Runner => Body::JobRunnerReady(JobRunnerReady {
            runner_id: runner_id.into(),
            queued: 1,
        }),
    })
}

fn envelope(inner: &str) -> Vec<u8> {
    format!(
        "<soap:Envelope xmlns:soap=\"{SOAP}\" xmlns:m=\"{NS}\"><soap:Body>{inner}</soap:Body></soap:Envelope>"
    )
    .into_bytes()
}

fn signed(
    key: &SigningKey,
    side: Side,
    op: &str,
    body: &[u8],
    timestamp: i64,
) -> Vec<(String, String)> {
    let sig = sign::sign_at(
        key,
        "POST",
        side.path(),
        &action(op),
        body,
        timestamp,
        &sign::new_nonce(),
    );
    sig.to_headers()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}

impl Fixture {
    fn new() -> Fixture {
        let db = Db::new(common::cluster().fresh_db("fault_table"), 2525);
        // No dispatcher answers on port 9: a stray cycle would fail fast.
        let unreachable = "http://127.0.0.1:9/cgi-bin/dispatch-cgi";
        let runner = RunnerNode::init("r1", unreachable);
        let disabled = RunnerNode::init("off", unreachable);
        db.add_runner(&runner, "http://127.0.0.1:9/r1", 5);
        db.add_runner(&disabled, "http://127.0.0.1:9/off", 5);
        db.client()
            .execute(
                "UPDATE mailrun.runners SET enabled = false WHERE id = 'off'",
                &[],
            )
            .expect("disable");
        let config = disabled.dir().join("runner.toml");
        let text = std::fs::read_to_string(&config).expect("runner.toml");
        assert!(text.contains("enabled = true"), "{text}");
        std::fs::write(&config, text.replace("enabled = true", "enabled = false")).unwrap();
        let dispatcher_key = runner.key.clone();
        Fixture {
            db,
            runner,
            disabled,
            dispatcher_key,
        }
    }

    fn key(&self) -> &SigningKey {
        &self.dispatcher_key
    }

    /// A request signed with the runner's key for the endpoint's main operation.
    fn good(&self, side: Side) -> Cgi {
        self.signed_body(side, side.operation(), good_body(side, "r1"))
    }

    fn signed_body(&self, side: Side, op: &str, body: Vec<u8>) -> Cgi {
        Cgi {
            method: "POST",
            action: Some(action(op)),
            signature: Some(signed(self.key(), side, op, &body, sign::now_unix())),
            body,
            content_length: None,
            env: Vec::new(),
        }
    }

    fn run(&self, side: Side, req: &Cgi) -> Answer {
        self.run_in(side, req, self.runner.dir())
    }

    fn run_in(&self, side: Side, req: &Cgi, state: &Path) -> Answer {
        let home = common::temp_dir();
        let mut cmd = Command::new(side.program());
        cmd.env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", home.path())
            .env("GATEWAY_INTERFACE", "CGI/1.1")
            .env("REQUEST_METHOD", req.method)
            .env("REQUEST_URI", side.path())
            .env("SCRIPT_NAME", side.path())
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_TYPE", "text/xml; charset=utf-8");
        match &req.content_length {
            None => {
                cmd.env("CONTENT_LENGTH", req.body.len().to_string());
            }
            Some(Some(v)) => {
                cmd.env("CONTENT_LENGTH", v);
            }
            Some(None) => {}
        }
        if let Some(a) = &req.action {
            cmd.env("HTTP_SOAPACTION", format!("\"{a}\""));
        }
        for (name, value) in req.signature.iter().flatten() {
            cmd.env(
                format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_")),
                value,
            );
        }
        match side {
            Side::Dispatcher => {
                cmd.env("MAILRUN_DATABASE_URL", &self.db.url);
            }
            Side::Runner => {
                cmd.env("MAILRUN_RUNNER_DIR", state).arg("--no-start");
            }
        }
        for (k, v) in &req.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the CGI program");
        let mut stdin = child.stdin.take().expect("stdin");
        let body = req.body.clone();
        // A program that does not read its body must not block the test.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let out = child.wait_with_output().expect("CGI program");
        writer.join().expect("writer");
        parse_cgi(&out.stdout, &String::from_utf8_lossy(&out.stderr))
    }
}

fn parse_cgi(out: &[u8], stderr: &str) -> Answer {
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "no CGI header in {:?}; stderr: {stderr}",
                String::from_utf8_lossy(out)
            )
        });
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.split("\r\n") {
        let (name, value) = line.split_once(": ").expect("header line");
        headers.insert(name.to_ascii_lowercase(), value.to_string());
    }
    let status = headers["status"][..3].parse().expect("status");
    Answer {
        status,
        headers,
        body: out[split + 4..].to_vec(),
    }
}

/// The request that provokes `case` at `side`, after any setup it needs.
fn provoke(fx: &Fixture, side: Side, case: &str) -> Option<Cgi> {
    let op = side.operation();
    let good = || fx.good(side);
    let text_body = String::from_utf8(good_body(side, "r1")).unwrap();
    let with_body = |body: Vec<u8>| fx.signed_body(side, op, body);
    let req = match case {
        "method" => Cgi {
            method: "PUT",
            ..good()
        },
        "bad-length" => Cgi {
            content_length: Some(Some("abc".into())),
            ..good()
        },
        "oversize" => {
            let (limit, env) = match side {
                Side::Dispatcher => (1024, vec![("MAILRUN_MAX_BODY".into(), "1024".into())]),
                Side::Runner => (mailrun::protocol::limits::RUNNER_MAX_REQUEST_BYTES, vec![]),
            };
            let mut body = good_body(side, "r1");
            body.resize(limit + 1, b' ');
            Cgi {
                env,
                ..with_body(body)
            }
        }
        "no-length" => Cgi {
            content_length: Some(None),
            ..good()
        },
        "short-body" => Cgi {
            content_length: Some(Some("100000".into())),
            ..good()
        },
        "wrong-action" => Cgi {
            action: Some(action("Nope")),
            ..good()
        },
        "unsigned" => Cgi {
            signature: None,
            ..good()
        },
        "malformed-signature" => {
            let mut req = good();
            for (name, value) in req.signature.iter_mut().flatten() {
                if name == "X-Mailrun-Nonce" {
                    *value = "not-hex".into();
                }
            }
            req
        }
        "not-configured" => {
            let mut req = good();
            match side {
                Side::Dispatcher => req.env.push(("MAILRUN_DATABASE_URL".into(), String::new())),
                Side::Runner => {}
            }
            req
        }
        "database-down" => Cgi {
            env: vec![(
                "MAILRUN_DATABASE_URL".into(),
                format!(
                    "postgresql://mailrun@127.0.0.1:{}/nowhere?connect_timeout=5",
                    common::free_port()
                ),
            )],
            ..good()
        },
        "unknown-key-id" => {
            let stranger = SigningKey::generate("nobody");
            let body = good_body(side, "r1");
            Cgi {
                signature: Some(signed(&stranger, side, op, &body, sign::now_unix())),
                ..with_body(body)
            }
        }
        "bad-signature" => {
            let forged = SigningKey {
                key_id: fx.key().key_id.clone(),
                secret: [7; 32],
            };
            let body = good_body(side, "r1");
            Cgi {
                signature: Some(signed(&forged, side, op, &body, sign::now_unix())),
                ..with_body(body)
            }
        }
        "stale-timestamp" => {
            let body = good_body(side, "r1");
            Cgi {
                signature: Some(signed(fx.key(), side, op, &body, sign::now_unix() - 1000)),
                ..with_body(body)
            }
        }
        "malformed-xml" => with_body(envelope("<oops")),
        "doctype" => with_body(
            b"<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"boom\">]><x>&e;</x>".to_vec(),
        ),
        "too-large-text" => with_body(envelope(&format!(
            "<m:{op}><m:runnerId>{}</m:runnerId></m:{op}>",
            "a".repeat(70_000)
        ))),
        "too-deep" => with_body(envelope(&format!(
            "{}{}",
            "<m:a>".repeat(40),
            "</m:a>".repeat(40)
        ))),
        "too-many-elements" => {
            let attrs: String = (0..40).map(|i| format!(" a{i}=\"1\"")).collect();
            with_body(envelope(&format!("<m:{op}{attrs}/>")))
        }
        "wrong-namespace" => with_body(text_body.replace(NS, "urn:mailrun:soap:v2").into_bytes()),
        "unknown-element" => with_body(envelope("<m:Bogus/>")),
        "missing-field" => with_body(
            text_body
                .replace("<m:runnerId>r1</m:runnerId>", "")
                .into_bytes(),
        ),
        "invalid-value" => {
            let (from, to) = match side {
                Side::Dispatcher => ("<m:capacity>1</m:capacity>", "<m:capacity>x</m:capacity>"),
                Side::Runner => ("<m:queued>1</m:queued>", "<m:queued>x</m:queued>"),
            };
            assert!(text_body.contains(from), "{text_body}");
            with_body(text_body.replace(from, to).into_bytes())
        }
        "action-mismatch" => {
            let other = match side {
                Side::Dispatcher => good_body(Side::Runner, "r1"),
                Side::Runner => good_body(Side::Dispatcher, "r1"),
            };
            with_body(other)
        }
        "wrong-runner-id" => with_body(good_body(side, "nobody")),
        "runner-disabled" => {
            let body = good_body(side, "off");
            Cgi {
                signature: Some(signed(&fx.disabled.key, side, op, &body, sign::now_unix())),
                ..with_body(body)
            }
        }
        "replayed-nonce" => {
            let req = good();
            let first = fx.run(side, &req);
            assert_eq!(
                first.status,
                200,
                "{}",
                String::from_utf8_lossy(&first.body)
            );
            req
        }
        "version-not-increasing" => {
            let first = fx.run(side, &config_update(fx, side, 5, LOOPBACK_DISPATCHER));
            assert_eq!(
                first.status,
                200,
                "{}",
                String::from_utf8_lossy(&first.body)
            );
            config_update(fx, side, 5, LOOPBACK_DISPATCHER)
        }
        // Plain http:// to a non-loopback dispatcher: the codec takes it, the runner not.
        "invalid-setting" => config_update(fx, side, 50, "http://example.com/plain"),
        _ => return None,
    };
    Some(req)
}

/// Rows that need a broken host or a client to happen (the table says so too).
const NOT_WALKED: [&str; 3] = ["internal", "unavailable-later", "plain-http"];

const LOOPBACK_DISPATCHER: &str = "http://127.0.0.1:9/cgi-bin/dispatch-cgi";

/// A signed JobRunnerConfigUpdate for runner r1: the example's settings, no software.
fn config_update(fx: &Fixture, side: Side, version: i64, dispatcher_url: &str) -> Cgi {
    let example = std::fs::read(pipeline::manifest_path(
        "protocol/examples/job-runner-config-update.xml",
    ))
    .expect("example");
    let Ok(Body::JobRunnerConfigUpdate(mut u)) = codec::decode(&example) else {
        panic!("example is a config update")
    };
    u.runner_id = "r1".into();
    u.version = version;
    u.settings.software = None;
    u.settings.dispatcher_url = dispatcher_url.into();
    let body = codec::encode(&Body::JobRunnerConfigUpdate(u));
    fx.signed_body(side, "JobRunnerConfigUpdate", body)
}

#[test]
fn both_endpoints_answer_every_row_of_the_fault_table() {
    let fx = Fixture::new();
    let rows = faults::rows();
    assert!(rows.len() > 20);
    let mut failures = Vec::new();
    for row in &rows {
        if NOT_WALKED.contains(&row.case.as_str()) {
            continue;
        }
        for side in [Side::Dispatcher, Side::Runner] {
            let expected = side.column(row);
            let documented_answer = side == Side::Runner && row.case == "runner-disabled";
            if expected == "—" && !documented_answer {
                continue; // this endpoint never sends it
            }
            let Some(req) = provoke(&fx, side, &row.case) else {
                panic!(
                    "the test cannot provoke row {:?}; teach it or list it in NOT_WALKED",
                    row.case
                );
            };
            // `not-configured` on the runner: an empty state folder.
            let empty = common::temp_dir();
            let answer = if side == Side::Runner && row.case == "not-configured" {
                fx.run_in(side, &req, empty.path())
            } else if side == Side::Runner && row.case == "runner-disabled" {
                fx.run_in(side, &req, fx.disabled.dir())
            } else {
                fx.run(side, &req)
            };
            if let Err(e) = check(&fx, side, row, &expected, &req, &answer) {
                failures.push(format!("{} at {side:?}: {e}", row.case));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "differences from protocol/faults.md:\n{}",
        failures.join("\n")
    );
}

fn check(
    fx: &Fixture,
    side: Side,
    row: &Row,
    expected: &str,
    req: &Cgi,
    answer: &Answer,
) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body).to_string();
    if expected == "—" {
        // Only runner-disabled is provoked where the table has no fault: the runner's
        // documented answer is a JobRunnerReadyResponse with status disabled.
        return match codec::decode(&answer.body) {
            Ok(Body::JobRunnerReadyResponse(r))
                if r.status == ReadyStatus::Disabled && answer.status == 200 =>
            {
                Ok(())
            }
            other => Err(format!(
                "expected no fault, got HTTP {} {other:?}",
                answer.status
            )),
        };
    }
    let status: u16 = expected
        .parse()
        .map_err(|_| format!("bad table cell {expected:?}"))?;
    if answer.status != status {
        return Err(format!(
            "HTTP {} instead of {status}: {text}",
            answer.status
        ));
    }
    let fault = match codec::decode(&answer.body) {
        Ok(Body::Fault(f)) => f,
        other => return Err(format!("not a fault: {other:?}: {text}")),
    };
    if fault.reason.as_str() != row.reason {
        return Err(format!(
            "reason {} instead of {}: {}",
            fault.reason.as_str(),
            row.reason,
            fault.message
        ));
    }
    let code = match fault.code {
        FaultCode::Client => "Client",
        FaultCode::Server => "Server",
    };
    if code != row.faultcode {
        return Err(format!("faultcode {code} instead of {}", row.faultcode));
    }
    if !faults::message_matches(&row.message, &fault.message) {
        return Err(format!(
            "message {:?} does not fit {:?}",
            fault.message, row.message
        ));
    }
    if !text.contains(&format!(
        "<faultstring>{}</faultstring>",
        xml_escape(&fault.message)
    )) {
        return Err(format!("faultstring is not the message: {text}"));
    }
    let action_header = answer
        .headers
        .get("soapaction")
        .cloned()
        .unwrap_or_default();
    if action_header != format!("\"{NS}#Fault\"") {
        return Err(format!("SOAPAction header {action_header:?}"));
    }
    if answer.headers.get("content-type").map(String::as_str) != Some(codec::CONTENT_TYPE) {
        return Err(format!(
            "Content-Type {:?}",
            answer.headers.get("content-type")
        ));
    }
    let is_signed = answer.headers.contains_key("x-mailrun-signature");
    if is_signed != (row.signed == "yes") {
        return Err(format!("signed: {is_signed}, table: {}", row.signed));
    }
    if is_signed {
        let sig =
            sign::Signature::from_headers(|n| answer.headers.get(&n.to_ascii_lowercase()).cloned())
                .map_err(|e| e.to_string())?;
        let request_nonce = req
            .signature
            .iter()
            .flatten()
            .find(|(n, _)| n == "X-Mailrun-Nonce")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let keys = [fx.key().clone(), fx.disabled.key.clone()];
        sign::verify_response(
            &keys,
            &sig,
            side.path(),
            &format!("{NS}#Fault"),
            &answer.body,
            &request_nonce,
            sign::now_unix(),
        )
        .map_err(|e| format!("the fault's signature does not verify: {e}"))?;
    }
    Ok(())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A raw HTTP/1.1 exchange over one connection: the request is written from another
/// thread (an early answer must not deadlock the test), the answer read to EOF.
fn raw_http(port: u16, head: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>, String), String> {
    use std::io::Read;
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let head = head.to_string();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let _ = sender.join();
    if let Err(e) = read {
        if answer.is_empty() {
            return Err(format!("transport error: {e}"));
        }
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)))?;
    let head = String::from_utf8_lossy(&answer[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let mut body = answer[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body).ok_or_else(|| format!("bad chunked body in answer: {head}"))?;
    }
    Ok((status, body, head))
}

/// The body of a chunked HTTP/1.1 message (no trailers).
fn dechunk(mut input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = input.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&input[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        input = &input[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(input.get(..size)?);
        input = input.get(size + 2..)?;
    }
}

/// Apache 2.4's mod_cgid writes the whole request body to the program before it reads
/// the answer: the endpoints' early refusals (413 for an over-size body, 411 for none)
/// must still arrive as the documented fault, not as a reset or an empty reply.
#[test]
fn early_refusals_arrive_intact_through_apache_mod_cgid() {
    let fx = Fixture::new();
    let state = fx.runner.dir().display().to_string();
    super::common::apache::give_to_server(fx.runner.dir());
    let server = super::common::apache::Apache::start_cgi(
        &[
            ("dispatch-cgi", Path::new(pipeline::DISPATCH_CGI)),
            ("runner-cgi", Path::new(pipeline::RUNNER_CGI)),
        ],
        &[
            ("MAILRUN_DATABASE_URL", fx.db.url.as_str()),
            ("MAILRUN_MAX_BODY", "1024"),
            ("MAILRUN_RUNNER_DIR", state.as_str()),
        ],
    );
    let rows = faults::rows();
    let row = |case: &str| rows.iter().find(|r| r.case == case).expect("row").clone();
    // Far more than the socket buffers between Apache and the program hold.
    let size = 4 * 1024 * 1024;
    for side in [Side::Dispatcher, Side::Runner] {
        let action = action(side.operation());
        let head = |length: &str| {
            format!(
                "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml; charset=utf-8\r\n\
                 SOAPAction: \"{action}\"\r\n{length}Connection: close\r\n\r\n",
                side.path()
            )
        };
        let over = row("oversize");
        let (status, body, head_seen) = raw_http(
            server.port,
            &head(&format!("Content-Length: {size}\r\n")),
            vec![b' '; size],
        )
        .unwrap_or_else(|e| panic!("{side:?} over-size: {e}\n{}", server.error_log()));
        let fault = match codec::decode(&body) {
            Ok(Body::Fault(f)) => f,
            other => panic!(
                "{side:?} over-size: HTTP {status} {other:?}\n{head_seen}\n{}\n{}",
                String::from_utf8_lossy(&body),
                server.error_log()
            ),
        };
        assert_eq!(status.to_string(), side.column(&over), "{side:?}");
        assert_eq!(fault.reason.as_str(), over.reason, "{side:?}");
        assert!(
            faults::message_matches(&over.message, &fault.message),
            "{}",
            fault.message
        );
        assert!(
            head_seen.contains(&format!("SOAPAction: \"{NS}#Fault\"")),
            "{head_seen}"
        );

        // No length and no body: the program runs and its 411 fault arrives.
        let no_length = row("no-length");
        let (status, body, _) = raw_http(server.port, &head(""), Vec::new())
            .unwrap_or_else(|e| panic!("{side:?} no length: {e}\n{}", server.error_log()));
        let Ok(Body::Fault(fault)) = codec::decode(&body) else {
            panic!(
                "{side:?} no length: HTTP {status} {}",
                String::from_utf8_lossy(&body)
            );
        };
        assert_eq!(status.to_string(), side.column(&no_length), "{side:?}");
        assert_eq!(fault.reason.as_str(), no_length.reason);

        // A chunked body: Apache 2.4 passes it on without CONTENT_LENGTH; the program
        // reads it to its end, then its 411 fault arrives whole. Large, so that an
        // answer before the body is read would be cut off.
        let mut chunked = Vec::new();
        for _ in 0..64 {
            chunked.extend_from_slice(format!("{:x}\r\n", 65536).as_bytes());
            chunked.extend(std::iter::repeat_n(b' ', 65536));
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (status, body, _) = raw_http(
            server.port,
            &head("Transfer-Encoding: chunked\r\n"),
            chunked,
        )
        .unwrap_or_else(|e| panic!("{side:?} chunked: {e}\n{}", server.error_log()));
        let Ok(Body::Fault(fault)) = codec::decode(&body) else {
            panic!(
                "{side:?} chunked: HTTP {status} {}\n{}",
                String::from_utf8_lossy(&body),
                server.error_log()
            );
        };
        assert_eq!(status.to_string(), side.column(&no_length), "{side:?}");
        assert_eq!(fault.reason.as_str(), no_length.reason);
        assert!(
            faults::message_matches(&no_length.message, &fault.message),
            "{}",
            fault.message
        );
    }
}
