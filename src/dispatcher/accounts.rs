//! SMTP accounts messages are sent through. Passwords are stored in the database (the
//! runners need them in each JobRun) and never printed: listings say "set" or "none".

use crate::dispatcher::typed::params;
use std::time::Duration;

use postgres::GenericClient;

use crate::cli::{CliError, EXIT_CONFIG, EXIT_DATA, EXIT_UNAVAILABLE};
use crate::protocol::{Security, SmtpAccount};

/// How long `test` waits for the server at each step.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(15);

pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CliError::new(
            EXIT_DATA,
            format!("invalid account name {name:?}: use 1-64 letters, digits, '.', '_' or '-'"),
        )
        .into())
    }
}

/// Why runners will not deliver through this account, if they will not: a login over
/// `security none` to a host that is not loopback. The runner refuses to send the
/// password in clear (src/smtp.rs, same test), so its mail would only be deferred until
/// it expired.
pub fn clear_text_login(account: &SmtpAccount) -> Option<String> {
    let login = account.username.is_some() && account.password.is_some();
    (login && account.security == Security::None && !crate::web::is_loopback_host(&account.host))
        .then(|| {
            format!(
                "a login over security none to {}, which is not loopback: runners never \
                 send a password in clear, so mail through it waits until it expires; use \
                 security starttls or tls",
                account.host
            )
        })
}

fn validate(account: &SmtpAccount) -> anyhow::Result<()> {
    validate_name(&account.name)?;
    let host_ok = !account.host.is_empty()
        && account.host.len() <= 253
        && account
            .host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(CliError::new(EXIT_DATA, format!("invalid host {:?}", account.host)).into());
    }
    if account.port == 0 {
        return Err(CliError::new(EXIT_DATA, "port must be between 1 and 65535").into());
    }
    if account.username.is_some() != account.password.is_some() {
        return Err(
            CliError::new(EXIT_DATA, "give both a username and a password, or neither").into(),
        );
    }
    let has_newline = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains(['\r', '\n']));
    if has_newline(&account.username) || has_newline(&account.password) {
        return Err(CliError::new(EXIT_DATA, "username and password must be one line").into());
    }
    Ok(())
}

/// Adds an account; an existing name is an error.
pub fn add(c: &mut impl GenericClient, account: &SmtpAccount) -> anyhow::Result<()> {
    validate(account)?;
    if get(c, &account.name)?.is_some() {
        return Err(CliError::new(
            EXIT_DATA,
            format!("account {:?} already exists", account.name),
        )
        .into());
    }
    c.execute_typed(
        "INSERT INTO mailrun.smtp_accounts
             (name, host, port, security, username, password, max_connections)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &params(&[
            &account.name,
            &account.host,
            &i32::from(account.port),
            &account.security.as_str(),
            &account.username,
            &account.password,
            &account.max_connections.map(|n| n as i32),
        ]),
    )?;
    Ok(())
}

/// Sets (or with `None` clears) the most sessions a runner may hold to the account.
pub fn set_max_connections(
    c: &mut impl GenericClient,
    name: &str,
    max_connections: Option<u32>,
) -> anyhow::Result<()> {
    let n = c.execute_typed(
        "UPDATE mailrun.smtp_accounts SET max_connections = $2 WHERE name = $1",
        &params(&[&name, &max_connections.map(|n| n as i32)]),
    )?;
    if n == 0 {
        return Err(CliError::new(EXIT_DATA, format!("no account {name:?}")).into());
    }
    Ok(())
}

fn from_row(row: &postgres::Row) -> anyhow::Result<SmtpAccount> {
    let port: i32 = row.get(2);
    let security: String = row.get(3);
    Ok(SmtpAccount {
        name: row.get(0),
        host: row.get(1),
        port: u16::try_from(port).map_err(|_| anyhow::anyhow!("stored port {port} invalid"))?,
        security: security.parse().map_err(anyhow::Error::msg)?,
        username: row.get(4),
        password: row.get(5),
        max_connections: row
            .get::<_, Option<i32>>(6)
            .and_then(|n| u32::try_from(n).ok()),
    })
}

