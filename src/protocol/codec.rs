//! The XML codec: message types ⇄ SOAP 1.1 envelopes, exactly as `protocol/mailrun.xsd`
//! defines them.
//!
//! Decoding is one bounded streaming pass (see [`super::xml`]) followed by a mapping that
//! names the precise problem: `missing <runnerId> in JobRunRequest`, `invalid value for
//! <port> in JobRun/messages/message[3]/account: "x" is not a port number`. Any error is
//! returned as the [`Fault`] the receiver should answer with.
//!
//! The decoder accepts children in any order (the XSD fixes one; the encoder follows it)
//! but refuses unknown and duplicated elements. Encoding cannot fail: characters XML 1.0
//! cannot carry at all (C0 controls other than tab, LF, CR) are replaced by U+FFFD, and
//! CR is written as `&#13;` so it survives XML's line-end normalisation.

use std::fmt::Write as _;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};

pub use super::limits::Limits;
use super::limits::{field, MAX_CONNECTIONS, MAX_HELD_JOB_RUNS};
use super::reply_rules;
use super::types::*;
use super::xml::{self, clip, is_xml_space, Element, Ns};
use super::{NAMESPACE, SOAP_ENV_NAMESPACE};

/// SOAPAction of a fault envelope (used in the response signature).
pub const FAULT_ACTION: &str = "urn:mailrun:soap:v1#Fault";

/// The HTTP status a fault is sent with (SOAP 1.1 over HTTP).
pub const FAULT_HTTP_STATUS: u16 = 500;

/// The `Content-Type` of every envelope (SOAP 1.1).
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// The SOAPAction value for a body (without quotes). Responses have no SOAPAction
/// header in SOAP 1.1; their value here is what the response signature covers.
pub fn soap_action(body: &Body) -> &'static str {
    match body {
        Body::JobRunRequest(_) => "urn:mailrun:soap:v1#JobRunRequest",
        Body::JobRun(_) => "urn:mailrun:soap:v1#JobRun",
        Body::JobRunnerReady(_) => "urn:mailrun:soap:v1#JobRunnerReady",
        Body::JobRunnerReadyResponse(_) => "urn:mailrun:soap:v1#JobRunnerReadyResponse",
        Body::JobRunnerConfigUpdate(_) => "urn:mailrun:soap:v1#JobRunnerConfigUpdate",
        Body::JobRunnerConfigUpdateResponse(_) => {
            "urn:mailrun:soap:v1#JobRunnerConfigUpdateResponse"
        }
        Body::Fault(_) => FAULT_ACTION,
    }
}

