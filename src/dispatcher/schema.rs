//! Versioned migrations of the `mailrun` schema.
//!
//! Each file in `migrations/` is embedded and applied once, in order, in its own
//! transaction, under an advisory lock so two concurrent `migrate`s serialize. A database
//! migrated by a newer mailrun (a version this binary does not know) is refused: running
//! old code against a newer schema could corrupt the queue.

use anyhow::Context;
use postgres::GenericClient;

use crate::cli::{CliError, EXIT_CONFIG};

/// The migrations this binary knows, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "queue", include_str!("../../migrations/0001_queue.sql")),
    (
        2,
        "results",
        include_str!("../../migrations/0002_results.sql"),
    ),
    (
        3,
        "quotas",
        include_str!("../../migrations/0003_quotas.sql"),
    ),
    (4, "speed", include_str!("../../migrations/0004_speed.sql")),
    (
        5,
        "policy_push",
        include_str!("../../migrations/0005_policy_push.sql"),
    ),
    (
        6,
        "carriable",
        include_str!("../../migrations/0006_carriable.sql"),
    ),
    (
        7,
        "account_connections",
        include_str!("../../migrations/0007_account_connections.sql"),
    ),
];

/// Arbitrary constant naming mailrun's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x6d61_696c_7275_6e01;

/// The highest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

/// The schema version of the database (0 when mailrun was never installed there).
pub fn current_version(c: &mut impl GenericClient) -> anyhow::Result<i32> {
    let exists: bool = c
        .query_typed_one(
            "SELECT to_regclass('mailrun.schema_migrations') IS NOT NULL",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = c
        .query_typed_one("SELECT max(version) FROM mailrun.schema_migrations", &[])?
        .get(0);
    Ok(v.unwrap_or(0))
}

/// Applies every migration the database lacks; returns the versions applied (empty when
/// already up to date).
pub fn migrate(c: &mut impl GenericClient) -> anyhow::Result<Vec<i32>> {
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS mailrun;
             CREATE TABLE IF NOT EXISTS mailrun.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )?;
        let current = current_version(&mut tx)?;
        if current > latest_version() {
            return Err(CliError::new(
                EXIT_CONFIG,
                format!(
                    "the database schema is at version {current}, newer than this mailrun \
                     knows ({}); upgrade mailrun instead",
                    latest_version()
                ),
            )
            .into());
        }
        let done = tx
            .query_opt(
                "SELECT 1 FROM mailrun.schema_migrations WHERE version = $1",
                &[version],
            )?
            .is_some();
        if done {
            tx.commit()?;
            continue;
        }
        tx.batch_execute(sql)
            .with_context(|| format!("migration {version:04}_{name} failed"))?;
        tx.execute(
            "INSERT INTO mailrun.schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )?;
        tx.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}

/// Fails unless the database is at exactly the schema version this binary knows; every
/// command except `init`/`migrate` checks this before touching the queue.
pub fn require_current(c: &mut impl GenericClient) -> anyhow::Result<()> {
    let current = current_version(c)?;
    let latest = latest_version();
    if current == latest {
        return Ok(());
    }
    let message = if current == 0 {
        "the database has no mailrun schema; run `dispatch-admin init`".to_string()
    } else if current < latest {
        format!(
            "the database schema is at version {current}, this mailrun needs {latest}; \
             run `dispatch-admin migrate`"
        )
    } else {
        format!(
            "the database schema is at version {current}, newer than this mailrun knows \
             ({latest}); upgrade mailrun"
        )
    };
    Err(CliError::new(EXIT_CONFIG, message).into())
}
