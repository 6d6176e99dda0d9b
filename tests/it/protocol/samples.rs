//! Message values used by the protocol tests and written to protocol/examples/.
#![allow(dead_code)]

use chrono::{TimeZone, Utc};
use mailrun::protocol::*;

/// Text that stresses escaping: markup characters, a CDATA terminator, CR LF, tab,
/// non-ASCII and an astral-plane character, leading and trailing spaces.
pub const NASTY: &str = " <b>Tom & \"Jerry\" 'x'</b> ]]> \r\n\tZoë — 東京 🚀 ";

fn at(secs: i64, nanos: u32) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(secs, nanos)
        .single()
        .expect("valid timestamp")
}

pub fn account(full: bool) -> SmtpAccount {
    SmtpAccount {
        name: "transactional".into(),
        host: "smtp.example.net".into(),
        port: if full { 587 } else { 25 },
        security: if full {
            Security::StartTls
        } else {
            Security::None
        },
        username: full.then(|| "mailer@example.net".into()),
        password: full.then(|| "s3cret <&> pass".into()),
        max_connections: full.then_some(10),
    }
}

pub fn message_full() -> OutboundMessage {
    OutboundMessage {
        id: 1042,
        lease_token: "3f1c2a9e-7b7d-4f7e-9a51-0c1d2e3f4a5b".into(),
        message_id_header: "<3f1c2a9e-7b7d-4f7e-9a51-0c1d2e3f4a5b@mail.example.com>".into(),
        account: account(true),
        from: "\"Example Shop\" <shop@example.com>".into(),
        reply_to: Some("support@example.com".into()),
        to: vec!["alice@example.org".into(), "Bob <bob@example.org>".into()],
        cc: vec!["carol@example.org".into()],
        bcc: vec!["audit@example.com".into()],
        subject: "Your order #1042 — Zoë's <gift> & more".into(),
        text_body: Some("Hello Alice,\r\n\r\nYour order shipped.\r\n]]> & <done>\r\n".into()),
        html_body: Some("<p>Hello <b>Alice</b>,</p><p>Your order shipped.</p>".into()),
        headers: vec![
            Header {
                name: "X-Campaign".into(),
                value: "autumn-2026".into(),
            },
            Header {
                name: "List-Unsubscribe".into(),
                value: "<mailto:unsub@example.com>".into(),
            },
        ],
        attachments: vec![
            Attachment {
                filename: "invoice-1042.pdf".into(),
                content_type: "application/pdf".into(),
                data: b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n".to_vec(),
            },
            Attachment {
                filename: "empty.bin".into(),
                content_type: "application/octet-stream".into(),
                data: Vec::new(),
            },
        ],
    }
}

pub fn message_minimal() -> OutboundMessage {
    OutboundMessage {
        id: 1043,
        lease_token: "lt-1043".into(),
        message_id_header: "<m1043@mail.example.com>".into(),
        account: account(false),
        from: "noreply@example.com".into(),
        reply_to: None,
        to: vec!["dave@example.org".into()],
        cc: vec![],
        bcc: vec![],
        subject: String::new(),
        text_body: None,
        html_body: None,
        headers: vec![],
        attachments: vec![],
    }
}

