//! The conformance cases; each runs on both runners (see `mod.rs`).
use super::{Kind, RunnerUnderTest};
use crate::common;
use crate::common::pipeline;
use crate::common::smtp::{SmtpServer, SmtpServerOptions};

use std::time::Duration;

use mailrun::protocol::codec;
use mailrun::protocol::sign::{self, Signature, SigningKey};
use mailrun::protocol::{
    Body, FaultReason, JobRunnerConfigUpdate, JobRunnerReady, ReadyStatus, ReplyAction, ReplyRule,
    ReplyThrottle, RunnerSettings,
};

const READY: &str = "urn:mailrun:soap:v1#JobRunnerReady";
const UPDATE: &str = "urn:mailrun:soap:v1#JobRunnerConfigUpdate";

/// One HTTP answer of the runner.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The nonce of the request it answers.
    request_nonce: String,
}

impl Answer {
    /// The answer is the fault of `case` in protocol/faults.md, as a runner sends it:
    /// its HTTP status, reason, signed or not, the quoted `…#Fault` SOAPAction and the
    /// message in the table's words.
    fn is_row(&self, r: &RunnerUnderTest, case: &str) {
        let row = mailrun::protocol::faults::rows()
            .into_iter()
            .find(|row| row.case == case)
            .unwrap_or_else(|| panic!("no row {case} in protocol/faults.md"));
        let kind = r.kind;
        assert_eq!(
            self.status.to_string(),
            row.runner,
            "{kind:?} {case}: HTTP status: {}",
            String::from_utf8_lossy(&self.body)
        );
        let fault = match self.decoded() {
            Body::Fault(f) => f,
            other => panic!("{kind:?} {case}: expected a fault, got {other:?}"),
        };
        assert_eq!(format!("{:?}", fault.reason), row.reason, "{kind:?} {case}");
        assert!(
            mailrun::protocol::faults::message_matches(&row.message, &fault.message),
            "{kind:?} {case}: {:?} is not the table's `{}`",
            fault.message,
            row.message
        );
        assert_eq!(
            self.header("SOAPAction"),
            Some("\"urn:mailrun:soap:v1#Fault\""),
            "{kind:?} {case}: SOAPAction"
        );
        assert_eq!(
            self.signed_by(r),
            row.signed == "yes",
            "{kind:?} {case}: signed should be {}",
            row.signed
        );
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn decoded(&self) -> Body {
        codec::decode(&self.body).unwrap_or_else(|f| {
            panic!(
                "undecodable answer ({f}), HTTP {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The fault reason of a 500 answer.
    fn reason(&self) -> FaultReason {
        assert_eq!(
            self.status,
            500,
            "expected a fault: {}",
            String::from_utf8_lossy(&self.body)
        );
        match self.decoded() {
            Body::Fault(f) => f.reason,
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    /// Is the answer signed, and does its signature verify as the answer to our request
    /// (and only to it)?
    fn signed_by(&self, r: &RunnerUnderTest) -> bool {
        let Some(_) = self.header(sign::HEADER_SIGNATURE) else {
            return false;
        };
        let sig = Signature::from_headers(|n| self.header(n).map(str::to_string))
            .expect("well-formed response signature headers");
        let action = self
            .header("SOAPAction")
            .map(|a| a.trim_matches('"').to_string())
            .expect("a signed answer names its SOAPAction");
        let keys = [r.key.clone()];
        let now = sign::now_unix();
        sign::verify_response(
            &keys,
            &sig,
            &r.path,
            &action,
            &self.body,
            &self.request_nonce,
            now,
        )
        .unwrap_or_else(|e| panic!("the answer's signature does not verify: {e}"));
        // Bound to the request: the same answer does not verify for another one.
        assert!(sign::verify_response(
            &keys,
            &sig,
            &r.path,
            &action,
            &self.body,
            &sign::new_nonce(),
            now
        )
        .is_err());
        true
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs `body` with `action` and the given signature headers (none: unsigned).
fn post(r: &RunnerUnderTest, action: &str, body: &[u8], sig: Option<&Signature>) -> Answer {
    let mut req = agent()
        .post(&r.url)
        .header("Content-Type", codec::CONTENT_TYPE)
        .header("SOAPAction", format!("\"{action}\""));
    if let Some(sig) = sig {
        for (n, v) in sig.to_headers() {
            req = req.header(n, v);
        }
    }
    let mut resp = req.send(body).expect("the runner answers");
    Answer {
        status: resp.status().as_u16(),
        headers: resp
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: resp.body_mut().read_to_vec().expect("body"),
        request_nonce: sig.map(|s| s.nonce.clone()).unwrap_or_default(),
    }
}

/// POSTs `body` signed with the runner's key, now.
fn signed(r: &RunnerUnderTest, action: &str, body: &[u8]) -> Answer {
    let sig = sign::sign(&r.key, "POST", &r.path, action, body);
    post(r, action, body, Some(&sig))
}

fn ready_body(runner_id: &str) -> Vec<u8> {
    codec::encode(&Body::JobRunnerReady(JobRunnerReady {
        runner_id: runner_id.into(),
        queued: 3,
    }))
}

fn settings(r: &RunnerUnderTest) -> RunnerSettings {
    RunnerSettings {
        batch_size: 7,
        send_rate_per_second: 0.0,
        smtp_connect_timeout_seconds: 10,
        smtp_command_timeout_seconds: 60,
        smtp_data_timeout_seconds: 60,
        poll_interval_seconds: 60,
        lease_safety_margin_seconds: 10,
        dispatcher_url: r.listening.url(),
        software: None,
        reply_policy: None,
        max_sessions: None,
        max_sessions_per_account: None,
    }
}

fn update_body(runner_id: &str, version: i64, settings: RunnerSettings) -> Vec<u8> {
    codec::encode(&Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
        runner_id: runner_id.into(),
        version,
        settings,
    }))
}

/// A runner whose SMTP account points at a server nobody listens on (cases that send no
/// mail).
fn idle_runner(kind: Kind, test: &str) -> RunnerUnderTest {
    RunnerUnderTest::start(kind, test, common::free_port(), 10)
}

/// Enqueues one message through the queue's stored procedure.
fn enqueue(r: &RunnerUnderTest, to: &[&str], subject: &str) {
    let message = serde_json::json!({
        "from": "sender@example.org",
        "to": to,
        "subject": subject,
        "text": "hello\r\n.\r\nstill the body\n.leading dot",
        "account": "local",
    });
    r.db.client()
        .execute("SELECT mailrun.enqueue($1::jsonb)", &[&message])
        .expect("enqueue");
}

fn states(r: &RunnerUnderTest) -> Vec<(String, String, Vec<String>, Vec<String>)> {
    r.db.client()
        .query(
            "SELECT subject, state, recipients_sent, recipients_failed
               FROM mailrun.messages ORDER BY id",
            &[],
        )
        .expect("messages")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect()
}

// -------------------------------------------------------------------------------------

/// The handshake: JobRunnerReady answered at once (signed, with versions), then
/// JobRunRequest/JobRun until the queue is empty; every message delivered once, with CRLF
/// line ends and dot-stuffing intact on the wire.
pub fn handshake_delivers_queued_mail_on_job_runner_ready(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let r = RunnerUnderTest::start(kind, "handshake", smtp.port, 10);
    let answer = signed(&r, READY, &ready_body(&r.id));
    assert_eq!(answer.status, 200, "{}", r.server_log());
    assert!(answer.signed_by(&r));
    match answer.decoded() {
        Body::JobRunnerReadyResponse(resp) => {
            assert!(matches!(
                resp.status,
                ReadyStatus::Accepted | ReadyStatus::Busy
            ));
            assert!(!resp.software_version.is_empty());
            assert_eq!(resp.config_version, 0);
        }
        other => panic!("{other:?}"),
    }
    for i in 0..25 {
        enqueue(&r, &[&format!("rcpt{i}@example.org")], &format!("hs {i}"));
    }
    r.tick_until(Duration::from_secs(180), "25 messages sent", || {
        r.db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 25
    });
    pipeline::assert_all_delivered(&r.db, &smtp, 0);
    for m in smtp.messages() {
        assert!(
            m.data
                .contains("hello\r\n.\r\nstill the body\r\n.leading dot"),
            "{kind:?}: body lost its lines: {:?}",
            m.data
        );
    }
}

/// JobRunnerConfigUpdate: a higher version is applied and answered (signed); the same
/// version again is VersionNotIncreasing, a plain-http dispatcher URL to a foreign host
/// and a bad reply rule are InvalidValue, another runner's id UnknownRunner; a refused
/// update leaves the applied version in force.
pub fn config_push_applies_increasing_versions_only(kind: Kind) {
    let r = idle_runner(kind, "config");
    let answer = signed(&r, UPDATE, &update_body(&r.id, 5, settings(&r)));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.signed_by(&r));
    match answer.decoded() {
        Body::JobRunnerConfigUpdateResponse(resp) => assert_eq!(resp.applied_version, 5),
        other => panic!("{other:?}"),
    }
    let again = signed(&r, UPDATE, &update_body(&r.id, 5, settings(&r)));
    assert_eq!(again.reason(), FaultReason::VersionNotIncreasing);
    assert!(again.signed_by(&r));

    let mut plain = settings(&r);
    plain.dispatcher_url = "http://192.0.2.1/cgi-bin/dispatch-cgi".into();
    let answer = signed(&r, UPDATE, &update_body(&r.id, 6, plain));
    assert_eq!(answer.reason(), FaultReason::InvalidValue);

    let mut bad_rules = settings(&r);
    let rule = |position| ReplyRule {
        position,
        code: Some("421".into()),
        enhanced: None,
        pattern: None,
        domain: None,
        account: None,
        action: ReplyAction::Retry,
        throttle: ReplyThrottle::Account,
    };
    bad_rules.reply_policy = Some(vec![rule(10), rule(10)]);
    let answer = signed(&r, UPDATE, &update_body(&r.id, 6, bad_rules));
    assert_eq!(answer.reason(), FaultReason::InvalidValue);

    let answer = signed(&r, UPDATE, &update_body("someone-else", 6, settings(&r)));
    assert_eq!(answer.reason(), FaultReason::UnknownRunner);

    // Still version 5: the refused updates changed nothing.
    let answer = signed(&r, READY, &ready_body(&r.id));
    match answer.decoded() {
        Body::JobRunnerReadyResponse(resp) => assert_eq!(resp.config_version, 5),
        other => panic!("{other:?}"),
    }
}

/// docs/signing.md, "Verification": unsigned, partly signed, forged, foreign-key, moved,
/// tampered and stale requests are refused before anything changes; faults before a key
/// is verified go out unsigned.
pub fn signatures_are_checked_and_answers_signed(kind: Kind) {
    let r = idle_runner(kind, "signatures");
    let body = ready_body(&r.id);

    let unsigned = post(&r, READY, &body, None);
    assert_eq!(unsigned.reason(), FaultReason::MissingSignature);
    assert!(!unsigned.signed_by(&r));

    let good = sign::sign(&r.key, "POST", &r.path, READY, &body);
    let mut partial = agent()
        .post(&r.url)
        .header("Content-Type", codec::CONTENT_TYPE)
        .header("SOAPAction", format!("\"{READY}\""))
        .header(sign::HEADER_KEY_ID, &good.key_id)
        .header(sign::HEADER_NONCE, &good.nonce)
        .send(&body[..])
        .unwrap();
    let partial_body = partial.body_mut().read_to_vec().unwrap();
    match codec::decode(&partial_body).unwrap() {
        Body::Fault(f) => assert_eq!(f.reason, FaultReason::BadSignature),
        other => panic!("{other:?}"),
    }

    let forged_key = SigningKey {
        key_id: r.key.key_id.clone(),
        secret: [7u8; 32],
    };
    let forged = sign::sign(&forged_key, "POST", &r.path, READY, &body);
    assert_eq!(
        post(&r, READY, &body, Some(&forged)).reason(),
        FaultReason::BadSignature
    );

    let stranger = SigningKey::generate("nobody-knows-me");
    let foreign = sign::sign(&stranger, "POST", &r.path, READY, &body);
    post(&r, READY, &body, Some(&foreign)).is_row(&r, "unknown-key-id");
    post(&r, READY, &body, Some(&forged)).is_row(&r, "bad-signature");

    let moved = sign::sign(&r.key, "POST", "/elsewhere", READY, &body);
    assert_eq!(
        post(&r, READY, &body, Some(&moved)).reason(),
        FaultReason::BadSignature
    );

    let tampered = sign::sign(&r.key, "POST", &r.path, READY, &ready_body("other"));
    assert_eq!(
        post(&r, READY, &body, Some(&tampered)).reason(),
        FaultReason::BadSignature
    );

    let mut upper = sign::sign(&r.key, "POST", &r.path, READY, &body);
    upper.nonce = upper.nonce.to_uppercase();
    assert_eq!(
        post(&r, READY, &body, Some(&upper)).reason(),
        FaultReason::BadSignature
    );

    for skew in [-400, 400] {
        let stale = sign::sign_at(
            &r.key,
            "POST",
            &r.path,
            READY,
            &body,
            sign::now_unix() + skew,
            &sign::new_nonce(),
        );
        post(&r, READY, &body, Some(&stale)).is_row(&r, "stale-timestamp");
    }
    // Within the window either way is fine.
    let skewed = sign::sign_at(
        &r.key,
        "POST",
        &r.path,
        READY,
        &body,
        sign::now_unix() - 200,
        &sign::new_nonce(),
    );
    let answer = post(&r, READY, &body, Some(&skewed));
    assert_eq!(answer.status, 200);
    assert!(answer.signed_by(&r));
}

/// A nonce is accepted once: the same signed request again is ReplayedNonce (signed,
/// the key being known).
pub fn replayed_nonce_is_refused(kind: Kind) {
    let r = idle_runner(kind, "replay");
    let body = ready_body(&r.id);
    let sig = sign::sign(&r.key, "POST", &r.path, READY, &body);
    let first = post(&r, READY, &body, Some(&sig));
    assert_eq!(first.status, 200);
    let second = post(&r, READY, &body, Some(&sig));
    assert_eq!(second.reason(), FaultReason::ReplayedNonce);
    assert!(second.signed_by(&r));
}

fn envelope(inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"urn:mailrun:soap:v1\"><soap:Body>{inner}</soap:Body></soap:Envelope>"
    )
}

/// Every fault of the fault table a runner answers (docs/protocol.md, "Faults"), from a
/// correctly signed request, each signed in return. (RunnerDisabled, PlainHttpRefused and
/// Unavailable are the dispatcher's; the signature faults have their own cases.)
pub fn every_runner_fault_of_the_fault_table(kind: Kind) {
    let r = idle_runner(kind, "faults");
    let id = r.id.clone();
    let ready = |inner: &str| envelope(&format!("<m:JobRunnerReady>{inner}</m:JobRunnerReady>"));
    let deep = format!(
        "<m:JobRunnerReady>{}{}</m:JobRunnerReady>",
        "<m:x>".repeat(40),
        "</m:x>".repeat(40)
    );
    let attributes: String = (0..40).map(|i| format!(" a{i}=\"v\"")).collect();
    let cases: Vec<(&str, String, &str, FaultReason)> = vec![
        (
            "truncated",
            envelope("<m:JobRunnerReady>").replace("</soap:Envelope>", ""),
            READY,
            FaultReason::MalformedXml,
        ),
        (
            "unknown element",
            ready(&format!(
                "<m:runnerId>{id}</m:runnerId><m:queued>1</m:queued><m:extra/>"
            )),
            READY,
            FaultReason::MalformedXml,
        ),
        (
            "doctype",
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>{}",
                ready("<m:runnerId>&e;</m:runnerId><m:queued>1</m:queued>")
            ),
            READY,
            FaultReason::DoctypeRefused,
        ),
        (
            "text too large",
            ready(&format!(
                "<m:runnerId>{}</m:runnerId><m:queued>1</m:queued>",
                "r".repeat(70_000)
            )),
            READY,
            FaultReason::TooLarge,
        ),
        ("too deep", envelope(&deep), READY, FaultReason::TooDeep),
        (
            "too many attributes",
            envelope(&format!(
                "<m:JobRunnerReady{attributes}><m:runnerId>{id}</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>"
            )),
            READY,
            FaultReason::TooManyElements,
        ),
        (
            "unknown element",
            envelope("<m:JobCancel><m:runnerId>x</m:runnerId></m:JobCancel>"),
            READY,
            FaultReason::UnknownOperation,
        ),
        (
            "wrong namespace",
            envelope(&format!(
                "<v:JobRunnerReady xmlns:v=\"urn:mailrun:soap:v2\"><v:runnerId>{id}</v:runnerId><v:queued>1</v:queued></v:JobRunnerReady>"
            )),
            READY,
            FaultReason::WrongNamespace,
        ),
        (
            "missing field",
            ready(&format!("<m:runnerId>{id}</m:runnerId>")),
            READY,
            FaultReason::MissingField,
        ),
        (
            "invalid number",
            ready(&format!(
                "<m:runnerId>{id}</m:runnerId><m:queued>many</m:queued>"
            )),
            READY,
            FaultReason::InvalidValue,
        ),
        (
            "SOAPAction does not match the body",
            ready(&format!(
                "<m:runnerId>{id}</m:runnerId><m:queued>1</m:queued>"
            )),
            UPDATE,
            FaultReason::UnknownOperation,
        ),
        (
            "mustUnderstand header",
            format!(
                "<?xml version=\"1.0\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:m=\"urn:mailrun:soap:v1\"><soap:Header><m:Session soap:mustUnderstand=\"1\">x</m:Session></soap:Header><soap:Body><m:JobRunnerReady><m:runnerId>{id}</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady></soap:Body></soap:Envelope>"
            ),
            READY,
            FaultReason::InvalidValue,
        ),
        (
            "unknown runner",
            ready("<m:runnerId>someone-else</m:runnerId><m:queued>1</m:queued>"),
            READY,
            FaultReason::UnknownRunner,
        ),
        (
            "a dispatcher's operation in the body",
            envelope(&format!(
                "<m:JobRunRequest><m:runnerId>{id}</m:runnerId><m:capacity>1</m:capacity><m:softwareVersion>1</m:softwareVersion><m:configVersion>0</m:configVersion></m:JobRunRequest>"
            )),
            READY,
            FaultReason::UnknownOperation,
        ),
    ];
    for (what, body, action, expected) in cases {
        let answer = signed(&r, action, body.as_bytes());
        assert_eq!(answer.reason(), expected, "{kind:?}: {what}");
        assert!(answer.signed_by(&r), "{kind:?}: {what}: fault not signed");
        assert_eq!(
            answer.header("SOAPAction"),
            Some("\"urn:mailrun:soap:v1#Fault\""),
            "{kind:?}: {what}"
        );
    }
    // The rows with a fixed wording, checked word for word (protocol/faults.md).
    let good = ready(&format!(
        "<m:runnerId>{id}</m:runnerId><m:queued>1</m:queued>"
    ));
    signed(&r, UPDATE, good.as_bytes()).is_row(&r, "action-mismatch");
    signed(
        &r,
        READY,
        ready("<m:runnerId>someone-else</m:runnerId><m:queued>1</m:queued>").as_bytes(),
    )
    .is_row(&r, "wrong-runner-id");
    signed(
        &r,
        READY,
        ready(&format!("<m:runnerId>{id}</m:runnerId>")).as_bytes(),
    )
    .is_row(&r, "missing-field");
    // A SOAPAction naming no operation of a runner is refused before the signature.
    for action in [
        "urn:mailrun:soap:v1#JobRunRequest",
        "urn:mailrun:soap:v1#JobCancel",
        "",
    ] {
        signed(&r, action, good.as_bytes()).is_row(&r, "wrong-action");
    }
    post(&r, READY, good.as_bytes(), None).is_row(&r, "unsigned");
    let replayed = sign::sign(&r.key, "POST", &r.path, READY, good.as_bytes());
    post(&r, READY, good.as_bytes(), Some(&replayed));
    post(&r, READY, good.as_bytes(), Some(&replayed)).is_row(&r, "replayed-nonce");
    // Version 0 is not a version; the same version again does not increase.
    let answer = signed(&r, UPDATE, &update_body(&r.id, 0, settings(&r)));
    assert_eq!(answer.reason(), FaultReason::InvalidValue);
    signed(&r, UPDATE, &update_body(&r.id, 1, settings(&r)));
    let answer = signed(&r, UPDATE, &update_body(&r.id, 1, settings(&r)));
    assert_eq!(answer.reason(), FaultReason::VersionNotIncreasing);
}

/// Oversize and hostile input: a body over the runner's 1 MiB request limit is refused
/// with 413 before it is read; billion laughs, non-UTF-8, processing instructions, SOAP
/// 1.2 and an empty body get their precise faults; the runner keeps answering.
pub fn oversize_and_hostile_input_is_refused(kind: Kind) {
    let r = idle_runner(kind, "hostile");
    let huge = vec![b'x'; 1024 * 1024 + 10];
    signed(&r, READY, &huge).is_row(&r, "oversize");
    // Any method but POST (GET is each runner's own page), a POST without a length.
    let mut put = agent()
        .put(&r.url)
        .header("Content-Type", codec::CONTENT_TYPE)
        .send(&b"x"[..])
        .unwrap();
    let put = Answer {
        status: put.status().as_u16(),
        headers: put
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body: put.body_mut().read_to_vec().expect("body"),
        request_nonce: String::new(),
    };
    put.is_row(&r, "method");

    let laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>{}",
        envelope("<m:JobRunnerReady><m:runnerId>&lol3;</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>")
    );
    let hostile: Vec<(&str, Vec<u8>, FaultReason)> = vec![
        ("billion laughs", laughs.into_bytes(), FaultReason::DoctypeRefused),
        (
            "not UTF-8",
            envelope("<m:JobRunnerReady><m:runnerId>\u{e9}</m:runnerId><m:queued>1</m:queued></m:JobRunnerReady>")
                .replace('\u{e9}', "\u{1}")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 1 { 0xe9 } else { b })
                .collect(),
            FaultReason::MalformedXml,
        ),
        (
            "processing instruction",
            format!("<?xml version=\"1.0\"?><?evil x?>{}", envelope("")).into_bytes(),
            FaultReason::MalformedXml,
        ),
        (
            "SOAP 1.2",
            "<env:Envelope xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\"><env:Body/></env:Envelope>"
                .as_bytes()
                .to_vec(),
            FaultReason::WrongNamespace,
        ),
        ("empty body", Vec::new(), FaultReason::MalformedXml),
    ];
    for (what, body, expected) in hostile {
        let answer = signed(&r, READY, &body);
        assert_eq!(answer.reason(), expected, "{kind:?}: {what}");
    }
    let answer = signed(&r, READY, &ready_body(&r.id));
    assert_eq!(answer.status, 200, "{kind:?}: still answering");
}

/// Per-recipient outcomes: refused recipients are reported on their own and the accepted
/// ones still get the message; a message whose only recipient is deferred is deferred.
pub fn per_recipient_outcomes_are_reported(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions {
        reject: vec!["nobody@example.org".into()],
        defer: vec!["later@example.org".into()],
        ..Default::default()
    });
    let r = RunnerUnderTest::start(kind, "recipients", smtp.port, 10);
    enqueue(&r, &["alice@example.org"], "one");
    enqueue(&r, &["bob@example.org", "nobody@example.org"], "two");
    enqueue(&r, &["later@example.org"], "three");
    r.tick_until(Duration::from_secs(180), "outcomes recorded", || {
        r.db.count("SELECT count(DISTINCT message_id) FROM mailrun.delivery_attempts") >= 3
    });
    let s = states(&r);
    assert_eq!(s[0].1, "sent", "{kind:?}: {s:?}");
    assert_eq!(s[1].1, "sent", "{kind:?}: {s:?}");
    assert!(
        s[1].3.contains(&"nobody@example.org".to_string()),
        "{kind:?}: {s:?}"
    );
    assert!(s[1].2.contains(&"bob@example.org".to_string()), "{s:?}");
    assert_eq!(s[2].1, "deferred", "{kind:?}: {s:?}");
    // The refusal's code and enhanced status travel per recipient.
    let recipients: serde_json::Value =
        r.db.client()
            .query_one(
                "SELECT a.recipients FROM mailrun.delivery_attempts a
               JOIN mailrun.messages m ON m.id = a.message_id WHERE m.subject = 'two'",
                &[],
            )
            .expect("attempt of two")
            .get(0);
    let text = recipients.to_string();
    assert!(
        text.contains("nobody@example.org") && text.contains("550"),
        "{kind:?}: {text}"
    );
    assert_eq!(smtp.messages().len(), 2, "{kind:?}");
}

/// A 4xx answer to the final dot defers, a 5xx fails; code and enhanced status are
/// reported.
pub fn smtp_4xx_and_5xx_defer_and_fail(kind: Kind) {
    for (reply, state, code) in [
        ("451 4.3.0 try again later", "deferred", 451),
        ("554 5.7.1 rejected as spam", "failed", 554),
    ] {
        let smtp = SmtpServer::start(SmtpServerOptions {
            data_reply: Some(reply.into()),
            ..Default::default()
        });
        let r = RunnerUnderTest::start(kind, &format!("reply{code}"), smtp.port, 10);
        enqueue(&r, &["alice@example.org"], "answered");
        r.tick_until(Duration::from_secs(120), "an attempt recorded", || {
            r.db.count("SELECT count(*) FROM mailrun.delivery_attempts") >= 1
        });
        let row =
            r.db.client()
                .query_one(
                    "SELECT outcome, smtp_code, enhanced_status FROM mailrun.delivery_attempts",
                    &[],
                )
                .unwrap();
        let (outcome, got_code, enhanced): (String, Option<i32>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(outcome, state, "{kind:?}");
        assert_eq!(got_code, Some(code), "{kind:?}");
        assert_eq!(enhanced.as_deref(), Some(&reply[4..9]), "{kind:?}");
        assert_eq!(states(&r)[0].1, state, "{kind:?}");
    }
}

/// The reply policy: after a pushed rule "421 → throttle the account", a 421 answer sets
/// the account aside for the rest of the run; the messages not started are reported
/// NotAttempted with the answer's code and the reason.
pub fn reply_policy_sets_a_throttled_account_aside(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions {
        data_reply: Some("421 4.7.0 slow down".into()),
        data_reply_count: Some(1),
        ..Default::default()
    });
    let r = RunnerUnderTest::start(kind, "policy", smtp.port, 20);
    let mut s = settings(&r);
    s.batch_size = 20;
    // One session, so the first answer comes before any other message starts.
    s.max_sessions = Some(1);
    s.reply_policy = Some(vec![ReplyRule {
        position: 10,
        code: Some("421".into()),
        enhanced: None,
        pattern: None,
        domain: None,
        account: None,
        action: ReplyAction::Retry,
        throttle: ReplyThrottle::Account,
    }]);
    let answer = signed(&r, UPDATE, &update_body(&r.id, 1, s));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    for i in 0..8 {
        enqueue(&r, &[&format!("p{i}@example.org")], &format!("policy {i}"));
    }
    r.tick_until(Duration::from_secs(120), "a set-aside reported", || {
        r.db.count(
            "SELECT count(*) FROM mailrun.delivery_attempts
              WHERE outcome = 'not_attempted' AND text LIKE '%throttled%'",
        ) >= 1
    });
    let row =
        r.db.client()
            .query_one(
                "SELECT smtp_code, text FROM mailrun.delivery_attempts
              WHERE outcome = 'not_attempted' AND text LIKE '%throttled%' LIMIT 1",
                &[],
            )
            .unwrap();
    let (code, text): (Option<i32>, String) = (row.get(0), row.get(1));
    assert_eq!(code, Some(421), "{kind:?}: {text}");
    assert!(
        text.starts_with("not attempted: account local throttled (421"),
        "{kind:?}: {text}"
    );
}

/// Pushes settings with one SMTP session, a 10 s lease margin and the given data
/// timeout (the runner's own bounds: one message in flight at a time).
fn push_one_session(r: &RunnerUnderTest, version: i64, data_timeout: u32) {
    let mut s = settings(r);
    s.batch_size = 20;
    s.max_sessions = Some(1);
    s.smtp_data_timeout_seconds = data_timeout;
    let answer = signed(r, UPDATE, &update_body(&r.id, version, s));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
}

/// No answer to the final dot within the data timeout: the message may have been
/// delivered, so it is reported `unknown`, never retried silently.
pub fn no_answer_after_the_final_dot_is_unknown(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions {
        delay: 4.0,
        ..Default::default()
    });
    let r = RunnerUnderTest::start(kind, "unknown", smtp.port, 10);
    push_one_session(&r, 1, 1);
    enqueue(&r, &["alice@example.org"], "late answer");
    r.tick_until(Duration::from_secs(120), "an attempt recorded", || {
        r.db.count("SELECT count(*) FROM mailrun.delivery_attempts") >= 1
    });
    let (outcome, text): (String, String) = {
        let row =
            r.db.client()
                .query_one("SELECT outcome, text FROM mailrun.delivery_attempts", &[])
                .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(outcome, "unknown", "{kind:?}: {text}");
    assert!(
        text.contains("no answer after the final dot"),
        "{kind:?}: {text}"
    );
}

fn set_security(r: &RunnerUnderTest, security: &str) {
    r.db.client()
        .execute(
            "UPDATE mailrun.smtp_accounts SET security = $1 WHERE name = 'local'",
            &[&security],
        )
        .unwrap();
}

/// An account that requires STARTTLS, at a server that does not offer it: deferred
/// with the reason, and neither MAIL nor the message goes out in clear.
pub fn starttls_required_but_not_offered_sends_nothing(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let r = RunnerUnderTest::start(kind, "nostarttls", smtp.port, 10);
    set_security(&r, "starttls");
    enqueue(&r, &["alice@example.org"], "secret");
    r.tick_until(Duration::from_secs(120), "an attempt recorded", || {
        r.db.count("SELECT count(*) FROM mailrun.delivery_attempts") >= 1
    });
    let row =
        r.db.client()
            .query_one("SELECT outcome, text FROM mailrun.delivery_attempts", &[])
            .unwrap();
    let (outcome, text): (String, String) = (row.get(0), row.get(1));
    assert_eq!(outcome, "deferred", "{kind:?}: {text}");
    assert!(
        text.contains("STARTTLS required but not offered"),
        "{kind:?}: {text}"
    );
    assert!(smtp.messages().is_empty(), "{kind:?}");
    let verbs: Vec<String> = smtp.commands().into_iter().map(|c| c.verb).collect();
    assert!(!verbs.iter().any(|v| v == "MAIL"), "{kind:?}: {verbs:?}");
}

/// STARTTLS offered with a certificate no trusted root signed: the handshake fails, the
/// message is deferred, nothing is sent after it.
pub fn starttls_with_an_untrusted_certificate_sends_nothing(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions {
        starttls_self_signed: true,
        ..Default::default()
    });
    let r = RunnerUnderTest::start(kind, "untrusted", smtp.port, 10);
    set_security(&r, "starttls");
    enqueue(&r, &["alice@example.org"], "secret");
    r.tick_until(Duration::from_secs(120), "an attempt recorded", || {
        r.db.count("SELECT count(*) FROM mailrun.delivery_attempts") >= 1
    });
    let row =
        r.db.client()
            .query_one("SELECT outcome, text FROM mailrun.delivery_attempts", &[])
            .unwrap();
    let (outcome, text): (String, String) = (row.get(0), row.get(1));
    assert_eq!(outcome, "deferred", "{kind:?}: {text}");
    assert!(smtp.messages().is_empty(), "{kind:?}");
    let seen = smtp.commands();
    assert!(!seen.iter().any(|c| c.verb == "MAIL"), "{kind:?}: {seen:?}");
}

