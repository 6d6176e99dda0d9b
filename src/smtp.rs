//! SMTP delivery of one message over lettre, with per-recipient outcomes.
//!
//! lettre's `SmtpTransport::send` aborts the whole transaction on the first refused RCPT,
//! so this module drives the low-level [`SmtpConnection`] itself: every RCPT is judged on
//! its own, the accepted recipients still get DATA, and refusals are reported per
//! recipient. One connection per SMTP account is kept open across the messages of a
//! batch (RSET only after an incomplete transaction; reconnect after an error, and once
//! more when the server ended a reused session before the next MAIL).
//!
//! Security rules (never relaxed silently):
//! - `Security::StartTls`: the server must offer STARTTLS; otherwise the message is
//!   deferred with "STARTTLS required but not offered" and neither AUTH nor MAIL is sent.
//! - `Security::Tls`: implicit TLS from the first byte.
//! - `Security::None` with credentials: AUTH over plain text is refused unless the server
//!   is a loopback address (a local relay), because the password would cross the network
//!   in clear.
//!
//! The account password never appears in any error text, log line or Debug output.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MimeAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::Error as SmtpError;
use lettre::Address;

use crate::protocol::{OutboundMessage, Outcome, RecipientResult, Security, SmtpAccount};

/// Timeouts of one SMTP session (RFC 5321 section 4.5.3.2 gives the defaults).
#[derive(Debug, Clone)]
pub struct SmtpOptions {
    pub connect_timeout: Duration,
    /// Per command (greeting, EHLO, MAIL, RCPT, DATA, RSET): RFC 5321 suggests 5 minutes.
    pub command_timeout: Duration,
    /// Waiting for the answer after the final dot: RFC 5321 suggests 10 minutes.
    pub data_timeout: Duration,
    /// EHLO name; `None` uses the host name.
    pub hello_name: Option<String>,
    /// Extra trusted root certificates (PEM), for relays with a private CA; the public
    /// web PKI roots are always trusted.
    pub extra_roots_pem: Option<Vec<u8>>,
}

impl Default for SmtpOptions {
    fn default() -> Self {
        SmtpOptions {
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            hello_name: None,
            extra_roots_pem: None,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub outcome: Outcome,
    pub smtp_code: Option<u16>,
    pub enhanced_status: Option<String>,
    pub text: Option<String>,
    /// Per-recipient outcomes; filled whenever the server treated recipients differently
    /// from the message as a whole.
    pub recipients: Vec<RecipientResult>,
    /// Set when no session could be opened for the message's account: nothing of the
    /// message was sent. The runner's scheduler lowers the account's concurrency on it.
    pub connect_failure: Option<ConnectFailure>,
}

/// Why a session to an account could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// Refused, timed out, dropped, or a 4xx greeting ("421 too many connections"): the
    /// server may take fewer sessions; worth trying again later.
    Transient,
    /// The account cannot work as configured (TLS, STARTTLS missing, authentication,
    /// credentials that would cross the network in clear, a 5xx greeting).
    Account,
}

impl Delivery {
    fn whole(outcome: Outcome, code: Option<u16>, text: impl Into<String>) -> Delivery {
        let text = text.into();
        Delivery {
            outcome,
            smtp_code: code,
            enhanced_status: enhanced_status(&text),
            text: Some(text),
            recipients: Vec::new(),
            connect_failure: None,
        }
    }

    fn from_error(err: &SmtpError, context: &str) -> Delivery {
        let (outcome, code, text) = classify(err);
        Delivery {
            outcome,
            smtp_code: code,
            enhanced_status: enhanced_status(&text),
            text: Some(format!("{context}: {text}")),
            recipients: Vec::new(),
            connect_failure: None,
        }
    }

    fn unable_to_connect(mut self, why: ConnectFailure) -> Delivery {
        self.connect_failure = Some(why);
        self
    }
}

/// Identifies the connection an account can share with others in one batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccountKey {
    host: String,
    port: u16,
    security: &'static str,
    username: Option<String>,
}

impl AccountKey {
    fn of(account: &SmtpAccount) -> AccountKey {
        AccountKey {
            host: account.host.clone(),
            port: account.port,
            security: account.security.as_str(),
            username: account.username.clone(),
        }
    }
}