/// The payload element's name (`JobRunRequest`, ..., `Fault`).
pub fn operation_name(body: &Body) -> &'static str {
    match body {
        Body::JobRunRequest(_) => "JobRunRequest",
        Body::JobRun(_) => "JobRun",
        Body::JobRunnerReady(_) => "JobRunnerReady",
        Body::JobRunnerReadyResponse(_) => "JobRunnerReadyResponse",
        Body::JobRunnerConfigUpdate(_) => "JobRunnerConfigUpdate",
        Body::JobRunnerConfigUpdateResponse(_) => "JobRunnerConfigUpdateResponse",
        Body::Fault(_) => "Fault",
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

/// Encodes a whole SOAP 1.1 envelope (UTF-8, with XML declaration, indented).
pub fn encode(body: &Body) -> Vec<u8> {
    let mut w = Writer::new();
    w.out
        .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = write!(
        w.out,
        "<soap:Envelope xmlns:soap=\"{SOAP_ENV_NAMESPACE}\" xmlns:m=\"{NAMESPACE}\">"
    );
    w.depth = 1;
    w.raw_open("soap:Body");
    match body {
        Body::JobRunRequest(r) => encode_job_run_request(&mut w, r),
        Body::JobRun(r) => encode_job_run(&mut w, r),
        Body::JobRunnerReady(r) => {
            w.open("JobRunnerReady");
            w.leaf("runnerId", &r.runner_id);
            w.leaf("queued", &r.queued.to_string());
            w.close("JobRunnerReady");
        }
        Body::JobRunnerReadyResponse(r) => {
            w.open("JobRunnerReadyResponse");
            w.leaf("status", ready_status_str(r.status));
            w.leaf("softwareVersion", &r.software_version);
            w.leaf("configVersion", &r.config_version.to_string());
            w.close("JobRunnerReadyResponse");
        }
        Body::JobRunnerConfigUpdate(r) => encode_config_update(&mut w, r),
        Body::JobRunnerConfigUpdateResponse(r) => {
            w.open("JobRunnerConfigUpdateResponse");
            w.leaf("appliedVersion", &r.applied_version.to_string());
            w.close("JobRunnerConfigUpdateResponse");
        }
        Body::Fault(f) => encode_fault(&mut w, f),
    }
    w.raw_close("soap:Body");
    w.out.push_str("\n</soap:Envelope>\n");
    w.out.into_bytes()
}

fn encode_job_run_request(w: &mut Writer, r: &JobRunRequest) {
    w.open("JobRunRequest");
    w.leaf("runnerId", &r.runner_id);
    w.leaf("capacity", &r.capacity.to_string());
    w.leaf("softwareVersion", &r.software_version);
    w.leaf("configVersion", &r.config_version.to_string());
    w.list("results", &r.results, |w, res| {
        w.open("result");
        w.leaf("jobRunId", &res.job_run_id);
        w.leaf("messageId", &res.message_id.to_string());
        w.leaf("leaseToken", &res.lease_token);
        w.leaf("outcome", outcome_str(res.outcome));
        w.opt("smtpCode", res.smtp_code.map(|c| c.to_string()).as_deref());
        w.opt("enhancedStatus", res.enhanced_status.as_deref());
        w.opt("text", res.text.as_deref());
        w.leaf("attemptedAt", &datetime_str(&res.attempted_at));
        for rcpt in &res.recipients {
            w.open("recipient");
            w.leaf("address", &rcpt.address);
            w.leaf("outcome", outcome_str(rcpt.outcome));
            w.opt("smtpCode", rcpt.smtp_code.map(|c| c.to_string()).as_deref());
            w.opt("enhancedStatus", rcpt.enhanced_status.as_deref());
            w.opt("text", rcpt.text.as_deref());
            w.close("recipient");
        }
        w.close("result");
    });
    if let Some(held) = &r.held_job_runs {
        w.list("heldJobRuns", held, |w, id| w.leaf("jobRunId", id));
    }
    w.close("JobRunRequest");
}

fn encode_job_run(w: &mut Writer, r: &JobRun) {
    w.open("JobRun");
    w.leaf("jobRunId", &r.job_run_id);
    w.leaf("leaseSeconds", &r.lease_seconds.to_string());
    w.list("acknowledged", &r.acknowledged, |w, ack| {
        w.open("ack");
        w.leaf("messageId", &ack.message_id.to_string());
        w.leaf("leaseToken", &ack.lease_token);
        w.close("ack");
    });
    w.list("messages", &r.messages, |w, m| {
        w.open("message");
        w.leaf("id", &m.id.to_string());
        w.leaf("leaseToken", &m.lease_token);
        w.leaf("messageIdHeader", &m.message_id_header);
        w.open("account");
        w.leaf("name", &m.account.name);
        w.leaf("host", &m.account.host);
        w.leaf("port", &m.account.port.to_string());
        w.leaf("security", m.account.security.as_str());
        w.opt("username", m.account.username.as_deref());
        w.opt("password", m.account.password.as_deref());
        if let Some(n) = m.account.max_connections {
            w.leaf("maxConnections", &n.to_string());
        }
        w.close("account");
        w.leaf("from", &m.from);
        w.opt("replyTo", m.reply_to.as_deref());
        for to in &m.to {
            w.leaf("to", to);
        }
        for cc in &m.cc {
            w.leaf("cc", cc);
        }
        for bcc in &m.bcc {
            w.leaf("bcc", bcc);
        }
        w.leaf("subject", &m.subject);
        w.opt("textBody", m.text_body.as_deref());
        w.opt("htmlBody", m.html_body.as_deref());
        for h in &m.headers {
            w.open("header");
            w.leaf("name", &h.name);
            w.leaf("value", &h.value);
            w.close("header");
        }
        for a in &m.attachments {
            w.open("attachment");
            w.leaf("filename", &a.filename);
            w.leaf("contentType", &a.content_type);
            w.leaf(
                "data",
                &base64::engine::general_purpose::STANDARD.encode(&a.data),
            );
            w.close("attachment");
        }
        w.close("message");
    });
    w.close("JobRun");
}

fn encode_config_update(w: &mut Writer, r: &JobRunnerConfigUpdate) {
    let s = &r.settings;
    w.open("JobRunnerConfigUpdate");
    w.leaf("runnerId", &r.runner_id);
    w.leaf("version", &r.version.to_string());
    w.open("settings");
    w.leaf("batchSize", &s.batch_size.to_string());
    w.leaf("sendRatePerSecond", &double_str(s.send_rate_per_second));
    w.leaf(
        "smtpConnectTimeoutSeconds",
        &s.smtp_connect_timeout_seconds.to_string(),
    );
    w.leaf(
        "smtpCommandTimeoutSeconds",
        &s.smtp_command_timeout_seconds.to_string(),
    );
    w.leaf(
        "smtpDataTimeoutSeconds",
        &s.smtp_data_timeout_seconds.to_string(),
    );
    w.leaf("pollIntervalSeconds", &s.poll_interval_seconds.to_string());
    w.leaf(
        "leaseSafetyMarginSeconds",
        &s.lease_safety_margin_seconds.to_string(),
    );
    w.leaf("dispatcherUrl", &s.dispatcher_url);
    if let Some(sw) = &s.software {
        w.open("software");
        w.leaf("version", &sw.version);
        w.leaf("url", &sw.url);
        w.leaf("sha256", &sw.sha256);
        w.close("software");
    }
    if let Some(rules) = &s.reply_policy {
        w.list("replyPolicy", rules, |w, r| {
            w.open("rule");
            w.leaf("position", &r.position.to_string());
            w.opt("code", r.code.as_deref());
            w.opt("enhanced", r.enhanced.as_deref());
            w.opt("pattern", r.pattern.as_deref());
            w.opt("domain", r.domain.as_deref());
            w.opt("account", r.account.as_deref());
            w.leaf("action", r.action.as_str());
            w.leaf("throttle", r.throttle.as_str());
            w.close("rule");
        });
    }
    if let Some(n) = s.max_sessions {
        w.leaf("maxSessions", &n.to_string());
    }
    if let Some(n) = s.max_sessions_per_account {
        w.leaf("maxSessionsPerAccount", &n.to_string());
    }
    w.close("settings");
    w.close("JobRunnerConfigUpdate");
}

fn encode_fault(w: &mut Writer, f: &Fault) {
    w.raw_open("soap:Fault");
    let code = match f.code {
        FaultCode::Client => "soap:Client",
        FaultCode::Server => "soap:Server",
    };
    w.raw_leaf("faultcode", code);
    w.raw_leaf("faultstring", &f.message);
    w.raw_open("detail");
    w.open("FaultDetail");
    w.leaf("reason", f.reason.as_str());
    w.leaf("message", &f.message);
    w.close("FaultDetail");
    w.raw_close("detail");
    w.raw_close("soap:Fault");
}

/// Appends indented elements to a string; `m:` names are in the mailrun namespace.
struct Writer {
    out: String,
    depth: usize,
}

impl Writer {
    fn new() -> Self {
        Writer {
            out: String::with_capacity(4096),
            depth: 0,
        }
    }

    fn indent(&mut self) {
        self.out.push('\n');
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn raw_open(&mut self, qname: &str) {
        self.indent();
        let _ = write!(self.out, "<{qname}>");
        self.depth += 1;
    }

    fn raw_close(&mut self, qname: &str) {
        self.depth -= 1;
        self.indent();
        let _ = write!(self.out, "</{qname}>");
    }

    fn raw_leaf(&mut self, qname: &str, value: &str) {
        self.indent();
        let _ = write!(self.out, "<{qname}>");
        escape_into(&mut self.out, value);
        let _ = write!(self.out, "</{qname}>");
    }

    fn open(&mut self, name: &str) {
        self.raw_open(&format!("m:{name}"));
    }

    fn close(&mut self, name: &str) {
        self.raw_close(&format!("m:{name}"));
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.indent();
        let _ = write!(self.out, "<m:{name}>");
        escape_into(&mut self.out, value);
        let _ = write!(self.out, "</m:{name}>");
    }

    fn opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.leaf(name, value);
        }
    }

    /// A wrapper element holding one child per item (`<m:name/>` when empty).
    fn list<T>(&mut self, name: &str, items: &[T], mut each: impl FnMut(&mut Writer, &T)) {
        if items.is_empty() {
            self.indent();
            let _ = write!(self.out, "<m:{name}/>");
            return;
        }
        self.open(name);
        for item in items {
            each(self, item);
        }
        self.close(name);
    }
}

