//! Dispatcher side: the PostgreSQL queue, the tick, the SOAP endpoint and config pushes.

pub mod connection;
pub mod endpoint;
pub mod outbound;
pub mod push;
pub mod tick;
