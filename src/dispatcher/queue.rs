//! The message queue, over the stored procedures of `migrations/` (docs/queue.md).
//!
//! Every function takes a `GenericClient`, so callers choose the transaction: the SOAP
//! endpoint applies a runner's results and claims its next batch in one transaction.

use crate::dispatcher::typed::params;
use base64::Engine as _;
use postgres::error::SqlState;
use postgres::types::Type;
use postgres::GenericClient;
use serde_json::{json, Value};

use crate::protocol::{
    Acknowledgement, Attachment, Header, JobRun, MessageResult, OutboundMessage, SmtpAccount,
};

/// Messages per `mailrun.enqueue_many` call in a bulk enqueue (all in one transaction).
pub const ENQUEUE_CHUNK: usize = 5000;

/// Why an enqueue was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// The message is invalid; `position` is its 0-based index in the slice given.
    #[error("{message}")]
    Invalid {
        position: Option<usize>,
        message: String,
    },
    #[error(transparent)]
    Database(#[from] postgres::Error),
}

/// What `mailrun.apply_result` did with one reported result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyStatus {
    /// Matched the current lease; the message moved on.
    Applied,
    /// Already recorded earlier; nothing changed.
    Duplicate,
    /// Recorded, but the lease had been replaced or the message finished.
    Late,
    /// No such message (purged); nothing recorded.
    Unknown,
    /// The runner was never given that lease token; nothing recorded.
    Rejected,
}

impl ApplyStatus {
    fn parse(s: &str) -> anyhow::Result<ApplyStatus> {
        Ok(match s {
            "applied" => ApplyStatus::Applied,
            "duplicate" => ApplyStatus::Duplicate,
            "late" => ApplyStatus::Late,
            "unknown" => ApplyStatus::Unknown,
            "rejected" => ApplyStatus::Rejected,
            other => anyhow::bail!("mailrun.apply_result returned {other:?}"),
        })
    }
}

/// Enqueues one message (the JSON object documented in docs/queue.md); its id.
pub fn enqueue(c: &mut impl GenericClient, message: &Value) -> Result<i64, EnqueueError> {
    let row = c
        .query_typed_one("SELECT mailrun.enqueue($1)", &params(&[message]))
        .map_err(invalid_or_db)?;
    Ok(row.get(0))
}

/// Enqueues many messages in chunks of [`ENQUEUE_CHUNK`]; their ids in order. Atomic
/// only inside a transaction: call it on one (as `dispatch-admin enqueue --jsonl` does).
pub fn enqueue_many(
    c: &mut impl GenericClient,
    messages: &[Value],
) -> Result<Vec<i64>, EnqueueError> {
    let mut ids = Vec::with_capacity(messages.len());
    for (chunk_no, chunk) in messages.chunks(ENQUEUE_CHUNK).enumerate() {
        let array = Value::Array(chunk.to_vec());
        let rows = c
            .query_typed("SELECT * FROM mailrun.enqueue_many($1)", &params(&[&array]))
            .map_err(|e| match invalid_or_db(e) {
                EnqueueError::Invalid { position, message } => EnqueueError::Invalid {
                    position: position.map(|p| chunk_no * ENQUEUE_CHUNK + p),
                    message,
                },
                other => other,
            })?;
        ids.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    Ok(ids)
}

/// An invalid_parameter_value from the procedures becomes `Invalid`, with the position
/// from DETAIL "position N" (1-based there, 0-based here) and the message without its
/// "message N: " prefix; another data exception becomes `Invalid` without a position.
fn invalid_or_db(e: postgres::Error) -> EnqueueError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == SqlState::INVALID_PARAMETER_VALUE {
            let position = db
                .detail()
                .and_then(|d| d.strip_prefix("position "))
                .and_then(|n| n.parse::<usize>().ok())
                .and_then(|n| n.checked_sub(1));
            let message = match position {
                Some(p) => db
                    .message()
                    .strip_prefix(&format!("message {}: ", p + 1))
                    .unwrap_or(db.message())
                    .to_string(),
                None => db.message().to_string(),
            };
            return EnqueueError::Invalid { position, message };
        }
        // Any other data exception (class 22, e.g. 22P05 for a \u0000 the JSON carried)
        // is the input's fault too: bad data, not an internal error.
        if db.code().code().starts_with("22") {
            return EnqueueError::Invalid {
                position: None,
                message: match db.detail() {
                    Some(detail) => format!("{}: {detail}", db.message()),
                    None => db.message().to_string(),
                },
            };
        }
    }
    EnqueueError::Database(e)
}

