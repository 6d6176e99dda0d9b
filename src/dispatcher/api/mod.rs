//! The HTTP JSON API under `/api/v1/`, served by `dispatch-cgi` beside the SOAP
//! endpoint (CGI or `--listen`, one request per call, no state outside the database).
//! The contract is `protocol/openapi.yaml`; docs/api.md explains it.
//!
//! Every request: HTTPS unless from loopback, a bearer API key of enough scope, and on
//! writes an optional `Idempotency-Key`. Every write runs in one transaction with its
//! idempotency entry, so a refused or failed request changes nothing and a retried one
//! is answered from what was committed.

mod idempotency;
mod messages;
mod problem;
mod recurring;

pub use problem::Problem;

use postgres::Transaction;
use serde_json::Value;

use crate::dispatcher::api_keys::{self, AuthError, Caller, Scope};
use crate::dispatcher::config::Defaults;
use crate::dispatcher::{connection, schema};
use crate::web::{Request, RequestError, Response};

/// Where the API lives below the endpoint's own path.
pub const PREFIX: &str = "/api/v1";

/// The JSON media type of every success answer.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// What the API takes from dispatcher.toml: the same defaults and time zone as
/// `dispatch-admin enqueue`.
#[derive(Debug, Clone, Default)]
pub struct ApiConfig {
    pub defaults: Defaults,
    pub time_zone: Option<String>,
}

/// The part of `path` after `/api/v1` when the request is for the API (the endpoint
/// may sit anywhere: `/cgi-bin/dispatch-cgi/api/v1/messages`).
pub fn api_path(path: &str) -> Option<&str> {
    let i = path.find(PREFIX)?;
    let rest = &path[i + PREFIX.len()..];
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The routes, each with the scope it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Enqueue,
    EnqueueBatch,
    ListMessages,
    GetMessage(i64),
    CancelMessage(i64),
    ListRecurring,
    AddRecurring,
    GetRecurring(String),
    PauseRecurring(String),
    ResumeRecurring(String),
    RemoveRecurring(String),
}

impl Route {
    fn scope(&self) -> Scope {
        match self {
            Route::ListMessages | Route::GetMessage(_) | Route::ListRecurring => Scope::Read,
            Route::GetRecurring(_) => Scope::Read,
            Route::Enqueue | Route::EnqueueBatch | Route::CancelMessage(_) => Scope::Send,
            Route::AddRecurring
            | Route::PauseRecurring(_)
            | Route::ResumeRecurring(_)
            | Route::RemoveRecurring(_) => Scope::Admin,
        }
    }

    fn takes_body(&self) -> bool {
        matches!(
            self,
            Route::Enqueue | Route::EnqueueBatch | Route::AddRecurring
        )
    }
}

/// Finds the route; Err is the problem to answer (404, or 405 with the methods allowed).
fn route(method: &str, path: &str) -> Result<Route, Problem> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let id = |s: &str| {
        s.parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Problem::not_found(format!("{s:?} is not a message id")))
    };
    let (allowed, found): (&str, Option<Route>) = match segments.as_slice() {
        ["messages"] => (
            "GET, POST",
            match method {
                "POST" => Some(Route::Enqueue),
                "GET" => Some(Route::ListMessages),
                _ => None,
            },
        ),
        ["messages", "batch"] => ("POST", (method == "POST").then_some(Route::EnqueueBatch)),
        ["messages", m] => (
            "GET",
            (method == "GET")
                .then(|| id(m))
                .transpose()?
                .map(Route::GetMessage),
        ),
        ["messages", m, "cancel"] => (
            "POST",
            (method == "POST")
                .then(|| id(m))
                .transpose()?
                .map(Route::CancelMessage),
        ),
        ["recurring"] => (
            "GET, POST",
            match method {
                "POST" => Some(Route::AddRecurring),
                "GET" => Some(Route::ListRecurring),
                _ => None,
            },
        ),
        ["recurring", j] => (
            "GET, DELETE",
            match method {
                "GET" => Some(Route::GetRecurring(j.to_string())),
                "DELETE" => Some(Route::RemoveRecurring(j.to_string())),
                _ => None,
            },
        ),
        ["recurring", j, "pause"] => (
            "POST",
            (method == "POST").then(|| Route::PauseRecurring(j.to_string())),
        ),
        ["recurring", j, "resume"] => (
            "POST",
            (method == "POST").then(|| Route::ResumeRecurring(j.to_string())),
        ),
        _ => {
            return Err(Problem::not_found(format!(
                "no API resource {PREFIX}{path}; see protocol/openapi.yaml"
            )))
        }
    };
    found.ok_or_else(|| {
        Problem::new(
            405,
            "method-not-allowed",
            "Method not allowed",
            format!("{method} is not allowed on {PREFIX}{path}; use {allowed}"),
        )
        .with_header("Allow", allowed)
    })
}

