//! Dispatcher side: the PostgreSQL queue, the tick, the SOAP endpoint and config pushes.

pub mod accounts;
pub mod admin;
pub mod charset;
pub mod config;
pub mod config_versions;
pub mod connection;
pub mod db_tls;
pub mod endpoint;
pub mod message;
pub mod outbound;
pub mod push;
pub mod queue;
pub mod quota;
pub mod recurring;
pub mod reply_policy;
pub mod report;
pub mod retention;
pub mod retry;
pub mod runners;
pub mod schema;
pub mod stats;
pub mod status_page;
pub mod suppression;
pub mod tick;
pub mod typed;
pub mod unknown;
