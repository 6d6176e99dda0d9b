//! Building and checking the JSON message objects `mailrun.enqueue` takes, on the
//! client side: addresses with lettre's parser, CR/LF in headers, defaults from
//! dispatcher.toml, and `.eml` files. The stored procedure checks again (applications
//! call it directly); this side gives line-precise errors before anything is sent.

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::dispatcher::config::Defaults;
use crate::protocol::limits::field;

/// Fields a message object may have (the stored procedure's list).
pub const FIELDS: &[&str] = &[
    "from",
    "reply_to",
    "to",
    "cc",
    "bcc",
    "subject",
    "text",
    "html",
    "headers",
    "attachments",
    "account",
    // Failover list of account names, or a named one (docs/quotas.md).
    "accounts",
    "account_group",
    "send_at",
    "message_id",
    "final_codes",
];

/// The addr-spec of a mailbox ("Display Name <local@domain>" or "local@domain"), or
/// `None` when malformed. The stored procedure's `mailrun.addr_spec` applies the same
/// rule (tested on one corpus, tests/data/mailboxes.txt), so the CLI and applications
/// calling `mailrun.enqueue` get the same answers; every mailbox it accepts is one the
/// runner's MIME writer (lettre) accepts too. A display name is empty, a quoted string,
/// or a phrase of atext, dots, spaces and non-ASCII letters; the addr-spec is a dot-atom
/// local part and a dotted domain (no quoted local parts, no address literals).
pub fn addr_spec(mailbox: &str) -> Option<&str> {
    use std::sync::OnceLock;
    static PATTERNS: OnceLock<[regex::Regex; 3]> = OnceLock::new();
    let [quoted, phrase, addr] = PATTERNS.get_or_init(|| {
        let letter = r"A-Za-z0-9\x{80}-\x{FFFF}";
        [
            regex::Regex::new(r#"^"([^"\\\r\n]|\\[^\r\n])*"$"#),
            regex::Regex::new(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~. \x{80}-\x{FFFF}-]+$"),
            regex::Regex::new(&format!(
                r"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]+@([{letter}]([{letter}-]*[{letter}])?\.)*[{letter}]([{letter}-]*[{letter}])?$"
            )),
        ]
        .map(|r| r.expect("static pattern"))
    });
    let m = mailbox.trim_matches([' ', '\t']);
    let a = match m.strip_suffix('>') {
        Some(rest) => {
            let open = rest.rfind('<')?;
            let display = rest[..open].trim_matches([' ', '\t']);
            if !display.is_empty() && !quoted.is_match(display) && !phrase.is_match(display) {
                return None;
            }
            &rest[open + 1..]
        }
        None => m,
    };
    let dots_ok = !a.starts_with('.') && !a.contains("..") && !a.contains(".@");
    (addr.is_match(a) && dots_ok).then_some(a)
}

/// Checks one mailbox with [`addr_spec`]'s rule and the protocol's length limit.
pub fn check_mailbox(s: &str) -> Result<(), String> {
    if s.contains(['\r', '\n']) {
        return Err(format!("address {s:?} contains CR or LF"));
    }
    check_text("an address", s, Some(field::ADDRESS))?;
    addr_spec(s)
        .map(|_| ())
        .ok_or_else(|| format!("invalid address {s:?}"))
}

/// A text value the protocol can carry: at most `max_chars` characters (when given) and
/// no character XML cannot carry (the stored procedure's `check_text`).
fn check_text(what: &str, value: &str, max_chars: Option<usize>) -> Result<(), String> {
    if let Some(max) = max_chars {
        let n = value.chars().count();
        if n > max {
            return Err(format!("{what} is {n} characters, over the limit of {max}"));
        }
    }
    if value.chars().any(field::uncarriable) {
        return Err(format!(
            "{what} contains a control character the protocol cannot carry (only tab, CR \
             and LF are allowed)"
        ));
    }
    Ok(())
}

fn check_address_field(m: &Map<String, Value>, field: &str) -> Result<(), String> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => check_mailbox(s).map_err(|e| format!("\"{field}\": {e}")),
        Some(Value::Array(list)) => {
            for v in list {
                let s = v
                    .as_str()
                    .ok_or_else(|| format!("\"{field}\" must contain strings"))?;
                check_mailbox(s).map_err(|e| format!("\"{field}\": {e}"))?;
            }
            Ok(())
        }
        Some(_) => Err(format!(
            "\"{field}\" must be a string or an array of strings"
        )),
    }
}

