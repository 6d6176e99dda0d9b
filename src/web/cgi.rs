//! Run one request as a CGI program (RFC 3875): request from the environment and
//! stdin, response on stdout, then exit. This is the production mode behind Apache or
//! lighttpd; no daemon is needed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::net::IpAddr;

use super::{reason_phrase, split_target, Refuse, Request, RequestError, Response};

/// The most of a refused body (over-size, chunked, of unknown length) read and discarded
/// before answering; beyond it the web server may reset the connection instead of
/// delivering the answer (Apache's `LimitRequestBody` is the place to bound bodies).
pub const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Methods whose requests carry a body, so a missing CONTENT_LENGTH means 411.
const BODY_METHODS: [&str; 3] = ["POST", "PUT", "PATCH"];

/// Read the request from the process environment and stdin, run `handler`, write the
/// response to stdout. Refused requests (413, 411, 400) never reach the handler: `refuse`
/// answers them.
pub fn serve_once<H>(handler: &H, refuse: Refuse, max_body: usize) -> io::Result<()>
where
    H: Fn(Request) -> Response + ?Sized,
{
    // vars_os: a non-UTF-8 variable (possible in a CGI environment) must not panic.
    let env = std::env::vars_os().filter_map(|(k, v)| Some((utf8(k)?, utf8(v)?)));
    let response = match read_request(env, io::stdin().lock(), max_body) {
        Ok(req) => handler(req),
        Err(e) => refuse(&e),
    };
    let mut out = io::stdout().lock();
    write_response(&mut out, &response)?;
    out.flush()
}

/// Build a `Request` from CGI meta-variables and the body stream.
///
/// The path is the path part of `REQUEST_URI` when the server sets it (Apache and
/// lighttpd do): that is the path exactly as the client requested and signed it, even
/// behind aliases or rewrites. Otherwise `SCRIPT_NAME` + `PATH_INFO` (RFC 3875).
pub fn read_request(
    env: impl IntoIterator<Item = (String, String)>,
    mut stdin: impl Read,
    max_body: usize,
) -> Result<Request, RequestError> {
    let env: BTreeMap<String, String> = env.into_iter().collect();
    let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());

    let method = get("REQUEST_METHOD")
        .ok_or_else(|| RequestError::new(400, "REQUEST_METHOD is not set; not a CGI request"))?
        .to_ascii_uppercase();

    let (path, query) = match get("REQUEST_URI") {
        Some(uri) => {
            let (path, query) = split_target(uri);
            (path, get("QUERY_STRING").map_or(query, str::to_string))
        }
        None => {
            let script = get("SCRIPT_NAME").unwrap_or("");
            let info = get("PATH_INFO").unwrap_or("");
            let path = format!("{script}{info}");
            let path = if path.is_empty() {
                "/".to_string()
            } else {
                path
            };
            (path, get("QUERY_STRING").unwrap_or("").to_string())
        }
    };

    let mut headers: Vec<(String, String)> = env
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("HTTP_")?;
            (!name.is_empty()).then(|| (name.to_ascii_lowercase().replace('_', "-"), v.clone()))
        })
        .collect();
    for (var, name) in [
        ("CONTENT_TYPE", "content-type"),
        ("CONTENT_LENGTH", "content-length"),
    ] {
        if let Some(v) = get(var) {
            headers.push((name.to_string(), v.to_string()));
        }
    }

    let remote_addr = get("REMOTE_ADDR").and_then(|a| a.parse::<IpAddr>().ok());

    let length = match get("CONTENT_LENGTH") {
        Some(v) => match v.parse::<u64>() {
            Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                drain(&mut stdin, DRAIN_LIMIT);
                return Err(RequestError::new(400, "CONTENT_LENGTH is not a number").at(&path));
            }
        },
        None => None,
    };
    let body = match length {
        Some(n) if n > max_body as u64 => {
            // Apache's mod_cgid writes the whole body to the program before it reads the
            // answer: a program that answers first and exits leaves the client with a
            // reset (AH02651). So the body is read and thrown away before answering.
            drain(&mut stdin, n.min(DRAIN_LIMIT));
            return Err(RequestError::new(
                413,
                format!("request body exceeds the limit of {max_body} bytes"),
            )
            .at(&path));
        }
        Some(n) => {
            // n <= max_body, which is a usize, so the cast is lossless.
            let mut body = vec![0u8; n as usize];
            stdin.read_exact(&mut body).map_err(|e| {
                RequestError::new(
                    400,
                    format!("could not read the {n}-byte request body: {e}"),
                )
                .at(&path)
            })?;
            body
        }
        None if BODY_METHODS.contains(&method.as_str())
            || env.contains_key("HTTP_TRANSFER_ENCODING") =>
        {
            // Apache passes a chunked body on without CONTENT_LENGTH; it too must be
            // read to its end before the answer can reach the client.
            drain(&mut stdin, DRAIN_LIMIT);
            return Err(RequestError::new(411, "a request body needs a Content-Length").at(&path));
        }
        None => Vec::new(),
    };

    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        remote_addr,
    })
}

