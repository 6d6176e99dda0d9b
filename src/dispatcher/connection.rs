//! Opening the dispatcher's database connection, and telling "the database is
//! unavailable, retry later" apart from other database errors.

use std::time::Duration;

/// Connection timeout when the URL sets none: a CGI request or a cron tick must not hang
/// on an unreachable server.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects without TLS to the URL (or key=value string). Errors never include the URL,
/// which may carry a password.
pub fn connect(url: &str) -> anyhow::Result<postgres::Client> {
    let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
        crate::cli::CliError::new(
            crate::cli::EXIT_CONFIG,
            format!(
                "invalid database URL (check MAILRUN_DATABASE_URL or the config file): {e}{}",
                std::error::Error::source(&e)
                    .map(|cause| format!(": {cause}"))
                    .unwrap_or_default()
            ),
        )
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    config
        .connect(postgres::NoTls)
        .map_err(|e| anyhow::Error::new(e).context(Unavailable))
}

/// Marks a failure to reach the database at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the dispatcher's database")]
pub struct Unavailable;

/// True when the error means the database is unreachable or asked us to retry
/// (connection lost, shutting down, too many connections, serialization conflict).
pub fn is_unavailable(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        if cause.is::<Unavailable>() || cause.is::<std::io::Error>() {
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
    if is_unavailable(&err) {
        // A root CliError (not a context) so `cli::exit_code_of` finds it in the chain.
        crate::cli::CliError::new(
            crate::cli::EXIT_UNAVAILABLE,
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
