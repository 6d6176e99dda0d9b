//! SMTP delivery (`mailrun::smtp`) against real servers on 127.0.0.1: the scripted
//! aiosmtpd server for content checks and per-recipient faults, Postfix's smtp-sink for
//! its fault options.
use crate::common;

use common::smtp::{SmtpServer, SmtpServerOptions, TestPki};
use mailrun::protocol::{Attachment, Header, OutboundMessage, Outcome, Security, SmtpAccount};
use mailrun::smtp::{Sender, SmtpOptions};
use std::time::Duration;

fn account(port: u16, security: Security) -> SmtpAccount {
    SmtpAccount {
        name: "test".into(),
        host: "127.0.0.1".into(),
        port,
        security,
        username: None,
        password: None,
        max_connections: None,
    }
}

fn message(id: i64, account: SmtpAccount) -> OutboundMessage {
    OutboundMessage {
        id,
        lease_token: format!("lease-{id}"),
        message_id_header: format!("<msg-{id}@mailrun.test>"),
        account,
        from: "Sender <sender@example.com>".into(),
        reply_to: Some("replies@example.com".into()),
        to: vec!["alice@example.com".into()],
        cc: vec!["carol@example.com".into()],
        bcc: vec!["hidden@example.com".into()],
        subject: format!("Test {id}"),
        text_body: Some("Hello in text".into()),
        html_body: Some("<p>Hello in HTML</p>".into()),
        headers: vec![Header {
            name: "X-Campaign".into(),
            value: "autumn".into(),
        }],
        attachments: vec![],
    }
}

fn options() -> SmtpOptions {
    SmtpOptions {
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(30),
        data_timeout: Duration::from_secs(30),
        hello_name: Some("runner.test".into()),
        extra_roots_pem: None,
    }
}

#[test]
fn delivers_with_fixed_message_id_and_hidden_bcc() {
    let server = SmtpServer::start(SmtpServerOptions::default());
    let mut msg = message(1, account(server.port, Security::None));
    msg.attachments.push(Attachment {
        filename: "report.csv".into(),
        content_type: "text/csv".into(),
        data: b"a,b\n1,2\n".to_vec(),
    });
    let mut sender = Sender::new(options());
    let d = sender.deliver(&msg);
    sender.close();
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    assert_eq!(d.smtp_code, Some(250));
    assert_eq!(d.enhanced_status.as_deref(), Some("2.0.0"));
    let got = server.messages();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.message_id.as_deref(), Some("<msg-1@mailrun.test>"));
    assert_eq!(m.mail_from, "sender@example.com");
    assert_eq!(
        m.rcpt_tos,
        vec![
            "alice@example.com",
            "carol@example.com",
            "hidden@example.com"
        ]
    );
    assert!(
        !m.data.to_ascii_lowercase().contains("hidden@example.com"),
        "Bcc leaked into headers"
    );
    assert!(m.data.contains("Subject: Test 1"));
    assert!(m.data.contains("X-Campaign: autumn"));
    assert!(m.data.contains("multipart/alternative"));
    assert!(m.data.contains("multipart/mixed"));
    assert!(m.data.contains("report.csv"));
    assert!(m.data.contains("Reply-To: replies@example.com"));
}

#[test]
fn refused_recipient_does_not_stop_the_others() {
    let server = SmtpServer::start(SmtpServerOptions {
        reject: vec!["carol@example.com".into()],
        ..Default::default()
    });
    let mut sender = Sender::new(options());
    let d = sender.deliver(&message(2, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    let carol = d
        .recipients
        .iter()
        .find(|r| r.address == "carol@example.com")
        .expect("carol reported");
    assert_eq!(carol.outcome, Outcome::Failed);
    assert_eq!(carol.smtp_code, Some(550));
    assert_eq!(carol.enhanced_status.as_deref(), Some("5.1.1"));
    let alice = d
        .recipients
        .iter()
        .find(|r| r.address == "alice@example.com")
        .unwrap();
    assert_eq!(alice.outcome, Outcome::Sent);
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].rcpt_tos,
        vec!["alice@example.com", "hidden@example.com"]
    );
}