/// Leases up to `limit` due messages to `runner_id` for `lease_seconds` (the runner's
/// batch_size caps it). An empty JobRun when nothing is due or the runner is unknown or
/// disabled.
pub fn claim_batch(
    c: &mut impl GenericClient,
    runner_id: &str,
    limit: u32,
    lease_seconds: u32,
) -> anyhow::Result<JobRun> {
    let limit = i32::try_from(limit.max(1)).unwrap_or(i32::MAX);
    let lease = i32::try_from(lease_seconds).unwrap_or(i32::MAX);
    // query_typed: one round trip, no statement to prepare and close per claim.
    let rows = c.query_typed(
        "SELECT b.job_run_id, b.message_id, b.lease_token, b.message_id_header, b.from_addr,
                b.reply_to, b.to_addrs, b.cc_addrs, b.bcc_addrs, b.subject, b.text_body,
                b.html_body, b.headers, b.attachments, b.account_name, b.account_host,
                b.account_port, b.account_security, b.account_username, b.account_password,
                b.account_max_connections
         FROM mailrun.claim_batch($1, $2, $3) b",
        &[
            (&runner_id, Type::TEXT),
            (&limit, Type::INT4),
            (&lease, Type::INT4),
        ],
    )?;
    let mut run = JobRun {
        job_run_id: String::new(),
        lease_seconds,
        acknowledged: Vec::new(),
        messages: Vec::with_capacity(rows.len()),
    };
    for row in rows {
        let job: uuid::Uuid = row.get(0);
        run.job_run_id = job.to_string();
        let id: i64 = row.get(1);
        let token: uuid::Uuid = row.get(2);
        let headers: Value = row.get(12);
        let attachments: Value = row.get(13);
        let port: i32 = row.get(16);
        let security: String = row.get(17);
        run.messages.push(OutboundMessage {
            id,
            lease_token: token.to_string(),
            message_id_header: row.get(3),
            account: SmtpAccount {
                name: row.get(14),
                host: row.get(15),
                port: u16::try_from(port)
                    .map_err(|_| anyhow::anyhow!("message {id}: account port {port} invalid"))?,
                security: security.parse().map_err(anyhow::Error::msg)?,
                username: row.get(18),
                password: row.get(19),
                // The account's cap on sessions travels with it (docs/runner.md).
                max_connections: row
                    .get::<_, Option<i32>>(20)
                    .and_then(|n| u32::try_from(n).ok()),
            },
            from: row.get(4),
            reply_to: row.get(5),
            to: row.get(6),
            cc: row.get(7),
            bcc: row.get(8),
            subject: row.get(9),
            text_body: row.get(10),
            html_body: row.get(11),
            headers: headers_from_json(&headers)
                .map_err(|e| anyhow::anyhow!("message {id}: {e}"))?,
            attachments: attachments_from_json(&attachments)
                .map_err(|e| anyhow::anyhow!("message {id}: {e}"))?,
        });
    }
    if run.messages.is_empty() {
        // Nothing was leased: an empty JobRun carries no lease.
        run.lease_seconds = 0;
    }
    Ok(run)
}

fn headers_from_json(v: &Value) -> anyhow::Result<Vec<Header>> {
    let list = v
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("headers are not a list"))?;
    list.iter()
        .map(|h| {
            let name = h.get("name").and_then(Value::as_str);
            let value = h.get("value").and_then(Value::as_str);
            match (name, value) {
                (Some(name), Some(value)) => Ok(Header {
                    name: name.to_string(),
                    value: value.to_string(),
                }),
                _ => anyhow::bail!("a stored header is malformed"),
            }
        })
        .collect()
}

