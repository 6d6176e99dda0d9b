//! The delaying SMTP server of the benchmarks (`benches/delay_smtp.py`) for tests: slow
//! replies, several ports, and counters of sessions and transactions busy at once.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// How the server behaves.
#[derive(Debug, Clone, Default)]
pub struct DelayOptions {
    /// Seconds before the greeting, each RCPT answer and the answer to the final dot.
    pub delay: f64,
    /// Ports (domains or accounts) to serve.
    pub ports: u16,
    /// 421 to the greeting of every session beyond this many on one port.
    pub max_sessions: Option<u32>,
}

pub struct DelaySmtp {
    pub port_base: u16,
    stats: PathBuf,
    record: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// A run of free consecutive ports (bound and released; good enough on loopback).
fn free_ports(n: u16) -> u16 {
    for _ in 0..50 {
        let base = super::free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        let all_free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

impl DelaySmtp {
    pub fn start(options: DelayOptions) -> DelaySmtp {
        let dir = super::temp_dir();
        let ports = options.ports.max(1);
        let port_base = free_ports(ports);
        let stats = dir.path().join("stats.json");
        let record = dir.path().join("record.tsv");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/delay_smtp.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port-base", &port_base.to_string()])
            .args(["--ports", &ports.to_string()])
            .args(["--delay", &options.delay.to_string()])
            .arg("--stats")
            .arg(&stats)
            .arg("--record")
            .arg(&record)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = options.max_sessions {
            cmd.args(["--max-sessions", &n.to_string()]);
        }
        let mut child = cmd.spawn().expect("python3 benches/delay_smtp.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("delay_smtp.py ready line");
        assert_eq!(line.trim(), "ready", "delay_smtp.py did not start");
        DelaySmtp {
            port_base,
            stats,
            record,
            child,
            _dir: dir,
        }
    }

    /// The counters as last written (once a second, and at stop).
    pub fn stats(&self) -> serde_json::Value {
        std::fs::read(&self.stats)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Stops the server (SIGTERM: it writes its final counters) and returns them.
    pub fn stop(&mut self) -> serde_json::Value {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        self.stats()
    }

    /// (port, Message-ID) of every accepted message, in order.
    pub fn received(&self) -> Vec<(u16, String)> {
        super::complete_lines(&self.record)
            .iter()
            .filter_map(|l| {
                let (port, id) = l.split_once('\t')?;
                Some((port.parse().ok()?, id.to_string()))
            })
            .collect()
    }
}

impl Drop for DelaySmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
