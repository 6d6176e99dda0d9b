//! Dispatcher side: the PostgreSQL queue, the tick, the SOAP endpoint and config pushes.

pub mod accounts;
pub mod admin;
pub mod message;
pub mod queue;
pub mod retry;
pub mod runners;
pub mod schema;