/// Escapes character data. `>` is escaped too, so `]]>` can never appear. Characters XML
/// cannot carry (C0 controls but tab and newline, U+FFFE, U+FFFF) become U+FFFD.
/// Copies runs of plain text whole, and finds them eight bytes at a time: message bodies
/// are most of a JobRun, and a look at every byte was most of its encoding.
fn escape_into(out: &mut String, value: &str) {
    let bytes = value.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8) {
            if !may_need_escaping(u64::from_le_bytes(word.try_into().expect("8 bytes"))) {
                i += 8;
                continue;
            }
        }
        // A byte of these eight (or of the tail) may need it: look at each.
        let end = (i + 8).min(bytes.len());
        while i < end {
            let (replacement, len) = match bytes[i] {
                b'&' => ("&amp;", 1),
                b'<' => ("&lt;", 1),
                b'>' => ("&gt;", 1),
                b'\r' => ("&#13;", 1),
                b'\t' | b'\n' => {
                    i += 1;
                    continue;
                }
                0x00..=0x1F => ("\u{FFFD}", 1),
                // U+FFFE and U+FFFF (EF BF BE / EF BF BF); 0xEF is always a lead byte.
                0xEF if bytes.get(i + 1) == Some(&0xBF)
                    && matches!(bytes.get(i + 2), Some(0xBE | 0xBF)) =>
                {
                    ("\u{FFFD}", 3)
                }
                _ => {
                    i += 1;
                    continue;
                }
            };
            // Replacements start at an ASCII byte or a lead byte: a char boundary.
            out.push_str(&value[start..i]);
            out.push_str(replacement);
            i += len;
            start = i;
        }
    }
    out.push_str(&value[start..]);
}

/// Whether any of the eight bytes in `word` is a control (tab and newline included), `&`,
/// `<`, `>` or 0xEF (the lead byte of U+FFFE and U+FFFF). The bit tricks can say yes for a
/// word that needs nothing (the byte loop then copies it) but never no for one that does.
fn may_need_escaping(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte below n (n <= 0x80) sets its high bit in (word - n per byte) & !word.
    let below = |n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS;
    let equal_to = |b: u8| {
        let x = word ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    (below(0x20) | equal_to(b'&') | equal_to(b'<') | equal_to(b'>') | equal_to(0xEF)) != 0
}

fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Sent => "Sent",
        Outcome::Deferred => "Deferred",
        Outcome::Failed => "Failed",
        Outcome::NotAttempted => "NotAttempted",
        Outcome::Unknown => "Unknown",
    }
}

fn ready_status_str(s: ReadyStatus) -> &'static str {
    match s {
        ReadyStatus::Accepted => "accepted",
        ReadyStatus::Busy => "busy",
        ReadyStatus::Disabled => "disabled",
    }
}

fn datetime_str(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// xs:double lexical form; Rust's shortest round-trip representation otherwise.
fn double_str(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "INF" } else { "-INF" }.into()
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

/// Decodes an envelope with the default (response-sized) [`Limits`].
pub fn decode(input: &[u8]) -> Result<Body, Fault> {
    decode_with(input, &Limits::default())
}

/// Decodes an envelope; the error is the fault to answer with.
pub fn decode_with(input: &[u8], limits: &Limits) -> Result<Body, Fault> {
    let root = xml::parse(input, limits)?;
    let payload = envelope_payload(&root)?;
    let name = payload.name.as_str();
    match payload.ns {
        Ns::Soap if name == "Fault" => return decode_fault(payload).map(Body::Fault),
        Ns::Mailrun => {}
        _ => {
            return Err(Fault::new(
                FaultReason::WrongNamespace,
                format!(
                    "<{}> in soap:Body is in namespace {:?}, expected {NAMESPACE:?}",
                    clip(name),
                    clip(payload.ns.uri())
                ),
            ))
        }
    }
    let path = name;
    Ok(match name {
        "JobRunRequest" => Body::JobRunRequest(decode_job_run_request(payload, path)?),
        "JobRun" => Body::JobRun(decode_job_run(payload, path)?),
        "JobRunnerReady" => {
            let [runner_id, queued] = fields(payload, path, [ONE, ONE], ["runnerId", "queued"])?;
            Body::JobRunnerReady(JobRunnerReady {
                runner_id: string(one(runner_id), path, 128)?,
                queued: number(one(queued), path, "an unsigned 64-bit integer")?,
            })
        }
        "JobRunnerReadyResponse" => {
            let [status, version, config] = fields(
                payload,
                path,
                [ONE, ONE, ONE],
                ["status", "softwareVersion", "configVersion"],
            )?;
            Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                status: ready_status(one(status), path)?,
                software_version: string(one(version), path, 64)?,
                config_version: non_negative(one(config), path)?,
            })
        }
        "JobRunnerConfigUpdate" => {
            Body::JobRunnerConfigUpdate(decode_config_update(payload, path)?)
        }
        "JobRunnerConfigUpdateResponse" => {
            let [applied] = fields(payload, path, [ONE], ["appliedVersion"])?;
            Body::JobRunnerConfigUpdateResponse(JobRunnerConfigUpdateResponse {
                applied_version: non_negative(one(applied), path)?,
            })
        }
        other => {
            return Err(Fault::new(
                FaultReason::UnknownOperation,
                format!("unknown operation <{}>", clip(other)),
            ))
        }
    })
}

/// A message of a JobRun that breaks the contract, set aside by [`decode_lenient`]: what
/// the runner needs to report it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMessage {
    pub id: i64,
    pub lease_token: String,
    pub reason: String,
}

/// As [`decode_with`], except that in a JobRun a message that breaks the contract (a
/// field too long, a line break in a header...) is set aside instead of refusing the
/// whole batch, when its id and lease token can be read: one bad message must not strand
/// its neighbours (docs/runner.md). Everything else is refused as by `decode_with`.
pub fn decode_lenient(input: &[u8], limits: &Limits) -> Result<(Body, Vec<RefusedMessage>), Fault> {
    let root = xml::parse(input, limits)?;
    let payload = envelope_payload(&root)?;
    if payload.ns == Ns::Mailrun && payload.name == "JobRun" {
        let (run, refused) = decode_job_run_parts(payload, "JobRun", true)?;
        return Ok((Body::JobRun(run), refused));
    }
    decode_with(input, limits).map(|body| (body, Vec::new()))
}