#[test]
fn all_recipients_refused_means_no_data() {
    let server = SmtpServer::start(SmtpServerOptions {
        reject: vec!["alice@example.com".into(), "carol@example.com".into()],
        defer: vec!["hidden@example.com".into()],
        ..Default::default()
    });
    let mut sender = Sender::new(options());
    let d = sender.deliver(&message(3, account(server.port, Security::None)));
    // One recipient was only deferred: the message as a whole is retried.
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert_eq!(d.recipients.len(), 3);
    assert!(server.messages().is_empty());
    // The connection stays usable for the next message.
    let mut next = message(4, account(server.port, Security::None));
    next.to = vec!["dave@example.com".into()];
    next.cc.clear();
    next.bcc.clear();
    assert_eq!(sender.deliver(&next).outcome, Outcome::Sent);
}

#[test]
fn temporary_failure_after_data_defers() {
    let server = SmtpServer::start(SmtpServerOptions {
        data_reply: Some("451 4.3.0 Mail server temporarily rejected message".into()),
        ..Default::default()
    });
    let d = Sender::new(options()).deliver(&message(5, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert_eq!(d.smtp_code, Some(451));
    assert_eq!(d.enhanced_status.as_deref(), Some("4.3.0"));
    assert!(d.text.unwrap().contains("temporarily rejected"));
}

#[test]
fn permanent_failure_after_data_fails() {
    let server = SmtpServer::start(SmtpServerOptions {
        data_reply: Some("554 5.7.1 Message rejected as spam".into()),
        ..Default::default()
    });
    let d = Sender::new(options()).deliver(&message(6, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Failed, "{d:?}");
    assert_eq!(d.smtp_code, Some(554));
    assert_eq!(d.enhanced_status.as_deref(), Some("5.7.1"));
}

#[test]
fn connection_dropped_after_the_final_dot_is_unknown_and_next_message_reconnects() {
    let server = SmtpServer::start(SmtpServerOptions {
        drop_on_data: true,
        ..Default::default()
    });
    let mut sender = Sender::new(options());
    let d = sender.deliver(&message(7, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Unknown, "{d:?}");
    assert_eq!(d.smtp_code, None);
    let d = sender.deliver(&message(8, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Unknown, "{d:?}");
    let connections = server
        .commands()
        .iter()
        .filter(|c| c.verb == "SESSION")
        .count();
    assert_eq!(connections, 2, "a broken connection is replaced");
}

#[test]
fn starttls_required_but_not_offered_sends_nothing() {
    let server = SmtpServer::start(SmtpServerOptions {
        auth: true,
        ..Default::default()
    });
    let mut acct = account(server.port, Security::StartTls);
    acct.username = Some("user".into());
    acct.password = Some("canary-Pa55word".into());
    let d = Sender::new(options()).deliver(&message(9, acct));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    let text = d.text.unwrap();
    assert!(text.contains("STARTTLS required but not offered"), "{text}");
    assert!(!text.contains("canary"));
    let verbs: Vec<String> = server.commands().into_iter().map(|c| c.verb).collect();
    assert!(!verbs.contains(&"AUTH".to_string()), "{verbs:?}");
    assert!(!verbs.contains(&"MAIL".to_string()), "{verbs:?}");
    assert!(server.messages().is_empty());
}

#[test]
fn connection_is_reused_across_messages_of_one_account() {
    let server = SmtpServer::start(SmtpServerOptions::default());
    let mut sender = Sender::new(options());
    for id in 10..13 {
        let d = sender.deliver(&message(id, account(server.port, Security::None)));
        assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    }
    sender.close();
    assert_eq!(server.messages().len(), 3);
    let connections = server
        .commands()
        .iter()
        .filter(|c| c.verb == "SESSION")
        .count();
    assert_eq!(connections, 1);
}

#[test]
fn plain_auth_to_a_non_loopback_host_is_refused() {
    // Refused before any connection is made (the address is never routed anyway).
    let mut acct = account(9, Security::None);
    acct.host = "192.0.2.1".into(); // TEST-NET-1
    acct.username = Some("user".into());
    acct.password = Some("canary-Pa55word".into());
    let opts = options();
    let d = Sender::new(opts).deliver(&message(13, acct));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    let text = d.text.unwrap_or_default();
    assert!(
        text.contains("refusing to send credentials in clear text"),
        "{text}"
    );
    assert!(!text.contains("canary"));
}

#[test]
fn auth_over_loopback_works() {
    let server = SmtpServer::start(SmtpServerOptions {
        auth: true,
        ..Default::default()
    });
    let mut acct = account(server.port, Security::None);
    acct.username = Some("user".into());
    acct.password = Some("secret".into());
    let d = Sender::new(options()).deliver(&message(14, acct));
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    assert!(server.commands().iter().any(|c| c.verb == "AUTH"));
}

#[test]
fn smtp_sink_accepts_and_its_faults_map_to_outcomes() {
    let ok = SmtpServer::sink(&[]);
    let d = Sender::new(options()).deliver(&message(20, account(ok.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");

    let soft = SmtpServer::sink(&["-r", "."]);
    let d = Sender::new(options()).deliver(&message(21, account(soft.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert_eq!(d.smtp_code.map(|c| c / 100), Some(4));

    let hard = SmtpServer::sink(&["-f", "rcpt"]);
    let d = Sender::new(options()).deliver(&message(22, account(hard.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Failed, "{d:?}");
    assert_eq!(d.recipients.len(), 3);

    // Disconnects after the final dot: maybe delivered.
    let drop = SmtpServer::sink(&["-q", "."]);
    let d = Sender::new(options()).deliver(&message(23, account(drop.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Unknown, "{d:?}");
}

#[test]
fn invalid_address_fails_without_connecting() {
    let mut msg = message(30, account(9, Security::None));
    msg.to = vec!["not an address".into()];
    let d = Sender::new(options()).deliver(&msg);
    assert_eq!(d.outcome, Outcome::Failed);
    assert!(d.text.unwrap().contains("invalid To address"));
}

#[test]
fn untrusted_starttls_certificate_is_not_downgraded_to_plain_text() {
    let server = SmtpServer::start(SmtpServerOptions {
        auth: true,
        starttls_self_signed: true,
        ..Default::default()
    });
    let mut acct = account(server.port, Security::StartTls);
    acct.username = Some("user".into());
    acct.password = Some("canary-Pa55word".into());
    let d = Sender::new(options()).deliver(&message(40, acct));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert!(
        d.text.as_deref().unwrap_or("").contains("STARTTLS"),
        "{d:?}"
    );
    let verbs: Vec<String> = server.commands().into_iter().map(|c| c.verb).collect();
    assert!(verbs.contains(&"STARTTLS".to_string()), "{verbs:?}");
    assert!(
        !verbs.iter().any(|v| v == "AUTH" || v == "MAIL"),
        "{verbs:?}"
    );
    assert!(server.messages().is_empty());
}

#[test]
fn implicit_tls_to_a_plain_server_sends_nothing() {
    let server = SmtpServer::start(SmtpServerOptions::default());
    let d = Sender::new(options()).deliver(&message(41, account(server.port, Security::Tls)));
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert!(server.commands().iter().all(|c| c.verb != "MAIL"));
    assert!(server.messages().is_empty());
}

#[test]
fn timeout_after_the_final_dot_is_unknown_and_the_next_message_gets_a_fresh_connection() {
    // The first DATA is answered after 3 s; the client waits 1 s.
    let server = SmtpServer::start(SmtpServerOptions {
        delay: 3.0,
        delay_count: Some(1),
        ..Default::default()
    });
    let mut opts = options();
    opts.data_timeout = Duration::from_secs(1);
    let mut sender = Sender::new(opts);
    let d = sender.deliver(&message(50, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Unknown, "{d:?}");
    assert_eq!(d.smtp_code, None);
    assert!(
        d.text.as_deref().unwrap_or("").contains("timed out"),
        "{d:?}"
    );
    // The late 250 for message 50 must not be read as an answer about message 51.
    let d = sender.deliver(&message(51, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    let connections = server
        .commands()
        .iter()
        .filter(|c| c.verb == "SESSION")
        .count();
    assert_eq!(connections, 2, "a fresh connection after the timeout");
}

#[test]
fn starttls_and_implicit_tls_deliver_when_the_certificate_verifies() {
    let dir = common::temp_dir();
    let pki = TestPki::create(dir.path());
    let ca = std::fs::read(&pki.ca_pem).unwrap();
    for (security, implicit) in [(Security::StartTls, false), (Security::Tls, true)] {
        let server = SmtpServer::start(SmtpServerOptions {
            auth: true,
            tls: Some(pki.clone()),
            implicit_tls: implicit,
            ..Default::default()
        });
        let mut acct = account(server.port, security);
        acct.username = Some("user".into());
        acct.password = Some("secret".into());
        let mut opts = options();
        // Without the private CA the certificate does not verify: nothing is sent.
        let d = Sender::new(opts.clone()).deliver(&message(60, acct.clone()));
        assert_eq!(d.outcome, Outcome::Deferred, "{security:?}: {d:?}");
        assert!(server.messages().is_empty());
        opts.extra_roots_pem = Some(ca.clone());
        let d = Sender::new(opts).deliver(&message(61, acct));
        assert_eq!(d.outcome, Outcome::Sent, "{security:?}: {d:?}");
        assert_eq!(server.messages().len(), 1);
        let cmds = server.commands();
        for verb in ["AUTH", "MAIL"] {
            let seen: Vec<_> = cmds.iter().filter(|c| c.verb == verb).collect();
            assert!(!seen.is_empty(), "{security:?}: no {verb}");
            assert!(
                seen.iter().all(|c| c.secure),
                "{security:?}: {verb} in clear"
            );
        }
    }
}

#[test]
fn a_session_the_server_ended_between_messages_is_replaced_without_losing_a_message() {
    // No RSET follows a completed transaction, so the next MAIL is the first to notice
    // a session the server ended: it must go out on a new connection, not be deferred.
    for over_limit_421 in [false, true] {
        let server = SmtpServer::start(SmtpServerOptions {
            max_per_connection: Some(2),
            over_limit_421,
            ..Default::default()
        });
        let mut sender = Sender::new(options());
        for id in 30..35 {
            if !over_limit_421 {
                // Let the silent close land before the next MAIL.
                std::thread::sleep(Duration::from_millis(300));
            }
            let d = sender.deliver(&message(id, account(server.port, Security::None)));
            assert_eq!(d.outcome, Outcome::Sent, "421 mode {over_limit_421}: {d:?}");
        }
        sender.close();
        let ids: Vec<String> = server
            .messages()
            .iter()
            .filter_map(|m| m.message_id.clone())
            .collect();
        let want: Vec<String> = (30..35)
            .map(|id| format!("<msg-{id}@mailrun.test>"))
            .collect();
        assert_eq!(ids, want, "each message exactly once, in order");
        let connections = server
            .commands()
            .iter()
            .filter(|c| c.verb == "SESSION")
            .count();
        assert_eq!(connections, 3, "two messages per connection");
    }
}

#[test]
fn a_refusal_after_data_is_followed_by_rset_before_the_next_message() {
    // An incomplete transaction leaves the session dirty: the next message starts with
    // RSET and still goes out on the same connection.
    let server = SmtpServer::start(SmtpServerOptions {
        data_reply: Some("451 4.3.0 try later".into()),
        data_reply_count: Some(1),
        ..Default::default()
    });
    let mut sender = Sender::new(options());
    let first = sender.deliver(&message(40, account(server.port, Security::None)));
    assert_eq!(first.outcome, Outcome::Deferred, "{first:?}");
    let second = sender.deliver(&message(41, account(server.port, Security::None)));
    assert_eq!(second.outcome, Outcome::Sent, "{second:?}");
    sender.close();
    assert_eq!(server.messages().len(), 1);
}

#[test]
fn a_failed_gate_before_the_final_dot_sends_nothing_of_the_message() {
    // runner-send waits there for the previous outcome's fsync; when that fails the
    // message must not reach the server.
    let server = SmtpServer::start(SmtpServerOptions::default());
    let mut sender = Sender::new(options());
    let mut gate_calls = 0;
    let d = sender.deliver_gated(
        &message(50, account(server.port, Security::None)),
        &mut || {
            gate_calls += 1;
            Err("journal fsync failed".into())
        },
    );
    assert_eq!(gate_calls, 1);
    assert_eq!(d.outcome, Outcome::Deferred, "{d:?}");
    assert_eq!(d.text.as_deref(), Some("journal fsync failed"));
    let d = sender.deliver(&message(51, account(server.port, Security::None)));
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    sender.close();
    let ids: Vec<Option<String>> = server
        .messages()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(ids, vec![Some("<msg-51@mailrun.test>".to_string())]);
}

/// With PIPELINING offered, MAIL, every RCPT and DATA go in one write, and each RCPT is
/// still judged on its own: the accepted recipient gets the message, the refused and
/// deferred ones are reported with their own answers.
#[test]
fn pipelined_recipients_are_judged_one_by_one() {
    let server = SmtpServer::start(SmtpServerOptions {
        pipelining: true,
        reject: vec!["nobody@example.com".into()],
        defer: vec!["later@example.com".into()],
        ..Default::default()
    });
    let mut sender = Sender::new(options());
    let mut msg = message(40, account(server.port, Security::None));
    msg.to = vec![
        "alice@example.com".into(),
        "nobody@example.com".into(),
        "later@example.com".into(),
    ];
    msg.cc.clear();
    msg.bcc.clear();
    let d = sender.deliver(&msg);
    assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    let of = |a: &str| {
        d.recipients
            .iter()
            .find(|r| r.address == a)
            .map(|r| (r.outcome, r.smtp_code))
    };
    assert_eq!(of("alice@example.com"), Some((Outcome::Sent, None)));
    assert_eq!(of("nobody@example.com"), Some((Outcome::Failed, Some(550))));
    assert_eq!(
        of("later@example.com"),
        Some((Outcome::Deferred, Some(451)))
    );
    // Every recipient refused: no message, the session stays usable.
    msg.id = 41;
    msg.message_id_header = "<msg-41@mailrun.test>".into();
    msg.to = vec!["nobody@example.com".into()];
    let d = sender.deliver(&msg);
    assert_eq!(d.outcome, Outcome::Failed, "{d:?}");
    msg.id = 42;
    msg.message_id_header = "<msg-42@mailrun.test>".into();
    msg.to = vec!["alice@example.com".into()];
    assert_eq!(sender.deliver(&msg).outcome, Outcome::Sent);
    sender.close();
    let got: Vec<Option<String>> = server
        .messages()
        .into_iter()
        .map(|m| m.message_id)
        .collect();
    assert_eq!(
        got,
        vec![
            Some("<msg-40@mailrun.test>".to_string()),
            Some("<msg-42@mailrun.test>".to_string())
        ]
    );
    let sessions = server
        .commands()
        .iter()
        .filter(|c| c.verb == "SESSION")
        .count();
    assert_eq!(sessions, 1);
}

/// A server that answers MAIL only once RCPT and DATA have arrived too: a client that
/// waited for each answer (no pipelining) would never get one and time out.
#[test]
fn commands_up_to_data_go_in_one_write_when_the_server_pipelines() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        out.write_all(b"220 strict.test ESMTP\r\n").unwrap();
        let mut held = Vec::new();
        let mut delivered = 0;
        loop {
            let mut line = String::new();
            if lines.read_line(&mut line).unwrap() == 0 {
                return delivered;
            }
            let verb = line.to_ascii_uppercase();
            if verb.starts_with("EHLO") {
                out.write_all(b"250-strict.test\r\n250 PIPELINING\r\n")
                    .unwrap();
            } else if verb.starts_with("MAIL") || verb.starts_with("RCPT") {
                held.push("250 ok\r\n"); // answered with DATA's
            } else if verb.starts_with("DATA") {
                for answer in held.drain(..) {
                    out.write_all(answer.as_bytes()).unwrap();
                }
                out.write_all(b"354 go on\r\n").unwrap();
                let mut body = String::new();
                while body != ".\r\n" {
                    body.clear();
                    lines.read_line(&mut body).unwrap();
                }
                delivered += 1;
                out.write_all(b"250 queued\r\n").unwrap();
            } else if verb.starts_with("QUIT") {
                out.write_all(b"221 bye\r\n").unwrap();
                return delivered;
            } else {
                out.write_all(b"250 ok\r\n").unwrap();
            }
        }
    });
    let mut opts = options();
    opts.command_timeout = Duration::from_secs(3);
    let mut sender = Sender::new(opts);
    for id in 50..52 {
        let d = sender.deliver(&message(id, account(port, Security::None)));
        assert_eq!(d.outcome, Outcome::Sent, "{d:?}");
    }
    sender.close();
    assert_eq!(served.join().unwrap(), 2);
}
