//! `/api/v1/messages`: queue one or a batch, list with keyset paging, one message with
//! its attempts, cancel.

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::Transaction;
use serde_json::{json, Value};

use super::problem::{pointer_token, Problem};
use super::{internal, query_pairs, Context};
use crate::dispatcher::intake::{field_of, Intake};
use crate::dispatcher::listing::{self, Cursor, Filter};
use crate::dispatcher::queue::{self, EnqueueError};
use crate::dispatcher::retry::Policy;
use crate::dispatcher::{connection, stats};
use crate::schedule::when;
use crate::schedule::Zone;

/// The most messages one batch may carry (the body limit applies too).
pub const MAX_BATCH: usize = 1000;

/// Fields of a request body besides the message's own.
const TIME_ZONE: &str = "time_zone";

/// The problem for a message refused at `base` (a JSON pointer prefix).
fn refused(base: &str, error: &str) -> (String, String) {
    let pointer = match field_of(error) {
        Some(f) => format!("{base}/{}", pointer_token(f)),
        None => base.to_string(),
    };
    (pointer, error.to_string())
}

/// The time zone for natural send-at phrases: the body's, else the config's, else UTC.
fn time_zone(ctx: &Context, body: &mut Value, pointer: &str) -> Result<Zone, Problem> {
    let given = body.as_object_mut().and_then(|o| o.remove(TIME_ZONE));
    match given {
        Some(Value::String(name)) => {
            when::parse_time_zone(&name).map_err(|e| Problem::invalid(pointer, e.to_string()))
        }
        Some(Value::Null) | None => match &ctx.config.time_zone {
            Some(name) => when::parse_time_zone(name).map_err(internal),
            None => Ok(Zone::UTC),
        },
        Some(_) => Err(Problem::invalid(pointer, "\"time_zone\" must be a string")),
    }
}

fn intake<'a>(tx: &mut Transaction, ctx: &Context<'a>) -> Result<Intake<'a>, Problem> {
    let policy = Policy::load(tx).map_err(internal)?;
    Ok(Intake {
        defaults: &ctx.config.defaults,
        max_message_bytes: policy.max_message_bytes,
        now: connection::db_now(tx).map_err(internal)?,
    })
}

fn enqueue_refusal(e: EnqueueError, base: &str) -> Problem {
    match e {
        EnqueueError::Invalid { position, message } => {
            let base = match position {
                Some(p) if base.ends_with("/messages") => format!("{base}/{p}"),
                _ => base.to_string(),
            };
            let (pointer, detail) = refused(&base, &message);
            Problem::invalid(pointer, detail)
        }
        EnqueueError::Database(e) => internal(e),
    }
}

pub(super) fn enqueue_one(
    tx: &mut Transaction,
    ctx: &Context,
    mut body: Value,
) -> Result<(u16, Value), Problem> {
    if !body.is_object() {
        return Err(Problem::invalid(
            "",
            "the body must be a JSON object (one message)",
        ));
    }
    let tz = time_zone(ctx, &mut body, "/time_zone")?;
    let prepared = intake(tx, ctx)?.complete(body, tz).map_err(|e| {
        let (pointer, detail) = refused("", &e);
        Problem::invalid(pointer, detail)
    })?;
    let id = queue::enqueue(tx, &prepared.message).map_err(|e| enqueue_refusal(e, ""))?;
    let send_at: chrono::DateTime<chrono::Utc> = tx
        .query_typed_one(
            "SELECT send_at FROM mailrun.messages WHERE id = $1",
            &[(&id, Type::INT8)],
        )
        .map_err(internal)?
        .get(0);
    Ok((
        201,
        json!({"id": id, "state": "queued", "send_at": send_at,
               "send_at_read_as": prepared.send_at_read_as}),
    ))
}

