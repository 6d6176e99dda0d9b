//! HTTP plumbing shared by the dispatcher and runner endpoints: one request/response
//! model, served either as a CGI program (`cgi`) or by a small built-in server for
//! development and tests (`listen`), and a signing HTTP client (`client`).
//!
//! Handlers are plain `Fn(Request) -> Response`, so an endpoint is written once and
//! runs unchanged behind Apache/lighttpd or under `--listen ADDR`.

pub mod cgi;
pub mod client;
pub mod listen;

use std::fmt;
use std::net::IpAddr;

use crate::protocol::codec;
use crate::protocol::sign::{self, SignError, Signature, SigningKey};
use crate::protocol::{Body, Fault, FaultReason};

/// Content type of every SOAP 1.1 message mailrun sends.
pub const SOAP_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// One HTTP request, as handed to a handler. Debug shows the body's length only: bodies
/// can carry secrets (SMTP passwords in a JobRun, settings in a config update).
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    /// Uppercase method (`POST`, `GET`, ...).
    pub method: String,
    /// The path as the client requested it, without the query (see `docs/signing.md`).
    pub path: String,
    /// The raw query string without `?` (empty if none).
    pub query: String,
    /// Header names lowercased; values as received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub remote_addr: Option<IpAddr>,
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The SOAPAction header without its SOAP 1.1 quotes (empty if absent).
    pub fn soap_action(&self) -> &str {
        unquote(self.header("soapaction").unwrap_or(""))
    }
}

/// One HTTP response, as returned by a handler. Debug shows the body's length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    /// Extra headers (not Content-Type/Content-Length, which are derived).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A plain-text response, for errors outside the SOAP layer (413, 405, ...).
    pub fn text(status: u16, message: impl Into<String>) -> Self {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// Header names and values that cannot split or corrupt the response. A handler that
    /// produces anything else has a bug; adapters answer 500 rather than send it.
    fn headers_are_safe(&self) -> bool {
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        };
        let value = |s: &str| s.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        value(&self.content_type)
            && self.headers.iter().all(|(n, v)| {
                token(n)
                    && value(v)
                    && !n.eq_ignore_ascii_case("content-length")
                    && !n.eq_ignore_ascii_case("content-type")
                    && !n.eq_ignore_ascii_case("status")
            })
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .field("headers", &self.headers)
            .field("body", &BodyLen(self.body.len()))
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("headers", &self.headers)
            .field("body", &BodyLen(self.body.len()))
            .finish()
    }
}

/// Stands in for a body in Debug output.
pub(crate) struct BodyLen(pub(crate) usize);

impl fmt::Debug for BodyLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}

/// A request the adapters refuse before any handler runs (oversize, no length, ...).
/// It is answered with the SOAP fault `protocol/faults.md` names for it, unsigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct RequestError {
    pub status: u16,
    pub message: String,
    /// The request's path when the refusal came after it was read: a service behind the
    /// adapter may answer refusals in its own form ([`Refuse`]).
    pub path: Option<String>,
}

/// How a service answers the adapters' refusals; [`RequestError::to_response`] (a SOAP
/// fault) unless the service has another form for some paths.
pub type Refuse = fn(&RequestError) -> Response;

impl RequestError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        RequestError {
            status,
            message: message.into(),
            path: None,
        }
    }

    /// The same refusal, for a request to `path`.
    pub fn at(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }

    /// The fault reason of the refusal: `TooLarge` for 413, else `MalformedXml` (the
    /// request is not a well-formed SOAP-over-HTTP request).
    pub fn fault_reason(&self) -> FaultReason {
        match self.status {
            413 => FaultReason::TooLarge,
            _ => FaultReason::MalformedXml,
        }
    }

    /// The SOAP fault envelope with this status and the fault's SOAPAction header.
    pub fn to_response(&self) -> Response {
        fault_response(
            self.status,
            &Fault::new(self.fault_reason(), self.message.clone()),
        )
    }
}

/// An unsigned SOAP fault answer: the envelope and `SOAPAction: "…#Fault"` (every SOAP
/// answer carries its SOAPAction, `protocol/faults.md`).
pub fn fault_response(status: u16, fault: &Fault) -> Response {
    let body = Body::Fault(fault.clone());
    let action = codec::soap_action(&body);
    Response::new(status, SOAP_CONTENT_TYPE, codec::encode(&body))
        .with_header("SOAPAction", format!("\"{action}\""))
}

