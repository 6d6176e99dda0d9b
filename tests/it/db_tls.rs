//! TLS to PostgreSQL (issue 19): a private cluster with `ssl = on`, a certificate for
//! `localhost` signed by a test CA made here with the `openssl` command, and `pg_hba.conf`
//! refusing the `mailrun` role anything but TLS. The commands connect as libpq documents
//! `sslmode`: `verify-full` checks the CA and the name, `verify-ca` only the CA,
//! `require` neither; a certificate from another CA, or for another name under
//! `verify-full`, is refused with exit 78 and a message that names the reason and never
//! the password.
use crate::common;

use std::path::Path;
use std::process::Command;

/// The password in every URL of this test; it must never be printed.
const PASSWORD: &str = "s3cret-db-pw";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl: run scripts/test-setup.sh");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`NAME-ca.pem`) and a server certificate it signed for `san`
/// (`NAME-server.pem`, `NAME-server.key`).
fn certificates(dir: &Path, name: &str, san: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-server.key");
    let csr = format!("{name}-server.csr");
    let cert = format!("{name}-server.pem");
    let ext = format!("{name}-ext.cnf");
    openssl(dir, &["genrsa", "-out", &ca_key, "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &ca_key,
            "-sha256",
            "-days",
            "2",
            "-subj",
            &format!("/CN=mailrun test CA {name}"),
            "-out",
            &ca,
        ],
    );
    openssl(dir, &["genrsa", "-out", &key, "2048"]);
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            "/CN=postgres server",
            "-out",
            &csr,
        ],
    );
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName = {san}\nbasicConstraints = CA:FALSE\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-sha256",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    );
}

#[test]
fn sslmode_verify_full_connects_to_a_tls_cluster_and_refuses_wrong_certificates() {
    let own = common::PrivateCluster::start();
    let cluster = &own.cluster;
    let certs = common::temp_dir();
    let dir = certs.path();
    certificates(dir, "good", "DNS:localhost");
    certificates(dir, "other", "DNS:localhost");
    // The server's key must belong to the server's user and be private.
    let data = &cluster.data_dir;
    for (from, to) in [
        ("good-server.pem", "server.crt"),
        ("good-server.key", "server.key"),
    ] {
        std::fs::copy(dir.join(from), data.join(to)).unwrap();
    }
    if common::is_root() {
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(data.join("server.crt"))
            .arg(data.join("server.key"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    // The harness (user postgres) may use plain TCP; the mailrun role only TLS.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\n\
         hostnossl all mailrun 0.0.0.0/0 reject\n\
         hostnossl all mailrun ::/0 reject\n\
         hostssl all mailrun 0.0.0.0/0 scram-sha-256\n\
         hostssl all mailrun ::/0 scram-sha-256\n\
         host all postgres 127.0.0.1/32 trust\n",
    )
    .unwrap();
    cluster.configure(&[("ssl", "on"), ("password_encryption", "scram-sha-256")]);
    let direct = cluster.fresh_db("db_tls");
    let mut c = postgres::Client::connect(&direct, postgres::NoTls).expect("connect");
    mailrun::dispatcher::schema::migrate(&mut c).expect("migrate");
    c.batch_execute(&format!(
        "CREATE ROLE mailrun LOGIN PASSWORD '{PASSWORD}';
         GRANT ALL ON SCHEMA mailrun TO mailrun;
         GRANT ALL ON ALL TABLES IN SCHEMA mailrun TO mailrun;
         GRANT ALL ON ALL SEQUENCES IN SCHEMA mailrun TO mailrun;"
    ))
    .expect("role");
    let dbname = direct.rsplit('/').next().unwrap();
    let port = cluster.port;
    let ca = |name: &str| dir.join(format!("{name}-ca.pem")).display().to_string();
    let url = |host: &str, query: &str| {
        format!("postgres://mailrun:{PASSWORD}@{host}:{port}/{dbname}?{query}")
    };
    let status = |url: &str| common::admin(url, &["status", "--json"]);

    // verify-full with the right CA and name: connected (over TLS: pg_hba allows
    // nothing else for this role).
    let out = status(&url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", ca("good")),
    ));
    common::assert_status(&out, 0);
    // The key=value form reads the same options.
    let out = status(&format!(
        "host=localhost port={port} dbname={dbname} user=mailrun password={PASSWORD} \
         sslmode=verify-full sslrootcert='{}'",
        ca("good")
    ));
    common::assert_status(&out, 0);
    // The tick too (nothing due).
    let out = common::run(common::command(env!("CARGO_BIN_EXE_dispatch-tick")).args([
        "--database-url",
        &url(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={}", ca("good")),
        ),
    ]));
    common::assert_status(&out, 3);

    // A certificate from another CA: refused, whichever verify mode.
    for mode in ["verify-full", "verify-ca"] {
        let out = status(&url(
            "localhost",
            &format!("sslmode={mode}&sslrootcert={}", ca("other")),
        ));
        common::assert_status(&out, 78);
        let err = common::stderr(&out);
        assert!(err.contains("certificate was refused"), "{err}");
        assert!(err.contains(&format!("sslmode={mode}")), "{err}");
        assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    }

    // The right CA but another name (the certificate names localhost, not 127.0.0.1):
    // verify-full refuses, verify-ca accepts.
    let out = status(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca("good")),
    ));
    common::assert_status(&out, 78);
    let err = common::stderr(&out);
    assert!(err.contains("certificate was refused"), "{err}");
    assert!(err.contains("127.0.0.1"), "names the host: {err}");
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");
    let out = status(&url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", ca("good")),
    ));
    common::assert_status(&out, 0);

    // require: encrypted, no certificate check.
    common::assert_status(&status(&url("127.0.0.1", "sslmode=require")), 0);

    // Without sslmode a loopback host is reached in plain text, which this server
    // refuses for the role: the refusal is the server's (exit 78), and says so.
    let out = status(&url("127.0.0.1", "connect_timeout=5"));
    common::assert_status(&out, 78);
    let err = common::stderr(&out);
    assert!(
        err.contains("no encryption") || err.contains("rejects"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "the password leaked: {err}");

    // verify-full without a root certificate to check against: a clear settings error.
    let out = common::run(
        common::command(env!("CARGO_BIN_EXE_dispatch-admin"))
            .env("HOME", dir)
            .args([
                "--database-url",
                &url("localhost", "sslmode=verify-full"),
                "status",
            ]),
    );
    common::assert_status(&out, 78);
    let err = common::stderr(&out);
    assert!(err.contains("sslrootcert"), "{err}");
}
