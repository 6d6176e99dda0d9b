//! Runner side: state folder, spool and journal, poll, send and the SOAP endpoint.
//! The operator's guide is docs/runner.md.

pub mod admin;
pub mod config;
pub mod deliver;
pub mod endpoint;
pub mod heap;
pub mod nonces;
pub mod poll;
pub mod refill;
pub mod reply_policy;
pub mod send;
pub mod spool;
pub mod state;
pub mod update;
