//! The schema as source: versioned migrations plus one file per routine under `sql/`.
//! A database brought up step by step from the pre-squash migrations equals a fresh one;
//! migrate twice is a no-op; every routine in the database has exactly one source file.

use std::path::Path;
use std::process::Command;

use crate::common::{self, admin, assert_status, json_out, stderr};
use mailrun::dispatcher::schema;
use postgres::{Client, NoTls};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The seven migrations as they were before the squash (kept as fixtures only).
const PRE_SQUASH: &[(i32, &str, &str)] = &[
    (1, "queue", "0001_queue.sql"),
    (2, "results", "0002_results.sql"),
    (3, "quotas", "0003_quotas.sql"),
    (4, "speed", "0004_speed.sql"),
    (5, "policy_push", "0005_policy_push.sql"),
    (6, "carriable", "0006_carriable.sql"),
    (7, "account_connections", "0007_account_connections.sql"),
];

/// Applies the pre-squash migrations up to `last` the way the old `migrate` did.
fn migrate_pre_squash(url: &str, last: i32) {
    let mut c = Client::connect(url, NoTls).expect("connect");
    c.batch_execute(
        "CREATE SCHEMA mailrun;
         CREATE TABLE mailrun.schema_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .unwrap();
    for (version, name, file) in PRE_SQUASH.iter().filter(|m| m.0 <= last) {
        let sql = std::fs::read_to_string(
            Path::new(ROOT)
                .join("tests/data/pre-squash-migrations")
                .join(file),
        )
        .unwrap();
        let mut tx = c.transaction().unwrap();
        tx.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        tx.execute(
            "INSERT INTO mailrun.schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

/// `pg_dump --schema-only` without the per-run `\restrict` key lines.
fn schema_dump(url: &str) -> String {
    let out = common::run(Command::new(common::pg_bin("pg_dump")).args([
        "--schema-only",
        "--no-owner",
        "-d",
        url,
    ]));
    assert_status(&out, 0);
    common::stdout(&out)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The rows the schema starts with (timestamps left out).
fn seed_rows(url: &str) -> Vec<String> {
    let mut c = Client::connect(url, NoTls).expect("connect");
    [
        "SELECT (to_jsonb(p) - 'updated_at')::text FROM mailrun.policy p",
        "SELECT to_jsonb(q)::text FROM mailrun.quota_settings q",
        "SELECT (to_jsonb(r) - 'created_at')::text FROM mailrun.reply_rules r ORDER BY id",
        "SELECT to_jsonb(f)::text FROM mailrun.field_limits f ORDER BY field",
    ]
    .iter()
    .flat_map(|q| {
        c.query(*q, &[])
            .unwrap()
            .into_iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    })
    .collect()
}

fn assert_same(a: &str, b: &str, what: &str) {
    if a != b {
        let (a_lines, b_lines): (Vec<_>, Vec<_>) = (a.lines().collect(), b.lines().collect());
        let first = a_lines
            .iter()
            .zip(&b_lines)
            .position(|(x, y)| x != y)
            .unwrap_or(a_lines.len().min(b_lines.len()));
        panic!(
            "{what} differ from line {}:\n--- step by step\n{}\n--- fresh\n{}",
            first + 1,
            a_lines[first..]
                .iter()
                .take(15)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            b_lines[first..]
                .iter()
                .take(15)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
}

#[test]
fn a_database_migrated_step_by_step_equals_a_fresh_one() {
    let cluster = common::cluster();
    let fresh = cluster.fresh_db("schema_fresh");
    assert_status(&admin(&fresh, &["init"]), 0);

    let stepped = cluster.fresh_db("schema_stepped");
    migrate_pre_squash(&stepped, 7);
    // The pre-squash functions are refused until migrate replaces them.
    let out = admin(&stepped, &["status"]);
    assert_status(&out, 78);
    let got = json_out(&admin(&stepped, &["migrate", "--json"]));
    assert_eq!(
        got["applied"],
        serde_json::json!([8, 9, 10, 11, 12, 13]),
        "{got}"
    );
    assert_eq!(got["routines_applied"], true, "{got}");
    assert_status(&admin(&stepped, &["status"]), 0);

    assert_same(&schema_dump(&stepped), &schema_dump(&fresh), "schemas");
    assert_eq!(seed_rows(&stepped), seed_rows(&fresh));
}

#[test]
fn migrate_twice_is_a_noop_and_a_changed_routine_is_reapplied() {
    let url = common::cluster().fresh_db("schema_twice");
    let first = json_out(&admin(&url, &["migrate", "--json"]));
    assert_eq!(
        first["applied"],
        serde_json::json!([7, 8, 9, 10, 11, 12, 13]),
        "{first}"
    );
    let before = schema_dump(&url);
    let again = json_out(&admin(&url, &["migrate", "--json"]));
    assert_eq!(again["applied"], serde_json::json!([]), "{again}");
    assert_eq!(again["routines_applied"], false, "{again}");
    assert_same(&before, &schema_dump(&url), "schemas");

    // A routine that differs from this build's source (a build with an edited sql/ file
    // migrated the database: it recorded its sources and its own stamp) stops every
    // command, dispatch-tick included, until migrate puts the source back.
    let mut c = Client::connect(&url, NoTls).unwrap();
    c.batch_execute(
        "CREATE OR REPLACE FUNCTION mailrun.count_due() RETURNS bigint
         LANGUAGE sql AS $$ SELECT 0::bigint $$;
         UPDATE mailrun.schema_sources SET sha256 = 'edited'
         WHERE path = 'functions/count_due.sql';
         COMMENT ON SCHEMA mailrun IS 'mailrun schema version 11, sources sha256 0000'",
    )
    .unwrap();
    let out = admin(&url, &["status"]);
    assert_status(&out, 78);
    assert!(
        stderr(&out).contains("stored procedures differ"),
        "{}",
        stderr(&out)
    );
    let ticked = common::pipeline::tick(&url, &[]);
    assert_status(&ticked, 78);
    assert!(
        stderr(&ticked).contains("stored procedures differ"),
        "{}",
        stderr(&ticked)
    );
    let fixed = json_out(&admin(&url, &["migrate", "--json"]));
    assert_eq!(fixed["applied"], serde_json::json!([]), "{fixed}");
    assert_eq!(fixed["routines_applied"], true, "{fixed}");
    assert_status(&admin(&url, &["status"]), 0);
    assert_status(&common::pipeline::tick(&url, &[]), 3);
    assert_same(&before, &schema_dump(&url), "schemas");
}

/// The schema's stamp (its comment, set by migrate) only spares the full check a round
/// trip: without it (a restore made with --no-comments) every command, dispatch-tick
/// included, checks the long way and works, an edited source is still caught, and
/// migrate puts the stamp back without applying anything.
#[test]
fn without_the_schema_stamp_commands_check_the_long_way() {
    let url = common::initialised_db("schema_unstamped");
    let mut c = Client::connect(&url, NoTls).unwrap();
    let stamp = |c: &mut Client| -> Option<String> {
        c.query_one(
            "SELECT obj_description('mailrun'::regnamespace, 'pg_namespace')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let stamped = stamp(&mut c).expect("migrate stamps the schema");
    assert!(stamped.starts_with("mailrun schema version "), "{stamped}");

    c.batch_execute("COMMENT ON SCHEMA mailrun IS NULL")
        .unwrap();
    assert_status(&admin(&url, &["status"]), 0);
    assert_status(&common::pipeline::tick(&url, &[]), 3);

    c.batch_execute(
        "UPDATE mailrun.schema_sources SET sha256 = 'edited'
         WHERE path = 'functions/count_due.sql'",
    )
    .unwrap();
    for out in [admin(&url, &["status"]), common::pipeline::tick(&url, &[])] {
        assert_status(&out, 78);
        assert!(
            stderr(&out).contains("stored procedures differ"),
            "{}",
            stderr(&out)
        );
    }
    let fixed = json_out(&admin(&url, &["migrate", "--json"]));
    assert_eq!(fixed["routines_applied"], true, "{fixed}");
    assert_eq!(stamp(&mut c).as_deref(), Some(stamped.as_str()));

    // Nothing to apply, stamp missing: migrate only puts the stamp back.
    c.batch_execute("COMMENT ON SCHEMA mailrun IS NULL")
        .unwrap();
    let again = json_out(&admin(&url, &["migrate", "--json"]));
    assert_eq!(again["routines_applied"], false, "{again}");
    assert_eq!(stamp(&mut c).as_deref(), Some(stamped.as_str()));
}

#[test]
fn a_pre_squash_database_below_the_baseline_is_refused() {
    let url = common::cluster().fresh_db("schema_old");
    migrate_pre_squash(&url, 5);
    let out = admin(&url, &["migrate"]);
    assert_status(&out, 78);
    assert!(stderr(&out).contains("version 5"), "{}", stderr(&out));
    assert!(stderr(&out).contains("squashed"), "{}", stderr(&out));
}

/// Every function and trigger of the schema has exactly one source file, every source
/// file is applied, and no migration defines a routine.
#[test]
fn every_routine_has_exactly_one_source_file() {
    let url = common::initialised_db("schema_sources");
    let mut c = Client::connect(&url, NoTls).unwrap();

    let sql_dir = Path::new(ROOT).join("sql");
    let mut files: Vec<(String, String)> = Vec::new();
    for dir in ["checks", "functions", "triggers"] {
        for entry in std::fs::read_dir(sql_dir.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let rel = format!("{dir}/{}", path.file_name().unwrap().to_string_lossy());
            files.push((rel, std::fs::read_to_string(&path).unwrap()));
        }
    }
    let listed: Vec<&str> = schema::CHECK_SOURCES
        .iter()
        .chain(schema::ROUTINE_SOURCES)
        .map(|s| s.0)
        .collect();
    for (rel, _) in &files {
        assert!(listed.contains(&rel.as_str()), "sql/{rel} is never applied");
    }
    assert_eq!(listed.len(), files.len());
    assert_eq!(
        schema::embedded_sources_digest(),
        schema::SOURCES_DIGEST_BUILT,
        "build.rs hashed other sources than the binary embeds"
    );

    let defining = |needle: &str| -> Vec<&str> {
        files
            .iter()
            .filter(|(_, text)| text.contains(needle))
            .map(|(rel, _)| rel.as_str())
            .collect()
    };
    let functions: Vec<String> = c
        .query(
            "SELECT DISTINCT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = 'mailrun' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(functions.len() > 30, "{functions:?}");
    for name in &functions {
        let found = defining(&format!("CREATE OR REPLACE FUNCTION mailrun.{name}("));
        assert_eq!(found.len(), 1, "function {name} defined in {found:?}");
        let file_stem = found[0]
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".sql");
        assert!(
            file_stem == name || found[0].starts_with("triggers/"),
            "function {name} lives in sql/{}",
            found[0]
        );
    }
    let triggers: Vec<String> = c
        .query(
            "SELECT t.tgname::text FROM pg_trigger t JOIN pg_class k ON k.oid = t.tgrelid
             JOIN pg_namespace n ON n.oid = k.relnamespace
             WHERE n.nspname = 'mailrun' AND NOT t.tgisinternal ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!triggers.is_empty());
    for name in &triggers {
        let found = defining(&format!("CREATE OR REPLACE TRIGGER {name} "));
        assert_eq!(found.len(), 1, "trigger {name} defined in {found:?}");
    }
    for entry in std::fs::read_dir(Path::new(ROOT).join("migrations")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().to_uppercase();
        for word in [
            "CREATE FUNCTION",
            "OR REPLACE FUNCTION",
            "CREATE TRIGGER",
            "CREATE PROCEDURE",
        ] {
            assert!(!text.contains(word), "{} contains {word}", path.display());
        }
    }
}
