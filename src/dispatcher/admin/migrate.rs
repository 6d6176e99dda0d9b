//! `dispatch-admin init` and `migrate`: the schema and its stored procedures.

use std::path::Path;

use serde_json::json;

use crate::cli::EXIT_OK;
use crate::dispatcher::config::DispatcherConfig;
use crate::dispatcher::schema;

use super::output::*;

pub(super) fn migrate(
    db: &mut postgres::Client,
    config_path: Option<&Path>,
    out: Output,
) -> anyhow::Result<u8> {
    let migrated = schema::migrate(db)?;
    let (config, path) = DispatcherConfig::load(config_path)?;
    let changed = match path {
        Some(_) => config.retry_policy().store(db)?,
        None => false,
    };
    let applied = &migrated.versions;
    out.result(
        json!({"applied": applied, "version": schema::latest_version(),
               "routines_applied": migrated.sources, "policy_changed": changed}),
        || {
            let mut s = if migrated.is_noop() {
                format!("schema already at version {}", schema::latest_version())
            } else if applied.is_empty() {
                format!(
                    "schema at version {}; stored procedures updated from sql/",
                    schema::latest_version()
                )
            } else {
                format!("applied migrations {applied:?} and the stored procedures of sql/")
            };
            if changed {
                s.push_str("; retry policy updated from the config file");
            }
            s
        },
    );
    Ok(EXIT_OK)
}