pub fn job_run_request() -> JobRunRequest {
    JobRunRequest {
        runner_id: "runner-eu-1".into(),
        capacity: 200,
        software_version: "0.1.0".into(),
        config_version: 7,
        results: vec![
            MessageResult {
                job_run_id: "jr-20261123-0001".into(),
                message_id: 1040,
                lease_token: "lt-1040".into(),
                outcome: Outcome::Sent,
                smtp_code: Some(250),
                enhanced_status: Some("2.0.0".into()),
                text: Some("Ok: queued as 4Xy1Zk".into()),
                attempted_at: at(1_795_430_000, 0),
                recipients: vec![],
            },
            MessageResult {
                job_run_id: "jr-20261123-0001".into(),
                message_id: 1041,
                lease_token: "lt-1041".into(),
                outcome: Outcome::Deferred,
                smtp_code: Some(451),
                enhanced_status: Some("4.7.1".into()),
                text: Some("Greylisted, try again later".into()),
                attempted_at: at(1_795_430_001, 250_000_000),
                recipients: vec![
                    RecipientResult {
                        address: "alice@example.org".into(),
                        outcome: Outcome::Sent,
                        smtp_code: Some(250),
                        enhanced_status: Some("2.1.5".into()),
                        text: Some("Recipient ok".into()),
                    },
                    RecipientResult {
                        address: "nobody@example.org".into(),
                        outcome: Outcome::Failed,
                        smtp_code: Some(550),
                        enhanced_status: Some("5.1.1".into()),
                        text: Some("User unknown".into()),
                    },
                    RecipientResult {
                        address: "later@example.org".into(),
                        outcome: Outcome::Deferred,
                        smtp_code: None,
                        enhanced_status: None,
                        text: None,
                    },
                ],
            },
            MessageResult {
                job_run_id: "jr-20261123-0001".into(),
                message_id: 1039,
                lease_token: "lt-1039".into(),
                outcome: Outcome::NotAttempted,
                smtp_code: None,
                enhanced_status: None,
                text: None,
                attempted_at: at(1_795_430_002, 123_456_000),
                recipients: vec![],
            },
        ],
        held_job_runs: Some(vec!["jr-20261123-0001".into(), "jr-20261123-0002".into()]),
    }
}

pub fn job_run() -> JobRun {
    JobRun {
        job_run_id: "jr-20261123-0002".into(),
        lease_seconds: 600,
        acknowledged: vec![
            Acknowledgement {
                message_id: 1040,
                lease_token: "lt-1040".into(),
            },
            Acknowledgement {
                message_id: 1041,
                lease_token: "lt-1041".into(),
            },
        ],
        messages: vec![message_full(), message_minimal()],
    }
}

pub fn job_run_empty() -> JobRun {
    JobRun {
        job_run_id: String::new(),
        lease_seconds: 0,
        acknowledged: vec![],
        messages: vec![],
    }
}

pub fn settings(software: bool) -> RunnerSettings {
    RunnerSettings {
        batch_size: 100,
        send_rate_per_second: 12.5,
        smtp_connect_timeout_seconds: 30,
        smtp_command_timeout_seconds: 300,
        smtp_data_timeout_seconds: 600,
        poll_interval_seconds: 60,
        lease_safety_margin_seconds: 30,
        dispatcher_url: "https://dispatch.example.com/cgi-bin/dispatch-cgi".into(),
        software: software.then(|| SoftwareUpdate {
            version: "0.2.0".into(),
            url: "https://downloads.example.com/mailrun/mailrun-0.2.0-x86_64.tar.gz".into(),
            sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        }),
        reply_policy: software.then(reply_policy),
        max_sessions: software.then_some(50),
        max_sessions_per_account: software.then_some(10),
    }
}

/// A reply policy with every optional field present in some rule.
pub fn reply_policy() -> Vec<ReplyRule> {
    vec![
        ReplyRule {
            position: 10,
            code: Some("421".into()),
            enhanced: None,
            pattern: None,
            domain: None,
            account: None,
            action: ReplyAction::AnotherAccount,
            throttle: ReplyThrottle::Account,
        },
        ReplyRule {
            position: 40,
            code: Some("5xx".into()),
            enhanced: Some("5.7".into()),
            pattern: Some("rate.?limit|connection frequency limited".into()),
            domain: None,
            account: None,
            action: ReplyAction::Retry,
            throttle: ReplyThrottle::Account,
        },
        ReplyRule {
            position: 55,
            code: Some("4xx".into()),
            enhanced: None,
            pattern: None,
            domain: Some("gmail.com".into()),
            account: Some("provider-eu".into()),
            action: ReplyAction::Retry,
            throttle: ReplyThrottle::Domain,
        },
        ReplyRule {
            position: 80,
            code: Some("5xx".into()),
            enhanced: Some("5.1.1".into()),
            pattern: None,
            domain: None,
            account: None,
            action: ReplyAction::Suppress,
            throttle: ReplyThrottle::None,
        },
        ReplyRule {
            position: 120,
            code: None,
            enhanced: None,
            pattern: Some("spam".into()),
            domain: None,
            account: None,
            action: ReplyAction::Fail,
            throttle: ReplyThrottle::None,
        },
    ]
}