/// The process delivering a batch is killed (SIGKILL) mid-batch: nothing is lost, and
/// with one session at most the one message in flight goes out twice (Message-IDs
/// counted at the SMTP server).
pub fn kill_during_delivery_loses_nothing(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions {
        delay: 0.05,
        ..Default::default()
    });
    let r = RunnerUnderTest::start(kind, "kill", smtp.port, 20);
    push_one_session(&r, 1, 60);
    for i in 0..100 {
        enqueue(&r, &[&format!("k{i}@example.org")], &format!("kill {i}"));
    }
    let mut killed = false;
    r.tick_until(Duration::from_secs(300), "100 messages sent", || {
        if !killed && smtp.messages().len() >= 10 {
            if let Some(pid) = r.delivering_pid() {
                pipeline::kill_9(pid);
                killed = true;
            }
        }
        r.db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 100
    });
    assert!(killed, "{kind:?}: the delivering process was killed");
    let delivered = pipeline::assert_all_delivered(&r.db, &smtp, 1);
    eprintln!(
        "{kind:?}: killed mid-batch, {} duplicate(s)",
        delivered.duplicates()
    );
}

/// What goes on the wire: every line end in DATA is CRLF (a bare CR or LF in the body
/// becomes CRLF, a dot after it is stuffed, so the end of DATA cannot come early), and no
/// line passes 998 octets, a 2,000-character subject without spaces included.
pub fn wire_format_is_crlf_only_with_short_lines(kind: Kind) {
    let smtp = SmtpServer::start(SmtpServerOptions::default());
    let r = RunnerUnderTest::start(kind, "wire", smtp.port, 10);
    let message = serde_json::json!({
        "from": "sender@example.org",
        "to": ["alice@example.org"],
        "subject": "S".repeat(2000),
        "text": "8-bit Grüße\r.\rbare CR after 8-bit\n.\nlast line",
        "account": "local",
    });
    r.db.client()
        .execute("SELECT mailrun.enqueue($1::jsonb)", &[&message])
        .expect("enqueue");
    r.tick_until(Duration::from_secs(120), "the message sent", || {
        r.db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 1
    });
    let received = smtp.messages();
    assert_eq!(received.len(), 1, "{kind:?}");
    let data = received[0].data.as_bytes();
    for (i, b) in data.iter().enumerate() {
        let bare_cr = *b == b'\r' && data.get(i + 1) != Some(&b'\n');
        let bare_lf = *b == b'\n' && (i == 0 || data[i - 1] != b'\r');
        assert!(
            !bare_cr && !bare_lf,
            "{kind:?}: bare line end at {i}: {:?}",
            received[0].data
        );
    }
    for line in received[0].data.split("\r\n") {
        assert!(line.len() <= 998, "{kind:?}: a {}-octet line", line.len());
    }
    assert!(
        received[0].data.contains("last line"),
        "{kind:?}: the body was cut short: {:?}",
        received[0].data
    );
}