/// Whether the request came over HTTPS (CGI: the server's `HTTPS` variable; `--listen`
/// serves plain HTTP only).
fn is_https() -> bool {
    std::env::var_os("GATEWAY_INTERFACE").is_some()
        && std::env::var("HTTPS").is_ok_and(|v| v.eq_ignore_ascii_case("on") || v == "1")
}

/// A request the web adapter refused before the API saw it (too large, no length, an
/// unreadable body), as a problem document.
pub fn refusal(error: &RequestError) -> Response {
    let (kind, title) = match error.status {
        413 => ("too-large", "Content too large"),
        411 => ("length-required", "Length required"),
        _ => ("bad-request", "Bad request"),
    };
    Problem::new(error.status, kind, title, error.message.clone()).to_response()
}

/// Answers one API request. `path` is the part after `/api/v1`.
pub fn handle(
    req: &Request,
    path: &str,
    database_url: &str,
    config: &ApiConfig,
    max_body: usize,
    verbose: bool,
) -> Response {
    let mut who = String::new();
    let response = match serve(req, path, database_url, config, max_body, &mut who) {
        Ok(r) => r,
        Err(p) => p.to_response(),
    };
    if verbose || response.status >= 500 {
        let peer = req
            .remote_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_string());
        eprintln!(
            "dispatch-cgi: {peer} {} {}{who} {}",
            req.method, req.path, response.status
        );
    }
    response
}

fn serve(
    req: &Request,
    path: &str,
    database_url: &str,
    config: &ApiConfig,
    max_body: usize,
    who: &mut String,
) -> Result<Response, Problem> {
    let loopback = req.remote_addr.is_some_and(crate::web::is_loopback_ip);
    if !loopback && !is_https() {
        return Err(Problem::new(
            403,
            "https-required",
            "HTTPS required",
            "the API takes requests over HTTPS only, except from loopback",
        ));
    }
    let route = route(&req.method, path)?;
    let token = match req.header("authorization") {
        None => None,
        Some(v) => match v.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Some(t.trim()),
            _ => None,
        },
    }
    .ok_or_else(|| {
        Problem::new(
            401,
            "unauthorized",
            "Unauthorized",
            "send an API key as Authorization: Bearer <key> (dispatch-admin api-key add)",
        )
        .with_header("WWW-Authenticate", "Bearer realm=\"mailrun\"")
    })?;
    if req.body.len() > max_body {
        return Err(Problem::new(
            413,
            "too-large",
            "Content too large",
            format!("the request body exceeds the limit of {max_body} bytes"),
        ));
    }
    let idem_key = req.header("idempotency-key").map(str::trim);
    if let Some(k) = idem_key {
        idempotency::check_key(k).map_err(Problem::bad_request)?;
    }
    let body: Value = if route.takes_body() {
        let ct = req.header("content-type").unwrap_or("");
        let media = ct.split(';').next().unwrap_or("").trim();
        if !media.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
            return Err(Problem::new(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                format!("send the body as {JSON_CONTENT_TYPE} (got {ct:?})"),
            ));
        }
        serde_json::from_slice(&req.body)
            .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?
    } else {
        Value::Null
    };

    let mut db = connection::Kept::take_or_connect(database_url).map_err(|e| {
        eprintln!("dispatch-cgi: api: {e:#}");
        Problem::unavailable("the dispatcher cannot reach its database; retry later")
    })?;
    let asked = Asked {
        route,
        token,
        idem_key,
        body,
    };
    let answered = serve_on(&mut db, req, path, asked, config, who);
    // A problem of the request (4xx) leaves the connection as good as a success does.
    if !matches!(&answered, Err(p) if p.status >= 500) {
        db.keep();
    }
    answered
}