/// One fault per reason, worded as protocol/faults.md says the endpoints word it
/// (`protocol::examples_follow_the_fault_table` checks).
pub fn fault(reason: FaultReason) -> Fault {
    let message = match reason {
        FaultReason::MalformedXml => "not well-formed XML at byte 212: unclosed tag",
        FaultReason::DoctypeRefused => "DOCTYPE is not allowed in SOAP messages",
        FaultReason::TooLarge => "envelope is 9437184 bytes, the limit is 8388608 bytes",
        FaultReason::TooDeep => "elements nested deeper than 32 levels under <Envelope/Body/JobRunRequest/results/...>",
        FaultReason::TooManyElements => "more than 200000 elements",
        FaultReason::UnknownOperation => "unknown operation <JobCancel>",
        FaultReason::WrongNamespace => "<JobRunRequest> in soap:Body is in namespace \"urn:mailrun:soap:v0\", expected \"urn:mailrun:soap:v1\"",
        FaultReason::MissingField => "missing <runnerId> in JobRunRequest",
        FaultReason::InvalidValue => "invalid value for <outcome> in JobRunRequest/results/result[2]: \"Bounced\" is not one of Sent, Deferred, Failed, NotAttempted, Unknown",
        FaultReason::MissingSignature => "request is not signed (no X-Mailrun-* headers)",
        FaultReason::BadSignature => "signature does not match",
        FaultReason::StaleTimestamp => "timestamp 1795429588 is outside the ±300 s window around 1795430000",
        FaultReason::ReplayedNonce => "nonce already used; sign every request afresh",
        FaultReason::UnknownRunner => "no runner has key id \"k-old\"",
        FaultReason::RunnerDisabled => "runner \"runner-eu-1\" is disabled",
        FaultReason::VersionNotIncreasing => "version 7 does not increase the applied version 7",
        FaultReason::PlainHttpRefused => "plain http:// to a non-loopback peer is refused",
        FaultReason::Unavailable => "the dispatcher's database is unavailable; retry later",
        FaultReason::Internal => "not configured; see the endpoint's log",
    };
    Fault::new(reason, message)
}

/// kebab-case of a reason token: MalformedXml → malformed-xml.
pub fn kebab(token: &str) -> String {
    let mut out = String::new();
    for (i, c) in token.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A mixed outcome as the contract asks for it: the server accepted one recipient,
/// refused one for good and one for now; every recipient is listed with its own answer.
pub fn job_run_request_mixed() -> JobRunRequest {
    let recipient = |address: &str, outcome, code, enhanced: &str, text: &str| RecipientResult {
        address: address.into(),
        outcome,
        smtp_code: Some(code),
        enhanced_status: Some(enhanced.into()),
        text: Some(text.into()),
    };
    JobRunRequest {
        runner_id: "runner-eu-1".into(),
        capacity: 200,
        software_version: "0.1.0".into(),
        config_version: 7,
        results: vec![MessageResult {
            job_run_id: "jr-20261123-0002".into(),
            message_id: 1050,
            lease_token: "lt-1050".into(),
            outcome: Outcome::Sent,
            smtp_code: Some(250),
            enhanced_status: Some("2.0.0".into()),
            text: Some("Ok: queued as 7Qw2Rt".into()),
            attempted_at: at(1_795_430_100, 0),
            recipients: vec![
                recipient(
                    "alice@example.org",
                    Outcome::Sent,
                    250,
                    "2.1.5",
                    "Recipient ok",
                ),
                recipient(
                    "bob@example.org",
                    Outcome::Failed,
                    550,
                    "5.1.1",
                    "No such user",
                ),
                recipient(
                    "carol@example.org",
                    Outcome::Deferred,
                    452,
                    "4.2.2",
                    "Mailbox full",
                ),
            ],
        }],
        held_job_runs: None,
    }
}

/// The checked-in examples: file name → body.
pub fn examples() -> Vec<(String, Body)> {
    let mut out: Vec<(String, Body)> = vec![
        (
            "job-run-request.xml".into(),
            Body::JobRunRequest(job_run_request()),
        ),
        (
            "job-run-request-mixed.xml".into(),
            Body::JobRunRequest(job_run_request_mixed()),
        ),
        ("job-run.xml".into(), Body::JobRun(job_run())),
        ("job-run-empty.xml".into(), Body::JobRun(job_run_empty())),
        (
            "job-runner-ready.xml".into(),
            Body::JobRunnerReady(JobRunnerReady {
                runner_id: "runner-eu-1".into(),
                queued: 1342,
            }),
        ),
        (
            "job-runner-ready-response.xml".into(),
            Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                status: ReadyStatus::Accepted,
                software_version: "0.1.0".into(),
                config_version: 7,
            }),
        ),
        (
            "job-runner-config-update.xml".into(),
            Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
                runner_id: "runner-eu-1".into(),
                version: 8,
                settings: settings(true),
            }),
        ),
        (
            "job-runner-config-update-response.xml".into(),
            Body::JobRunnerConfigUpdateResponse(JobRunnerConfigUpdateResponse {
                applied_version: 8,
            }),
        ),
    ];
    for reason in FaultReason::ALL {
        out.push((
            format!("fault-{}.xml", kebab(reason.as_str())),
            Body::Fault(fault(reason)),
        ));
    }
    out
}

