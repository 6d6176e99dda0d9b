//! The SOAP contract in Rust: message types, the XML codec with parse limits, and the
//! HMAC request/response signing rule. No HTTP here; `protocol/` at the top of the
//! repository (WSDL, XSD, examples) is the contract this module follows.

pub mod codec;
pub mod faults;
pub mod limits;
pub mod reply_rules;
pub mod sign;
pub mod types;
pub mod wsdl;
mod xml;

pub use types::*;

/// The one target namespace of every mailrun SOAP message; the version is in the name.
pub const NAMESPACE: &str = "urn:mailrun:soap:v1";
/// SOAP 1.1 envelope namespace.
pub const SOAP_ENV_NAMESPACE: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// The software version every command reports in the protocol.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