/// Either an open session or the reason the account could not be reached; a failed
/// connection is not retried within the same batch (each try could cost a full timeout).
enum Session {
    /// `clean`: the last transaction ended with the server's final answer to the message
    /// (RFC 5321 4.1.1.4: that completes and clears the transaction), so the next MAIL
    /// needs no RSET first: one round trip less per message.
    Open {
        conn: Box<SmtpConnection>,
        clean: bool,
        /// The server offered PIPELINING (RFC 2920).
        pipelining: bool,
    },
    Unusable(Delivery),
}

/// Delivers messages, reusing one connection per account.
pub struct Sender {
    options: SmtpOptions,
    hello: ClientId,
    sessions: HashMap<AccountKey, Session>,
}

impl Sender {
    pub fn new(options: SmtpOptions) -> Sender {
        let hello = match &options.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Sender {
            options,
            hello,
            sessions: HashMap::new(),
        }
    }

    /// Delivers one message and reports its outcome; never panics on server behaviour.
    pub fn deliver(&mut self, msg: &OutboundMessage) -> Delivery {
        self.deliver_gated(msg, &mut || Ok(()))
    }

    /// As [`Sender::deliver`], calling `before_final_dot` once the server is ready for
    /// the message and before anything of it is sent (the runner waits there for the
    /// previous outcome's fsync). When it fails the connection is closed without the
    /// final dot, so the server discards the message, and its text is the Deferred
    /// outcome.
    pub fn deliver_gated(
        &mut self,
        msg: &OutboundMessage,
        before_final_dot: &mut dyn FnMut() -> Result<(), String>,
    ) -> Delivery {
        let built = match build_message(msg) {
            Ok(built) => built,
            Err(text) => return Delivery::whole(Outcome::Failed, None, text),
        };
        let key = AccountKey::of(&msg.account);
        // An open connection is reused (after RSET when its last transaction did not
        // complete); a broken one is replaced.
        let mut reused_without_rset = false;
        if let Some(Session::Open { conn, clean, .. }) = self.sessions.get_mut(&key) {
            let healthy = !conn.has_broken()
                && conn.set_timeout(Some(self.options.command_timeout)).is_ok()
                && (*clean || conn.command(Rset).is_ok());
            reused_without_rset = healthy && *clean;
            if !healthy {
                self.drop_session(&key);
            }
        }
        let delivery = match self.transaction_on(&key, msg, &built, before_final_dot) {
            Ok(delivery) => delivery,
            // Without RSET nothing proved the reused session alive: a server that closed
            // it meanwhile (idle timeout, "421 too many messages on this connection")
            // answers the MAIL. Nothing of this message was sent: it goes out on a new
            // connection.
            Err(e) if reused_without_rset && session_gone(&e) => {
                self.drop_session(&key);
                self.transaction_on(&key, msg, &built, before_final_dot)
                    .unwrap_or_else(|e| Delivery::from_error(&e, "MAIL FROM refused"))
            }
            Err(e) => Delivery::from_error(&e, "MAIL FROM refused"),
        };
        match self.sessions.get_mut(&key) {
            Some(Session::Open { conn, .. }) if conn.has_broken() => {
                self.sessions.remove(&key);
            }
            Some(Session::Open { clean, .. }) => *clean = delivery.outcome == Outcome::Sent,
            _ => {}
        }
        delivery
    }