/// The id and lease token of a message element, if both are there and well formed.
fn message_identity(el: &Element, path: &str) -> Option<(i64, String)> {
    let child = |name: &str| {
        let mut found = el
            .children
            .iter()
            .filter(|c| c.ns == Ns::Mailrun && c.name == name);
        let first = found.next()?;
        found.next().is_none().then_some(first)
    };
    let id = number(child("id")?, path, "a 64-bit integer").ok()?;
    let token = string(child("leaseToken")?, path, 128).ok()?;
    (!token.is_empty()).then_some((id, token))
}

/// Checks Envelope/Header/Body and returns the one element inside soap:Body.
fn envelope_payload(root: &Element) -> Result<&Element, Fault> {
    if root.name != "Envelope" {
        return Err(malformed(format!(
            "root element is <{}>, expected soap:Envelope",
            clip(&root.name)
        )));
    }
    if root.ns != Ns::Soap {
        let hint = if root.ns.uri() == "http://www.w3.org/2003/05/soap-envelope" {
            " (SOAP 1.2 is not supported; use SOAP 1.1)"
        } else {
            ""
        };
        return Err(Fault::new(
            FaultReason::WrongNamespace,
            format!(
                "<Envelope> is in namespace {:?}, expected {SOAP_ENV_NAMESPACE:?}{hint}",
                clip(root.ns.uri())
            ),
        ));
    }
    no_text(root, "Envelope")?;
    let mut body = None;
    for (i, child) in root.children.iter().enumerate() {
        match (&child.ns, child.name.as_str()) {
            (Ns::Soap, "Header") if i == 0 => {
                if let Some(entry) = child.children.iter().find(|e| e.must_understand) {
                    return Err(Fault::new(
                        FaultReason::InvalidValue,
                        format!(
                            "header entry <{}> is marked mustUnderstand and is not understood",
                            clip(&entry.name)
                        ),
                    ));
                }
            }
            (Ns::Soap, "Body") if body.is_none() => body = Some(child),
            (_, name) => {
                return Err(malformed(format!(
                    "unexpected element <{}> in Envelope",
                    clip(name)
                )))
            }
        }
    }
    let body = body.ok_or_else(|| malformed("missing soap:Body in Envelope"))?;
    no_text(body, "Envelope/Body")?;
    match body.children.as_slice() {
        [payload] => Ok(payload),
        [] => Err(malformed("soap:Body is empty")),
        [_, second, ..] => Err(malformed(format!(
            "soap:Body holds more than one element (second: <{}>)",
            clip(&second.name)
        ))),
    }
}

fn decode_job_run_request(el: &Element, path: &str) -> Result<JobRunRequest, Fault> {
    let [runner_id, capacity, software_version, config_version, results, held] = fields(
        el,
        path,
        [ONE, ONE, ONE, ONE, OPT, OPT],
        [
            "runnerId",
            "capacity",
            "softwareVersion",
            "configVersion",
            "results",
            "heldJobRuns",
        ],
    )?;
    let held_job_runs = match held.first() {
        None => None,
        Some(held) => {
            let list_path = format!("{path}/heldJobRuns");
            let [ids] = fields(held, &list_path, [MANY], ["jobRunId"])?;
            if ids.len() > MAX_HELD_JOB_RUNS {
                return Err(invalid(
                    held,
                    &list_path,
                    &format!("lists more than {MAX_HELD_JOB_RUNS} batches"),
                ));
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(string(id, &list_path, 128)?);
            }
            Some(out)
        }
    };
    let mut out = Vec::new();
    if let Some(results) = results.first() {
        let list_path = format!("{path}/results");
        let [items] = fields(results, &list_path, [MANY], ["result"])?;
        out.reserve(items.len());
        for (i, item) in items.into_iter().enumerate() {
            out.push(decode_result(
                item,
                &format!("{list_path}/result[{}]", i + 1),
            )?);
        }
    }
    Ok(JobRunRequest {
        runner_id: string(one(runner_id), path, 128)?,
        capacity: number(one(capacity), path, "an unsigned 32-bit integer")?,
        software_version: string(one(software_version), path, 64)?,
        config_version: non_negative(one(config_version), path)?,
        results: out,
        held_job_runs,
    })
}

fn decode_result(el: &Element, path: &str) -> Result<MessageResult, Fault> {
    let [job_run_id, message_id, lease_token, outcome_el, code, status, text, at, recipients] =
        fields(
            el,
            path,
            [ONE, ONE, ONE, ONE, OPT, OPT, OPT, ONE, MANY],
            [
                "jobRunId",
                "messageId",
                "leaseToken",
                "outcome",
                "smtpCode",
                "enhancedStatus",
                "text",
                "attemptedAt",
                "recipient",
            ],
        )?;
    let mut rcpts = Vec::with_capacity(recipients.len());
    for (i, r) in recipients.into_iter().enumerate() {
        let rpath = format!("{path}/recipient[{}]", i + 1);
        let [address, outcome_el, code, status, text] = fields(
            r,
            &rpath,
            [ONE, ONE, OPT, OPT, OPT],
            ["address", "outcome", "smtpCode", "enhancedStatus", "text"],
        )?;
        rcpts.push(RecipientResult {
            address: line(one(address), &rpath, field::ADDRESS)?,
            outcome: outcome(one(outcome_el), &rpath)?,
            smtp_code: optional(code, |e| smtp_code(e, &rpath))?,
            enhanced_status: optional(status, |e| enhanced_status(e, &rpath))?,
            text: optional(text, |e| string(e, &rpath, 8192))?,
        });
    }
    Ok(MessageResult {
        job_run_id: string(one(job_run_id), path, 128)?,
        message_id: number(one(message_id), path, "a 64-bit integer")?,
        lease_token: string(one(lease_token), path, 128)?,
        outcome: outcome(one(outcome_el), path)?,
        smtp_code: optional(code, |e| smtp_code(e, path))?,
        enhanced_status: optional(status, |e| enhanced_status(e, path))?,
        text: optional(text, |e| string(e, path, 8192))?,
        attempted_at: datetime(one(at), path)?,
        recipients: rcpts,
    })
}

fn decode_job_run(el: &Element, path: &str) -> Result<JobRun, Fault> {
    decode_job_run_parts(el, path, false).map(|(run, _)| run)
}

