//! The signing client against the real `--listen` server over loopback TCP.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use mailrun::cli::{EXIT_CONFIG, EXIT_UNAVAILABLE};
use mailrun::protocol::sign::{self, SigningKey};
use mailrun::web::client::{Client, ClientOptions, TransportError};
use mailrun::web::{self, listen, Request, Response, SOAP_CONTENT_TYPE};

const ACTION: &str = "urn:mailrun:soap:v1#JobRunRequest";
const REPLY_ACTION: &str = "urn:mailrun:soap:v1#JobRun";
const MAX_BODY: usize = 4096;

fn key() -> SigningKey {
    SigningKey {
        key_id: "runner-1".into(),
        secret: [42; 32],
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        allow_plain_http: false,
        max_response_bytes: 64 * 1024,
    }
}

/// Start the real server on an ephemeral loopback port; returns its base URL.
fn start<H>(handler: H) -> String
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let listener = listen::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr();
    thread::spawn(move || listener.run(handler, mailrun::web::RequestError::to_response, MAX_BODY));
    format!("http://{addr}")
}

/// A server endpoint as dispatcher and runner write it: verify, then sign the answer.
fn endpoint(req: Request) -> Response {
    let keys = [key()];
    match web::verify_request(&req, &keys, sign::now_unix()) {
        Err(e) => Response::new(
            500,
            SOAP_CONTENT_TYPE,
            format!("<fault>{}</fault>", e.fault_reason().as_str()),
        ),
        Ok(k) => {
            assert_eq!(req.remote_addr, Some("127.0.0.1".parse().unwrap()));
            assert_eq!(req.header("content-type"), Some(SOAP_CONTENT_TYPE));
            let mut body = b"<reply>".to_vec();
            body.extend_from_slice(&req.body);
            body.extend_from_slice(b"</reply>");
            let headers = web::sign_response(k, &req, REPLY_ACTION, &body);
            Response::new(200, SOAP_CONTENT_TYPE, body).with_headers(headers)
        }
    }
}

#[test]
fn signed_round_trip() {
    let base = start(endpoint);
    let client = Client::new(options());
    let r = client
        .post_signed(
            &format!("{base}/cgi-bin/dispatch-cgi"),
            &key(),
            ACTION,
            b"<ask/>",
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.authenticated);
    assert_eq!(r.body, b"<reply><ask/></reply>");

    // The quoted SOAP 1.1 form of the action is the same action.
    let r = client
        .post_signed(&format!("{base}/x"), &key(), &format!("\"{ACTION}\""), b"")
        .unwrap();
    assert_eq!(r.body, b"<reply></reply>");
}

#[test]
fn request_with_wrong_key_gets_an_unsigned_fault() {
    let base = start(endpoint);
    let wrong = SigningKey {
        key_id: "runner-1".into(),
        secret: [1; 32],
    };
    let r = Client::new(options())
        .post_signed(&format!("{base}/p"), &wrong, ACTION, b"<ask/>")
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(!r.authenticated);
    assert_eq!(r.body, b"<fault>BadSignature</fault>");
}

#[test]
fn signed_fault_is_authenticated() {
    let base = start(|req: Request| {
        let body = b"<fault/>".to_vec();
        let h = web::sign_response(&key(), &req, "urn:mailrun:soap:v1#Fault", &body);
        Response::new(500, SOAP_CONTENT_TYPE, body).with_headers(h)
    });
    let r = Client::new(options())
        .post_signed(&format!("{base}/p"), &key(), ACTION, b"")
        .unwrap();
    assert_eq!((r.status, r.authenticated), (500, true));
}

/// A proxy (or anyone on a plain-HTTP path) that recorded a signed answer and plays it
/// back to a later request: the signature is bound to the first request's nonce, so the
/// client refuses the copy (a replayed JobRun would make a runner send a batch again).
#[test]
fn replayed_response_is_rejected() {
    let recorded: std::sync::Arc<std::sync::Mutex<Option<Response>>> = Default::default();
    let store = recorded.clone();
    let base = start(move |req: Request| {
        let mut slot = store.lock().unwrap();
        if let Some(first) = slot.as_ref() {
            return first.clone();
        }
        let body = b"<reply>batch</reply>".to_vec();
        let h = web::sign_response(&key(), &req, REPLY_ACTION, &body);
        let response = Response::new(200, SOAP_CONTENT_TYPE, body).with_headers(h);
        *slot = Some(response.clone());
        response
    });
    let client = Client::new(options());
    let url = format!("{base}/cgi-bin/dispatch-cgi");
    let first = client.post_signed(&url, &key(), ACTION, b"<ask/>").unwrap();
    assert!(first.authenticated);
    let e = client
        .post_signed(&url, &key(), ACTION, b"<ask/>")
        .unwrap_err();
    assert!(
        matches!(e, TransportError::BadResponseSignature { .. }),
        "a replayed answer must not verify: {e:?}"
    );
}