    /// Runs one transaction on the account's session, opening it first when there is
    /// none. `Err` is a MAIL command that failed: nothing of the message was sent.
    fn transaction_on(
        &mut self,
        key: &AccountKey,
        msg: &OutboundMessage,
        built: &BuiltMessage,
        before_final_dot: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Delivery, SmtpError> {
        if !self.sessions.contains_key(key) {
            let session = match self.open(&msg.account) {
                Ok((conn, pipelining)) => Session::Open {
                    conn: Box::new(conn),
                    clean: true,
                    pipelining,
                },
                Err(delivery) => Session::Unusable(delivery),
            };
            self.sessions.insert(key.clone(), session);
        }
        match self.sessions.get_mut(key) {
            Some(Session::Open {
                conn, pipelining, ..
            }) => transaction(conn, built, &self.options, *pipelining, before_final_dot),
            Some(Session::Unusable(delivery)) => Ok(delivery.clone()),
            None => Ok(Delivery::whole(
                Outcome::Deferred,
                None,
                "internal: no SMTP session",
            )),
        }
    }

    /// Ends the session of this account, if one is open (QUIT), and forgets a failed
    /// connection attempt, so the next message of the account connects afresh.
    pub fn release(&mut self, account: &SmtpAccount) {
        if let Some(Session::Open { mut conn, .. }) = self.sessions.remove(&AccountKey::of(account))
        {
            let _ = conn.quit();
        }
    }

    fn drop_session(&mut self, key: &AccountKey) {
        if let Some(Session::Open { mut conn, .. }) = self.sessions.remove(key) {
            conn.abort();
        }
    }

    /// Says QUIT on every open connection.
    pub fn close(mut self) {
        for (_, session) in self.sessions.drain() {
            if let Session::Open { mut conn, .. } = session {
                let _ = conn.quit();
            }
        }
    }

    /// A logged-in session and whether the server pipelines.
    fn open(&self, account: &SmtpAccount) -> Result<(SmtpConnection, bool), Delivery> {
        // Decided before connecting: credentials never cross the network in clear.
        let has_credentials = account.username.is_some() && account.password.is_some();
        if has_credentials && account.security == Security::None && !is_loopback(&account.host) {
            return Err(Delivery::whole(
                Outcome::Deferred,
                None,
                format!(
                    "refusing to send credentials in clear text to {} (use security starttls or tls)",
                    account.host
                ),
            )
            .unable_to_connect(ConnectFailure::Account));
        }
        let server = (account.host.as_str(), account.port);
        let tls = || {
            let mut builder = TlsParameters::builder(account.host.clone());
            if let Some(pem) = &self.options.extra_roots_pem {
                let roots = Certificate::from_pem(pem).map_err(|e| {
                    Delivery::whole(Outcome::Deferred, None, format!("extra CA file: {e}"))
                        .unable_to_connect(ConnectFailure::Account)
                })?;
                builder = builder.add_root_certificate(roots);
            }
            builder.build().map_err(|e| {
                Delivery::whole(Outcome::Deferred, None, format!("TLS set-up failed: {e}"))
                    .unable_to_connect(ConnectFailure::Account)
            })
        };
        let implicit = match account.security {
            Security::Tls => Some(tls()?),
            _ => None,
        };
        let mut conn = SmtpConnection::connect(
            server,
            Some(self.options.connect_timeout),
            &self.hello,
            implicit.as_ref(),
            None,
        )
        .map_err(|e| {
            // A 5xx greeting says the server will not take mail from us at all; anything
            // else (refused, timeout, "421 too many connections") may pass.
            let why = if e.is_permanent() {
                ConnectFailure::Account
            } else {
                ConnectFailure::Transient
            };
            Delivery::from_error(
                &e,
                &format!("connecting to {}:{}", account.host, account.port),
            )
            .unable_to_connect(why)
        })?;
        conn.set_timeout(Some(self.options.command_timeout))
            .map_err(|e| {
                Delivery::whole(Outcome::Deferred, None, format!("socket: {e}"))
                    .unable_to_connect(ConnectFailure::Transient)
            })?;
        if account.security == Security::StartTls {
            if !conn.can_starttls() {
                conn.abort();
                return Err(Delivery::whole(
                    Outcome::Deferred,
                    None,
                    "STARTTLS required but not offered",
                )
                .unable_to_connect(ConnectFailure::Account));
            }
            let params = tls()?;
            conn.starttls(&params, &self.hello).map_err(|e| {
                Delivery::from_error(&e, "STARTTLS").unable_to_connect(ConnectFailure::Account)
            })?;
            if !conn.is_encrypted() {
                conn.abort();
                return Err(Delivery::whole(
                    Outcome::Deferred,
                    None,
                    "STARTTLS did not encrypt the connection",
                )
                .unable_to_connect(ConnectFailure::Account));
            }
        }
        // lettre keeps only the EHLO keywords it knows; PIPELINING is not one of them, so
        // ask once more (before AUTH: a new EHLO may reset the login on some servers).
        let pipelining = match conn.command(Ehlo::new(self.hello.clone())) {
            Ok(answer) => answer
                .message()
                .any(|line| line.split_whitespace().next() == Some("PIPELINING")),
            Err(e) => {
                conn.abort();
                return Err(
                    Delivery::from_error(&e, "EHLO").unable_to_connect(ConnectFailure::Transient)
                );
            }
        };
        if let (Some(user), Some(password)) = (&account.username, &account.password) {
            let credentials = Credentials::new(user.clone(), password.clone());
            // Authentication problems are the account's, not the message's: defer.
            if let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials) {
                conn.abort();
                let (_, code, text) = classify(&e);
                return Err(Delivery::whole(
                    Outcome::Deferred,
                    code,
                    format!("authentication failed: {text}"),
                )
                .unable_to_connect(ConnectFailure::Account));
            }
        }
        Ok((conn, pipelining))
    }
}

