//! The one validation every way in applies to a message before `mailrun.enqueue`:
//! `dispatch-admin enqueue --jsonl` lines and the HTTP API's bodies. It reads `send_at`
//! (RFC 3339 or a natural phrase, `schedule::when`) in a time zone against the
//! database's clock, fills the config defaults, and runs the client-side checks; the
//! stored procedure checks again.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::dispatcher::config::Defaults;
use crate::dispatcher::message;
use crate::schedule::when;
use crate::schedule::Zone;

/// What a prepared message needs from its surroundings.
pub struct Intake<'a> {
    pub defaults: &'a Defaults,
    pub max_message_bytes: i64,
    /// The database's clock, so every host agrees on what is past.
    pub now: DateTime<Utc>,
}

/// A message ready for `queue::enqueue`, and how its send time was read.
#[derive(Debug)]
pub struct Prepared {
    pub message: Value,
    pub send_at_read_as: Option<String>,
}

impl Intake<'_> {
    /// Reads a send-at time in `tz`; the error names the field.
    pub fn read_send_at(&self, input: &str, tz: Zone) -> Result<when::SendAt, String> {
        when::parse_send_at(input, self.now, tz).map_err(|e| format!("\"send_at\": {e}"))
    }

    /// Checks and completes one message object; the error text names the field at fault
    /// (see [`field_of`]).
    pub fn complete(&self, mut m: Value, tz: Zone) -> Result<Prepared, String> {
        message::check_no_nul(&m)?;
        let mut read_as = None;
        match m.get("send_at") {
            None | Some(Value::Null) => {}
            Some(Value::String(input)) => {
                let at = self.read_send_at(input, tz)?;
                m["send_at"] = json!(at.at.to_rfc3339());
                read_as = Some(at.read_as);
            }
            Some(_) => return Err("\"send_at\" must be a string".into()),
        }
        message::apply_defaults(&mut m, self.defaults);
        message::check(&m, Some(self.max_message_bytes))?;
        Ok(Prepared {
            message: m,
            send_at_read_as: read_as,
        })
    }
}

/// The message field an error text names first (`"to" ...`), when it is one of the
/// message's fields: the API turns it into a JSON pointer.
pub fn field_of(error: &str) -> Option<&'static str> {
    let start = error.find('"')? + 1;
    let len = error[start..].find('"')?;
    let name = &error[start..start + len];
    message::FIELDS.iter().copied().find(|f| *f == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_named_in_errors() {
        assert_eq!(field_of("\"from\" is required"), Some("from"));
        assert_eq!(field_of("\"send_at\": cannot read"), Some("send_at"));
        assert_eq!(field_of("unknown field \"nope\""), None);
        assert_eq!(field_of("no quotes"), None);
    }

    #[test]
    fn prepares_and_refuses() {
        let defaults = Defaults::default();
        let intake = Intake {
            defaults: &defaults,
            max_message_bytes: 1000,
            now: "2026-12-04T12:00:00Z".parse().unwrap(),
        };
        let tz = when::parse_time_zone("Europe/Berlin").unwrap();
        let p = intake
            .complete(
                json!({"from": "a@example.com", "to": ["b@example.com"], "send_at": "tomorrow 9am"}),
                tz,
            )
            .unwrap();
        assert_eq!(p.message["send_at"], json!("2026-12-05T08:00:00+00:00"));
        assert!(p.send_at_read_as.unwrap().contains("Europe/Berlin"));
        let e = intake
            .complete(json!({"to": ["b@example.com"]}), tz)
            .unwrap_err();
        assert_eq!(field_of(&e), Some("from"));
        let e = intake
            .complete(json!({"from": "a@example.com", "send_at": 5}), tz)
            .unwrap_err();
        assert_eq!(field_of(&e), Some("send_at"));
    }
}