#[test]
fn tampered_or_unsigned_response_is_rejected() {
    let base = start(|req: Request| {
        let signed_body = b"<reply>1</reply>".to_vec();
        let h = web::sign_response(&key(), &req, REPLY_ACTION, &signed_body);
        match req.path.as_str() {
            "/tampered" => {
                Response::new(200, SOAP_CONTENT_TYPE, "<reply>2</reply>").with_headers(h)
            }
            // Signed for a different path: a response cannot be moved between endpoints.
            "/moved" => {
                let other = Request {
                    path: "/other".into(),
                    ..req.clone()
                };
                let h = web::sign_response(&key(), &other, REPLY_ACTION, &signed_body);
                Response::new(200, SOAP_CONTENT_TYPE, signed_body).with_headers(h)
            }
            _ => Response::new(200, SOAP_CONTENT_TYPE, signed_body),
        }
    });
    let client = Client::new(options());
    for path in ["/tampered", "/moved", "/unsigned"] {
        let e = client
            .post_signed(&format!("{base}{path}"), &key(), ACTION, b"")
            .unwrap_err();
        assert!(
            matches!(e, TransportError::BadResponseSignature { .. }),
            "{path}: {e}"
        );
        assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
    }
}

#[test]
fn oversize_request_is_refused_by_the_server() {
    let called = Arc::new(Mutex::new(false));
    let flag = Arc::clone(&called);
    let base = start(move |req: Request| {
        *flag.lock().unwrap() = true;
        endpoint(req)
    });
    let e = Client::new(options())
        .post_signed(
            &format!("{base}/p"),
            &key(),
            ACTION,
            &vec![b'x'; MAX_BODY + 1],
        )
        .unwrap_err();
    assert!(
        matches!(e, TransportError::Status { status: 413, .. }),
        "{e}"
    );
    assert!(!*called.lock().unwrap(), "handler ran for an oversize body");
    // Exactly at the limit is fine.
    Client::new(options())
        .post_signed(&format!("{base}/p"), &key(), ACTION, &vec![b'x'; MAX_BODY])
        .unwrap();
}

#[test]
fn oversize_response_is_refused_by_the_client() {
    let base = start(|req: Request| {
        let body = vec![b'x'; 2000];
        let h = web::sign_response(&key(), &req, REPLY_ACTION, &body);
        Response::new(200, SOAP_CONTENT_TYPE, body).with_headers(h)
    });
    let client = Client::new(ClientOptions {
        max_response_bytes: 1000,
        ..options()
    });
    let e = client
        .post_signed(&format!("{base}/p"), &key(), ACTION, b"")
        .unwrap_err();
    assert!(
        matches!(e, TransportError::TooLarge { limit: 1000, .. }),
        "{e}"
    );
}

#[test]
fn plain_http_to_a_remote_host_is_refused_before_connecting() {
    // 192.0.2.1 is TEST-NET-1: nothing answers there, so a connection attempt would
    // show up as Connect or Timeout instead of PlainHttpRefused.
    let client = Client::new(options());
    let e = client
        .post_signed("http://192.0.2.1/cgi-bin/runner-cgi", &key(), ACTION, b"")
        .unwrap_err();
    assert!(matches!(e, TransportError::PlainHttpRefused { .. }), "{e}");
    assert_eq!(e.exit_code(), EXIT_CONFIG);
    assert!(e.to_string().contains("192.0.2.1"));

    for bad in [
        "ftp://127.0.0.1/",
        "not a url",
        "/relative",
        "http://user:pw@127.0.0.1/",
    ] {
        let e = client.post_signed(bad, &key(), ACTION, b"").unwrap_err();
        assert!(matches!(e, TransportError::BadUrl { .. }), "{bad}: {e}");
        assert!(!e.to_string().contains("pw@"), "{e}");
    }
}