pub fn get(c: &mut impl GenericClient, name: &str) -> anyhow::Result<Option<SmtpAccount>> {
    c.query_typed_opt(
        "SELECT name, host, port, security, username, password, max_connections
         FROM mailrun.smtp_accounts WHERE name = $1",
        &params(&[&name]),
    )?
    .map(|r| from_row(&r))
    .transpose()
}

pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<SmtpAccount>> {
    c.query_typed(
        "SELECT name, host, port, security, username, password, max_connections
         FROM mailrun.smtp_accounts ORDER BY name",
        &[],
    )?
    .iter()
    .map(from_row)
    .collect()
}

/// Connects to the account's server, negotiates TLS as configured and logs in when the
/// account has credentials, then quits. Returns a one-line description of what worked;
/// the error carries the server's answer (never the password).
pub fn test(account: &SmtpAccount) -> anyhow::Result<String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::SmtpTransport;

    // Decided before connecting, as the runner does: the password never goes in clear.
    if let Some(problem) = clear_text_login(account) {
        return Err(
            CliError::new(EXIT_CONFIG, format!("account {}: {problem}", account.name)).into(),
        );
    }

    let tls = match account.security {
        Security::None => Tls::None,
        Security::StartTls => Tls::Required(TlsParameters::new(account.host.clone())?),
        Security::Tls => Tls::Wrapper(TlsParameters::new(account.host.clone())?),
    };
    let mut builder = SmtpTransport::builder_dangerous(account.host.as_str())
        .port(account.port)
        .tls(tls)
        .timeout(Some(TEST_TIMEOUT));
    if let (Some(user), Some(password)) = (&account.username, &account.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();
    let target = format!(
        "{}:{} ({})",
        account.host,
        account.port,
        account.security.as_str()
    );
    match transport.test_connection() {
        Ok(true) => Ok(match &account.username {
            Some(user) => format!("{target}: connected and logged in as {user}"),
            None => format!("{target}: connected (no login configured)"),
        }),
        Ok(false) => Err(CliError::new(
            EXIT_UNAVAILABLE,
            format!("{target}: the server closed the connection"),
        )
        .into()),
        Err(e) => {
            let detail = describe_smtp_error(&e);
            // The server is there but offers no login we can use: a settings problem
            // (servers commonly offer AUTH only after STARTTLS), not an outage.
            if detail.contains("No compatible authentication mechanism") {
                return Err(CliError::new(
                    EXIT_CONFIG,
                    format!(
                        "{target}: the server offers no login method mailrun can use (PLAIN or \
                         LOGIN); many servers offer them only over TLS: check --security"
                    ),
                )
                .into());
            }
            Err(CliError::new(EXIT_UNAVAILABLE, format!("{target}: {detail}")).into())
        }
    }
}

/// lettre's error with its cause chain, which holds the server's reply. lettre's own
/// message often repeats its cause already; a cause already shown is not added again.
fn describe_smtp_error(e: &lettre::transport::smtp::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Removes an account (`mailrun.remove_account`), moving its messages and groups to `to`
/// when given; refused (EXIT_DATA, with the counts) while anything uses it otherwise.
/// How many messages moved.
pub fn remove(c: &mut impl GenericClient, name: &str, to: Option<&str>) -> anyhow::Result<i64> {
    use postgres::types::Type;
    match c.query_typed_one(
        "SELECT mailrun.remove_account($1, $2)",
        &[(&name, Type::TEXT), (&to, Type::TEXT)],
    ) {
        Ok(row) => Ok(row.get(0)),
        Err(e) => match e.as_db_error() {
            Some(d)
                if *d.code() == postgres::error::SqlState::NO_DATA_FOUND
                    || d.code().code() == "22023" =>
            {
                Err(crate::cli::CliError::new(crate::cli::EXIT_DATA, d.message()).into())
            }
            _ => Err(e.into()),
        },
    }
}