fn is_loopback(host: &str) -> bool {
    crate::web::is_loopback_host(host)
}

/// A message ready for the wire: envelope and formatted bytes.
pub struct BuiltMessage {
    pub sender: Address,
    pub recipients: Vec<Address>,
    pub bytes: Vec<u8>,
}

/// Formats the message with lettre's builder. Bcc recipients go only into the envelope.
pub fn build_message(msg: &OutboundMessage) -> Result<BuiltMessage, String> {
    let parse = |what: &str, value: &str| -> Result<Mailbox, String> {
        value
            .parse::<Mailbox>()
            .map_err(|e| format!("invalid {what} address {value:?}: {e}"))
    };
    let from = parse("From", &msg.from)?;
    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(msg.subject.clone())
        .message_id(Some(msg.message_id_header.clone()))
        .date_now();
    if let Some(reply_to) = &msg.reply_to {
        builder = builder.reply_to(parse("Reply-To", reply_to)?);
    }
    let mut recipients = Vec::new();
    let mut to_list = Vec::with_capacity(msg.to.len());
    for to in &msg.to {
        let mbox = parse("To", to)?;
        recipients.push(mbox.email.clone());
        to_list.push(mbox.clone());
        builder = builder.to(mbox);
    }
    let mut cc_list = Vec::with_capacity(msg.cc.len());
    for cc in &msg.cc {
        let mbox = parse("Cc", cc)?;
        recipients.push(mbox.email.clone());
        cc_list.push(mbox.clone());
        builder = builder.cc(mbox);
    }
    for bcc in &msg.bcc {
        recipients.push(parse("Bcc", bcc)?.email);
    }
    if recipients.is_empty() {
        return Err("message has no recipients".into());
    }
    for header in &msg.headers {
        if header.value.contains(['\r', '\n']) {
            return Err(format!("header {:?} contains CR or LF", header.name));
        }
        let name = HeaderName::new_from_ascii(header.name.clone())
            .map_err(|_| format!("invalid header name {:?}", header.name))?;
        let value = pre_encoded(&header.name, &header.value)
            .unwrap_or_else(|| HeaderValue::new(name, header.value.clone()));
        builder = builder.raw_header(value);
    }
    // Values with a word lettre cannot fold replace lettre's lines (RFC 5322 2.1.1: no
    // line over 998 octets; servers answer "500 Line too long").
    let mut reply_list = Vec::new();
    if let Some(reply_to) = &msg.reply_to {
        reply_list.push(parse("Reply-To", reply_to)?);
    }
    let long_lines = [
        pre_encoded("Subject", &msg.subject),
        pre_encoded_mailboxes("From", std::slice::from_ref(&from)),
        pre_encoded_mailboxes("Reply-To", &reply_list),
        pre_encoded_mailboxes("To", &to_list),
        pre_encoded_mailboxes("Cc", &cc_list),
    ];
    for value in long_lines.into_iter().flatten() {
        builder = builder.raw_header(value);
    }
    let envelope = Envelope::new(Some(from.email.clone()), recipients.clone())
        .map_err(|e| format!("invalid envelope: {e}"))?;
    builder = builder.envelope(envelope);

    // text/plain, text/html, or both as multipart/alternative; attachments wrap that
    // in multipart/mixed.
    let content = match (&msg.text_body, &msg.html_body) {
        (Some(t), Some(h)) => Content::Multi(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(lf_lines(t)))
                .singlepart(SinglePart::html(lf_lines(h))),
        ),
        (None, Some(h)) => Content::Single(SinglePart::html(lf_lines(h))),
        (Some(t), None) => Content::Single(SinglePart::plain(lf_lines(t))),
        (None, None) => Content::Single(SinglePart::plain(String::new())),
    };
    let message = if msg.attachments.is_empty() {
        match content {
            Content::Single(part) => builder.singlepart(part),
            Content::Multi(part) => builder.multipart(part),
        }
    } else {
        let mut mixed = match content {
            Content::Single(part) => MultiPart::mixed().singlepart(part),
            Content::Multi(part) => MultiPart::mixed().multipart(part),
        };
        for att in &msg.attachments {
            let ct = ContentType::parse(&att.content_type).map_err(|e| {
                format!(
                    "invalid content type {:?} of attachment {:?}: {e}",
                    att.content_type, att.filename
                )
            })?;
            mixed = mixed
                .singlepart(MimeAttachment::new(att.filename.clone()).body(att.data.clone(), ct));
        }
        builder.multipart(mixed)
    }
    .map_err(|e| format!("cannot build message: {e}"))?;
    Ok(BuiltMessage {
        sender: from.email,
        recipients,
        bytes: message.formatted(),
    })
}

