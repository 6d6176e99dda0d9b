//! Delivery events posted to webhook endpoints (docs/webhooks.md).
//!
//! The trigger `mailrun.record_webhook_event` writes an event for every state change of
//! a message and every recipient that reached its outcome, and queues it for each
//! subscribed endpoint (`webhook_deliveries`, the outbox). `dispatch-tick` posts each
//! endpoint's oldest pending events in batches, signed with the endpoint's secret; an
//! accepted batch (2xx) leaves the outbox, a refused one stays and the endpoint backs
//! off (doubling, capped). A batch is only ever followed by later events once it was
//! accepted, so each message's events arrive in order; delivery is at least once (a
//! batch whose answer was lost comes again, with the same event ids).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use postgres::types::Type;
use postgres::GenericClient;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::web::client::Client;

/// The event kinds an endpoint can subscribe to: the message states (and recipient
/// outcomes) except `leased`.
pub const EVENT_KINDS: &[&str] = &[
    "queued",
    "sent",
    "deferred",
    "failed",
    "cancelled",
    "expired",
    "unknown",
];

/// Longest wait between two posts to a failing endpoint.
pub const MAX_BACKOFF_SECONDS: i64 = 3600;

/// Headers of a post (docs/webhooks.md).
pub const TIMESTAMP_HEADER: &str = "X-Mailrun-Webhook-Timestamp";
pub const SIGNATURE_HEADER: &str = "X-Mailrun-Webhook-Signature";

/// An endpoint as listed; the secret is never part of it.
#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub id: i64,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Consecutive failed posts (0: healthy).
    pub failures: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// Events waiting for this endpoint.
    pub pending: i64,
}

/// A new endpoint and its secret, the only time it is shown.
pub struct Added {
    pub id: i64,
    pub secret: String,
}

/// Parses `--events`: a comma-separated subset of EVENT_KINDS, or `all`.
pub fn parse_events(list: &str) -> Result<Vec<String>, String> {
    let mut kinds = Vec::new();
    for kind in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if kind == "all" {
            return Ok(EVENT_KINDS.iter().map(|k| k.to_string()).collect());
        }
        if !EVENT_KINDS.contains(&kind) {
            return Err(format!(
                "unknown event {kind:?} (one of: {}, or all)",
                EVENT_KINDS.join(", ")
            ));
        }
        if !kinds.iter().any(|k| k == kind) {
            kinds.push(kind.to_string());
        }
    }
    if kinds.is_empty() {
        return Err("no events given".into());
    }
    Ok(kinds)
}

/// Registers an endpoint with a fresh 32-byte secret.
pub fn add(c: &mut impl GenericClient, url: &str, events: &[String]) -> anyhow::Result<Added> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let row = c.query_typed_one(
        "INSERT INTO mailrun.webhook_endpoints (url, secret, events) VALUES ($1, $2, $3)
         RETURNING id",
        &[
            (&url, Type::TEXT),
            (&secret.as_slice(), Type::BYTEA),
            (&events, Type::TEXT_ARRAY),
        ],
    )?;
    Ok(Added {
        id: row.get(0),
        secret: secret_text(&secret),
    })
}

/// The secret as printed and as used for HMAC: `whsec_` and 64 hex digits.
fn secret_text(secret: &[u8]) -> String {
    format!("whsec_{}", hex::encode(secret))
}

pub fn list(c: &mut impl GenericClient) -> anyhow::Result<Vec<Endpoint>> {
    let rows = c.query_typed(
        "SELECT e.id, e.url, e.events, e.created_at, e.failures, e.next_attempt_at,
                e.last_success_at, e.last_error, e.last_error_at,
                (SELECT count(*) FROM mailrun.webhook_deliveries d WHERE d.endpoint_id = e.id)
         FROM mailrun.webhook_endpoints e ORDER BY e.id",
        &[],
    )?;
    Ok(rows
        .iter()
        .map(|r| Endpoint {
            id: r.get(0),
            url: r.get(1),
            events: r.get(2),
            created_at: r.get(3),
            failures: r.get(4),
            next_attempt_at: r.get(5),
            last_success_at: r.get(6),
            last_error: r.get(7),
            last_error_at: r.get(8),
            pending: r.get(9),
        })
        .collect())
}

/// Removes an endpoint and its pending deliveries; false when there was none.
pub fn remove(c: &mut impl GenericClient, id: i64) -> anyhow::Result<bool> {
    let rows = c.query_typed(
        "DELETE FROM mailrun.webhook_endpoints WHERE id = $1 RETURNING id",
        &[(&id, Type::INT8)],
    )?;
    Ok(!rows.is_empty())
}