/// A request that passed the checks needing no database.
struct Asked<'a> {
    route: Route,
    token: &'a str,
    idem_key: Option<&'a str>,
    body: Value,
}

fn serve_on(
    db: &mut postgres::Client,
    req: &Request,
    path: &str,
    asked: Asked,
    config: &ApiConfig,
    who: &mut String,
) -> Result<Response, Problem> {
    let Asked {
        route,
        token,
        idem_key,
        body,
    } = asked;
    schema::require_current(db).map_err(|e| {
        eprintln!("dispatch-cgi: api: {e:#}");
        Problem::unavailable("the dispatcher's database schema does not match; retry later")
    })?;
    let caller = api_keys::authenticate(db, token).map_err(|e| match e {
        AuthError::Database(e) => {
            eprintln!("dispatch-cgi: api: {e}");
            Problem::internal()
        }
        e => Problem::new(401, "unauthorized", "Unauthorized", e.to_string()).with_header(
            "WWW-Authenticate",
            "Bearer realm=\"mailrun\", error=\"invalid_token\"",
        ),
    })?;
    *who = format!(" key={}", caller.key_id);
    if caller.scope < route.scope() {
        return Err(Problem::new(
            403,
            "insufficient-scope",
            "Insufficient scope",
            format!(
                "this needs a key of scope {} (or higher); this key has scope {}",
                route.scope().as_str(),
                caller.scope.as_str()
            ),
        ));
    }

    let ctx = Context {
        config,
        query: &req.query,
        caller,
    };
    let mut tx = db.transaction().map_err(internal)?;
    let digest = idempotency::request_digest(&req.method, path, &req.query, &req.body);
    if let Some(k) = idem_key.filter(|_| req.method != "GET") {
        match idempotency::begin(&mut tx, caller.key_id, k, &digest).map_err(internal)? {
            idempotency::Begin::New => {}
            idempotency::Begin::Replay { status, body } => {
                return Ok(json_response(status, &body).with_header("Idempotent-Replayed", "true"))
            }
            idempotency::Begin::Mismatch => {
                return Err(Problem::new(
                    422,
                    "idempotency-key-reused",
                    "Idempotency key reused",
                    "this Idempotency-Key was used in the last 24 hours with another request; \
                     use a new key for a new request",
                ))
            }
        }
    }
    let (status, answer) = dispatch(&mut tx, &ctx, &route, body)?;
    if let Some(k) = idem_key.filter(|_| req.method != "GET") {
        idempotency::finish(&mut tx, caller.key_id, k, status, &answer).map_err(internal)?;
    }
    tx.commit().map_err(internal)?;
    crash_point_after_commit();
    Ok(json_response(status, &answer))
}

/// What a route handler gets besides the transaction.
struct Context<'a> {
    config: &'a ApiConfig,
    query: &'a str,
    #[allow(dead_code)]
    caller: Caller,
}

