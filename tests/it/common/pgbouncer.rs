//! A private PgBouncer in front of a test cluster (never the system's service): its own
//! ini, port and log in a temp folder, started as a child and killed on drop.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

use crate::common;

pub struct PgBouncer {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// PgBouncer on a free port, forwarding every database to the cluster on `pg_port`,
    /// in `pool_mode` ("transaction", "session").
    pub fn start(pg_port: u16, pool_mode: &str) -> PgBouncer {
        let bin = common::pgbouncer_bin();
        let dir = common::temp_dir();
        let port = common::free_port();
        let d = dir.path().display();
        common::write(&dir.path().join("userlist.txt"), "\"postgres\" \"\"\n");
        common::write(
            &dir.path().join("pgbouncer.ini"),
            format!(
                "[databases]\n\
                 * = host=127.0.0.1 port={pg_port}\n\
                 [pgbouncer]\n\
                 listen_addr = 127.0.0.1\n\
                 listen_port = {port}\n\
                 unix_socket_dir =\n\
                 auth_type = trust\n\
                 auth_file = {d}/userlist.txt\n\
                 pool_mode = {pool_mode}\n\
                 max_client_conn = 1000\n\
                 default_pool_size = 8\n\
                 logfile = {d}/pgbouncer.log\n\
                 pidfile = {d}/pgbouncer.pid\n"
            ),
        );
        let mut cmd = Command::new(bin);
        if common::is_root() {
            // PgBouncer refuses to run as root; it switches user itself (so the child
            // is PgBouncer, whose pid we kill, not a wrapper).
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success());
            cmd.args(["-u", "postgres"]);
        }
        let child = cmd
            .arg(dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgbouncer: run scripts/test-setup.sh");
        let mut bouncer = PgBouncer { port, child, dir };
        let log = bouncer.dir.path().join("pgbouncer.log");
        common::wait_for_listener(
            &format!("127.0.0.1:{port}"),
            "pgbouncer",
            Some(&mut bouncer.child),
            || std::fs::read_to_string(&log).unwrap_or_default(),
        );
        bouncer
    }

    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