pub(super) fn enqueue_batch(
    tx: &mut Transaction,
    ctx: &Context,
    mut body: Value,
) -> Result<(u16, Value), Problem> {
    if !body.is_object() {
        return Err(Problem::invalid(
            "",
            "the body must be a JSON object: {\"messages\": [...]}",
        ));
    }
    let tz = time_zone(ctx, &mut body, "/time_zone")?;
    let Some(Value::Array(list)) = body.as_object_mut().and_then(|o| o.remove("messages")) else {
        return Err(Problem::invalid(
            "/messages",
            "\"messages\" must be an array of message objects",
        ));
    };
    if let Some(k) = body.as_object().and_then(|o| o.keys().next()) {
        return Err(Problem::invalid(
            format!("/{}", pointer_token(k)),
            format!("unknown field \"{k}\" (a batch has \"messages\" and \"time_zone\")"),
        ));
    }
    if list.is_empty() || list.len() > MAX_BATCH {
        return Err(Problem::invalid(
            "/messages",
            format!(
                "a batch holds 1 to {MAX_BATCH} messages, this one {}",
                list.len()
            ),
        ));
    }
    let intake = intake(tx, ctx)?;
    let mut messages = Vec::with_capacity(list.len());
    let mut errors = Vec::new();
    for (i, m) in list.into_iter().enumerate() {
        if !m.is_object() {
            errors.push((format!("/messages/{i}"), "not a message object".to_string()));
            continue;
        }
        match intake.complete(m, tz) {
            Ok(p) => messages.push(p.message),
            Err(e) => errors.push(refused(&format!("/messages/{i}"), &e)),
        }
    }
    if !errors.is_empty() {
        let mut p = Problem::new(
            422,
            "invalid-input",
            "Invalid input",
            format!(
                "{} of the batch's messages are invalid; nothing was queued",
                errors.len()
            ),
        );
        p.errors = errors.into_iter().take(100).collect();
        return Err(p);
    }
    let ids = queue::enqueue_many(tx, &messages).map_err(|e| enqueue_refusal(e, "/messages"))?;
    Ok((201, json!({"count": ids.len(), "ids": ids})))
}

pub(super) fn list(tx: &mut Transaction, ctx: &Context) -> Result<(u16, Value), Problem> {
    let mut filter = Filter::default();
    let mut cursor = None;
    let mut limit = 100;
    for (k, v) in query_pairs(ctx.query)? {
        let bad = |detail: String| Problem::invalid(format!("query:{k}"), detail);
        let time = |v: &str| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| bad(format!("{k}: want an RFC 3339 time ({e})")))
        };
        match k.as_str() {
            "state" => filter.state = Some(v.parse().map_err(bad)?),
            "account" => filter.account = Some(v),
            "domain" => filter.domain = Some(v),
            "send_after" => filter.send_after = Some(time(&v)?),
            "send_before" => filter.send_before = Some(time(&v)?),
            "recurring_job" => {
                filter.recurring_job =
                    Some(v.parse().map_err(|_| bad("want a job id".to_string()))?)
            }
            "cursor" => cursor = Some(Cursor::decode(&v).map_err(bad)?),
            "limit" => {
                limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=listing::MAX_PAGE).contains(n))
                    .ok_or_else(|| bad(format!("want 1 to {}", listing::MAX_PAGE)))?
            }
            _ => return Err(bad(format!("unknown query parameter {k:?}"))),
        }
    }
    let (rows, next) = listing::page(tx, &filter, cursor, limit).map_err(internal)?;
    Ok((
        200,
        json!({
            "messages": rows.iter().map(listing::Listed::to_json).collect::<Vec<_>>(),
            "next_cursor": next.map(|c| c.encode()),
        }),
    ))
}

pub(super) fn get(tx: &mut Transaction, id: i64) -> Result<(u16, Value), Problem> {
    let (message, attempts) = stats::message_detail(tx, id)
        .map_err(internal)?
        .ok_or_else(|| Problem::not_found(format!("no message {id}")))?;
    Ok((200, json!({"message": message, "attempts": attempts})))
}

pub(super) fn cancel(tx: &mut Transaction, id: i64) -> Result<(u16, Value), Problem> {
    match tx.query_typed_one("SELECT mailrun.cancel($1)", &[(&id, Type::INT8)]) {
        Ok(row) => {
            let was: String = row.get(0);
            Ok((200, json!({"id": id, "state": "cancelled", "was": was})))
        }
        Err(e) => match e.as_db_error() {
            Some(db) if *db.code() == SqlState::NO_DATA_FOUND => {
                Err(Problem::not_found(db.message().to_string()))
            }
            Some(db) if *db.code() == SqlState::INVALID_PARAMETER_VALUE => Err(Problem::new(
                409,
                "conflict",
                "Conflict",
                db.message().to_string(),
            )),
            _ => Err(internal(e)),
        },
    }
}
