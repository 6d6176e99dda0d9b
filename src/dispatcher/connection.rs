//! Opening the dispatcher's database connection, and telling "the database is
//! unavailable, retry later" apart from other database errors.

use std::time::Duration;

use postgres::config::{Host, SslMode};

use crate::cli::{CliError, EXIT_CONFIG, EXIT_UNAVAILABLE};
use crate::dispatcher::db_tls;

/// Connection timeout when the URL sets none: a CGI request or a cron tick must not hang
/// on an unreachable server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the URL (or key=value string). Every dispatcher command and the endpoint
/// use this one function.
///
/// TLS follows libpq's `sslmode` and `sslrootcert` (`db_tls`); without `sslmode`, a
/// loopback or Unix-socket host is reached in plain text and any other host with TLS when
/// the server offers it (`prefer`). Several hosts (`host1:5432,host2:5432`) are tried in
/// order, as libpq does; with `target_session_attrs=read-write` a read-only one (a
/// standby) is skipped. The host that answered is remembered for later messages
/// ([`answered_by`]).
///
/// Errors never include the URL or the password, only "database NAME on HOST:PORT". A
/// bad URL, a refused login, a missing database or a refused certificate is
/// [`DbError::Settings`]; a server that cannot be reached, or only standbys when a
/// writable one is required, is [`DbError::Unavailable`].
pub fn connect(url: &str) -> Result<postgres::Client, DbError> {
    let invalid = |e: String| {
        DbError::Settings(format!(
            "invalid database URL (check --database-url, MAILRUN_DATABASE_URL or the \
             config file): {e}"
        ))
    };
    let (rest, tls_options) = db_tls::split_options(url).map_err(invalid)?;
    let mut config: postgres::Config = rest.parse().map_err(|e: postgres::Error| {
        invalid(format!(
            "{e}{}",
            std::error::Error::source(&e)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default()
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    let tls = db_tls::resolve(&tls_options, all_local(&config))
        .map_err(|e| DbError::Settings(format!("database TLS settings: {e}")))?;
    config.ssl_mode(match tls.mode {
        db_tls::SslMode::Disable => SslMode::Disable,
        db_tls::SslMode::Prefer => SslMode::Prefer,
        _ => SslMode::Require,
    });
    ANSWERED.with(|a| *a.borrow_mut() = None);
    let mut failures: Vec<DbError> = Vec::new();
    for (target, one) in each_host(&config) {
        let connected = match &tls.connector {
            None => one.connect(postgres::NoTls),
            Some(connector) => one.connect(connector.clone()),
        };
        match connected {
            Ok(client) => {
                ANSWERED.with(|a| *a.borrow_mut() = Some(target));
                return Ok(client);
            }
            Err(e) => failures.push(classify(&target, tls.mode, e)),
        }
    }
    // One failure says it all; several are listed, and "retry later" wins when any host
    // may come back (a standby being promoted, a server restarting).
    if failures.len() == 1 {
        return Err(failures.remove(0));
    }
    let message = failures
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if failures
        .iter()
        .any(|f| matches!(f, DbError::Unavailable(_)))
    {
        Err(DbError::Unavailable(message))
    } else {
        Err(DbError::Settings(message))
    }
}

thread_local! {
    /// "database NAME on HOST:PORT" of this thread's latest connection (a `--listen`
    /// worker keeps its connection between requests; see [`Kept`]).
    static ANSWERED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// The connection this thread's last request left open, with the URL it was opened
    /// with.
    static KEPT: std::cell::RefCell<Option<(String, postgres::Client)>> =
        const { std::cell::RefCell::new(None) };
}

/// Set by a process that serves request after request on long-lived threads (`--listen`).
/// A CGI process keeps nothing: a connection left in a thread-local would be dropped while
/// the thread's runtime is torn down at exit, which aborts the process.
static KEEPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on [`Kept::keep`] leaves connections to the thread's next request.
pub fn keep_connections_between_requests() {
    KEEPING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// How long a kept connection may take to answer an empty query before it is replaced.
const KEPT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One request's connection in `dispatch-cgi`: the one this thread's previous request
/// kept, when it still answers, or a new one ([`connect`]). A `--listen` worker serves
/// request after request, and a new backend costs each request its start and its first
/// compile of every stored procedure (≈20 ms, most of a JobRunRequest of 100 messages).
/// A CGI process serves one request and exits: there nothing is kept.
///
/// The connection goes back to the thread only through [`Kept::keep`], which a request
/// calls when it ended without a database error: a connection that saw one (a server
/// restarting, a standby after a failover) is closed and the next request connects anew.
pub struct Kept {
    url: String,
    client: postgres::Client,
}

impl Kept {
    pub fn take_or_connect(url: &str) -> Result<Kept, DbError> {
        let kept = KEPT.with(|k| k.borrow_mut().take());
        if let Some((kept_url, mut client)) = kept {
            // A backend ended while idle (restart, idle_session_timeout, a terminated
            // backend) is found here, not by the request's first statement.
            if kept_url == url && client.is_valid(KEPT_CHECK_TIMEOUT).is_ok() {
                return Ok(Kept {
                    url: kept_url,
                    client,
                });
            }
        }
        Ok(Kept {
            url: url.to_string(),
            client: connect(url)?,
        })
    }

    /// Leaves the connection to this thread's next request (only once
    /// [`keep_connections_between_requests`] was called; otherwise it is closed).
    pub fn keep(self) {
        if KEEPING.load(std::sync::atomic::Ordering::Relaxed) && !self.client.is_closed() {
            KEPT.with(|k| *k.borrow_mut() = Some((self.url, self.client)));
        }
    }
}

impl std::ops::Deref for Kept {
    type Target = postgres::Client;
    fn deref(&self) -> &postgres::Client {
        &self.client
    }
}

impl std::ops::DerefMut for Kept {
    fn deref_mut(&mut self) -> &mut postgres::Client {
        &mut self.client
    }
}

/// The database and host the latest connection of this thread reached, for messages.
pub fn answered_by() -> Option<String> {
    ANSWERED.with(|a| a.borrow().clone())
}

/// One connection error, as settings to change or a server to wait for.
fn classify(target: &str, mode: db_tls::SslMode, e: postgres::Error) -> DbError {
    // The server answered and refused us: retrying will not help, the settings must
    // change (28xxx: authentication, 3D000: no such database).
    let refused = e
        .code()
        .is_some_and(|c| c.code().starts_with("28") || c.code() == "3D000");
    let certificate = certificate_refused(&e);
    let cause = format!("{e}");
    let detail = match std::error::Error::source(&e).map(|s| s.to_string()) {
        Some(source) if !cause.contains(&source) => format!("{cause}: {source}"),
        _ => cause,
    };
    if let Some(why) = certificate {
        return DbError::Settings(format!(
            "cannot connect to the {target}: its TLS certificate was refused \
             (sslmode={}): {why}",
            mode.as_str()
        ));
    }
    if detail.contains("does not allow writes") {
        return DbError::Unavailable(format!(
            "cannot connect to the {target}: it is read-only (a standby, or a failover in \
             progress) and target_session_attrs=read-write asks for a writable server; \
             retry later"
        ));
    }
    let message = format!("cannot connect to the {target}: {detail}");
    if refused {
        DbError::Settings(message)
    } else {
        DbError::Unavailable(message)
    }
}

/// The TLS library's reason when the server's certificate (or the TLS handshake) was
/// refused: a setting to fix, not a server to wait for.
fn certificate_refused(e: &postgres::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(tls) = c.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(inner.to_string());
        }
        cause = c.source();
    }
    None
}

/// True when every host is this machine (loopback or a Unix socket): nothing crosses a
/// network, so TLS is not tried unless the URL asks for it.
fn all_local(config: &postgres::Config) -> bool {
    let local_name = |name: &str| {
        name == "localhost"
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => local_name(name),
        Host::Unix(_) => true,
    }) && config.get_hostaddrs().iter().all(|ip| ip.is_loopback())
}

/// The config for each host in order, with its "database NAME on HOST:PORT". One host:
/// the config as it is. Several: one config each, so that the host that answered (or
/// each one's failure) is known.
fn each_host(config: &postgres::Config) -> Vec<(String, postgres::Config)> {
    let hosts = config.get_hosts();
    if hosts.len() <= 1 {
        return vec![(describe(config, 0), config.clone())];
    }
    (0..hosts.len())
        .map(|i| {
            let mut one = postgres::Config::new();
            match &hosts[i] {
                Host::Tcp(name) => one.host(name),
                Host::Unix(path) => one.host_path(path),
            };
            if let Some(port) = port_of(config, i) {
                one.port(port);
            }
            if let Some(addr) = config.get_hostaddrs().get(i) {
                one.hostaddr(*addr);
            }
            if let Some(user) = config.get_user() {
                one.user(user);
            }
            if let Some(password) = config.get_password() {
                one.password(password);
            }
            if let Some(dbname) = config.get_dbname() {
                one.dbname(dbname);
            }
            if let Some(options) = config.get_options() {
                one.options(options);
            }
            if let Some(name) = config.get_application_name() {
                one.application_name(name);
            }
            if let Some(timeout) = config.get_connect_timeout() {
                one.connect_timeout(*timeout);
            }
            if let Some(timeout) = config.get_tcp_user_timeout() {
                one.tcp_user_timeout(*timeout);
            }
            one.keepalives(config.get_keepalives())
                .keepalives_idle(config.get_keepalives_idle())
                .target_session_attrs(config.get_target_session_attrs())
                .channel_binding(config.get_channel_binding())
                .ssl_mode(config.get_ssl_mode())
                .ssl_negotiation(config.get_ssl_negotiation());
            if let Some(interval) = config.get_keepalives_interval() {
                one.keepalives_interval(interval);
            }
            if let Some(retries) = config.get_keepalives_retries() {
                one.keepalives_retries(retries);
            }
            (describe(config, i), one)
        })
        .collect()
}

/// The port of host `i`: one port for all hosts, or one each.
fn port_of(config: &postgres::Config, i: usize) -> Option<u16> {
    let ports = config.get_ports();
    match ports.len() {
        0 => None,
        1 => Some(ports[0]),
        _ => ports.get(i).copied(),
    }
}

/// Why the dispatcher's database cannot be used. Callers branch on the kind (answer
/// "retry later", or fail until the settings change); the exit code follows from it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Retrying will not help: an invalid URL, a refused login, no such database.
    #[error("{0}")]
    Settings(String),
    /// Unreachable, shutting down, out of connections, or asked to retry.
    #[error("{0}")]
    Unavailable(String),
}

impl DbError {
    pub fn exit_code(&self) -> u8 {
        match self {
            DbError::Settings(_) => EXIT_CONFIG,
            DbError::Unavailable(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl From<DbError> for CliError {
    fn from(e: DbError) -> CliError {
        CliError::new(e.exit_code(), e.to_string())
    }
}

/// "database NAME on HOST:PORT" of host `i`, for messages (no user, no password).
fn describe(config: &postgres::Config, i: usize) -> String {
    let host = config
        .get_hosts()
        .get(i)
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_string());
    let port = port_of(config, i).unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("(default)");
    format!("database {db} on {host}:{port}")
}

/// True when the error means the database is unreachable or asked us to retry
/// (connection lost, shutting down, too many connections, serialization conflict).
pub fn is_unavailable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if matches!(
            cause.downcast_ref::<DbError>(),
            Some(DbError::Unavailable(_))
        ) || cause.is::<std::io::Error>()
        {
            return true;
        }
        let Some(pg) = cause.downcast_ref::<postgres::Error>() else {
            return false;
        };
        if pg.is_closed() {
            return true;
        }
        match pg.code() {
            // Class 08 connection exception, 53 insufficient resources, 57P0x shutdown,
            // 40001/40P01 serialization failure and deadlock (safe to retry), 25006 a
            // write on a read-only server (a standby, until one is promoted).
            Some(code) => {
                let code = code.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
                    || code == READ_ONLY
            }
            // Without SQLSTATE it is I/O (seen through the chain) or a client-side error.
            None => false,
        }
    })
}

/// SQLSTATE read_only_sql_transaction: a write sent to a standby.
const READ_ONLY: &str = "25006";

/// True when the database refused a write because it is read-only (a standby).
pub fn is_read_only(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<postgres::Error>()
            .and_then(|pg| pg.code())
            .is_some_and(|c| c.code() == READ_ONLY)
    })
}

