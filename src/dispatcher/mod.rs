//! Dispatcher side: the PostgreSQL queue, the tick, the SOAP endpoint and config pushes.

pub mod accounts;
pub mod admin;
pub mod connection;
pub mod endpoint;
pub mod message;
pub mod outbound;
pub mod push;
pub mod queue;
pub mod retry;
pub mod runners;
pub mod schema;
pub mod tick;
