//! Configuration lookup shared by the dispatcher commands.
//!
//! Database URL order: `--database-url`, then `MAILRUN_DATABASE_URL`, then `database_url`
//! in the first config file found: `--config`, `MAILRUN_CONFIG`, the user's config dir
//! (`directories`: ~/.config/mailrun/dispatcher.toml), then `/etc/mailrun/dispatcher.toml`.
