//! The signing SOAP-over-HTTP client used by `dispatch-tick`, `push-config` and
//! `runner-poll`: explicit timeouts, a cap on the response size, TLS verification,
//! plain HTTP only to loopback unless the operator opts in, and every response's
//! signature checked with the same key that signed the request.

use std::fmt;
use std::io;
use std::time::Duration;

use ureq::http::Uri;

use super::{is_loopback_host, unquote, BodyLen, SOAP_CONTENT_TYPE};
use crate::cli::{EXIT_CONFIG, EXIT_TEMPFAIL, EXIT_UNAVAILABLE};
use crate::protocol::sign::{self, SignError, Signature, SigningKey};

/// Client settings. There is no Default on purpose: callers choose the timeouts.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Limit on establishing the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Limit on the whole exchange, connect to last response byte.
    pub timeout: Duration,
    /// Allow `http://` to non-loopback hosts (the signature still protects integrity,
    /// but the body, including SMTP passwords in a JobRun, travels in clear text).
    pub allow_plain_http: bool,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
}

/// A response that passed the transport checks. Debug shows the body's length only
/// (a JobRun carries SMTP passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct SignedResponse {
    /// 200, or 500 (503 for Unavailable) for a SOAP fault.
    pub status: u16,
    pub body: Vec<u8>,
    /// True when the response carried a valid signature by our key. Always true for
    /// 200; a fault (500) may come unsigned from a peer that did not know our key.
    pub authenticated: bool,
}

impl fmt::Debug for SignedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedResponse")
            .field("status", &self.status)
            .field("body", &BodyLen(self.body.len()))
            .field("authenticated", &self.authenticated)
            .finish()
    }
}

/// Why an exchange failed. Messages never contain key material or URL credentials.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("refusing plain http:// to non-loopback host {host} (use https, or allow plain HTTP explicitly)")]
    PlainHttpRefused { host: String },
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: timed out")]
    Timeout { url: String },
    #[error("{url}: unexpected HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response signature rejected: {reason}")]
    BadResponseSignature { url: String, reason: String },
    #[error("{url}: response body exceeds the limit of {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {reason}")]
    Io { url: String, reason: String },
}

impl TransportError {
    /// Exit code for a command that gives up on this error:
    /// configuration problems (bad URL, plain HTTP refused) → 78;
    /// an I/O error after the connection was up (dropped mid-exchange) → 75, retry;
    /// everything else (refused, timed out, HTTP error status, bad signature, oversize
    /// response) → 69, the peer is unavailable or not trustworthy right now.
    pub fn exit_code(&self) -> u8 {
        match self {
            TransportError::BadUrl { .. } | TransportError::PlainHttpRefused { .. } => EXIT_CONFIG,
            TransportError::Io { .. } => EXIT_TEMPFAIL,
            TransportError::Connect { .. }
            | TransportError::Timeout { .. }
            | TransportError::Status { .. }
            | TransportError::BadResponseSignature { .. }
            | TransportError::TooLarge { .. } => EXIT_UNAVAILABLE,
        }
    }
}

/// A reusable client: one connect per request (no pooled connections, see below). Cheap
/// to clone and safe to share between threads, e.g. to call many runners in parallel.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    options: ClientOptions,
}

impl Client {
    pub fn new(options: ClientOptions) -> Client {
        let config = ureq::Agent::config_builder()
            // ureq has no timeouts unless set; a silent peer must not hang cron.
            .timeout_connect(Some(options.connect_timeout))
            .timeout_global(Some(options.timeout))
            // Faults arrive as 500 with a SOAP body; we read them ourselves.
            .http_status_as_error(false)
            // A redirect would change the signed path; report the 3xx instead.
            .max_redirects(0)
            .max_redirects_will_error(false)
            // No pooled connections: a signed POST is not retried on a kept-alive
            // connection the server closed meanwhile (lighttpd and Apache close idle ones
            // after 5 s), which failed as "Peer disconnected". One connect per request.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .user_agent(format!("mailrun/{}", crate::protocol::SOFTWARE_VERSION))
            .build();
        Client {
            agent: config.into(),
            options,
        }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// POST a SOAP body signed with `key`, and check the response is signed by it too.
    ///
    /// Returns the response for 200 (signature required) and for a SOAP fault (500, or
    /// 503 as the dispatcher answers Unavailable, with an XML body; signature checked if
    /// present). Any other status is an error.
    pub fn post_signed(
        &self,
        url: &str,
        key: &SigningKey,
        soap_action: &str,
        body: &[u8],
    ) -> Result<SignedResponse, TransportError> {
        let target = check_url(url, self.options.allow_plain_http)?;
        let shown = target.shown.clone();
        let action = unquote(soap_action);
        let sig = sign::sign(key, "POST", &target.path, action, body);
        let request_nonce = sig.nonce.clone();

        let mut request = self
            .agent
            .post(&target.uri)
            .header("Content-Type", SOAP_CONTENT_TYPE)
            .header("SOAPAction", format!("\"{action}\""));
        for (name, value) in sig.to_headers() {
            request = request.header(name, value);
        }
        let mut response = request.send(body).map_err(|e| match e {
            // rustls reports handshake and certificate failures as InvalidData I/O
            // errors; before any response arrived on https that is a TLS failure.
            ureq::Error::Io(io) if target.https && io.kind() == io::ErrorKind::InvalidData => {
                TransportError::Connect {
                    url: shown.clone(),
                    reason: format!("TLS: {io}"),
                }
            }
            e => map_error(e, &shown, None),
        })?;

        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let is_xml =
            header("content-type").is_some_and(|ct| ct.to_ascii_lowercase().contains("xml"));
        let fault_status = status == 500 || status == 503;
        if !(status == 200 || (fault_status && is_xml)) {
            return Err(TransportError::Status { url: shown, status });
        }
        let response_action = header("soapaction").map(|a| unquote(&a).to_string());
        let response_sig = Signature::from_headers(|name| header(name));

        let limit = self.options.max_response_bytes;
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| map_error(e, &shown, Some(limit)))?;

        let response_action = response_action.as_deref().unwrap_or(action);
        let authenticated = match response_sig {
            Err(SignError::Missing) if fault_status => false,
            Err(e) => {
                return Err(TransportError::BadResponseSignature {
                    url: shown,
                    reason: e.to_string(),
                })
            }
            Ok(sig) => {
                // Bound to this request's nonce: a response recorded for an earlier
                // request (a replay) does not verify.
                sign::verify_response(
                    std::slice::from_ref(key),
                    &sig,
                    &target.path,
                    response_action,
                    &body,
                    &request_nonce,
                    sign::now_unix(),
                )
                .map_err(|e| TransportError::BadResponseSignature {
                    url: shown.clone(),
                    reason: e.to_string(),
                })?;
                true
            }
        };
        Ok(SignedResponse {
            status,
            body,
            authenticated,
        })
    }
}