fn attachments_from_json(v: &Value) -> anyhow::Result<Vec<Attachment>> {
    let list = v
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("attachments are not a list"))?;
    list.iter()
        .map(|a| {
            let field = |k: &str| {
                a.get(k)
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow::anyhow!("a stored attachment lacks {k}"))
            };
            Ok(Attachment {
                filename: field("filename")?.to_string(),
                content_type: field("content_type")?.to_string(),
                data: base64::engine::general_purpose::STANDARD
                    .decode(field("data")?)
                    .map_err(|e| anyhow::anyhow!("a stored attachment is not base64: {e}"))?,
            })
        })
        .collect()
}

/// The JSON form `mailrun.apply_result` takes.
pub fn result_json(r: &MessageResult) -> Value {
    json!({
        "job_run_id": r.job_run_id,
        "message_id": r.message_id,
        "lease_token": r.lease_token,
        "outcome": r.outcome.as_str(),
        "smtp_code": r.smtp_code,
        "enhanced_status": r.enhanced_status,
        "text": r.text,
        "attempted_at": r.attempted_at.to_rfc3339(),
        "recipients": r.recipients.iter().map(|p| json!({
            "address": p.address,
            "outcome": p.outcome.as_str(),
            "smtp_code": p.smtp_code,
            "enhanced_status": p.enhanced_status,
            "text": p.text,
        })).collect::<Vec<_>>(),
    })
}

/// Results applied per statement: bounds the JSON parameter (a result is at most a few
/// KB) while keeping round trips few.
const APPLY_CHUNK: usize = 500;

/// Records each result (idempotent: a repeated report changes nothing) and returns what
/// happened to each, in order.
pub fn apply_results_detailed(
    c: &mut impl GenericClient,
    runner_id: &str,
    results: &[MessageResult],
) -> anyhow::Result<Vec<(Acknowledgement, ApplyStatus)>> {
    // Lock messages in id order so two transactions reporting on the same messages (a
    // late report racing the current lease's) cannot deadlock.
    let mut order: Vec<usize> = (0..results.len()).collect();
    order.sort_by_key(|&i| results[i].message_id);
    let mut statuses = vec![ApplyStatus::Unknown; results.len()];
    // One round trip per chunk instead of one per result (mailrun.apply_results).
    for chunk in order.chunks(APPLY_CHUNK) {
        let batch = Value::Array(chunk.iter().map(|&i| result_json(&results[i])).collect());
        let rows = c.query_typed(
            "SELECT n, status FROM mailrun.apply_results($1, $2::jsonb)",
            &params(&[&runner_id, &batch]),
        )?;
        if rows.len() != chunk.len() {
            anyhow::bail!(
                "mailrun.apply_results answered {} of {} results",
                rows.len(),
                chunk.len()
            );
        }
        for row in rows {
            let n: i64 = row.get(0);
            let status: String = row.get(1);
            let i = usize::try_from(n - 1)
                .ok()
                .and_then(|k| chunk.get(k))
                .ok_or_else(|| anyhow::anyhow!("mailrun.apply_results: no result {n}"))?;
            statuses[*i] = ApplyStatus::parse(&status)?;
        }
    }
    Ok(results
        .iter()
        .zip(statuses)
        .map(|(r, status)| {
            (
                Acknowledgement {
                    message_id: r.message_id,
                    lease_token: r.lease_token.clone(),
                },
                status,
            )
        })
        .collect())
}

/// Records each result and acknowledges every one the dispatcher has settled: applied,
/// duplicate, late, and also unknown or rejected ones (they can never apply; keeping them
/// on the runner would only resend them forever).
pub fn apply_results(
    c: &mut impl GenericClient,
    runner_id: &str,
    results: &[MessageResult],
) -> anyhow::Result<Vec<Acknowledgement>> {
    Ok(apply_results_detailed(c, runner_id, results)?
        .into_iter()
        .map(|(ack, _)| ack)
        .collect())
}

