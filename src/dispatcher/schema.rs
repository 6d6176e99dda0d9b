//! The `mailrun` schema: versioned migrations plus one source file per routine.
//!
//! `migrations/` holds tables, indexes and data changes, each step applied once, in order.
//! `sql/` holds every function, procedure and trigger, one file each, applied with
//! `CREATE OR REPLACE` after the versioned steps, so the business logic has a normal diff
//! and blame. Everything happens in one transaction under an advisory lock (two
//! concurrent `migrate`s serialize) and the checksum of each source is recorded; a
//! database that already has every step and these exact sources is left untouched.
//! A database migrated by a newer mailrun (a version this binary does not know) is
//! refused: running old code against a newer schema could corrupt the queue.

use crate::dispatcher::typed::params;
use anyhow::Context;
use postgres::types::Type;
use postgres::GenericClient;
use sha2::{Digest, Sha256};

use crate::cli::{CliError, EXIT_CONFIG};

/// The migrations this binary knows, in order: (version, name, SQL). Versions 1-7 were
/// squashed into one baseline before the first release, so it carries version 7.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        7,
        "baseline",
        include_str!("../../migrations/0007_baseline.sql"),
    ),
    (
        8,
        "routines_as_sources",
        include_str!("../../migrations/0008_routines_as_sources.sql"),
    ),
    (9, "api", include_str!("../../migrations/0009_api.sql")),
    (
        10,
        "recurring_limits",
        include_str!("../../migrations/0010_recurring_limits.sql"),
    ),
    (
        11,
        "webhooks",
        include_str!("../../migrations/0011_webhooks.sql"),
    ),
    (
        12,
        "claim_cost",
        include_str!("../../migrations/0012_claim_cost.sql"),
    ),
    (
        13,
        "lz4_bodies",
        include_str!("../../migrations/0013_lz4_bodies.sql"),
    ),
];

/// A database at a version below this was made by a build from before the squash; its
/// steps cannot be replayed on the baseline.
const BASELINE_VERSION: i32 = 7;

/// One file of `sql/`: (path under `sql/`, text).
pub type Source = (&'static str, &'static str);

macro_rules! source {
    ($path:literal) => {
        ($path, include_str!(concat!("../../sql/", $path)))
    };
}

/// Helpers that the tables' CHECK constraints call: they use no table, and exist before
/// any versioned step runs.
pub const CHECK_SOURCES: &[Source] = &[
    source!("checks/valid_rules.sql"),
    source!("checks/valid_regex.sql"),
];

/// Every other function and trigger, applied after the versioned steps in this order (an
/// SQL-language body must find what it calls).
pub const ROUTINE_SOURCES: &[Source] = &[
    source!("functions/refuse.sql"),
    source!("functions/addr_spec.sql"),
    source!("functions/address_list.sql"),
    source!("functions/header_text.sql"),
    source!("functions/is_permanent.sql"),
    source!("functions/backoff_seconds.sql"),
    source!("functions/pending.sql"),
    source!("functions/has_uncarriable_char.sql"),
    source!("functions/as_uuid.sql"),
    source!("functions/message_size.sql"),
    source!("functions/new_message_id.sql"),
    source!("functions/check_text.sql"),
    source!("functions/check_carriable.sql"),
    source!("functions/enqueue_at.sql"),
    source!("functions/enqueue.sql"),
    source!("functions/enqueue_many.sql"),
    source!("functions/add_recurring_job.sql"),
    source!("functions/window_bucket_seconds.sql"),
    source!("functions/quota_bucket.sql"),
    source!("functions/throttle_factor.sql"),
    source!("functions/scaled.sql"),
    source!("functions/quota_room.sql"),
    source!("functions/quota_lock.sql"),
    source!("functions/quota_take.sql"),
    source!("functions/quota_release.sql"),
    source!("functions/throttle_signal.sql"),
    source!("functions/addr_domain.sql"),
    source!("functions/code_matches.sql"),
    source!("functions/reply_decision.sql"),
    source!("functions/held_quota_ids.sql"),
    source!("functions/lease_token.sql"),
    source!("functions/claim_batch.sql"),
    source!("functions/apply_result.sql"),
    source!("functions/apply_results.sql"),
    source!("functions/release_frees_now.sql"),
    source!("functions/reap_expired.sql"),
    source!("functions/release_lost_batches.sql"),
    source!("functions/revoke_runner.sql"),
    source!("functions/remove_runner.sql"),
    source!("functions/remove_account.sql"),
    source!("functions/count_due.sql"),
    source!("functions/cancel.sql"),
    source!("functions/retry.sql"),
    source!("functions/resolve_unknown.sql"),
    source!("functions/purge.sql"),
    source!("functions/kept_for_review.sql"),
    source!("functions/purge_finished.sql"),
    source!("functions/purge_webhook_events.sql"),
    source!("functions/tick_begin.sql"),
    source!("functions/remember_nonce.sql"),
    source!("triggers/release_review_hold.sql"),
    source!("triggers/reply_rules_changed.sql"),
    source!("triggers/quota_releases_wake.sql"),
    source!("triggers/record_webhook_event.sql"),
];

