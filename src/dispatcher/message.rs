//! Building and checking the JSON message objects `mailrun.enqueue` takes, on the
//! client side: addresses with lettre's parser, CR/LF in headers, defaults from
//! dispatcher.toml, and `.eml` files. The stored procedure checks again (applications
//! call it directly); this side gives line-precise errors before anything is sent.

use std::str::FromStr;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::config::Defaults;

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

/// Checks one mailbox ("Name <local@domain>" or "local@domain") with lettre's rules,
/// refusing trailing junk lettre's parser would ignore.
pub fn check_mailbox(s: &str) -> Result<(), String> {
    if s.contains(['\r', '\n']) {
        return Err(format!("address {s:?} contains CR or LF"));
    }
    let trimmed = s.trim();
    let addr = match (trimmed.rfind('<'), trimmed.strip_suffix('>')) {
        (Some(open), Some(_)) => &trimmed[open + 1..trimmed.len() - 1],
        _ => trimmed,
    };
    let mailbox = lettre::message::Mailbox::from_str(trimmed)
        .map_err(|_| format!("invalid address {s:?}"))?;
    let address = lettre::Address::from_str(addr).map_err(|_| format!("invalid address {s:?}"))?;
    if mailbox.email != address {
        return Err(format!("invalid address {s:?}"));
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
pub fn from_eml(raw: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = match text.find("\n\n") {
        Some(i) => (&text[..i], &text[i + 2..]),
        None => return Err("no blank line between headers and body".into()),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        if line.starts_with([' ', '\t']) {
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
    let encoding = get("content-transfer-encoding")
        .unwrap_or_else(|| "7bit".into())
        .to_ascii_lowercase();
    let body = match encoding.as_str() {
        "7bit" | "8bit" | "binary" => body.to_string(),
        "base64" => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|e| format!("the base64 body does not decode: {e}"))?;
            String::from_utf8(bytes).map_err(|_| "the body is not UTF-8".to_string())?
        }
        "quoted-printable" => decode_quoted_printable(body)?,
        other => {
            return Err(format!(
                "Content-Transfer-Encoding {other} is not supported"
            ))
        }
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
            let v = decode_encoded_words(&v);
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
            Value::String(decode_encoded_words(&subject)),
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

fn decode_quoted_printable(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
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
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "invalid quoted-printable body".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the body is not UTF-8".to_string())
}

/// Decodes RFC 2047 encoded words in UTF-8 or US-ASCII (others are left as they are).
pub fn decode_encoded_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let decoded = rest[start + 2..].find("?=").and_then(|end| {
            let inner = &rest[start + 2..start + 2 + end];
            let mut parts = inner.splitn(3, '?');
            let (charset, enc, text) = (parts.next()?, parts.next()?, parts.next()?);
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
                return None;
            }
            let bytes = match enc {
                "B" | "b" => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .ok()?,
                "Q" | "q" => decode_quoted_printable(&text.replace('_', " "))
                    .ok()?
                    .into_bytes(),
                _ => return None,
            };
            Some((String::from_utf8(bytes).ok()?, start + 2 + end + 2))
        });
        match decoded {
            Some((text, consumed)) => {
                let between = &rest[..start];
                // Whitespace between two encoded words is dropped (RFC 2047 6.2).
                if !(last_was_word && between.trim().is_empty()) {
                    out.push_str(between);
                }
                out.push_str(&text);
                rest = &rest[consumed..];
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
    out
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

    #[test]
    fn encoded_words() {
        assert_eq!(decode_encoded_words("=?UTF-8?B?R3LDvMOfZQ==?="), "Grüße");
        assert_eq!(
            decode_encoded_words("=?utf-8?q?a_b=C3=BC?= =?utf-8?q?c?="),
            "a büc"
        );
        assert_eq!(decode_encoded_words("plain"), "plain");
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
