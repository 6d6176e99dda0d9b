//! What the queue holds now, read for `dispatch-admin status`, `show` and the status
//! page: counts by state, what is due or scheduled, one message in full, recent
//! attempts. Only reads; the callers render.

use crate::dispatcher::typed::params;
use chrono::{DateTime, Utc};
use postgres::types::Type;
use postgres::GenericClient;
use serde_json::{json, Value};

use crate::dispatcher::queue::MessageState;
use crate::protocol::Outcome;

/// Messages per state, every state listed (zero when none), in display order.
pub fn counts_by_state(c: &mut impl GenericClient) -> anyhow::Result<Vec<(MessageState, i64)>> {
    let mut counts: Vec<(MessageState, i64)> = MessageState::ALL.iter().map(|s| (*s, 0)).collect();
    for row in c.query_typed(
        "SELECT state, count(*) FROM mailrun.messages GROUP BY state",
        &[],
    )? {
        let state: MessageState = row
            .get::<_, String>(0)
            .parse()
            .map_err(anyhow::Error::msg)?;
        if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == state) {
            entry.1 = row.get(1);
        }
    }
    Ok(counts)
}

/// Messages in one state.
pub fn count_in_state(c: &mut impl GenericClient, state: MessageState) -> anyhow::Result<i64> {
    Ok(c.query_typed_one(
        "SELECT count(*) FROM mailrun.messages WHERE state = $1",
        &params(&[&state.as_str()]),
    )?
    .get(0))
}

/// The message due longest (id, due since), if any.
pub fn oldest_due(c: &mut impl GenericClient) -> anyhow::Result<Option<(i64, DateTime<Utc>)>> {
    Ok(c.query_typed_opt(
        "SELECT id, next_attempt_at FROM mailrun.messages
         WHERE state IN ('queued', 'deferred') AND next_attempt_at <= now()
         ORDER BY next_attempt_at, id LIMIT 1",
        &[],
    )?
    .map(|r| (r.get(0), r.get(1))))
}

/// Finished messages a purge keeps for an operator's review.
pub fn held_for_review(c: &mut impl GenericClient) -> anyhow::Result<i64> {
    Ok(c.query_typed_one(
        "SELECT count(*) FROM mailrun.messages WHERE held_for_review",
        &[],
    )?
    .get(0))
}

/// A message queued for a later time.
pub struct Scheduled {
    pub id: i64,
    pub send_at: DateTime<Utc>,
    pub recipients: String,
    pub subject: String,
    pub recurring_job_id: Option<i64>,
}

/// How many messages are scheduled after `now`, and the `limit` soonest after the
/// `(send_at, id)` given (keyset paging: any page costs what the first does).
pub fn scheduled(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: i64,
) -> anyhow::Result<(i64, Vec<Scheduled>)> {
    let total: i64 = c
        .query_typed_one(
            "SELECT count(*) FROM mailrun.messages
             WHERE state = 'queued' AND attempts = 0 AND send_at > $1",
            &[(&now, Type::TIMESTAMPTZ)],
        )?
        .get(0);
    let (after_at, after_id) = (after.map(|a| a.0), after.map(|a| a.1));
    let rows = c
        .query_typed(
            "SELECT id, send_at, array_to_string(to_addrs || cc_addrs || bcc_addrs, ', '),
                    subject, recurring_job_id
             FROM mailrun.messages
             WHERE state = 'queued' AND attempts = 0 AND send_at > $1
               AND ($3::timestamptz IS NULL OR (send_at, id) > ($3, $4))
             ORDER BY send_at, id LIMIT $2",
            &[
                (&now, Type::TIMESTAMPTZ),
                (&limit, Type::INT8),
                (&after_at, Type::TIMESTAMPTZ),
                (&after_id, Type::INT8),
            ],
        )?
        .iter()
        .map(|r| Scheduled {
            id: r.get(0),
            send_at: r.get(1),
            recipients: r.get(2),
            subject: r.get(3),
            recurring_job_id: r.get(4),
        })
        .collect();
    Ok((total, rows))
}

/// The newest runner config version (None before the first `push-config set`).
pub fn latest_config_version(c: &mut impl GenericClient) -> anyhow::Result<Option<i64>> {
    Ok(
        c.query_typed_one("SELECT max(version) FROM mailrun.config_versions", &[])?
            .get(0),
    )
}

/// One recipient's outcome in an attempt (the attempt's own answer when the runner gave
/// no per-recipient answers).
pub struct RecentAttempt {
    pub attempted_at: DateTime<Utc>,
    pub message_id: i64,
    pub runner_id: String,
    pub recipient: String,
    pub outcome: String,
    pub smtp_code: Option<i32>,
    pub enhanced_status: Option<String>,
    pub text: Option<String>,
}