/// Client-side checks of a message object (see the module docs); the size limit is
/// checked here too when given.
pub fn check(m: &Value, max_bytes: Option<i64>) -> Result<(), String> {
    let obj = m
        .as_object()
        .ok_or_else(|| "a message must be a JSON object".to_string())?;
    if let Some(k) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field \"{k}\""));
    }
    match obj.get("from") {
        Some(Value::String(_)) => {}
        None | Some(Value::Null) => return Err("\"from\" is required".into()),
        Some(_) => return Err("\"from\" must be a string".into()),
    }
    for field in ["from", "reply_to"] {
        if let Some(v) = obj.get(field) {
            if !v.is_string() && !v.is_null() {
                return Err(format!("\"{field}\" must be a string"));
            }
        }
    }
    for field in ["from", "reply_to", "to", "cc", "bcc"] {
        check_address_field(obj, field)?;
    }
    for field in ["subject", "message_id", "account", "account_group"] {
        match obj.get(field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.contains(['\r', '\n']) => {
                return Err(format!("\"{field}\" contains CR or LF"))
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(format!("\"{field}\" must be a string")),
        }
    }
    match obj.get("accounts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list))
            if !list.is_empty()
                && list
                    .iter()
                    .all(|a| a.as_str().is_some_and(|s| !s.contains(['\r', '\n']))) => {}
        Some(_) => return Err("\"accounts\" must be a non-empty array of account names".into()),
    }
    if let Some(Value::Array(headers)) = obj.get("headers") {
        for h in headers {
            let value = h.get("value").and_then(Value::as_str).unwrap_or("");
            let name = h.get("name").and_then(Value::as_str).unwrap_or("");
            if value.contains(['\r', '\n']) || name.contains(['\r', '\n']) {
                return Err(format!("header {name:?} contains CR or LF"));
            }
            check_text(
                &format!("header {name:?}"),
                value,
                Some(field::HEADER_VALUE),
            )?;
            if name.chars().count() > field::HEADER_NAME {
                return Err(format!(
                    "header name {name:?} is over the limit of {} characters",
                    field::HEADER_NAME
                ));
            }
        }
    }
    for (key, max) in [
        ("subject", Some(field::SUBJECT)),
        ("message_id", Some(field::MESSAGE_ID)),
        ("text", None),
        ("html", None),
    ] {
        if let Some(Value::String(v)) = obj.get(key) {
            check_text(&format!("\"{key}\""), v, max)?;
        }
    }
    if let Some(Value::Array(list)) = obj.get("attachments") {
        for a in list {
            if let Some(name) = a.get("filename").and_then(Value::as_str) {
                check_text(
                    "an attachment filename",
                    name,
                    Some(field::ATTACHMENT_FILENAME),
                )?;
            }
            if let Some(ct) = a.get("content_type").and_then(Value::as_str) {
                check_text(
                    "an attachment content type",
                    ct,
                    Some(field::ATTACHMENT_CONTENT_TYPE),
                )?;
            }
        }
    }
    if let Some(max) = max_bytes {
        let size = approximate_size(obj);
        if size > max {
            return Err(format!("message is {size} bytes, over the limit of {max}"));
        }
    }
    Ok(())
}

/// Roughly the procedure's size measure: text parts plus decoded attachments.
fn approximate_size(obj: &Map<String, Value>) -> i64 {
    let mut size: usize = 0;
    for field in ["from", "reply_to", "subject", "text", "html"] {
        size += obj.get(field).and_then(Value::as_str).map_or(0, str::len);
    }
    if let Some(Value::Array(list)) = obj.get("attachments") {
        for a in list {
            size += a
                .get("data")
                .and_then(Value::as_str)
                .map_or(0, |d| d.len() / 4 * 3);
        }
    }
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Fills `from`, `reply_to` and `account` from the config defaults where absent.
pub fn apply_defaults(m: &mut Value, defaults: &Defaults) {
    let Some(obj) = m.as_object_mut() else {
        return;
    };
    let has_failover_list = ["accounts", "account_group"]
        .iter()
        .any(|k| obj.get(*k).is_some_and(|v| !v.is_null()));
    let mut fill = |key: &str, v: &Option<String>| {
        if let Some(v) = v {
            if obj.get(key).is_none_or(Value::is_null) {
                obj.insert(key.to_string(), Value::String(v.clone()));
            }
        }
    };
    fill("from", &defaults.from);
    fill("reply_to", &defaults.reply_to);
    // A failover list replaces the default account.
    if !has_failover_list {
        fill("account", &defaults.account);
    }
}

/// An attachment object from a file's bytes.
pub fn attachment(filename: &str, content_type: &str, data: &[u8]) -> Value {
    serde_json::json!({
        "filename": filename,
        "content_type": content_type,
        "data": base64::engine::general_purpose::STANDARD.encode(data),
    })
}

/// A content type from a file name's extension (application/octet-stream otherwise).
pub fn guess_content_type(filename: &str) -> &'static str {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "pdf" => "application/pdf",
        "json" => "application/json",
        "xml" => "application/xml",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ics" => "text/calendar",
        "eml" => "message/rfc822",
        _ => "application/octet-stream",
    }
}

