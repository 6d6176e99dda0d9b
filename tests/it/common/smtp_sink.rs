//! Postfix's `smtp-sink` on a loopback port: a real SMTP server that accepts everything
//! (including AUTH). Stopped when dropped. Include with
//! `#[path = "common/smtp_sink.rs"] mod smtp_sink;` next to `mod common;`.

use std::process::{Child, Command, Stdio};

pub struct SmtpSink {
    pub port: u16,
    child: Child,
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let bin = ["/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("Postfix's smtp-sink not found: run scripts/test-setup.sh");
        let port = crate::common::free_port();
        let mut cmd = Command::new(bin);
        if crate::common::is_root() {
            // smtp-sink refuses to keep root privileges.
            cmd.args(["-u", "postfix"]);
        }
        let child = cmd
            .arg(format!("127.0.0.1:{port}"))
            .arg("50")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let mut child = child;
        super::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "smtp-sink",
            Some(&mut child),
            String::new,
        );
        SmtpSink { port, child }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
