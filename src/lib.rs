//! mailrun: a PostgreSQL-backed email dispatcher that feeds SMTP runners over SOAP.
//!
//! The commands in `src/bin` are thin wrappers; every step of the handshake lives here,
//! one concept per module (see `../shared/DESIGN.md` and `docs/`).

pub mod cli;
pub mod dispatcher;
pub mod manpages;
pub mod protocol;
pub mod runner;
pub mod schedule;
pub mod smtp;
pub mod web;