/// Headers an .eml file may carry that are rebuilt from the message fields or by the
/// runner's MIME writer, so they are not copied as extra headers.
const EML_SKIPPED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "subject",
    "message-id",
    "date",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "sender",
    "return-path",
    "received",
];

/// Reads a single-part text/plain or text/html RFC 5322 message into a message object.
/// Multipart messages and transfer encodings other than 7bit/8bit/base64/quoted-printable
/// are refused: mailrun rebuilds the MIME structure itself.
///
/// Text is decoded with the charset it declares (encoded words in headers, the
/// Content-Type charset for the body; see `charset`); raw header bytes must be UTF-8
/// (RFC 6532). Anything else is refused, never guessed at or mangled.
pub fn from_eml(raw: &[u8]) -> Result<Value, String> {
    // CRLF to LF on bytes, before anything is decoded (quoted-printable soft breaks).
    let mut lf = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if !(b == b'\r' && bytes.peek() == Some(&b'\n')) {
            lf.push(b);
        }
    }
    let raw = lf;
    let split = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no blank line between headers and body")?;
    let (head, body) = (&raw[..split], &raw[split + 2..]);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split(|&b| b == b'\n') {
        let continuation = line.starts_with(b" ") || line.starts_with(b"\t");
        let line = std::str::from_utf8(line).map_err(|e| {
            let name = if continuation {
                headers.last().map(|h| h.0.clone()).unwrap_or_default()
            } else {
                let name = line.split(|&b| b == b':').next().unwrap_or_default();
                String::from_utf8_lossy(name).trim().to_string()
            };
            let at = e.valid_up_to();
            format!(
                "header {name}: byte 0x{:02X} is not UTF-8; 8-bit header text must be UTF-8 \
                 (RFC 6532) or RFC 2047 encoded words such as =?ISO-8859-1?Q?...?=",
                line[at]
            )
        })?;
        if continuation {
            let last = headers
                .last_mut()
                .ok_or_else(|| "the first header line is a continuation".to_string())?;
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| format!("malformed header line {line:?}"))?;
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    // Encoded words decoded; an error names the header (its canonical spelling).
    let decoded = |name: &str, value: &str| {
        decode_encoded_words(value).map_err(|e| format!("header {name}: {e}"))
    };
    let content_type = get("content-type").unwrap_or_else(|| "text/plain".into());
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "text/plain" && mime != "text/html" {
        return Err(format!(
            "Content-Type {mime} is not supported: give a single-part text/plain or text/html \
             message, or use flags (--text-file, --html-file, --attach)"
        ));
    }
    let charset = content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').to_string())
    });
    let encoding = get("content-transfer-encoding")
        .unwrap_or_else(|| "7bit".into())
        .to_ascii_lowercase();
    let body = match encoding.as_str() {
        "7bit" | "8bit" | "binary" => body.to_vec(),
        "base64" => {
            let compact: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| format!("the base64 body does not decode: {e}"))?
        }
        "quoted-printable" => {
            decode_quoted_printable(body).ok_or("invalid quoted-printable body")?
        }
        other => {
            return Err(format!(
                "Content-Transfer-Encoding {other} is not supported"
            ))
        }
    };
    let body = match &charset {
        Some(label) => crate::dispatcher::charset::decode(label, &body)
            .map_err(|e| format!("the body (charset {label}): {e}"))?,
        None => String::from_utf8(body).map_err(|_| {
            "the body is not UTF-8 and its Content-Type names no charset".to_string()
        })?,
    };

    let mut m = Map::new();
    for (header, field, list) in [
        ("from", "from", false),
        ("reply-to", "reply_to", false),
        ("to", "to", true),
        ("cc", "cc", true),
        ("bcc", "bcc", true),
    ] {
        if let Some(v) = get(header) {
            let v = decoded(header, &v)?;
            let value = if list {
                Value::Array(
                    split_address_list(&v)
                        .into_iter()
                        .map(Value::String)
                        .collect(),
                )
            } else {
                Value::String(v)
            };
            m.insert(field.into(), value);
        }
    }
    if let Some(subject) = get("subject") {
        m.insert(
            "subject".into(),
            Value::String(decoded("Subject", &subject)?),
        );
    }
    if let Some(id) = get("message-id") {
        m.insert("message_id".into(), Value::String(id));
    }
    let extra: Vec<Value> = headers
        .iter()
        .filter(|(n, _)| !EML_SKIPPED.contains(&n.to_ascii_lowercase().as_str()))
        .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
        .collect();
    if !extra.is_empty() {
        m.insert("headers".into(), Value::Array(extra));
    }
    let key = if mime == "text/html" { "html" } else { "text" };
    m.insert(key.into(), Value::String(body));
    Ok(Value::Object(m))
}

