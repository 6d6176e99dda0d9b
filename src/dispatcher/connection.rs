//! Opening the dispatcher's database connection, and telling "the database is
//! unavailable, retry later" apart from other database errors.

use std::time::Duration;

use crate::cli::{CliError, EXIT_CONFIG, EXIT_UNAVAILABLE};

/// Connection timeout when the URL sets none: a CGI request or a cron tick must not hang
/// on an unreachable server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects without TLS to the URL (or key=value string). Every dispatcher command and
/// the endpoint use this one function.
///
/// Errors never include the URL or the password, only "database NAME on HOST:PORT". A
/// bad URL, a refused login or a missing database is [`DbError::Settings`]; a server that
/// cannot be reached is [`DbError::Unavailable`].
pub fn connect(url: &str) -> Result<postgres::Client, DbError> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        DbError::Settings(format!(
            "invalid database URL (check --database-url, MAILRUN_DATABASE_URL or the \
                 config file): {e}{}",
            std::error::Error::source(&e)
                .map(|cause| format!(": {cause}"))
                .unwrap_or_default()
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    let target = describe(&config);
    config.connect(postgres::NoTls).map_err(|e| {
        // The server answered and refused us: retrying will not help, the settings must
        // change (28xxx: authentication, 3D000: no such database).
        let refused = e
            .code()
            .is_some_and(|c| c.code().starts_with("28") || c.code() == "3D000");
        let cause = format!("{e}");
        let detail = match std::error::Error::source(&e).map(|s| s.to_string()) {
            Some(source) if !cause.contains(&source) => format!("{cause}: {source}"),
            _ => cause,
        };
        let message = format!("cannot connect to the {target}: {detail}");
        if refused {
            DbError::Settings(message)
        } else {
            DbError::Unavailable(message)
        }
    })
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

/// "database NAME on HOST:PORT" for error messages (no user, no password).
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_string());
    let port = config.get_ports().first().copied().unwrap_or(5432);
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
            // 40001/40P01 serialization failure and deadlock (safe to retry).
            Some(code) => {
                let code = code.code();
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
            }
            // Without SQLSTATE it is I/O (seen through the chain) or a client-side error.
            None => false,
        }
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
        // A root CliError (not a context) so `cli::exit_code_of` finds it in the chain.
        CliError::new(
            EXIT_UNAVAILABLE,
            format!("the dispatcher's database is unavailable: {err:#}"),
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