/// The latest `limit` attempts with one of `outcomes`, newest first, per recipient where
/// the runner gave per-recipient answers.
pub fn recent_attempts(
    c: &mut impl GenericClient,
    outcomes: &[Outcome],
    limit: i64,
) -> anyhow::Result<Vec<RecentAttempt>> {
    let outcomes: Vec<&str> = outcomes.iter().map(|o| o.as_str()).collect();
    Ok(c.query_typed(
        "SELECT a.attempted_at, a.message_id, a.runner_id,
                coalesce(r->>'address', array_to_string(m.to_addrs || m.cc_addrs || m.bcc_addrs, ', ')),
                coalesce(r->>'outcome', a.outcome),
                CASE WHEN r IS NULL THEN a.smtp_code
                     WHEN jsonb_typeof(r->'smtp_code') = 'number' THEN (r->>'smtp_code')::integer END,
                CASE WHEN r IS NULL THEN a.enhanced_status ELSE r->>'enhanced_status' END,
                CASE WHEN r IS NULL THEN a.text ELSE r->>'text' END
         FROM (SELECT * FROM mailrun.delivery_attempts d
               WHERE d.outcome = ANY ($2)
                  OR EXISTS (SELECT 1 FROM jsonb_array_elements(
                                 CASE WHEN jsonb_typeof(d.recipients) = 'array'
                                      THEN d.recipients ELSE '[]' END) e
                             WHERE e->>'outcome' = ANY ($2))
               ORDER BY d.attempted_at DESC, d.id DESC LIMIT $1) a
         JOIN mailrun.messages m ON m.id = a.message_id
         LEFT JOIN LATERAL jsonb_array_elements(
             CASE WHEN jsonb_typeof(a.recipients) = 'array' AND a.recipients <> '[]'
                  THEN a.recipients END) r ON true
         WHERE coalesce(r->>'outcome', a.outcome) = ANY ($2)
         ORDER BY a.attempted_at DESC, a.id DESC
         LIMIT $1",
        &params(&[&limit, &outcomes]),
    )?
    .iter()
    .map(|r| RecentAttempt {
        attempted_at: r.get(0),
        message_id: r.get(1),
        runner_id: r.get(2),
        recipient: r.get(3),
        outcome: r.get(4),
        smtp_code: r.get(5),
        enhanced_status: r.get(6),
        text: r.get(7),
    })
    .collect())
}

/// One message with every delivery attempt, as `dispatch-admin show` prints it (the JSON
/// shape is part of its `--json` output); None when there is no such message.
pub fn message_detail(
    c: &mut impl GenericClient,
    id: i64,
) -> anyhow::Result<Option<(Value, Vec<Value>)>> {
    let Some(row) = c.query_typed_opt(
        "SELECT m.id, m.state, a.name, m.from_addr, m.reply_to, m.to_addrs, m.cc_addrs,
                m.bcc_addrs, m.subject, m.message_id_header, m.size_bytes, m.created_at,
                m.send_at, m.next_attempt_at, m.expires_at, m.attempts, m.lease_runner,
                m.lease_expires_at, m.recipients_sent, m.recipients_failed, m.last_code,
                m.last_enhanced, m.last_text, m.finished_at, m.job_run_id::text,
                m.recurring_job_id, m.held_for_review,
                CASE WHEN m.held_until > now() THEN m.held_reason END,
                array(SELECT x.name FROM unnest(m.account_ids) WITH ORDINALITY u(id, i)
                      JOIN mailrun.smtp_accounts x ON x.id = u.id ORDER BY u.i)
         FROM mailrun.messages m JOIN mailrun.smtp_accounts a ON a.id = m.account_id
         WHERE m.id = $1",
        &params(&[&id]),
    )?
    else {
        return Ok(None);
    };
    let ts = |i: usize| row.get::<_, Option<DateTime<Utc>>>(i);
    let message = json!({
        "id": row.get::<_, i64>(0), "state": row.get::<_, String>(1),
        "account": row.get::<_, String>(2), "from": row.get::<_, String>(3),
        "reply_to": row.get::<_, Option<String>>(4), "to": row.get::<_, Vec<String>>(5),
        "cc": row.get::<_, Vec<String>>(6), "bcc": row.get::<_, Vec<String>>(7),
        "subject": row.get::<_, String>(8), "message_id": row.get::<_, String>(9),
        "size_bytes": row.get::<_, i64>(10), "created_at": ts(11), "send_at": ts(12),
        "next_attempt_at": ts(13), "expires_at": ts(14), "attempts": row.get::<_, i32>(15),
        "lease_runner": row.get::<_, Option<String>>(16), "lease_expires_at": ts(17),
        "recipients_sent": row.get::<_, Vec<String>>(18),
        "recipients_failed": row.get::<_, Vec<String>>(19),
        "last_code": row.get::<_, Option<i32>>(20),
        "last_enhanced": row.get::<_, Option<String>>(21),
        "last_text": row.get::<_, Option<String>>(22), "finished_at": ts(23),
        "job_run_id": row.get::<_, Option<String>>(24),
        "recurring_job_id": row.get::<_, Option<i64>>(25),
        "held_for_review": row.get::<_, bool>(26),
        "held": row.get::<_, Option<String>>(27),
        "failover_accounts": row.get::<_, Vec<String>>(28),
    });
    let attempts: Vec<Value> = c
        .query_typed(
            "SELECT attempted_at, recorded_at, runner_id, job_run_id::text, outcome, smtp_code,
                    enhanced_status, text, recipients, late
             FROM mailrun.delivery_attempts WHERE message_id = $1 ORDER BY recorded_at, id",
            &params(&[&id]),
        )?
        .iter()
        .map(|r| {
            json!({
                "attempted_at": r.get::<_, DateTime<Utc>>(0),
                "recorded_at": r.get::<_, DateTime<Utc>>(1),
                "runner": r.get::<_, String>(2), "job_run_id": r.get::<_, Option<String>>(3),
                "outcome": r.get::<_, String>(4), "smtp_code": r.get::<_, Option<i32>>(5),
                "enhanced_status": r.get::<_, Option<String>>(6),
                "text": r.get::<_, Option<String>>(7), "recipients": r.get::<_, Value>(8),
                "late": r.get::<_, bool>(9),
            })
        })
        .collect();
    Ok(Some((message, attempts)))
}