/// Ends the leases of `runner`'s batches that its request does not list as held (their
/// answer was lost on the way): the reap that follows re-queues them. How many messages.
pub fn release_lost_batches(
    c: &mut impl GenericClient,
    runner: &str,
    held: &[String],
) -> anyhow::Result<u64> {
    let n: i64 = c
        .query_typed_one(
            "SELECT mailrun.release_lost_batches($1, $2)",
            &[(&runner, Type::TEXT), (&held, Type::TEXT_ARRAY)],
        )?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Returns messages with an expired lease to the queue; how many.
pub fn reap_expired(c: &mut impl GenericClient) -> anyhow::Result<u64> {
    // query_typed: one round trip (no separate prepare); dispatch-tick runs this each time.
    let n: i64 = c
        .query_typed_one("SELECT mailrun.reap_expired()", &[])?
        .get(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The states of a message (`mailrun.messages.state`), in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Queued,
    Leased,
    Deferred,
    Sent,
    Failed,
    Cancelled,
    Expired,
    /// DATA was sent and no answer came: never retried silently (docs/quotas.md).
    Unknown,
}

impl MessageState {
    pub const ALL: [MessageState; 8] = [
        MessageState::Queued,
        MessageState::Leased,
        MessageState::Deferred,
        MessageState::Sent,
        MessageState::Failed,
        MessageState::Cancelled,
        MessageState::Expired,
        MessageState::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Queued => "queued",
            MessageState::Leased => "leased",
            MessageState::Deferred => "deferred",
            MessageState::Sent => "sent",
            MessageState::Failed => "failed",
            MessageState::Cancelled => "cancelled",
            MessageState::Expired => "expired",
            MessageState::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for MessageState {
    type Err = String;

    fn from_str(s: &str) -> Result<MessageState, String> {
        MessageState::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown message state {s:?}"))
    }
}

/// Messages due now, counted up to `bound` (the answer is `bound` when at least that
/// many are due): the cost does not grow with the queue.
pub fn count_due_upto(c: &mut impl GenericClient, bound: i64) -> anyhow::Result<i64> {
    Ok(c.query_typed_one(
        "SELECT count(*) FROM (SELECT 1 FROM mailrun.messages
                               WHERE state IN ('queued', 'deferred') AND next_attempt_at <= now()
                               LIMIT $1) due",
        &[(&bound, Type::INT8)],
    )?
    .get(0))
}

/// Messages due now.
pub fn count_due(c: &mut impl GenericClient) -> anyhow::Result<i64> {
    Ok(c.query_typed_one("SELECT mailrun.count_due()", &[])?.get(0))
}

/// Remembers a request nonce; false when it was seen before (a replay). `timestamp` is
/// the signed timestamp; the signature check has already bounded it to ±300 s, so the
/// database keeps nonces 15 minutes after it first saw them.
pub fn remember_nonce(
    c: &mut impl GenericClient,
    key_id: &str,
    nonce: &str,
    timestamp: i64,
) -> anyhow::Result<bool> {
    let _ = timestamp;
    Ok(c.query_typed_one(
        "SELECT mailrun.remember_nonce($1, $2)",
        &params(&[&key_id, &nonce]),
    )?
    .get(0))
}

/// Cancels a message; its state before. Errors (not found, already finished) are
/// `CliError`s with EXIT_DATA.
pub fn cancel(c: &mut impl GenericClient, id: i64) -> anyhow::Result<String> {
    one_text(c, "SELECT mailrun.cancel($1)", id)
}

/// Makes a message due again now; its state before.
pub fn retry(c: &mut impl GenericClient, id: i64) -> anyhow::Result<String> {
    one_text(c, "SELECT mailrun.retry($1)", id)
}

fn one_text(c: &mut impl GenericClient, sql: &str, id: i64) -> anyhow::Result<String> {
    match c.query_typed_one(sql, &params(&[&id])) {
        Ok(row) => Ok(row.get(0)),
        Err(e) => match e.as_db_error() {
            Some(db)
                if *db.code() == SqlState::INVALID_PARAMETER_VALUE
                    || *db.code() == SqlState::NO_DATA_FOUND =>
            {
                Err(crate::cli::CliError::new(crate::cli::EXIT_DATA, db.message()).into())
            }
            _ => Err(e.into()),
        },
    }
}

/// Deletes finished messages older than `age_seconds`; how many.
pub fn purge(c: &mut impl GenericClient, age_seconds: i64) -> anyhow::Result<i64> {
    Ok(c.query_typed_one(
        "SELECT mailrun.purge(make_interval(secs => $1::bigint::float8))",
        &params(&[&age_seconds]),
    )?
    .get(0))
}