/// `lenient`: a message that breaks the contract is set aside with the reason, as long
/// as its id and lease token can be read (it can then be reported); otherwise, and
/// when not lenient, it refuses the whole JobRun.
fn decode_job_run_parts(
    el: &Element,
    path: &str,
    lenient: bool,
) -> Result<(JobRun, Vec<RefusedMessage>), Fault> {
    let [job_run_id, lease_seconds, acknowledged, messages] = fields(
        el,
        path,
        [ONE, ONE, OPT, ONE],
        ["jobRunId", "leaseSeconds", "acknowledged", "messages"],
    )?;
    let mut acks = Vec::new();
    if let Some(list) = acknowledged.first() {
        let list_path = format!("{path}/acknowledged");
        let [items] = fields(list, &list_path, [MANY], ["ack"])?;
        acks.reserve(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let apath = format!("{list_path}/ack[{}]", i + 1);
            let [message_id, lease_token] =
                fields(item, &apath, [ONE, ONE], ["messageId", "leaseToken"])?;
            acks.push(Acknowledgement {
                message_id: number(one(message_id), &apath, "a 64-bit integer")?,
                lease_token: string(one(lease_token), &apath, 128)?,
            });
        }
    }
    let list_path = format!("{path}/messages");
    let [items] = fields(one(messages), &list_path, [MANY], ["message"])?;
    let mut out = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let mpath = format!("{list_path}/message[{}]", i + 1);
        match decode_message(item, &mpath) {
            Ok(m) => out.push(m),
            Err(fault) if lenient => match message_identity(item, &mpath) {
                Some((id, lease_token)) => refused.push(RefusedMessage {
                    id,
                    lease_token,
                    reason: fault.message,
                }),
                None => return Err(fault),
            },
            Err(fault) => return Err(fault),
        }
    }
    let run = JobRun {
        job_run_id: string(one(job_run_id), path, 128)?,
        lease_seconds: number(one(lease_seconds), path, "an unsigned 32-bit integer")?,
        acknowledged: acks,
        messages: out,
    };
    Ok((run, refused))
}

fn decode_message(el: &Element, path: &str) -> Result<OutboundMessage, Fault> {
    let [id, lease_token, message_id_header, account, from, reply_to, to, cc, bcc, subject, text_body, html_body, headers, attachments] =
        fields(
            el,
            path,
            [
                ONE, ONE, ONE, ONE, ONE, OPT, MANY, MANY, MANY, ONE, OPT, OPT, MANY, MANY,
            ],
            [
                "id",
                "leaseToken",
                "messageIdHeader",
                "account",
                "from",
                "replyTo",
                "to",
                "cc",
                "bcc",
                "subject",
                "textBody",
                "htmlBody",
                "header",
                "attachment",
            ],
        )?;
    let account_path = format!("{path}/account");
    let [name, host, port, security_el, username, password, max_connections] = fields(
        one(account),
        &account_path,
        [ONE, ONE, ONE, ONE, OPT, OPT, OPT],
        [
            "name",
            "host",
            "port",
            "security",
            "username",
            "password",
            "maxConnections",
        ],
    )?;
    let account = SmtpAccount {
        name: string(one(name), &account_path, field::ACCOUNT_NAME)?,
        host: line(one(host), &account_path, field::ACCOUNT_HOST)?,
        port: port_number(one(port), &account_path)?,
        security: security(one(security_el), &account_path)?,
        username: optional(username, |e| {
            string(e, &account_path, field::ACCOUNT_USERNAME)
        })?,
        password: optional(password, |e| {
            string(e, &account_path, field::ACCOUNT_PASSWORD)
        })?,
        max_connections: optional(max_connections, |e| {
            ranged(e, &account_path, 1, MAX_CONNECTIONS)
        })?,
    };
    let addresses = |list: Vec<&Element>| -> Result<Vec<String>, Fault> {
        list.into_iter()
            .map(|e| line(e, path, field::ADDRESS))
            .collect()
    };
    let mut hdrs = Vec::with_capacity(headers.len());
    for (i, h) in headers.into_iter().enumerate() {
        let hpath = format!("{path}/header[{}]", i + 1);
        let [name, value] = fields(h, &hpath, [ONE, ONE], ["name", "value"])?;
        hdrs.push(Header {
            name: header_name(one(name), &hpath)?,
            value: line(one(value), &hpath, field::HEADER_VALUE)?,
        });
    }
    let mut files = Vec::with_capacity(attachments.len());
    for (i, a) in attachments.into_iter().enumerate() {
        let apath = format!("{path}/attachment[{}]", i + 1);
        let [filename, content_type, data] = fields(
            a,
            &apath,
            [ONE, ONE, ONE],
            ["filename", "contentType", "data"],
        )?;
        files.push(Attachment {
            filename: line(one(filename), &apath, field::ATTACHMENT_FILENAME)?,
            content_type: line(one(content_type), &apath, field::ATTACHMENT_CONTENT_TYPE)?,
            data: base64_data(one(data), &apath)?,
        });
    }
    Ok(OutboundMessage {
        id: number(one(id), path, "a 64-bit integer")?,
        lease_token: string(one(lease_token), path, 128)?,
        message_id_header: line(one(message_id_header), path, field::MESSAGE_ID)?,
        account,
        from: line(one(from), path, field::ADDRESS)?,
        reply_to: optional(reply_to, |e| line(e, path, field::ADDRESS))?,
        to: addresses(to)?,
        cc: addresses(cc)?,
        bcc: addresses(bcc)?,
        subject: line(one(subject), path, field::SUBJECT)?,
        text_body: optional(text_body, |e| leaf(e, path).map(str::to_owned))?,
        html_body: optional(html_body, |e| leaf(e, path).map(str::to_owned))?,
        headers: hdrs,
        attachments: files,
    })
}

