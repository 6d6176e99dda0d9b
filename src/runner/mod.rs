//! Runner side: state folder, spool and journal, poll, send and the SOAP endpoint.

pub mod update;