/// For commands: tags a database error with exit code 69 when the database is
/// unavailable, so cron sees "peer unavailable" rather than "internal error".
pub fn exit_context(err: anyhow::Error) -> anyhow::Error {
    // Already carries its exit code (e.g. from `connect`): keep its message as it is.
    if err.chain().any(|cause| cause.is::<CliError>()) {
        return err;
    }
    if is_unavailable(&err) {
        let database = answered_by().unwrap_or_else(|| "database".to_string());
        let state = if is_read_only(&err) {
            "is read-only (a standby, or a failover in progress); retry later"
        } else {
            "is unavailable; retry later"
        };
        // A root CliError (not a context) so `cli::exit_code_of` finds it in the chain.
        CliError::new(
            EXIT_UNAVAILABLE,
            format!("the dispatcher's {database} {state}: {err:#}"),
        )
        .into()
    } else {
        err
    }
}

/// The database's own message when it refused a value (SQLSTATE class 22, data
/// exception, as the queue's stored procedures raise for bad input).
pub fn refused_value(err: &anyhow::Error) -> Option<String> {
    err.chain().find_map(|cause| {
        let db = cause.downcast_ref::<postgres::Error>()?.as_db_error()?;
        db.code()
            .code()
            .starts_with("22")
            .then(|| db.message().to_string())
    })
}

/// The database's clock (reports and schedules are relative to it, not to this host's).
pub fn db_now(
    db: &mut impl postgres::GenericClient,
) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(db.query_typed_one("SELECT now()", &[])?.get(0))
}