fn decode_config_update(el: &Element, path: &str) -> Result<JobRunnerConfigUpdate, Fault> {
    let [runner_id, version, settings] = fields(
        el,
        path,
        [ONE, ONE, ONE],
        ["runnerId", "version", "settings"],
    )?;
    let spath = format!("{path}/settings");
    let [batch, rate, connect, command, data, poll, margin, url, software, policy, sessions, per_account] =
        fields(
            one(settings),
            &spath,
            [ONE, ONE, ONE, ONE, ONE, ONE, ONE, ONE, OPT, OPT, OPT, OPT],
            [
                "batchSize",
                "sendRatePerSecond",
                "smtpConnectTimeoutSeconds",
                "smtpCommandTimeoutSeconds",
                "smtpDataTimeoutSeconds",
                "pollIntervalSeconds",
                "leaseSafetyMarginSeconds",
                "dispatcherUrl",
                "software",
                "replyPolicy",
                "maxSessions",
                "maxSessionsPerAccount",
            ],
        )?;
    let reply_policy = optional(policy, |p| {
        decode_reply_policy(p, &format!("{spath}/replyPolicy"))
    })?;
    let software = match software.first() {
        None => None,
        Some(sw) => {
            let swpath = format!("{spath}/software");
            let [version, url, sha] =
                fields(sw, &swpath, [ONE, ONE, ONE], ["version", "url", "sha256"])?;
            Some(SoftwareUpdate {
                version: string(one(version), &swpath, 64)?,
                url: http_url(one(url), &swpath)?,
                sha256: sha256(one(sha), &swpath)?,
            })
        }
    };
    let version_el = one(version);
    let version: i64 = number(version_el, path, "a 64-bit integer")?;
    if version < 1 {
        return Err(invalid(
            version_el,
            path,
            "is not a version (must be at least 1)",
        ));
    }
    Ok(JobRunnerConfigUpdate {
        runner_id: string(one(runner_id), path, 128)?,
        version,
        settings: RunnerSettings {
            batch_size: ranged(one(batch), &spath, 1, 100_000)?,
            send_rate_per_second: rate_value(one(rate), &spath)?,
            smtp_connect_timeout_seconds: ranged(one(connect), &spath, 1, 86_400)?,
            smtp_command_timeout_seconds: ranged(one(command), &spath, 1, 86_400)?,
            smtp_data_timeout_seconds: ranged(one(data), &spath, 1, 86_400)?,
            poll_interval_seconds: ranged(one(poll), &spath, 1, 86_400)?,
            lease_safety_margin_seconds: ranged(one(margin), &spath, 0, 86_400)?,
            dispatcher_url: http_url(one(url), &spath)?,
            software,
            reply_policy,
            max_sessions: optional(sessions, |e| ranged(e, &spath, 1, MAX_CONNECTIONS))?,
            max_sessions_per_account: optional(per_account, |e| {
                ranged(e, &spath, 1, MAX_CONNECTIONS)
            })?,
        },
    })
}