/// The DATA content with every line end made CRLF and dot-stuffed, with the terminating
/// "\r\n.\r\n", sent as one command. RFC 5321 2.3.8 forbids a bare CR or LF in DATA: a
/// receiver that ends lines at a bare CR would otherwise see a line "." where the sender
/// meant none (the precondition of SMTP smuggling), so each one becomes CRLF here,
/// whatever produced the bytes. `None` when the bytes are not UTF-8 (a command is
/// written through `Display`); the caller then sends [`crlf_lines`] with `message`.
struct DataPayload(String);

impl DataPayload {
    fn new(bytes: &[u8]) -> Option<DataPayload> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut out = String::with_capacity(text.len() + text.len() / 64 + 5);
        let mut line_start = true;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' | '\n' => {
                    if c == '\r' && chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    out.push_str("\r\n");
                    line_start = true;
                }
                _ => {
                    // A line starting with "." gets a second one (RFC 5321 4.5.2).
                    if c == '.' && line_start {
                        out.push('.');
                    }
                    out.push(c);
                    line_start = false;
                }
            }
        }
        if !line_start {
            out.push_str("\r\n");
        }
        out.push_str(".\r\n");
        Some(DataPayload(out))
    }
}

impl std::fmt::Display for DataPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bytes with every bare CR and bare LF made CRLF (lettre's `message` stuffs dots but
/// leaves line ends as they are).
fn crlf_lines(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 64);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A body's line ends as LF only, for lettre to write as CRLF: it converts LF but leaves
/// a bare CR, which must not reach the wire (RFC 5321 2.3.8).
fn lf_lines(text: &str) -> String {
    if !text.contains('\r') {
        return text.to_string();
    }
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Longest run without whitespace that lettre may write into a header line as it is:
/// with a 76-character name and ": " the line stays under RFC 5322's 998 octets.
const LONGEST_HEADER_WORD: usize = 900;

/// Whether a header value has a word too long to be folded (lettre folds only at
/// whitespace, so such a line would pass 998 octets and servers refuse it).
fn needs_encoding(value: &str) -> bool {
    value
        .split([' ', '\t'])
        .any(|word| word.len() > LONGEST_HEADER_WORD)
}

/// The value as RFC 2047 encoded-words (UTF-8, base64) of at most 75 characters each,
/// one per folded line: no line of the header passes 78 octets.
fn encoded_words(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 4 / 3 + value.len() / 4 + 16);
    let mut chunk_start = 0;
    let mut chunk_len = 0;
    let flush = |out: &mut String, chunk: &str| {
        if chunk.is_empty() {
            return;
        }
        if !out.is_empty() {
            out.push_str("\r\n ");
        }
        out.push_str("=?utf-8?b?");
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(chunk.as_bytes()));
        out.push_str("?=");
    };
    for (i, c) in value.char_indices() {
        // 45 bytes make 60 base64 characters: 72 with the "=?utf-8?b?" and "?=" around.
        if chunk_len + c.len_utf8() > 45 {
            flush(&mut out, &value[chunk_start..i]);
            chunk_start = i;
            chunk_len = 0;
        }
        chunk_len += c.len_utf8();
    }
    flush(&mut out, &value[chunk_start..]);
    out
}

/// A header whose value lettre could not fold, written as encoded-words instead;
/// `None` when lettre's own writing keeps every line short.
fn pre_encoded(name: &str, value: &str) -> Option<HeaderValue> {
    if !needs_encoding(value) {
        return None;
    }
    let name = HeaderName::new_from_ascii(name.to_string()).ok()?;
    Some(HeaderValue::dangerous_new_pre_encoded(
        name,
        value.to_string(),
        encoded_words(value),
    ))
}

/// A mailbox list header whose display names hold a word lettre could not fold: each
/// display name as encoded-words, one mailbox per folded line.
fn pre_encoded_mailboxes(name: &str, list: &[Mailbox]) -> Option<HeaderValue> {
    let long = list
        .iter()
        .any(|m| m.name.as_deref().is_some_and(needs_encoding));
    if !long {
        return None;
    }
    let name = HeaderName::new_from_ascii(name.to_string()).ok()?;
    let raw = list
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let encoded = list
        .iter()
        .map(|m| match &m.name {
            Some(n) => format!("{}\r\n <{}>", encoded_words(n), m.email),
            None => format!("<{}>", m.email),
        })
        .collect::<Vec<_>>()
        .join(",\r\n ");
    Some(HeaderValue::dangerous_new_pre_encoded(name, raw, encoded))
}