/// Arbitrary constant naming mailrun's migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x6d61_696c_7275_6e01;

/// What one `migrate` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Migrated {
    /// Versioned steps applied, in order.
    pub versions: Vec<i32>,
    /// Whether the routines of `sql/` were (re)applied.
    pub sources: bool,
}

impl Migrated {
    /// Nothing changed: the database already had every step and these exact sources.
    pub fn is_noop(&self) -> bool {
        self.versions.is_empty() && !self.sources
    }
}

/// The highest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

fn all_sources() -> impl Iterator<Item = &'static Source> {
    CHECK_SOURCES.iter().chain(ROUTINE_SOURCES)
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

// SOURCES_DIGEST_BUILT: the digest the database computes over `mailrun.schema_sources`
// (see `SOURCES_DIGEST`) when it holds exactly the sources of this binary; build.rs
// computes it over `sql/` (a test holds it equal to the sources listed here).
include!(concat!(env!("OUT_DIR"), "/sources_digest.rs"));

/// The same digest from the embedded sources (tests compare it with build.rs's).
pub fn embedded_sources_digest() -> String {
    let mut rows: Vec<(&str, String)> = all_sources()
        .map(|(path, text)| (*path, sha256_hex(text)))
        .collect();
    rows.sort();
    let joined: String = rows
        .iter()
        .map(|(path, sum)| format!("{path}:{sum}\n"))
        .collect();
    sha256_hex(&joined)
}

/// One digest of every recorded source, comparable with `SOURCES_DIGEST_BUILT`.
const SOURCES_DIGEST: &str = "SELECT encode(sha256(convert_to(coalesce(string_agg(
         path || ':' || sha256 || E'\\n', '' ORDER BY path COLLATE \"C\"), ''), 'UTF8')), 'hex')
     FROM mailrun.schema_sources";

/// What `migrate` writes as the comment of the `mailrun` schema: the version and the
/// digest of the sources it applied. A command that finds exactly this build's stamp
/// there, and the latest version it knows recorded, knows the schema is current in one
/// look; any other comment, or none (a restore without comments), sends it to the full
/// check, which is authoritative.
pub fn stamp() -> String {
    format!(
        "mailrun schema version {}, sources sha256 {SOURCES_DIGEST_BUILT} (set by dispatch-admin migrate)",
        latest_version()
    )
}

const STAMP_QUERY: &str = "SELECT obj_description(to_regnamespace('mailrun'), 'pg_namespace')";

