//! A small built-in HTTP server (`--listen ADDR`) for development, the quickstart and
//! tests. Production runs the same handlers as CGI (`super::cgi`).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use super::{split_target, Refuse, Request, RequestError, Response};

/// Worker threads: enough that one slow request does not stall the others.
pub const WORKERS: usize = 8;

/// A bound server that has not started serving yet (lets callers learn the port).
pub struct Listener {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

/// Bind `addr` (e.g. `127.0.0.1:8080`, or port 0 for any free port).
pub fn bind(addr: &str) -> io::Result<Listener> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{addr}: {e}")))?;
    let bound = server.server_addr().to_ip().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{addr}: not an IP address"),
        )
    })?;
    Ok(Listener {
        server: Arc::new(server),
        addr: bound,
    })
}

impl Listener {
    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve forever with a pool of `WORKERS` threads.
    pub fn run<H>(self, handler: H, refuse: Refuse, max_body: usize) -> io::Result<()>
    where
        H: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let workers: Vec<_> = (0..WORKERS)
            .map(|i| {
                let server = Arc::clone(&self.server);
                let handler = Arc::clone(&handler);
                thread::Builder::new()
                    .name(format!("listen-{i}"))
                    .spawn(move || worker(&server, &*handler, refuse, max_body))
            })
            .collect::<io::Result<_>>()?;
        for w in workers {
            match w.join() {
                Ok(result) => result?,
                Err(_) => return Err(io::Error::other("listen worker panicked")),
            }
        }
        Ok(())
    }
}

/// Bind, print `listening on http://ADDR` to stderr, and serve forever.
pub fn serve<H>(addr: &str, handler: H, refuse: Refuse, max_body: usize) -> io::Result<()>
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let listener = bind(addr)?;
    eprintln!("listening on http://{}", listener.local_addr());
    listener.run(handler, refuse, max_body)
}

fn worker<H>(
    server: &tiny_http::Server,
    handler: &H,
    refuse: Refuse,
    max_body: usize,
) -> io::Result<()>
where
    H: Fn(Request) -> Response + ?Sized,
{
    loop {
        let mut raw = server.recv()?;
        let response = match read_request(&mut raw, max_body) {
            // A panicking handler must not take a worker down with it.
            Ok(req) => catch_unwind(AssertUnwindSafe(|| handler(req))).unwrap_or_else(|_| {
                eprintln!("mailrun: request handler panicked; answering 500");
                Response::text(500, "internal error")
            }),
            Err(e) => refuse(&e),
        };
        if let Err(e) = raw.respond(to_tiny(response)) {
            // The client went away; nothing to tell it. Keep serving others.
            eprintln!("mailrun: could not send response: {e}");
        }
    }
}

fn read_request(raw: &mut tiny_http::Request, max_body: usize) -> Result<Request, RequestError> {
    let method = raw.method().as_str().to_ascii_uppercase();
    let (path, query) = split_target(raw.url());
    let headers = raw
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_ascii_lowercase(),
                h.value.as_str().to_string(),
            )
        })
        .collect();
    let remote_addr = raw.remote_addr().map(|a| a.ip());
    if let Some(n) = raw.body_length() {
        if n > max_body {
            return Err(too_large(max_body).at(&path));
        }
    }
    // Chunked bodies have no declared length: cap while reading.
    let mut body = Vec::new();
    raw.as_reader()
        .take(max_body as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| {
            RequestError::new(400, format!("could not read the request body: {e}")).at(&path)
        })?;
    if body.len() > max_body {
        return Err(too_large(max_body).at(&path));
    }
    Ok(Request {
        method,
        path,
        query,
        headers,
        body,
        remote_addr,
    })
}

fn too_large(max_body: usize) -> RequestError {
    RequestError::new(
        413,
        format!("request body exceeds the limit of {max_body} bytes"),
    )
}

fn to_tiny(response: Response) -> tiny_http::Response<io::Cursor<Vec<u8>>> {
    let response = if response.headers_are_safe() {
        response
    } else {
        eprintln!("mailrun: handler produced an invalid response header; answering 500");
        Response::text(500, "internal error: invalid response header")
    };
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    let headers = std::iter::once(("Content-Type".to_string(), response.content_type))
        .chain(response.headers);
    for (name, value) in headers {
        // headers_are_safe() checked both are visible ASCII, which tiny_http accepts.
        if let Ok(h) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            out.add_header(h);
        }
    }
    out
}
