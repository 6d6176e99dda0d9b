//! Lists of messages with filters and keyset paging by `(send_at, id)`: the HTTP API's
//! `GET /api/v1/messages` (and, later, `dispatch-admin list`). The cost of a page does
//! not grow with how far one has paged (index `messages_send_at_id`).

use base64::Engine as _;
use chrono::{DateTime, Utc};
use postgres::types::{ToSql, Type};
use postgres::GenericClient;
use serde_json::{json, Value};

use crate::dispatcher::queue::MessageState;

/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 1000;

/// Which messages: `state` is a message state or `scheduled` (queued, never attempted,
/// due later than now: what the status page calls scheduled).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub state: Option<StateFilter>,
    pub account: Option<String>,
    /// Recipient domain (any of To, Cc, Bcc), lowercase.
    pub domain: Option<String>,
    pub send_after: Option<DateTime<Utc>>,
    pub send_before: Option<DateTime<Utc>>,
    pub recurring_job: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    Scheduled,
    State(MessageState),
}

impl std::str::FromStr for StateFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<StateFilter, String> {
        if s == "scheduled" {
            return Ok(StateFilter::Scheduled);
        }
        s.parse::<MessageState>()
            .map(StateFilter::State)
            .map_err(|_| format!("unknown state {s:?}: use scheduled or a message state"))
    }
}

/// Where a page starts: after this `(send_at, id)`. Opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub send_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            "{}:{}",
            self.send_at.timestamp_micros(),
            self.id
        ))
    }

    pub fn decode(s: &str) -> Result<Cursor, String> {
        let bad =
            || "invalid cursor: pass next_cursor from the previous page unchanged".to_string();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (micros, id) = text.split_once(':').ok_or_else(bad)?;
        let send_at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(bad)?;
        let id = id.parse::<i64>().map_err(|_| bad())?;
        Ok(Cursor { send_at, id })
    }
}

/// One listed message.
#[derive(Debug, Clone)]
pub struct Listed {
    pub id: i64,
    pub state: String,
    pub send_at: DateTime<Utc>,
    pub account: String,
    pub to: Vec<String>,
    pub subject: String,
    pub attempts: i32,
    pub last_code: Option<i32>,
    pub recurring_job_id: Option<i64>,
}

impl Listed {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "state": self.state, "send_at": self.send_at,
            "account": self.account, "to": self.to, "subject": self.subject,
            "attempts": self.attempts, "last_code": self.last_code,
            "recurring_job_id": self.recurring_job_id,
        })
    }
}

/// One page: up to `limit` messages after `after`, and the cursor of the next page
/// (None on the last).
pub fn page(
    c: &mut impl GenericClient,
    filter: &Filter,
    after: Option<Cursor>,
    limit: i64,
) -> anyhow::Result<(Vec<Listed>, Option<Cursor>)> {
    let limit = limit.clamp(1, MAX_PAGE);
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<(Box<dyn ToSql + Sync>, Type)> = Vec::new();
    let mut bind = |value: Box<dyn ToSql + Sync>, ty: Type| {
        params.push((value, ty));
        format!("${}", params.len())
    };
    match filter.state {
        None => {}
        Some(StateFilter::Scheduled) => conditions
            .push("m.state = 'queued' AND m.attempts = 0 AND m.send_at > now()".to_string()),
        Some(StateFilter::State(s)) => {
            let p = bind(Box::new(s.as_str().to_string()), Type::TEXT);
            conditions.push(format!("m.state = {p}"));
        }
    }
    if let Some(account) = &filter.account {
        let p = bind(Box::new(account.clone()), Type::TEXT);
        conditions.push(format!("a.name = {p}"));
    }
    if let Some(domain) = &filter.domain {
        let p = bind(Box::new(domain.to_ascii_lowercase()), Type::TEXT);
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM unnest(m.to_addrs || m.cc_addrs || m.bcc_addrs) r
                     WHERE mailrun.addr_domain(r) = {p})"
        ));
    }
    if let Some(t) = filter.send_after {
        let p = bind(Box::new(t), Type::TIMESTAMPTZ);
        conditions.push(format!("m.send_at >= {p}"));
    }
    if let Some(t) = filter.send_before {
        let p = bind(Box::new(t), Type::TIMESTAMPTZ);
        conditions.push(format!("m.send_at < {p}"));
    }
    if let Some(job) = filter.recurring_job {
        let p = bind(Box::new(job), Type::INT8);
        conditions.push(format!("m.recurring_job_id = {p}"));
    }
    if let Some(cursor) = after {
        let t = bind(Box::new(cursor.send_at), Type::TIMESTAMPTZ);
        let id = bind(Box::new(cursor.id), Type::INT8);
        conditions.push(format!("(m.send_at, m.id) > ({t}, {id})"));
    }
    // One more than asked tells whether a next page exists.
    let lim = bind(Box::new(limit + 1), Type::INT8);
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT m.id, m.state, m.send_at, a.name, m.to_addrs, m.subject, m.attempts,
                m.last_code, m.recurring_job_id
         FROM mailrun.messages m JOIN mailrun.smtp_accounts a ON a.id = m.account_id
         {where_clause}
         ORDER BY m.send_at, m.id LIMIT {lim}"
    );
    let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
        .iter()
        .map(|(v, t)| (v.as_ref(), t.clone()))
        .collect();
    let mut rows: Vec<Listed> = c
        .query_typed(&sql, &typed)?
        .iter()
        .map(|r| Listed {
            id: r.get(0),
            state: r.get(1),
            send_at: r.get(2),
            account: r.get(3),
            to: r.get(4),
            subject: r.get(5),
            attempts: r.get(6),
            last_code: r.get(7),
            recurring_job_id: r.get(8),
        })
        .collect();
    let next = if rows.len() as i64 > limit {
        rows.truncate(usize::try_from(limit).unwrap_or(0));
        rows.last().map(|l| Cursor {
            send_at: l.send_at,
            id: l.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            send_at: "2026-12-04T12:00:00.123456Z".parse().unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        assert!(Cursor::decode("!!").is_err());
        assert!(Cursor::decode("eA").is_err());
    }

    #[test]
    fn state_filters() {
        assert_eq!("scheduled".parse(), Ok(StateFilter::Scheduled));
        assert_eq!("sent".parse(), Ok(StateFilter::State(MessageState::Sent)));
        assert!("x".parse::<StateFilter>().is_err());
    }
}