/// Refuses a NUL character anywhere in the message (a JSON `\u0000` is valid JSON, but
/// PostgreSQL's jsonb and text cannot store it), naming the field it is in.
pub fn check_no_nul(m: &Value) -> Result<(), String> {
    fn find(v: &Value, path: &mut String) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = k.contains('\0') || find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    if find(m, &mut path) {
        let field = if path.is_empty() {
            "the message".to_string()
        } else {
            format!("{path:?}")
        };
        return Err(format!(
            "{field} contains a NUL character (U+0000), which cannot be stored"
        ));
    }
    Ok(())
}

/// Splits "a@x, "Doe, J" <j@y>" at commas outside quotes and angle brackets.
pub fn split_address_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut angle) = (false, false);
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_string());
                }
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Quoted-printable (RFC 2045 6.7) to bytes; `None` for a bad `=` escape.
fn decode_quoted_printable(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// One RFC 2047 encoded word at the start of `s` ("=?charset?B|Q?text?="): its decoded
/// text and length. `Ok(None)` when `s` does not have that form (then it is plain text).
fn encoded_word(s: &str) -> Result<Option<(String, usize)>, String> {
    let Some(inner) = s.strip_prefix("=?") else {
        return Ok(None);
    };
    let mut parts = inner.splitn(3, '?');
    let (Some(charset), Some(enc), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    let Some(end) = rest.find("?=") else {
        return Ok(None);
    };
    let text = &rest[..end];
    let plain = |t: &str| !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || c == '?');
    if !plain(charset)
        || !matches!(enc, "B" | "b" | "Q" | "q")
        || text.contains(char::is_whitespace)
    {
        return Ok(None);
    }
    let len = 2 + charset.len() + 1 + enc.len() + 1 + end + 2;
    let word = &s[..len];
    let bytes = if enc.eq_ignore_ascii_case("b") {
        // Padding is often left out by mail software; accept it either way.
        let engine = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        engine
            .decode(text)
            .map_err(|e| format!("encoded word {word:?} does not decode: {e}"))?
    } else {
        decode_quoted_printable(text.replace('_', " ").as_bytes())
            .ok_or_else(|| format!("encoded word {word:?} does not decode"))?
    };
    let decoded = crate::dispatcher::charset::decode(charset, &bytes)
        .map_err(|e| format!("encoded word {word:?}: {e}"))?;
    Ok(Some((decoded, len)))
}

/// Decodes RFC 2047 encoded words with the charset each declares (`charset`); an
/// unknown charset, or bytes the charset does not have, is an error. Text that is not
/// an encoded word is kept as it is.
pub fn decode_encoded_words(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        match encoded_word(&rest[start..])? {
            Some((text, len)) => {
                let between = &rest[..start];
                // Whitespace between two encoded words is dropped (RFC 2047 6.2).
                if !(last_was_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = &rest[start + len..];
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes() {
        assert!(check_mailbox("a@example.org").is_ok());
        assert!(check_mailbox("Ann Example <a@example.org>").is_ok());
        assert!(check_mailbox("not an address").is_err());
        assert!(check_mailbox("a@example.org junk").is_err());
        assert!(check_mailbox("a@example.org\r\nBcc: x@y.z").is_err());
    }

    /// The shared corpus: the CLI's answers, and lettre accepts every mailbox this rule
    /// accepts (tests/it/queue.rs holds the stored procedure to the same answers).
    #[test]
    fn mailbox_corpus() {
        for line in include_str!("../../tests/data/mailboxes.txt").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (want, input) = line.split_once('\t').expect("ok|bad<TAB>input");
            let got = addr_spec(input);
            assert_eq!(got.is_some(), want == "ok", "{input:?}: got {got:?}");
            if let Some(spec) = got {
                let parsed = input.trim().parse::<lettre::message::Mailbox>();
                let parsed = parsed.unwrap_or_else(|e| panic!("lettre refuses {input:?}: {e}"));
                assert_eq!(parsed.email.to_string(), spec, "{input:?}");
            }
        }
    }

    #[test]
    fn encoded_words() {
        let d = |s: &str| decode_encoded_words(s).unwrap();
        assert_eq!(d("=?UTF-8?B?R3LDvMOfZQ==?="), "Grüße");
        assert_eq!(d("=?UTF-8?B?R3LDvMOfZQ?="), "Grüße");
        assert_eq!(d("=?utf-8?q?a_b=C3=BC?= =?utf-8?q?c?="), "a büc");
        // A Q word that starts with an escape (its "?=" is not the end).
        assert_eq!(d("=?UTF-8?Q?=C3=BC?="), "ü");
        assert_eq!(d("=?ISO-8859-1?Q?Gr=FC=DFe?= und mehr"), "Grüße und mehr");
        assert_eq!(d("=?iso-8859-15?B?pA==?="), "€");
        assert_eq!(d("=?windows-1252?Q?=93x=94?="), "“x”");
        assert_eq!(d("Re: =?latin1?q?caf=E9?="), "Re: café");
        assert_eq!(d("plain"), "plain");
        // Not encoded words: kept as they are.
        assert_eq!(d("a =? b ?= c"), "a =? b ?= c");
        assert_eq!(d("=?utf-8?x?abc?="), "=?utf-8?x?abc?=");
        assert_eq!(d("1+1=?"), "1+1=?");
    }

    #[test]
    fn encoded_words_in_unknown_or_wrong_charsets_are_refused() {
        let e = decode_encoded_words("=?koi8-r?B?0NLJ18XU?=").unwrap_err();
        assert!(e.contains("koi8-r"), "{e}");
        assert!(decode_encoded_words("=?us-ascii?Q?=FC?=").is_err());
        assert!(decode_encoded_words("=?utf-8?Q?=FC?=").is_err());
        assert!(decode_encoded_words("=?utf-8?B?!!!?=").is_err());
    }

    #[test]
    fn eml_headers_and_bodies_in_their_charsets() {
        let m = from_eml(
            b"From: a@example.com\r\nSubject: =?ISO-8859-1?Q?Gr=FC=DFe?=\r\n\
              Content-Type: text/plain; charset=\"iso-8859-1\"\r\n\r\nGr\xfc\xdfe\r\n",
        )
        .unwrap();
        assert_eq!(m["subject"], "Grüße");
        assert_eq!(m["text"], "Grüße\n");
        let m = from_eml("Subject: Grüße\n\nhi".as_bytes()).unwrap();
        assert_eq!(m["subject"], "Grüße");
        let e = from_eml(b"To: b@example.org\nSubject: Gr\xfc\xdfe\n\nhi").unwrap_err();
        assert!(e.starts_with("header Subject: byte 0xFC"), "{e}");
        let e = from_eml(b"Subject: x\n\tGr\xfc\n\nhi").unwrap_err();
        assert!(e.starts_with("header Subject:"), "{e}");
        let e = from_eml(b"Subject: x\n\nGr\xfc\xdfe").unwrap_err();
        assert!(e.contains("body"), "{e}");
        let e = from_eml(b"Content-Type: text/plain; charset=big5\n\nhi").unwrap_err();
        assert!(e.contains("big5"), "{e}");
    }

    #[test]
    fn nul_characters_are_found_by_field() {
        assert!(check_no_nul(&serde_json::json!({"subject": "ok", "to": ["a"]})).is_ok());
        let e = check_no_nul(&serde_json::json!({"subject": "a\u{0}b"})).unwrap_err();
        assert!(e.starts_with("\"subject\" contains a NUL"), "{e}");
        let e = check_no_nul(&serde_json::json!({"headers": [{"name": "X", "value": "\u{0}"}]}))
            .unwrap_err();
        assert!(e.starts_with("\"headers[0].value\""), "{e}");
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            split_address_list("a@x.org, \"Doe, J\" <j@y.org>,b@z.org"),
            vec!["a@x.org", "\"Doe, J\" <j@y.org>", "b@z.org"]
        );
    }
}