#[test]
fn connection_refused_is_a_connect_error() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let e = Client::new(options())
        .post_signed(&format!("http://127.0.0.1:{port}/p"), &key(), ACTION, b"")
        .unwrap_err();
    assert!(matches!(e, TransportError::Connect { .. }), "{e}");
    assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept, read what comes, never answer; the socket stays open until the test ends.
    thread::spawn(move || {
        let mut held = Vec::new();
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            held.push(conn);
        }
    });
    let client = Client::new(ClientOptions {
        timeout: Duration::from_secs(2),
        ..options()
    });
    let e = client
        .post_signed(&format!("http://{addr}/p"), &key(), ACTION, b"<ask/>")
        .unwrap_err();
    assert!(matches!(e, TransportError::Timeout { .. }), "{e}");
    assert_eq!(e.exit_code(), EXIT_UNAVAILABLE);
}

#[test]
fn other_statuses_are_errors() {
    let base = start(|req: Request| match req.path.as_str() {
        "/html500" => Response::new(500, "text/html", "<h1>oops</h1>"),
        _ => Response::text(404, "no such endpoint"),
    });
    let client = Client::new(options());
    for (path, want) in [("/nope", 404), ("/html500", 500)] {
        let e = client
            .post_signed(&format!("{base}{path}"), &key(), ACTION, b"")
            .unwrap_err();
        assert!(
            matches!(e, TransportError::Status { status, .. } if status == want),
            "{path}: {e}"
        );
    }
}

#[test]
fn a_slow_request_does_not_block_others() {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let entered_tx = Mutex::new(entered_tx);
    let base = start(move |req: Request| {
        if req.path == "/slow" {
            let _ = entered_tx.lock().unwrap().send(());
            // Held until the fast request has been answered by another worker.
            let _ = release_rx
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(20));
        }
        endpoint(req)
    });
    let slow_url = format!("{base}/slow");
    let slow = thread::spawn(move || {
        Client::new(options()).post_signed(&slow_url, &key(), ACTION, b"slow")
    });
    // Wait until the slow request is inside its handler, so the fast one below really
    // runs while it is busy (the timeout is only a safety bound).
    entered_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let fast = Client::new(options())
        .post_signed(&format!("{base}/fast"), &key(), ACTION, b"fast")
        .unwrap();
    assert_eq!(fast.body, b"<reply>fast</reply>");
    release_tx.send(()).unwrap();
    let slow = slow.join().unwrap().unwrap();
    assert_eq!(slow.body, b"<reply>slow</reply>");
}

#[test]
fn https_to_a_plain_http_server_fails_in_the_tls_handshake() {
    // TLS is on for https:// URLs: a peer answering in plain text is never trusted.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let e = Client::new(options())
        .post_signed(&format!("https://{addr}/p"), &key(), ACTION, b"")
        .unwrap_err();
    assert!(
        matches!(
            e,
            TransportError::Connect { .. } | TransportError::Io { .. }
        ),
        "{e}"
    );
    assert_eq!(
        e.exit_code() == EXIT_UNAVAILABLE,
        matches!(e, TransportError::Connect { .. })
    );
}

#[test]
fn client_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Client>();
}

#[test]
fn every_request_opens_its_own_connection() {
    // A signed POST is not retried on a kept-alive connection the server closed in the
    // meantime (lighttpd and Apache close idle ones after a few seconds, racing the next
    // request): the client never reuses one. Counted at the TCP level.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(0usize));
    let counter = Arc::clone(&accepted);
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            *counter.lock().unwrap() += 1;
            thread::spawn(move || serve_keep_alive(conn));
        }
    });
    let client = Client::new(options());
    for _ in 0..3 {
        // An unsigned 200: refused, but read whole, so a pooling client would keep
        // the connection for the next request.
        let answer = client.post_signed(&format!("http://{addr}/p"), &key(), ACTION, b"<ask/>");
        assert!(answer.is_err(), "an unsigned answer is refused");
    }
    assert_eq!(*accepted.lock().unwrap(), 3);
}

/// Answers every request on the connection with a keep-alive 200 until the peer leaves.
fn serve_keep_alive(mut conn: std::net::TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + 4 + length);
        let answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nno";
        if conn.write_all(answer).is_err() {
            return;
        }
    }
}