/// The reply policy: at most [`reply_rules::MAX_RULES`] rules, counted before any is
/// decoded, each field bounded, positions strictly increasing.
fn decode_reply_policy(el: &Element, path: &str) -> Result<Vec<ReplyRule>, Fault> {
    let [items] = fields(el, path, [MANY], ["rule"])?;
    if items.len() > reply_rules::MAX_RULES {
        return Err(Fault::new(
            FaultReason::InvalidValue,
            format!(
                "{path} holds {} rules, at most {} are accepted",
                items.len(),
                reply_rules::MAX_RULES
            ),
        ));
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let rpath = format!("{path}/rule[{}]", i + 1);
        let [position, code, enhanced, pattern, domain, account, action_el, throttle_el] = fields(
            item,
            &rpath,
            [ONE, OPT, OPT, OPT, OPT, OPT, ONE, ONE],
            [
                "position", "code", "enhanced", "pattern", "domain", "account", "action",
                "throttle",
            ],
        )?;
        let action_el = one(action_el);
        let throttle_el = one(throttle_el);
        let rule = ReplyRule {
            position: ranged(one(position), &rpath, 1, reply_rules::MAX_POSITION)?,
            code: optional(code, |e| token(e, &rpath).map(str::to_owned))?,
            enhanced: optional(enhanced, |e| token(e, &rpath).map(str::to_owned))?,
            pattern: optional(pattern, |e| {
                string(e, &rpath, reply_rules::MAX_PATTERN_CHARS)
            })?,
            domain: optional(domain, |e| string(e, &rpath, reply_rules::MAX_DOMAIN_CHARS))?,
            account: optional(account, |e| {
                string(e, &rpath, reply_rules::MAX_ACCOUNT_CHARS)
            })?,
            action: ReplyAction::parse(token(action_el, &rpath)?).ok_or_else(|| {
                invalid(
                    action_el,
                    &rpath,
                    "is not one of retry, another_account, suppress, fail",
                )
            })?,
            throttle: ReplyThrottle::parse(token(throttle_el, &rpath)?).ok_or_else(|| {
                invalid(throttle_el, &rpath, "is not one of none, account, domain")
            })?,
        };
        reply_rules::check_rule(&rule)
            .map_err(|e| Fault::new(FaultReason::InvalidValue, format!("{rpath}: {e}")))?;
        if let Some(prev) = rules.last().map(|r: &ReplyRule| r.position) {
            if rule.position <= prev {
                return Err(Fault::new(
                    FaultReason::InvalidValue,
                    format!(
                        "{rpath}: position {} does not increase the previous {prev}",
                        rule.position
                    ),
                ));
            }
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn decode_fault(el: &Element) -> Result<Fault, Fault> {
    let path = "Fault";
    no_text(el, path)?;
    let (mut code, mut string_el, mut detail) = (None, None, None);
    for child in &el.children {
        let slot = match (&child.ns, child.name.as_str()) {
            (Ns::None, "faultcode") => &mut code,
            (Ns::None, "faultstring") => &mut string_el,
            (Ns::None, "faultactor") => continue,
            (Ns::None, "detail") => &mut detail,
            (_, name) => {
                return Err(malformed(format!(
                    "unexpected element <{}> in Fault",
                    clip(name)
                )))
            }
        };
        if slot.replace(child).is_some() {
            return Err(malformed(format!("duplicate <{}> in Fault", child.name)));
        }
    }
    let code_el = code.ok_or_else(|| missing("faultcode", path))?;
    let code_text = leaf(code_el, path)?.trim();
    // A QName; only the local part matters ("soap:Client.Auth" is a Client fault).
    let local = code_text.rsplit(':').next().unwrap_or(code_text);
    let code = match local.split('.').next().unwrap_or(local) {
        "Server" => FaultCode::Server,
        "Client" | "VersionMismatch" | "MustUnderstand" => FaultCode::Client,
        _ => return Err(invalid(code_el, path, "is not a SOAP 1.1 fault code")),
    };
    let faultstring = leaf(string_el.ok_or_else(|| missing("faultstring", path))?, path)?;
    // A fault without our detail (from a proxy or a foreign stack) still says who is at
    // fault: a server fault may pass on retry, a client fault will not.
    let fallback = match code {
        FaultCode::Server => FaultReason::Unavailable,
        FaultCode::Client => FaultReason::InvalidValue,
    };
    let mut reason = fallback;
    let mut message = faultstring.to_owned();
    if let Some(detail) = detail {
        if let Some(fd) = detail
            .children
            .iter()
            .find(|c| c.ns == Ns::Mailrun && c.name == "FaultDetail")
        {
            let fpath = "Fault/detail/FaultDetail";
            let [reason_el, message_el] = fields(fd, fpath, [ONE, ONE], ["reason", "message"])?;
            reason = FaultReason::parse(leaf(one(reason_el), fpath)?.trim()).unwrap_or(fallback);
            message = leaf(one(message_el), fpath)?.to_owned();
        }
    }
    Ok(Fault {
        code,
        reason,
        message,
    })
}

// ---------------------------------------------------------------------------------------
// Mapping helpers

#[derive(Clone, Copy, PartialEq, Eq)]
enum Card {
    One,
    Opt,
    Many,
}
const ONE: Card = Card::One;
const OPT: Card = Card::Opt;
const MANY: Card = Card::Many;

/// Sorts `el`'s children into one slot per expected name, refusing foreign namespaces,
/// unknown names, duplicates of single elements, stray text and missing required ones.
fn fields<'a, const N: usize>(
    el: &'a Element,
    path: &str,
    cards: [Card; N],
    names: [&str; N],
) -> Result<[Vec<&'a Element>; N], Fault> {
    no_text(el, path)?;
    let mut slots: [Vec<&'a Element>; N] = std::array::from_fn(|_| Vec::new());
    for child in &el.children {
        if child.ns != Ns::Mailrun {
            return Err(Fault::new(
                FaultReason::WrongNamespace,
                format!(
                    "<{}> in {path} is in namespace {:?}, expected {NAMESPACE:?}",
                    clip(&child.name),
                    clip(child.ns.uri())
                ),
            ));
        }
        let Some(i) = names.iter().position(|n| *n == child.name) else {
            return Err(malformed(format!(
                "unexpected element <{}> in {path}",
                clip(&child.name)
            )));
        };
        if cards[i] != MANY && !slots[i].is_empty() {
            return Err(malformed(format!("duplicate <{}> in {path}", names[i])));
        }
        slots[i].push(child);
    }
    for i in 0..N {
        if cards[i] == ONE && slots[i].is_empty() {
            return Err(missing(names[i], path));
        }
    }
    Ok(slots)
}

/// The single element of a slot `fields` has checked to hold exactly one.
fn one(slot: Vec<&Element>) -> &Element {
    slot[0]
}

fn optional<T>(
    slot: Vec<&Element>,
    f: impl FnOnce(&Element) -> Result<T, Fault>,
) -> Result<Option<T>, Fault> {
    slot.first().map(|e| f(e)).transpose()
}

fn no_text(el: &Element, path: &str) -> Result<(), Fault> {
    if el.text.chars().all(is_xml_space) {
        Ok(())
    } else {
        Err(malformed(format!("unexpected text in {path}")))
    }
}

/// The text of an element that must not hold elements.
fn leaf<'a>(el: &'a Element, path: &str) -> Result<&'a str, Fault> {
    match el.children.first() {
        None => Ok(&el.text),
        Some(child) => Err(malformed(format!(
            "unexpected element <{}> inside <{}> in {path}",
            clip(&child.name),
            el.name
        ))),
    }
}

fn malformed(message: impl Into<String>) -> Fault {
    Fault::new(FaultReason::MalformedXml, message)
}

fn missing(name: &str, path: &str) -> Fault {
    Fault::new(
        FaultReason::MissingField,
        format!("missing <{name}> in {path}"),
    )
}

/// `invalid value for <port> in JobRun/messages/message[1]/account: "0" is not a port`.
fn invalid(el: &Element, path: &str, problem: &str) -> Fault {
    Fault::new(
        FaultReason::InvalidValue,
        format!(
            "invalid value for <{}> in {path}: {:?} {problem}",
            el.name,
            clip(&el.text)
        ),
    )
}

/// Like `invalid`, without echoing the value (for values that may be secret or huge).
fn invalid_quiet(el: &Element, path: &str, problem: &str) -> Fault {
    Fault::new(
        FaultReason::InvalidValue,
        format!("invalid value for <{}> in {path}: {problem}", el.name),
    )
}

fn string(el: &Element, path: &str, max_chars: usize) -> Result<String, Fault> {
    let text = leaf(el, path)?;
    if text.chars().count() > max_chars {
        return Err(invalid_quiet(
            el,
            path,
            &format!("longer than {max_chars} characters"),
        ));
    }
    Ok(text.to_owned())
}

/// A string that ends up in a mail header or SMTP command: no CR or LF.
fn line(el: &Element, path: &str, max_chars: usize) -> Result<String, Fault> {
    let text = string(el, path, max_chars)?;
    if text.contains(['\r', '\n']) {
        return Err(invalid(el, path, "contains a line break"));
    }
    Ok(text)
}

fn number<T: std::str::FromStr>(el: &Element, path: &str, what: &str) -> Result<T, Fault> {
    let text = leaf(el, path)?.trim_matches(is_xml_space);
    text.parse()
        .map_err(|_| invalid(el, path, &format!("is not {what}")))
}

fn non_negative(el: &Element, path: &str) -> Result<i64, Fault> {
    let v: i64 = number(el, path, "a 64-bit integer")?;
    if v < 0 {
        return Err(invalid(el, path, "is negative"));
    }
    Ok(v)
}

fn ranged(el: &Element, path: &str, min: u32, max: u32) -> Result<u32, Fault> {
    let v: u32 = number(el, path, "an unsigned 32-bit integer")?;
    if !(min..=max).contains(&v) {
        return Err(invalid(el, path, &format!("is not in {min}..={max}")));
    }
    Ok(v)
}

fn rate_value(el: &Element, path: &str) -> Result<f64, Fault> {
    let v: f64 = number(el, path, "a number")?;
    if !v.is_finite() || v < 0.0 {
        return Err(invalid(el, path, "is not a finite number of at least 0"));
    }
    Ok(v)
}

fn port_number(el: &Element, path: &str) -> Result<u16, Fault> {
    match number::<u16>(el, path, "a port number (1-65535)")? {
        0 => Err(invalid(el, path, "is not a port number (1-65535)")),
        port => Ok(port),
    }
}

fn smtp_code(el: &Element, path: &str) -> Result<u16, Fault> {
    let code: u16 = number(el, path, "an SMTP reply code (200-599)")?;
    if !(200..=599).contains(&code) {
        return Err(invalid(el, path, "is not an SMTP reply code (200-599)"));
    }
    Ok(code)
}

/// RFC 3463: class.subject.detail, class 2, 4 or 5, up to three digits each after it.
fn enhanced_status(el: &Element, path: &str) -> Result<String, Fault> {
    let text = leaf(el, path)?.trim_matches(is_xml_space);
    let parts: Vec<&str> = text.split('.').collect();
    let ok = parts.len() == 3
        && matches!(parts[0], "2" | "4" | "5")
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(invalid(
            el,
            path,
            "is not an RFC 3463 status code like 5.1.1",
        ));
    }
    Ok(text.to_owned())
}