fn set_stamp(tx: &mut postgres::Transaction<'_>) -> anyhow::Result<()> {
    // COMMENT takes no parameters; the stamp is hex and digits, quoted as a literal.
    tx.batch_execute(&format!(
        "COMMENT ON SCHEMA mailrun IS '{}'",
        stamp().replace('\'', "''")
    ))?;
    Ok(())
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

/// Applies every migration the database lacks, then (when anything changed or differs)
/// every source of `sql/`, all in one transaction.
pub fn migrate(c: &mut impl GenericClient) -> anyhow::Result<Migrated> {
    let mut tx = c.transaction()?;
    tx.execute_typed(
        "SELECT pg_advisory_xact_lock($1)",
        &params(&[&MIGRATION_LOCK]),
    )?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS mailrun;
         CREATE TABLE IF NOT EXISTS mailrun.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE IF NOT EXISTS mailrun.schema_sources (
             path       text PRIMARY KEY,
             sha256     text NOT NULL,
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
    if current > 0 && current < BASELINE_VERSION {
        return Err(CliError::new(
            EXIT_CONFIG,
            format!(
                "the database schema is at version {current}, from a pre-release mailrun \
                 whose steps were squashed into version {BASELINE_VERSION}; migrate it with \
                 that build first, or dump the queue and run `dispatch-admin init` on an \
                 empty database"
            ),
        )
        .into());
    }
    let pending: Vec<&(i32, &str, &str)> = MIGRATIONS.iter().filter(|m| m.0 > current).collect();
    let recorded: String = tx.query_typed_one(SOURCES_DIGEST, &[])?.get(0);
    if pending.is_empty() && recorded == SOURCES_DIGEST_BUILT {
        let current_stamp: Option<String> = tx.query_typed_one(STAMP_QUERY, &[])?.get(0);
        if current_stamp.as_deref() != Some(stamp().as_str()) {
            set_stamp(&mut tx)?;
        }
        tx.commit()?;
        return Ok(Migrated::default());
    }

    apply_sources(&mut tx, CHECK_SOURCES)?;
    let mut versions = Vec::new();
    for (version, name, sql) in pending {
        tx.batch_execute(sql)
            .with_context(|| format!("migration {version:04}_{name} failed"))?;
        tx.execute_typed(
            "INSERT INTO mailrun.schema_migrations (version, name) VALUES ($1, $2)",
            &params(&[version, name]),
        )?;
        versions.push(*version);
    }
    apply_sources(&mut tx, ROUTINE_SOURCES)?;
    let paths: Vec<&str> = all_sources().map(|s| s.0).collect();
    tx.execute_typed(
        "DELETE FROM mailrun.schema_sources WHERE NOT path = ANY ($1)",
        &params(&[&paths]),
    )?;
    set_stamp(&mut tx)?;
    tx.commit()?;
    Ok(Migrated {
        versions,
        sources: true,
    })
}

fn apply_sources(tx: &mut postgres::Transaction<'_>, sources: &[Source]) -> anyhow::Result<()> {
    for (path, sql) in sources {
        tx.batch_execute(sql)
            .with_context(|| format!("sql/{path} failed"))?;
        tx.execute_typed(
            "INSERT INTO mailrun.schema_sources (path, sha256) VALUES ($1, $2)
             ON CONFLICT (path) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()",
            &params(&[path, &sha256_hex(sql)]),
        )?;
    }
    Ok(())
}

/// Fails unless the database is at exactly the schema version and routines this binary
/// knows; every command except `init`/`migrate` checks this before touching the queue.
pub fn require_current(c: &mut impl GenericClient) -> anyhow::Result<()> {
    // One round trip when this build's stamp is there and the versions agree. Without a
    // schema or its tables the look fails (outside a transaction: nothing to undo), and
    // the full check below says why.
    let stamped = c
        .query_typed_one(
            "SELECT (SELECT d.description FROM pg_catalog.pg_description d
                     WHERE d.objoid = to_regnamespace('mailrun')
                       AND d.classoid = 'pg_catalog.pg_namespace'::regclass
                       AND d.objsubid = 0) = $1
                    AND (SELECT max(version) FROM mailrun.schema_migrations) = $2",
            &[(&stamp(), Type::TEXT), (&latest_version(), Type::INT4)],
        )
        .is_ok_and(|row| row.get::<_, Option<bool>>(0) == Some(true));
    if stamped {
        return Ok(());
    }
    let row = c.query_typed_one(
        "SELECT to_regclass('mailrun.schema_migrations') IS NOT NULL,
                to_regclass('mailrun.schema_sources') IS NOT NULL",
        &[],
    )?;
    let (has_versions, has_sources): (bool, bool) = (row.get(0), row.get(1));
    // Without this build's stamp: two more round trips, which decide.
    let (current, digest) = match (has_versions, has_sources) {
        (false, _) => (0, None),
        (true, false) => (current_version(c)?, None),
        (true, true) => {
            let row = c.query_typed_one(
                &format!(
                    "SELECT coalesce((SELECT max(version) FROM mailrun.schema_migrations), 0),
                            ({SOURCES_DIGEST})"
                ),
                &[],
            )?;
            (row.get::<_, i32>(0), Some(row.get::<_, String>(1)))
        }
    };
    let latest = latest_version();
    let message = if current == 0 {
        "the database has no mailrun schema; run `dispatch-admin init`".to_string()
    } else if current < latest {
        format!(
            "the database schema is at version {current}, this mailrun needs {latest}; \
             run `dispatch-admin migrate`"
        )
    } else if current > latest {
        format!(
            "the database schema is at version {current}, newer than this mailrun knows \
             ({latest}); upgrade mailrun"
        )
    } else if digest.as_deref() != Some(SOURCES_DIGEST_BUILT) {
        "the database's stored procedures differ from this mailrun's; run \
         `dispatch-admin migrate`"
            .to_string()
    } else {
        return Ok(());
    };
    Err(CliError::new(EXIT_CONFIG, message).into())
}