/// `v1=` and hex(HMAC-SHA256(secret, timestamp "." body)).
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Posts one signed body; Ok for a 2xx answer, else why not (never the secret).
pub fn post(
    client: &Client,
    url: &str,
    secret: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    let timestamp = Utc::now().timestamp();
    let headers = [
        (TIMESTAMP_HEADER, timestamp.to_string()),
        (SIGNATURE_HEADER, signature(secret, timestamp, body)),
    ];
    match client.post_json(url, &headers, body, timeout) {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(format!("{url}: HTTP status {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Settings of one delivery run.
pub struct DeliveryOptions {
    /// The whole run stops starting posts after this, and no post outlives it.
    pub budget: Duration,
    /// Limit on one post.
    pub timeout: Duration,
    /// Most events in one post.
    pub batch: i64,
    /// Endpoints posted to at once.
    pub parallel: usize,
}

/// What one delivery run did for one endpoint, as the tick reports it.
#[derive(Debug, Default, Serialize)]
pub struct EndpointDelivery {
    pub id: i64,
    /// Events accepted by the endpoint.
    pub delivered: i64,
    /// Posts made (accepted or not).
    pub posts: i64,
    /// Events still waiting for it.
    pub pending: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The budget ran out with events still waiting.
    pub out_of_budget: bool,
}

struct Batch {
    endpoint_id: i64,
    url: String,
    secret: String,
    event_ids: Vec<i64>,
    body: Vec<u8>,
}

/// Posts pending events of due endpoints (not backing off) until none is left or the
/// budget is spent. Each endpoint goes on at its own pace: when its post is accepted,
/// its next batch goes out at once; when refused, it backs off and is done for this run.
/// Posts run in threads, at most `parallel` at once, each bounded by what is left of the
/// budget; the database is used from this thread only.
pub fn deliver(
    c: &mut impl GenericClient,
    client: &Client,
    options: &DeliveryOptions,
) -> anyhow::Result<Vec<EndpointDelivery>> {
    let start = Instant::now();
    // Taken for this run: an overlapping tick skips them until the run is over (or,
    // should this process die, until the lease ends), so no batch is posted twice at once.
    let lease_seconds = (options.budget + options.timeout).as_secs_f64() + 5.0;
    let mut due = c.query_typed(
        "UPDATE mailrun.webhook_endpoints SET next_attempt_at = now() + make_interval(secs => $1)
         WHERE id IN (
             SELECT e.id FROM mailrun.webhook_endpoints e
             WHERE e.next_attempt_at <= now()
               AND EXISTS (SELECT 1 FROM mailrun.webhook_deliveries d WHERE d.endpoint_id = e.id)
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
        &[(&lease_seconds, Type::FLOAT8)],
    )?;
    due.sort_by_key(|r| r.get::<_, i64>(0));
    let mut reports: Vec<EndpointDelivery> = due
        .iter()
        .map(|r| EndpointDelivery {
            id: r.get(0),
            ..Default::default()
        })
        .collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, Batch, Result<(), String>)>();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut waiting: std::collections::VecDeque<usize> = (0..reports.len()).collect();
        let mut in_flight = 0usize;
        loop {
            // Start posts while there is room and budget.
            while in_flight < options.parallel.max(1) {
                let left = options.budget.saturating_sub(start.elapsed());
                if left.is_zero() {
                    break;
                }
                let Some(i) = waiting.pop_front() else {
                    break;
                };
                let Some(batch) = next_batch(c, reports[i].id, options.batch)? else {
                    continue;
                };
                let timeout = options.timeout.min(left);
                let tx = done_tx.clone();
                in_flight += 1;
                reports[i].posts += 1;
                scope.spawn(move || {
                    let outcome = post(client, &batch.url, &batch.secret, &batch.body, timeout);
                    let _ = tx.send((i, batch, outcome));
                });
            }
            if in_flight == 0 {
                return Ok(());
            }
            // Every post ends by its timeout, which the budget bounds.
            let Ok((i, batch, outcome)) = done_rx.recv() else {
                return Ok(());
            };
            in_flight -= 1;
            match outcome {
                Ok(()) => {
                    accepted(c, &batch)?;
                    reports[i].delivered += i64::try_from(batch.event_ids.len()).unwrap_or(0);
                    waiting.push_back(i);
                }
                Err(error) => {
                    refused(c, batch.endpoint_id, &error)?;
                    reports[i].error = Some(error);
                }
            }
        }
    })?;
    for report in &mut reports {
        if report.error.is_none() {
            // Released: the next tick goes on where this one stopped.
            c.query_typed(
                "UPDATE mailrun.webhook_endpoints SET next_attempt_at = now() WHERE id = $1",
                &[(&report.id, Type::INT8)],
            )?;
        }
        report.pending = c
            .query_typed_one(
                "SELECT count(*) FROM mailrun.webhook_deliveries WHERE endpoint_id = $1",
                &[(&report.id, Type::INT8)],
            )?
            .get(0);
        report.out_of_budget = report.error.is_none() && report.pending > 0;
    }
    Ok(reports)
}

/// The oldest pending events of an endpoint as one post's body.
fn next_batch(
    c: &mut impl GenericClient,
    endpoint: i64,
    limit: i64,
) -> anyhow::Result<Option<Batch>> {
    let rows = c.query_typed(
        "SELECT e.url, e.secret, v.id, v.message_id, v.recipient, v.state, v.smtp_code,
                v.enhanced_status, v.text, v.attempted_at, v.created_at
         FROM mailrun.webhook_endpoints e
         JOIN mailrun.webhook_deliveries d ON d.endpoint_id = e.id
         JOIN mailrun.webhook_events v ON v.id = d.event_id
         WHERE e.id = $1 ORDER BY d.event_id LIMIT $2",
        &[(&endpoint, Type::INT8), (&limit, Type::INT8)],
    )?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let secret: Vec<u8> = first.get(1);
    let events: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<_, i64>(2),
                "message_id": r.get::<_, i64>(3),
                "recipient": r.get::<_, Option<String>>(4),
                "state": r.get::<_, String>(5),
                "smtp_code": r.get::<_, Option<i32>>(6),
                "enhanced_status": r.get::<_, Option<String>>(7),
                "text": r.get::<_, Option<String>>(8),
                "attempted_at": r.get::<_, Option<DateTime<Utc>>>(9),
                "created_at": r.get::<_, DateTime<Utc>>(10),
            })
        })
        .collect();
    let body = json!({"endpoint_id": endpoint, "events": events});
    Ok(Some(Batch {
        endpoint_id: endpoint,
        url: first.get(0),
        secret: secret_text(&secret),
        event_ids: rows.iter().map(|r| r.get(2)).collect(),
        body: serde_json::to_vec(&body)?,
    }))
}