enum Content {
    Single(SinglePart),
    Multi(MultiPart),
}

/// MAIL, every RCPT and DATA in one write (RFC 2920), for a server that pipelines.
struct Pipelined<'a> {
    mail: Mail,
    recipients: &'a [Address],
}

impl std::fmt::Display for Pipelined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.mail)?;
        for rcpt in self.recipients {
            write!(f, "{}", Rcpt::new(rcpt.clone(), vec![]))?;
        }
        write!(f, "{Data}")
    }
}

/// One SMTP transaction: MAIL, one RCPT per recipient, DATA when a recipient was
/// accepted, the message. With `pipelining` the commands up to DATA go in one write and
/// the answers are read in order, each RCPT still judged on its own. `Err`: the MAIL
/// command failed (the connection is aborted when it is out of step); nothing of the
/// message was sent.
fn transaction(
    conn: &mut SmtpConnection,
    msg: &BuiltMessage,
    options: &SmtpOptions,
    pipelining: bool,
    before_final_dot: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Delivery, SmtpError> {
    let mut params = Vec::new();
    let info = conn.server_info();
    if msg.recipients.iter().any(|a| !a.to_string().is_ascii())
        || !msg.sender.to_string().is_ascii()
    {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Ok(Delivery::whole(
                Outcome::Failed,
                None,
                "address is not ASCII and the server does not support SMTPUTF8",
            ));
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    if !msg.bytes.is_ascii() {
        if !info.supports_feature(Extension::EightBitMime) {
            return Ok(Delivery::whole(
                Outcome::Failed,
                None,
                "message is not 7-bit and the server does not support 8BITMIME",
            ));
        }
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let mail = Mail::new(Some(msg.sender.clone()), params);
    if pipelining {
        return pipelined(conn, msg, mail, options, before_final_dot);
    }
    if let Err(e) = conn.command(mail) {
        drop_if_desynchronised(conn, &e);
        return Err(e);
    }
    let mut recipients = Vec::with_capacity(msg.recipients.len());
    for rcpt in &msg.recipients {
        let answer = conn.command(Rcpt::new(rcpt.clone(), vec![]));
        match recipient_result(rcpt, answer) {
            Ok(r) => recipients.push(r),
            // The connection failed: nothing was accepted for delivery.
            Err(e) => {
                drop_if_desynchronised(conn, &e);
                return Ok(Delivery::from_error(&e, "RCPT TO"));
            }
        }
    }
    let data = if recipients.iter().any(|r| r.outcome == Outcome::Sent) {
        Some(conn.command(Data))
    } else {
        None
    };
    Ok(after_rcpt(
        conn,
        msg,
        options,
        recipients,
        data,
        before_final_dot,
    ))
}

/// The pipelined transaction: one write up to DATA, then every answer in order.
fn pipelined(
    conn: &mut SmtpConnection,
    msg: &BuiltMessage,
    mail: Mail,
    options: &SmtpOptions,
    before_final_dot: &mut dyn FnMut() -> Result<(), String>,
) -> Result<Delivery, SmtpError> {
    let commands = Pipelined {
        mail,
        recipients: &msg.recipients,
    };
    // `command` writes everything and reads the first answer (MAIL's); the others are
    // already on their way.
    let mail_answer = conn.command(commands);
    if let Err(e) = &mail_answer {
        if e.status().is_none() {
            drop_if_desynchronised(conn, e);
            return Err(mail_answer.unwrap_err());
        }
    }
    let mut recipients = Vec::with_capacity(msg.recipients.len());
    let mut broken = None;
    for rcpt in &msg.recipients {
        match recipient_result(rcpt, conn.read_response()) {
            Ok(r) => recipients.push(r),
            Err(e) => {
                broken = Some(e);
                break;
            }
        }
    }
    if let Some(e) = broken {
        drop_if_desynchronised(conn, &e);
        return match mail_answer {
            Err(mail_error) => Err(mail_error),
            Ok(_) => Ok(Delivery::from_error(&e, "RCPT TO")),
        };
    }
    let data = conn.read_response();
    if let Err(e) = &data {
        if e.status().is_none() {
            drop_if_desynchronised(conn, e);
        }
    }
    let accepted = recipients.iter().any(|r| r.outcome == Outcome::Sent);
    if mail_answer.is_err() || !accepted {
        // RFC 2920: a server that took DATA although no recipient (or no MAIL) was
        // accepted gets an empty message ended at once; nothing is delivered.
        if data.is_ok() {
            if let Err(e) = conn.command(".\r\n") {
                drop_if_desynchronised(conn, &e);
            }
        }
        mail_answer?;
        return Ok(after_rcpt(
            conn,
            msg,
            options,
            recipients,
            None,
            before_final_dot,
        ));
    }
    Ok(after_rcpt(
        conn,
        msg,
        options,
        recipients,
        Some(data),
        before_final_dot,
    ))
}

/// One recipient's answer; `Err` when the connection failed (no SMTP reply).
fn recipient_result(
    rcpt: &Address,
    answer: Result<lettre::transport::smtp::response::Response, SmtpError>,
) -> Result<RecipientResult, SmtpError> {
    match answer {
        Ok(_) => Ok(RecipientResult {
            address: rcpt.to_string(),
            outcome: Outcome::Sent,
            smtp_code: None,
            enhanced_status: None,
            text: None,
        }),
        Err(e) if e.status().is_some() => {
            let (outcome, code, text) = classify(&e);
            Ok(RecipientResult {
                address: rcpt.to_string(),
                outcome,
                smtp_code: code,
                enhanced_status: enhanced_status(&text),
                text: Some(text),
            })
        }
        Err(e) => Err(e),
    }
}

/// After every RCPT was answered: DATA's answer (`None`: not sent, no recipient was
/// accepted), then the message.
fn after_rcpt(
    conn: &mut SmtpConnection,
    msg: &BuiltMessage,
    options: &SmtpOptions,
    recipients: Vec<RecipientResult>,
    data: Option<Result<lettre::transport::smtp::response::Response, SmtpError>>,
    before_final_dot: &mut dyn FnMut() -> Result<(), String>,
) -> Delivery {
    let accepted = recipients
        .iter()
        .filter(|r| r.outcome == Outcome::Sent)
        .count();
    let Some(data) = data.filter(|_| accepted > 0) else {
        if conn.command(Rset).is_err() {
            conn.abort();
        }
        let outcome = if recipients.iter().any(|r| r.outcome == Outcome::Deferred) {
            Outcome::Deferred
        } else {
            Outcome::Failed
        };
        let first = recipients.first();
        return Delivery {
            outcome,
            smtp_code: first.and_then(|r| r.smtp_code),
            enhanced_status: first.and_then(|r| r.enhanced_status.clone()),
            text: Some("all recipients refused".into()),
            recipients,
            connect_failure: None,
        };
    };
    // From here a failure concerns every accepted recipient alike.
    let after_data =
        |e: &SmtpError, what: &str, recipients: Vec<RecipientResult>, outcome: Option<Outcome>| {
            let mut d = Delivery::from_error(e, what);
            if let Some(o) = outcome {
                d.outcome = o;
            }
            d.recipients = recipients
                .into_iter()
                .map(|mut r| {
                    if r.outcome == Outcome::Sent {
                        r.outcome = d.outcome;
                        r.smtp_code = d.smtp_code;
                        r.enhanced_status = d.enhanced_status.clone();
                        r.text = d.text.clone();
                    }
                    r
                })
                .collect();
            if accepted == d.recipients.len() {
                d.recipients.clear();
            }
            d
        };
    if let Err(e) = data {
        drop_if_desynchronised(conn, &e);
        return after_data(&e, "DATA refused", recipients, None);
    }
    if let Err(text) = before_final_dot() {
        // In the DATA phase the server would take QUIT as message text and never answer
        // it: abort's QUIT gets a moment only, then the socket closes without the final
        // dot and the server discards the message.
        let _ = conn.set_timeout(Some(Duration::from_millis(50)));
        conn.abort();
        return Delivery::whole(Outcome::Deferred, None, text);
    }
    if let Err(e) = conn.set_timeout(Some(options.data_timeout)) {
        conn.abort();
        return Delivery::whole(Outcome::Deferred, None, format!("socket: {e}"));
    }
    let answer = match DataPayload::new(&msg.bytes) {
        // One write for content and terminator: lettre's `message` writes the final
        // "\r\n.\r\n" separately, which Nagle holds until the server's delayed ACK
        // (about 40 ms per message on Linux).
        Some(payload) => conn.command(payload),
        None => conn.message(&crlf_lines(&msg.bytes)),
    };
    let _ = conn.set_timeout(Some(options.command_timeout));
    match answer {
        Ok(response) => {
            let text = response.message().collect::<Vec<_>>().join(" ");
            let refused_some = accepted < recipients.len();
            Delivery {
                outcome: Outcome::Sent,
                smtp_code: Some(u16::from(response.code())),
                enhanced_status: enhanced_status(&text),
                text: Some(text),
                recipients: if refused_some { recipients } else { Vec::new() },
                connect_failure: None,
            }
        }
        Err(e) => {
            drop_if_desynchronised(conn, &e);
            if e.status().is_some() {
                after_data(&e, "message refused", recipients, None)
            } else {
                // The message went out but no answer came (timeout, connection lost):
                // it may have been delivered, so it must not be retried silently
                // (docs/quotas.md, "Unknown outcome").
                after_data(
                    &e,
                    "no answer after the final dot",
                    recipients,
                    Some(Outcome::Unknown),
                )
            }
        }
    }
}

/// After an error that is not an SMTP reply (timeout, dropped or garbled connection) a
/// late reply may still arrive and would be read as the answer to the next command: the
/// connection is closed so the next message starts on a fresh one.
/// The session ended before the command was answered, or the server is closing it.
fn session_gone(err: &SmtpError) -> bool {
    err.status().is_none() || err.status().map(u16::from) == Some(421)
}

fn drop_if_desynchronised(conn: &mut SmtpConnection, err: &SmtpError) {
    if err.status().is_none() {
        conn.abort();
    }
}

/// Maps a lettre error to an outcome: 5xx fails, everything else (4xx, timeouts, dropped
/// connections, TLS trouble) defers.
fn classify(err: &SmtpError) -> (Outcome, Option<u16>, String) {
    let code = err.status().map(u16::from);
    let outcome = if err.is_permanent() {
        Outcome::Failed
    } else {
        Outcome::Deferred
    };
    let text = match (code, std::error::Error::source(err)) {
        (Some(_), Some(source)) => source.to_string(),
        _ if is_timeout(err) => format!("timed out ({err})"),
        _ => err.to_string(),
    };
    (outcome, code, text)
}

/// A socket timeout: lettre only recognises `TimedOut`, but a read timeout on Linux
/// surfaces as `WouldBlock` (EAGAIN).
fn is_timeout(err: &SmtpError) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            );
        }
        source = e.source();
    }
    false
}