fn sha256(el: &Element, path: &str) -> Result<String, Fault> {
    let text = leaf(el, path)?.trim_matches(is_xml_space);
    if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(el, path, "is not 64 lowercase hex characters"));
    }
    Ok(text.to_owned())
}

fn http_url(el: &Element, path: &str) -> Result<String, Fault> {
    let text = line(el, path, 2048)?;
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(text),
        _ => Err(invalid(el, path, "is not an http:// or https:// URL")),
    }
}

/// RFC 5322 field name: printable ASCII except colon.
fn header_name(el: &Element, path: &str) -> Result<String, Fault> {
    let text = string(el, path, field::HEADER_NAME)?;
    if text.is_empty() || !text.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(invalid(el, path, "is not a header field name"));
    }
    Ok(text)
}

fn datetime(el: &Element, path: &str) -> Result<DateTime<Utc>, Fault> {
    let text = leaf(el, path)?.trim_matches(is_xml_space);
    let bad = || {
        invalid(
            el,
            path,
            "is not a date-time with a time zone, like 2026-01-31T12:00:00Z",
        )
    };
    if text.as_bytes().get(10) != Some(&b'T') {
        return Err(bad());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| bad())
}

fn base64_data(el: &Element, path: &str) -> Result<Vec<u8>, Fault> {
    let text = leaf(el, path)?;
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| invalid_quiet(el, path, &format!("is not valid base64 ({e})")))
}

fn token<'a>(el: &'a Element, path: &str) -> Result<&'a str, Fault> {
    Ok(leaf(el, path)?.trim_matches(is_xml_space))
}

fn outcome(el: &Element, path: &str) -> Result<Outcome, Fault> {
    match token(el, path)? {
        "Sent" => Ok(Outcome::Sent),
        "Deferred" => Ok(Outcome::Deferred),
        "Failed" => Ok(Outcome::Failed),
        "NotAttempted" => Ok(Outcome::NotAttempted),
        "Unknown" => Ok(Outcome::Unknown),
        _ => Err(invalid(
            el,
            path,
            "is not one of Sent, Deferred, Failed, NotAttempted, Unknown",
        )),
    }
}

fn security(el: &Element, path: &str) -> Result<Security, Fault> {
    token(el, path)?
        .parse()
        .map_err(|_| invalid(el, path, "is not one of none, starttls, tls"))
}

fn ready_status(el: &Element, path: &str) -> Result<ReadyStatus, Fault> {
    match token(el, path)? {
        "accepted" => Ok(ReadyStatus::Accepted),
        "busy" => Ok(ReadyStatus::Busy),
        "disabled" => Ok(ReadyStatus::Disabled),
        _ => Err(invalid(el, path, "is not one of accepted, busy, disabled")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::xml::is_xml_char;

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_into(&mut out, "a<b>&]]>\r\n\t\u{0}\u{1F680}\"'");
        assert_eq!(out, "a&lt;b&gt;&amp;]]&gt;&#13;\n\t\u{FFFD}\u{1F680}\"'");
    }

    /// The escaping rule one character at a time, the reference the fast scan is held to.
    fn escaped_per_character(value: &str) -> String {
        let mut out = String::new();
        for c in value.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '\r' => out.push_str("&#13;"),
                c if is_xml_char(c) => out.push(c),
                _ => out.push('\u{FFFD}'),
            }
        }
        out
    }

    /// Characters at the edges of the rule: escaped, replaced, multi-byte, plain.
    const TRICKY_PIECES: [&str; 22] = [
        "",
        "a",
        "&",
        "<",
        ">",
        "\r",
        "\n",
        "\t",
        "\u{0}",
        "\u{1F}",
        "\u{7F}",
        "é",
        "\u{D7FF}",
        "\u{E000}",
        "\u{FFFD}",
        "\u{FFFE}",
        "\u{FFFF}",
        "\u{EFBF}",
        "\u{FEFF}",
        "\u{10000}",
        "\u{10FFFF}",
        "plain text ",
    ];

    /// The run-copying escape gives what escaping character by character gives.
    #[test]
    fn escaping_matches_the_per_character_rule() {
        for a in TRICKY_PIECES {
            for b in TRICKY_PIECES {
                for c in TRICKY_PIECES {
                    let value = format!("{a}{b}{c}");
                    let mut out = String::new();
                    escape_into(&mut out, &value);
                    assert_eq!(out, escaped_per_character(&value), "{value:?}");
                }
            }
        }
    }

    /// Every byte that needs a look is seen wherever it falls in an eight-byte word, and
    /// a word scan never stops a multi-byte character's slice in its middle.
    #[test]
    fn escaping_sees_special_bytes_at_every_offset() {
        for special in TRICKY_PIECES {
            for before in 0..20 {
                for after in [0, 1, 7, 8, 9, 23] {
                    let value = format!("{}{special}{}", "x".repeat(before), "y".repeat(after));
                    let mut out = String::new();
                    escape_into(&mut out, &value);
                    assert_eq!(out, escaped_per_character(&value), "{value:?}");
                }
            }
        }
        // Bytes at and around the thresholds the word test compares against.
        for b in 0u8..=0x7F {
            let value = format!("abcdefg{}hijklmnop", b as char);
            let mut out = String::new();
            escape_into(&mut out, &value);
            let mut one = String::new();
            escape_into(&mut one, &(b as char).to_string());
            assert_eq!(out, format!("abcdefg{one}hijklmnop"), "byte {b:#x}");
            let plain =
                !matches!(b, b'&' | b'<' | b'>' | b'\r') && (b >= 0x20 || b == b'\t' || b == b'\n');
            assert_eq!(one == (b as char).to_string(), plain, "byte {b:#x}");
        }
    }

    #[test]
    fn doubles_use_xsd_lexical_forms() {
        assert_eq!(double_str(12.5), "12.5");
        assert_eq!(double_str(0.0), "0");
        assert_eq!(double_str(f64::INFINITY), "INF");
        assert_eq!(double_str(f64::NEG_INFINITY), "-INF");
        assert_eq!(double_str(f64::NAN), "NaN");
        assert_eq!(double_str(1e-7).parse::<f64>().unwrap(), 1e-7);
    }

    #[test]
    fn datetimes_keep_fractions_only_when_present() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:33:20.25+01:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(datetime_str(&t), "2026-11-23T09:33:20.250Z");
    }
}
