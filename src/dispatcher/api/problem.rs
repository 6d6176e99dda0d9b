//! RFC 9457 problem details: every refusal of the API is one JSON object naming what
//! went wrong and, for bad input, the field at fault as a JSON pointer.

use serde_json::{json, Value};

use crate::web::Response;

/// The media type of a problem answer.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One refusal. `kind` becomes the `type` URI `urn:mailrun:problem:<kind>`.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// (JSON pointer into the request body or `query:<name>`, what is wrong there).
    pub errors: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Problem {
    pub fn new(
        status: u16,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Problem {
        Problem {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Bad input at `pointer`: a 422 with the field named.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Problem {
        let detail = detail.into();
        let mut p = Problem::new(422, "invalid-input", "Invalid input", detail.clone());
        p.errors.push((pointer.into(), detail));
        p
    }

    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(400, "bad-request", "Bad request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(404, "not-found", "Not found", detail)
    }

    pub fn internal() -> Problem {
        Problem::new(
            500,
            "internal",
            "Internal error",
            "the dispatcher failed; the request changed nothing (details in its log)",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(503, "unavailable", "Service unavailable", detail)
            .with_header("Retry-After", "30")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Problem {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": format!("urn:mailrun:problem:{}", self.kind),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            v["errors"] = self
                .errors
                .iter()
                .map(|(pointer, detail)| json!({"pointer": pointer, "detail": detail}))
                .collect();
        }
        v
    }

    pub fn to_response(&self) -> Response {
        let mut body = self.to_json().to_string().into_bytes();
        body.push(b'\n');
        Response::new(self.status, PROBLEM_CONTENT_TYPE, body).with_headers(self.headers.clone())
    }
}

/// A JSON pointer token (RFC 6901 escapes).
pub fn pointer_token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}
