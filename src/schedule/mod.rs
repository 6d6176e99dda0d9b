//! Scheduling as pure functions (no database): send-later times typed by operators
//! and recurring crontab specs with their catch-up rule. See `docs/scheduling.md`.

pub mod cron;
pub mod when;
pub mod zone;

pub use cron::{catch_up, due_occurrence, CatchUp, CronError, CronSpec, DEFAULT_MAX_LATENESS};
pub use when::{describe, parse_send_at, parse_time_zone, AmbiguousTime, SendAt, WhenError};
pub use zone::Zone;

#[cfg(test)]
mod tests;