/// Everything the generated-bodies tests encode: the examples plus every optional
/// field absent or present and hostile text in every string.
pub fn sample_bodies() -> Vec<(String, Body)> {
    let mut out = examples();
    let mut request = job_run_request();
    request.runner_id = NASTY.into();
    for r in &mut request.results {
        r.text = Some(NASTY.into());
        r.job_run_id = NASTY.into();
        r.lease_token = NASTY.into();
        for rc in &mut r.recipients {
            rc.text = Some(NASTY.into());
        }
    }
    out.push(("request-nasty".into(), Body::JobRunRequest(request)));
    let mut minimal = job_run_request();
    minimal.results.clear();
    minimal.config_version = 0;
    out.push(("request-minimal".into(), Body::JobRunRequest(minimal)));

    let mut nasty = message_full();
    nasty.subject = NASTY.replace(['\r', '\n'], "");
    nasty.text_body = Some(NASTY.into());
    nasty.html_body = Some(NASTY.into());
    nasty.account.password = Some(NASTY.into());
    nasty.account.name = NASTY.into();
    nasty.headers[0].value = NASTY.replace(['\r', '\n'], "");
    nasty.attachments[0].data = (0..=255u8).cycle().take(5000).collect();
    nasty.attachments[0].filename = "Zoë <1>.bin".into();
    let mut run = job_run();
    run.messages.push(nasty);
    let mut blank = message_minimal();
    blank.text_body = Some(String::new());
    blank.html_body = Some(" ".into());
    blank.account.username = Some(String::new());
    blank.account.password = Some(String::new());
    blank.account.security = Security::Tls;
    run.messages.push(blank);
    out.push(("job-run-nasty".into(), Body::JobRun(run)));
    let mut no_acks = job_run();
    no_acks.acknowledged.clear();
    out.push(("job-run-no-acks".into(), Body::JobRun(no_acks)));

    for status in [ReadyStatus::Busy, ReadyStatus::Disabled] {
        out.push((
            format!("ready-{status:?}"),
            Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                status,
                software_version: "0.1.0".into(),
                config_version: 0,
            }),
        ));
    }
    for (i, rate) in [0.0, 1.0, 0.1, 1e-3, 123456.789].into_iter().enumerate() {
        let mut s = settings(false);
        s.send_rate_per_second = rate;
        s.lease_safety_margin_seconds = 0;
        out.push((
            format!("config-{i}"),
            Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
                runner_id: "r".into(),
                version: i64::MAX - i as i64,
                settings: s,
            }),
        ));
    }
    let mut policy = settings(false);
    policy.reply_policy = Some(Vec::new());
    out.push((
        "config-empty-policy".into(),
        Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "r".into(),
            version: 1,
            settings: policy.clone(),
        }),
    ));
    let mut rules = reply_policy();
    rules[4].pattern = Some(NASTY.chars().filter(|c| *c != '\r' && *c != '\n').collect());
    rules[2].account = Some(
        NASTY
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect(),
    );
    policy.reply_policy = Some(rules);
    out.push((
        "config-nasty-policy".into(),
        Body::JobRunnerConfigUpdate(JobRunnerConfigUpdate {
            runner_id: "r".into(),
            version: 2,
            settings: policy,
        }),
    ));
    let mut nasty_fault = fault(FaultReason::InvalidValue);
    nasty_fault.message = NASTY.into();
    out.push(("fault-nasty".into(), Body::Fault(nasty_fault)));
    out
}