/// Write a CGI response: `Status:`, `Content-Type:`, the extra headers, a blank line,
/// the body. A response with unsafe headers becomes a 500 instead of being sent.
pub fn write_response(out: &mut impl Write, response: &Response) -> io::Result<()> {
    let fallback;
    let response = if response.headers_are_safe() {
        response
    } else {
        eprintln!("mailrun: handler produced an invalid response header; answering 500");
        fallback = Response::text(500, "internal error: invalid response header");
        &fallback
    };
    let mut head = format!(
        "Status: {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(&response.body)
}

/// Reads and discards up to `limit` bytes (fewer at end of input or on an error).
fn drain(stdin: &mut impl Read, limit: u64) {
    let _ = io::copy(&mut stdin.take(limit), &mut io::sink());
}

fn utf8(s: OsString) -> Option<String> {
    s.into_string().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn post(extra: &[(&str, &str)], body: &[u8]) -> Result<Request, RequestError> {
        let len = body.len().to_string();
        let mut vars = vec![
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/cgi-bin/dispatch-cgi"),
            ("CONTENT_TYPE", "text/xml; charset=utf-8"),
            ("CONTENT_LENGTH", len.as_str()),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("HTTP_SOAPACTION", "\"urn:mailrun:soap:v1#JobRunRequest\""),
            ("HTTP_X_MAILRUN_KEY_ID", "runner-1"),
            ("PATH", "/usr/bin"),
        ];
        for (k, v) in extra {
            vars.retain(|(n, _)| n != k);
            vars.push((k, v));
        }
        read_request(env(&vars), body, 1024)
    }

    #[test]
    fn parses_a_post() {
        let r = post(&[("QUERY_STRING", "a=1")], b"<x/>").unwrap();
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/cgi-bin/dispatch-cgi");
        assert_eq!(r.query, "a=1");
        assert_eq!(r.body, b"<x/>");
        assert_eq!(r.remote_addr, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(r.header("X-Mailrun-Key-Id"), Some("runner-1"));
        assert_eq!(r.header("content-type"), Some("text/xml; charset=utf-8"));
        assert_eq!(r.header("content-length"), Some("4"));
        assert_eq!(r.soap_action(), "urn:mailrun:soap:v1#JobRunRequest");
        assert_eq!(r.header("path"), None);
    }

    #[test]
    fn path_info_and_request_uri() {
        let r = post(&[("PATH_INFO", "/extra")], b"").unwrap();
        assert_eq!(r.path, "/cgi-bin/dispatch-cgi/extra");
        let r = post(&[("REQUEST_URI", "/mailrun/dispatch?x=y")], b"").unwrap();
        assert_eq!(r.path, "/mailrun/dispatch");
        assert_eq!(r.query, "x=y");
    }

    #[test]
    fn reads_exactly_content_length() {
        let r = read_request(
            env(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "3")]),
            &b"abcdef"[..],
            1024,
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(r.path, "/");
    }

    #[test]
    fn refusals() {
        // Too large: the body is read to its end and discarded before the answer, so
        // Apache's mod_cgid can deliver it.
        let mut body = io::Cursor::new(vec![b'x'; 1025]);
        let e = read_request(
            env(&[("REQUEST_METHOD", "POST"), ("CONTENT_LENGTH", "1025")]),
            &mut body,
            1024,
        )
        .unwrap_err();
        assert_eq!(e.status, 413);
        assert_eq!(body.position(), 1025, "the whole body was drained");
        assert_eq!(e.fault_reason(), crate::protocol::FaultReason::TooLarge);
        let e = read_request(env(&[("REQUEST_METHOD", "POST")]), &b"x"[..], 1024).unwrap_err();
        assert_eq!(e.status, 411);
        assert_eq!(
            post(&[("CONTENT_LENGTH", "-1")], b"").unwrap_err().status,
            400
        );
        assert_eq!(
            post(&[("CONTENT_LENGTH", "+1")], b"x").unwrap_err().status,
            400
        );
        assert_eq!(
            post(&[("CONTENT_LENGTH", "10")], b"short")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(read_request(env(&[]), &b""[..], 1).unwrap_err().status, 400);
        // GET without a length is fine and has no body.
        let r = read_request(env(&[("REQUEST_METHOD", "get")]), &b"ignored"[..], 1).unwrap();
        assert_eq!(r.method, "GET");
        assert!(r.body.is_empty());
        // A bad REMOTE_ADDR is dropped, not fatal.
        assert_eq!(
            post(&[("REMOTE_ADDR", "nope")], b"").unwrap().remote_addr,
            None
        );
    }

    #[test]
    fn writes_a_response() {
        let mut out = Vec::new();
        let resp = Response::new(200, "text/xml; charset=utf-8", "<x/>").with_header("X-A", "1");
        write_response(&mut out, &resp).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 200 OK\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: 4\r\n\
             X-A: 1\r\n\r\n<x/>"
        );
        let mut out = Vec::new();
        write_response(
            &mut out,
            &Response::text(200, "x").with_header("X-A", "1\r\nX-B: 2"),
        )
        .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("Status: 500 "), "{out}");
        assert!(!out.contains("X-B"));
    }
}