fn accepted(c: &mut impl GenericClient, batch: &Batch) -> anyhow::Result<()> {
    c.query_typed(
        "DELETE FROM mailrun.webhook_deliveries WHERE endpoint_id = $1 AND event_id = ANY ($2)",
        &[
            (&batch.endpoint_id, Type::INT8),
            (&batch.event_ids, Type::INT8_ARRAY),
        ],
    )?;
    c.query_typed(
        "UPDATE mailrun.webhook_endpoints SET failures = 0, last_success_at = now()
         WHERE id = $1",
        &[(&batch.endpoint_id, Type::INT8)],
    )?;
    Ok(())
}

/// A failed post: the endpoint waits 2^failures seconds (capped) before the next one.
fn refused(c: &mut impl GenericClient, endpoint: i64, error: &str) -> anyhow::Result<()> {
    let error: String = error.chars().take(300).collect();
    c.query_typed(
        "UPDATE mailrun.webhook_endpoints SET failures = failures + 1,
             next_attempt_at = now() + make_interval(secs =>
                 least($3::bigint, power(2, least(failures + 1, 30))::bigint)),
             last_error = $2, last_error_at = now()
         WHERE id = $1",
        &[
            (&endpoint, Type::INT8),
            (&error, Type::TEXT),
            (&MAX_BACKOFF_SECONDS, Type::INT8),
        ],
    )?;
    Ok(())
}

/// Sends a test event (not stored) to one endpoint, signed like the real ones.
pub fn test(
    c: &mut impl GenericClient,
    client: &Client,
    id: i64,
    timeout: Duration,
) -> anyhow::Result<Option<Result<(), String>>> {
    let rows = c.query_typed(
        "SELECT url, secret FROM mailrun.webhook_endpoints WHERE id = $1",
        &[(&id, Type::INT8)],
    )?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let secret: Vec<u8> = row.get(1);
    let body = json!({"endpoint_id": id, "test": true, "events": []});
    Ok(Some(post(
        client,
        &row.get::<_, String>(0),
        &secret_text(&secret),
        &serde_json::to_vec(&body)?,
        timeout,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse() {
        assert_eq!(
            parse_events("sent, failed,sent").unwrap(),
            ["sent", "failed"]
        );
        assert_eq!(parse_events("all").unwrap().len(), EVENT_KINDS.len());
        assert!(parse_events("leased").is_err());
        assert!(parse_events(",").is_err());
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // Python: hmac.new(b"whsec_k", b"1700000000.{}", hashlib.sha256).hexdigest()
        let sig = signature("whsec_k", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "v1=8b20524faff2b12e1089e404a8cf60fbe577e5320e899ebff7329ebbcb9ada22"
        );
        assert_ne!(sig, signature("whsec_k", 1_700_000_001, b"{}"));
    }
}