/// Headers a server adds to a response: the signature (method `RESPONSE`, the request's
/// path, the response's SOAPAction, a fresh timestamp and nonce, bound to the request's
/// nonce) and the SOAPAction itself.
pub fn sign_response(
    key: &SigningKey,
    req: &Request,
    soap_action: &str,
    body: &[u8],
) -> Vec<(String, String)> {
    let action = unquote(soap_action);
    // A server signs only after the request's headers were read, so the nonce is there;
    // without one the signature binds to nothing and no client accepts it.
    let request_nonce = request_signature(req).map(|s| s.nonce).unwrap_or_default();
    let sig = sign::sign_response(key, &req.path, action, body, &request_nonce);
    let mut headers = vec![("SOAPAction".to_string(), format!("\"{action}\""))];
    headers.extend(
        sig.to_headers()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    headers
}

/// The signature headers of a request (to look up the keys of its key id first).
pub fn request_signature(req: &Request) -> Result<Signature, SignError> {
    Signature::from_headers(|name| req.header(name).map(str::to_string))
}

/// Verify a request's signature against `keys` (method, path, SOAPAction and body as
/// received). Nonce replay is the caller's check, after this succeeds.
pub fn verify_request<'k>(
    req: &Request,
    keys: &'k [SigningKey],
    now_unix: i64,
) -> Result<&'k SigningKey, SignError> {
    let sig = request_signature(req)?;
    sign::verify(
        keys,
        &sig,
        &req.method,
        &req.path,
        req.soap_action(),
        &req.body,
        now_unix,
    )
}

/// Loopback peers may be reached over plain HTTP: 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(is_loopback_ip)
}

/// 127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.0.0.1).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The standard reason phrase for the statuses mailrun uses.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        409 => "Conflict",
        422 => "Unprocessable Content",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(s)
}

/// Split a request target into path and query; absolute-form targets lose their origin.
fn split_target(target: &str) -> (String, String) {
    let target = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(target);
    match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "127.9.8.7",
            "localhost",
            "LOCALHOST",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "192.0.2.1",
            "example.org",
            "localhost.example.org",
            "[::2]",
            "10.0.0.1",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(split_target("/a/b?x=1"), ("/a/b".into(), "x=1".into()));
        assert_eq!(split_target("/a"), ("/a".into(), "".into()));
        assert_eq!(split_target("http://h:1/p?q"), ("/p".into(), "q".into()));
        assert_eq!(split_target("http://h:1"), ("/".into(), "".into()));
    }

    #[test]
    fn response_signature_verifies_and_request_helpers() {
        let key = SigningKey {
            key_id: "k".into(),
            secret: [3; 32],
        };
        let body = b"<x/>".to_vec();
        let request_sig = sign::sign(&key, "POST", "/p", "urn:a#A", b"<q/>");
        let request = Request {
            method: "POST".into(),
            path: "/p".into(),
            query: String::new(),
            headers: request_sig
                .to_headers()
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v))
                .collect(),
            body: b"<q/>".to_vec(),
            remote_addr: None,
        };
        let headers = sign_response(&key, &request, "\"urn:a#B\"", &body);
        assert_eq!(headers[0], ("SOAPAction".into(), "\"urn:a#B\"".into()));
        // A response signature must not pass as a request signature.
        let req = Request {
            method: "POST".into(),
            path: "/p".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: body.clone(),
            remote_addr: None,
        };
        assert_eq!(req.soap_action(), "urn:a#B");
        let keys = [key];
        let e = verify_request(&req, &keys, sign::now_unix()).unwrap_err();
        assert!(matches!(e, SignError::Mismatch));
        // It verifies as the answer to its request, and only to that one.
        let sig = request_signature(&req).unwrap();
        let now = sign::now_unix();
        sign::verify_response(&keys, &sig, "/p", "urn:a#B", &body, &request_sig.nonce, now)
            .unwrap();
        let other = sign::new_nonce();
        let e = sign::verify_response(&keys, &sig, "/p", "urn:a#B", &body, &other, now);
        assert!(matches!(e, Err(SignError::Mismatch)));
    }

    #[test]
    fn debug_hides_bodies() {
        let r = Response::new(200, "text/xml", "<password>hunter2</password>");
        let d = format!("{r:?}");
        assert!(!d.contains("hunter2") && d.contains("<28 bytes>"), "{d}");
    }

    #[test]
    fn unsafe_headers_are_detected() {
        assert!(Response::text(200, "x")
            .with_header("X-A", "b")
            .headers_are_safe());
        assert!(!Response::text(200, "x")
            .with_header("X-A", "b\r\nSet-Cookie: 1")
            .headers_are_safe());
        assert!(!Response::text(200, "x")
            .with_header("X A", "b")
            .headers_are_safe());
        assert!(!Response::text(200, "x")
            .with_header("Content-Length", "1")
            .headers_are_safe());
        assert!(!Response::new(200, "text/xml\n", "").headers_are_safe());
    }
}