/// STARTTLS and implicit TLS to a relay whose certificate a private CA signed: refused
/// (nothing sent) until the CA is trusted (`smtp_ca_file`), then delivered, with AUTH
/// and MAIL only ever sent encrypted.
pub fn tls_with_a_private_ca_delivers_and_logs_in_only_encrypted(kind: Kind) {
    let dir = common::temp_dir();
    let pki = crate::common::smtp::TestPki::create(dir.path());
    let ca = std::fs::read(&pki.ca_pem).unwrap();
    for (security, implicit) in [("starttls", false), ("tls", true)] {
        let smtp = SmtpServer::start(SmtpServerOptions {
            auth: true,
            tls: Some(pki.clone()),
            implicit_tls: implicit,
            ..Default::default()
        });
        let r = RunnerUnderTest::start(kind, &format!("ca_{security}"), smtp.port, 10);
        r.db.client()
            .execute(
                "UPDATE mailrun.smtp_accounts
                    SET security = $1, username = 'user', password = 'canary-Pa55word'
                  WHERE name = 'local'",
                &[&security],
            )
            .unwrap();
        enqueue(&r, &["alice@example.org"], "untrusted");
        r.tick_until(Duration::from_secs(120), "an attempt recorded", || {
            r.db.count("SELECT count(*) FROM mailrun.delivery_attempts") >= 1
        });
        assert_eq!(
            r.db.count("SELECT count(*) FROM mailrun.delivery_attempts WHERE outcome = 'deferred'"),
            1,
            "{kind:?} {security}: an untrusted certificate defers"
        );
        assert!(smtp.messages().is_empty(), "{kind:?} {security}");
        r.trust_smtp_ca(&ca);
        r.db.fast_retries();
        r.db.client()
            .execute("UPDATE mailrun.messages SET next_attempt_at = now()", &[])
            .ok();
        r.tick_until(Duration::from_secs(120), "the message sent", || {
            r.db.count("SELECT count(*) FROM mailrun.messages WHERE state = 'sent'") == 1
        });
        assert_eq!(smtp.messages().len(), 1, "{kind:?} {security}");
        let commands = smtp.commands();
        for verb in ["AUTH", "MAIL"] {
            let seen: Vec<_> = commands.iter().filter(|c| c.verb == verb).collect();
            assert!(!seen.is_empty(), "{kind:?} {security}: no {verb}");
            assert!(
                seen.iter().all(|c| c.secure),
                "{kind:?} {security}: {verb} in clear"
            );
        }
        let text: String =
            r.db.client()
                .query_one(
                    "SELECT string_agg(coalesce(text, ''), ' ') FROM mailrun.delivery_attempts",
                    &[],
                )
                .unwrap()
                .get(0);
        assert!(
            !text.contains("canary-Pa55word"),
            "{kind:?}: password in a result"
        );
    }
}

/// A runner whose configuration is gone (deleted by hand, a broken upload) answers an
/// unsigned Internal fault (it has no key to sign with) and nothing else; restored, it
/// answers again.
pub fn a_runner_that_lost_its_configuration_answers_internal(kind: Kind) {
    let r = idle_runner(kind, "internal");
    let config = r.config_file();
    let aside = config.with_extension("aside");
    std::fs::rename(&config, &aside).unwrap();
    let answer = signed(&r, READY, &ready_body(&r.id));
    assert_eq!(answer.reason(), FaultReason::Internal, "{kind:?}");
    assert!(!answer.signed_by(&r), "{kind:?}: signed without a key");
    let text = String::from_utf8_lossy(&answer.body).to_string();
    assert!(!text.contains(&r.key.secret_hex()), "{kind:?}");
    std::fs::rename(&aside, &config).unwrap();
    let answer = signed(&r, READY, &ready_body(&r.id));
    assert_eq!(answer.status, 200, "{kind:?}");
}