fn dispatch(
    tx: &mut Transaction,
    ctx: &Context,
    route: &Route,
    body: Value,
) -> Result<(u16, Value), Problem> {
    match route {
        Route::Enqueue => messages::enqueue_one(tx, ctx, body),
        Route::EnqueueBatch => messages::enqueue_batch(tx, ctx, body),
        Route::ListMessages => messages::list(tx, ctx),
        Route::GetMessage(id) => messages::get(tx, *id),
        Route::CancelMessage(id) => messages::cancel(tx, *id),
        Route::ListRecurring => recurring::list(tx),
        Route::AddRecurring => recurring::add(tx, ctx, body),
        Route::GetRecurring(j) => recurring::get(tx, j),
        Route::PauseRecurring(j) => recurring::pause(tx, j, true),
        Route::ResumeRecurring(j) => recurring::pause(tx, j, false),
        Route::RemoveRecurring(j) => recurring::remove(tx, j),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut bytes = body.to_string().into_bytes();
    bytes.push(b'\n');
    Response::new(status, JSON_CONTENT_TYPE, bytes)
}

/// An unexpected failure: logged in full, answered without detail.
fn internal(e: impl std::fmt::Display) -> Problem {
    eprintln!("dispatch-cgi: api: {e:#}");
    Problem::internal()
}

/// Fault injection for the tests' "killed between commit and answer" case: debug builds
/// only, never in a release.
fn crash_point_after_commit() {
    #[cfg(debug_assertions)]
    if std::env::var("MAILRUN_FAULT").as_deref() == Ok("api-after-commit") {
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

/// The pairs of a query string, percent-decoded (`+` stays a plus: times carry it).
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Problem> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, Problem> {
    let bad = || Problem::bad_request(format!("malformed query string near {s:?}"));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths() {
        assert_eq!(
            api_path("/cgi-bin/dispatch-cgi/api/v1/messages"),
            Some("/messages")
        );
        assert_eq!(api_path("/api/v1"), Some(""));
        assert_eq!(api_path("/api/v10/x"), None);
        assert_eq!(api_path("/cgi-bin/dispatch-cgi"), None);
    }

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/messages").unwrap(), Route::Enqueue);
        assert_eq!(route("GET", "/messages/7").unwrap(), Route::GetMessage(7));
        assert_eq!(
            route("POST", "/messages/7/cancel").unwrap(),
            Route::CancelMessage(7)
        );
        assert_eq!(route("PUT", "/messages").unwrap_err().status, 405);
        assert_eq!(route("GET", "/nope").unwrap_err().status, 404);
        assert_eq!(route("GET", "/messages/x").unwrap_err().status, 404);
        assert_eq!(
            route("DELETE", "/recurring/daily").unwrap(),
            Route::RemoveRecurring("daily".into())
        );
    }

    /// Plain HTTP from a non-loopback peer is refused before the key or the database is
    /// looked at (the URL here reaches no database).
    #[test]
    fn plain_http_from_afar_is_refused_first() {
        let req = Request {
            method: "POST".into(),
            path: "/cgi-bin/dispatch-cgi/api/v1/messages".into(),
            query: String::new(),
            headers: vec![("authorization".into(), "Bearer mrk_x_y".into())],
            body: b"{}".to_vec(),
            remote_addr: Some("192.0.2.1".parse().unwrap()),
        };
        let r = handle(
            &req,
            "/messages",
            "postgres://nobody@127.0.0.1:1/none",
            &ApiConfig::default(),
            1024,
            false,
        );
        assert_eq!(r.status, 403);
        assert_eq!(r.content_type, problem::PROBLEM_CONTENT_TYPE);
        assert!(String::from_utf8_lossy(&r.body).contains("https-required"));
    }

    #[test]
    fn query_strings() {
        let q = query_pairs("a=1&send_after=2026-12-01T00%3A00%3A00%2B01%3A00&b").unwrap();
        assert_eq!(q[1].1, "2026-12-01T00:00:00+01:00");
        assert_eq!(q[2], ("b".into(), String::new()));
        assert!(query_pairs("a=%zz").is_err());
    }
}
