//! Real SMTP servers for tests on 127.0.0.1: the scripted aiosmtpd server in
//! `tests/support/smtp_server.py` (faults on demand, records every message and command)
//! and Postfix's `smtp-sink`. Each is killed when its handle is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Faults and behaviour of the scripted server.
#[derive(Debug, Clone, Default)]
pub struct SmtpServerOptions {
    /// RCPT addresses answered with 550 5.1.1.
    pub reject: Vec<String>,
    /// RCPT addresses answered with 451 4.2.0.
    pub defer: Vec<String>,
    /// Reply to the end of DATA instead of 250, e.g. "451 4.3.0 try later".
    pub data_reply: Option<String>,
    /// Give `data_reply` only to the first N messages, then accept (`None`: all).
    pub data_reply_count: Option<u32>,
    /// Close the connection instead of answering the end of DATA.
    pub drop_on_data: bool,
    /// Seconds to wait before answering the end of DATA.
    pub delay: f64,
    /// Delay only the first N answers (`None`: all).
    pub delay_count: Option<u32>,
    /// Offer AUTH over plain text and accept any credentials.
    pub auth: bool,
    /// Offer STARTTLS with a fresh self-signed certificate (which clients must refuse).
    pub starttls_self_signed: bool,
    /// Offer TLS with this certificate (see [`TestPki`]): STARTTLS, or implicit TLS.
    pub tls: Option<TestPki>,
    pub implicit_tls: bool,
    /// After N accepted messages on one connection: close it silently, or (with
    /// `over_limit_421`) answer the next MAIL with 421 and close.
    pub max_per_connection: Option<u32>,
    pub over_limit_421: bool,
    /// Offer PIPELINING (RFC 2920; aiosmtpd reads pipelined commands in order).
    pub pipelining: bool,
}

/// A private CA and a server certificate for 127.0.0.1 signed by it.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("openssl not found ({e}): run scripts/test-setup.sh"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    /// Creates the CA and the server certificate in `dir`.
    pub fn create(dir: &Path) -> TestPki {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=mailrun test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            dir,
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            dir,
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                "server.pem",
                "-extfile",
                "server.ext",
            ],
            dir,
        );
        TestPki {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server.key"),
        }
    }
}

/// One message the server accepted.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReceivedMessage {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub message_id: Option<String>,
    pub data: String,
}

/// One SMTP command the server saw (EHLO, AUTH, MAIL, STARTTLS).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SeenCommand {
    pub verb: String,
    pub secure: bool,
}

pub struct SmtpServer {
    pub port: u16,
    pub record: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// python3 that can import aiosmtpd: the test-setup virtualenv first, then PATH.
fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python3");
    for candidate in [venv, PathBuf::from("python3")] {
        let ok = Command::new(&candidate)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate;
        }
    }
    panic!("python3 with aiosmtpd not found: run scripts/test-setup.sh");
}

fn wait_for_port(port: u16, child: &mut Child) {
    super::wait_for_listener(
        &format!("127.0.0.1:{port}"),
        "the SMTP server",
        Some(child),
        String::new,
    );
}

impl SmtpServer {
    /// Starts the scripted aiosmtpd server.
    pub fn start(options: SmtpServerOptions) -> SmtpServer {
        let python = python();
        let dir = super::temp_dir();
        let record = dir.path().join("record.jsonl");
        std::fs::write(&record, b"").expect("create record");
        let port = super::free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--record")
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for r in &options.reject {
            cmd.arg("--reject").arg(r);
        }
        for d in &options.defer {
            cmd.arg("--defer").arg(d);
        }
        if let Some(reply) = &options.data_reply {
            cmd.arg("--data-reply").arg(reply);
        }
        if let Some(n) = options.data_reply_count {
            cmd.arg("--data-reply-count").arg(n.to_string());
        }
        if options.drop_on_data {
            cmd.arg("--drop-on-data");
        }
        if options.delay > 0.0 {
            cmd.arg("--delay").arg(options.delay.to_string());
        }
        if let Some(n) = options.delay_count {
            cmd.arg("--delay-count").arg(n.to_string());
        }
        if options.auth {
            cmd.arg("--auth");
        }
        if options.pipelining {
            cmd.arg("--pipelining");
        }
        if let Some(n) = options.max_per_connection {
            cmd.arg("--max-per-connection").arg(n.to_string());
            cmd.arg("--over-limit").arg(if options.over_limit_421 {
                "421"
            } else {
                "close"
            });
        }
        if options.starttls_self_signed {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                ])
                .args(["-subj", "/CN=127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .unwrap_or_else(|e| panic!("openssl not found ({e}): run scripts/test-setup.sh"));
            assert!(out.status.success(), "openssl req failed");
            cmd.arg("--tls-cert").arg(&cert).arg("--tls-key").arg(&key);
        }
        if let Some(pki) = &options.tls {
            cmd.arg("--tls-cert")
                .arg(&pki.cert_pem)
                .arg("--tls-key")
                .arg(&pki.key_pem);
        }
        if options.implicit_tls {
            cmd.arg("--implicit-tls");
        }
        let mut child = cmd.spawn().expect("start smtp_server.py");
        wait_for_port(port, &mut child);
        SmtpServer {
            port,
            record,
            child,
            _dir: dir,
        }
    }

    /// Starts Postfix's smtp-sink with extra options (see `man smtp-sink`); it accepts
    /// everything and records nothing unless asked to dump.
    pub fn sink(extra: &[&str]) -> SmtpServer {
        let bin = ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or_else(|| panic!("smtp-sink not found: run scripts/test-setup.sh (postfix)"));
        let dir = super::temp_dir();
        let record = dir.path().join("record.jsonl");
        let port = super::free_port();
        let mut cmd = Command::new(bin);
        if super::is_root() {
            cmd.args(["-u", "nobody"]); // smtp-sink refuses to run as root
        }
        let mut child = cmd
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        wait_for_port(port, &mut child);
        SmtpServer {
            port,
            record,
            child,
            _dir: dir,
        }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        super::complete_lines(&self.record)
            .iter()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("record line is JSON"))
            .collect()
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.events()
            .into_iter()
            .filter(|e| e["kind"] == "message")
            .map(|e| serde_json::from_value(e).expect("message event"))
            .collect()
    }

    /// Every recorded command, in order.
    pub fn commands(&self) -> Vec<SeenCommand> {
        self.events()
            .into_iter()
            .filter(|e| e["kind"] == "command")
            .map(|e| serde_json::from_value(e).expect("command event"))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