impl Client {
    /// POST a JSON body with extra headers (a webhook); returns the HTTP status, whatever
    /// it is, after reading at most `max_response_bytes` of the answer. `timeout` bounds
    /// this exchange (connect included) below the client's own limit. Same URL rules as
    /// signed posts: https, plain http only to loopback unless allowed.
    pub fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &[u8],
        timeout: Duration,
    ) -> Result<u16, TransportError> {
        let target = check_url(url, self.options.allow_plain_http)?;
        let shown = target.shown.clone();
        let timeout = timeout.min(self.options.timeout);
        let mut request = self
            .agent
            .post(&target.uri)
            .config()
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(self.options.connect_timeout)))
            .build()
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.send(body).map_err(|e| match e {
            ureq::Error::Io(io) if target.https && io.kind() == io::ErrorKind::InvalidData => {
                TransportError::Connect {
                    url: shown.clone(),
                    reason: format!("TLS: {io}"),
                }
            }
            e => map_error(e, &shown, None),
        })?;
        let status = response.status().as_u16();
        let limit = self.options.max_response_bytes;
        // The answer is not used, only drained up to the limit; a bigger one is no error.
        let _ = response.body_mut().with_config().limit(limit).read_to_vec();
        Ok(status)
    }
}

/// Checks a URL as the client would before using it (plain HTTP only to loopback unless
/// allowed), for commands that store one.
pub fn check_target(url: &str, allow_plain_http: bool) -> Result<(), TransportError> {
    check_url(url, allow_plain_http).map(|_| ())
}

struct Target {
    uri: String,
    /// The URL path as requested, which both sides sign.
    path: String,
    /// The URL for messages.
    shown: String,
    https: bool,
}

fn check_url(url: &str, allow_plain_http: bool) -> Result<Target, TransportError> {
    let bad = |reason: &str| TransportError::BadUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| bad("no scheme (http:// or https://)"))?;
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        // Credentials in URLs end up in logs; mailrun authenticates with keys instead.
        return Err(TransportError::BadUrl {
            url: "<redacted: URL contains credentials>".into(),
            reason: "user:password@ in URLs is not supported".into(),
        });
    }
    let host = authority.host();
    match scheme {
        "https" => {}
        "http" if allow_plain_http || is_loopback_host(host) => {}
        "http" => {
            return Err(TransportError::PlainHttpRefused {
                host: host.to_string(),
            })
        }
        _ => return Err(bad("scheme must be http or https")),
    }
    let path = uri.path();
    Ok(Target {
        uri: url.to_string(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_string()
        },
        shown: url.to_string(),
        https: scheme == "https",
    })
}

fn map_error(e: ureq::Error, url: &str, limit: Option<u64>) -> TransportError {
    let url = url.to_string();
    match e {
        ureq::Error::Timeout(_) => TransportError::Timeout { url },
        ureq::Error::BodyExceedsLimit(_) => TransportError::TooLarge {
            url,
            limit: limit.unwrap_or(0),
        },
        ureq::Error::HostNotFound => TransportError::Connect {
            url,
            reason: "host not found".into(),
        },
        ureq::Error::ConnectionFailed => TransportError::Connect {
            url,
            reason: "connection failed".into(),
        },
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportError::Timeout { url },
            io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable => TransportError::Connect {
                url,
                reason: io.to_string(),
            },
            _ => TransportError::Io {
                url,
                reason: io.to_string(),
            },
        },
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => TransportError::Connect {
            url,
            reason: format!("TLS: {e}"),
        },
        other => TransportError::Io {
            url,
            reason: other.to_string(),
        },
    }
}