/// The RFC 3463 enhanced status code at the start of a reply text, e.g. "5.1.1".
pub fn enhanced_status(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    let parts: Vec<&str> = word.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_payload_has_only_crlf_line_ends_and_is_dot_stuffed() {
        let p = DataPayload::new(b".a\r\n.b\r\nc.\r\n\n.d\r\r\n..e").expect("utf-8");
        assert_eq!(p.0, "..a\r\n..b\r\nc.\r\n\r\n..d\r\n\r\n...e\r\n.\r\n");
        // A dot after a bare CR starts a line: stuffed, and the CR made CRLF.
        let p = DataPayload::new(b"first\r.\r\nRSET\r\n").expect("utf-8");
        assert_eq!(p.0, "first\r\n..\r\nRSET\r\n.\r\n");
        assert!(DataPayload::new(b"\xff").is_none());
        assert_eq!(crlf_lines(b"a\rb\nc\r\n\xff"), b"a\r\nb\r\nc\r\n\xff");
    }

    #[test]
    fn long_words_are_encoded_into_short_lines() {
        let word = "x".repeat(5000);
        assert!(!needs_encoding("a normal subject"));
        assert!(needs_encoding(&word));
        let encoded = encoded_words(&format!("{word} Grüße"));
        assert!(encoded.split("\r\n").all(|l| l.len() <= 78), "{encoded}");
        // Multi-byte characters are never split between two encoded-words.
        let umlauts = "ü".repeat(1000);
        for line in encoded_words(&umlauts).split("\r\n ") {
            let b64 = line
                .strip_prefix("=?utf-8?b?")
                .and_then(|l| l.strip_suffix("?="));
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.unwrap())
                .unwrap();
            assert!(String::from_utf8(bytes).is_ok());
        }
    }

    #[test]
    fn enhanced_status_is_parsed_only_when_well_formed() {
        assert_eq!(
            enhanced_status("5.1.1 no such user").as_deref(),
            Some("5.1.1")
        );
        assert_eq!(enhanced_status("4.7.0 later").as_deref(), Some("4.7.0"));
        assert_eq!(enhanced_status("no such user"), None);
        assert_eq!(enhanced_status("1.2.3 x"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("mail.example.com"));
        assert!(!is_loopback("192.0.2.1"));
    }
}
