//! `dispatch-admin status`, `show`, `cancel`, `retry` and `purge`: the queue's messages.

use serde_json::{json, Value};

use crate::cli::{CliError, EXIT_DATA, EXIT_OK};
use crate::dispatcher::queue;
use crate::dispatcher::{accounts, runners, stats};

use super::output::*;

pub(super) fn status(db: &mut postgres::Client, out: Output) -> anyhow::Result<u8> {
    let counts: serde_json::Map<String, Value> = stats::counts_by_state(db)?
        .into_iter()
        .map(|(state, n)| (state.as_str().to_string(), json!(n)))
        .collect();
    let due = queue::count_due(db)?;
    let oldest = stats::oldest_due(db)?;
    let list = runners::list(db)?;
    let (quota_value, quota_text) = super::quota::status_section(db)?;
    let account_problems: Vec<(String, String)> = accounts::list(db)?
        .iter()
        .filter_map(|a| accounts::clear_text_login(a).map(|p| (a.name.clone(), p)))
        .collect();
    // Only endpoints in trouble: a healthy one needs no attention.
    let failing: Vec<_> = crate::dispatcher::webhooks::list(db)?
        .into_iter()
        .filter(|w| w.failures > 0)
        .collect();
    let mut value = json!({
        "failing_webhooks": failing.iter().map(|w| json!({
            "id": w.id, "url": w.url, "failures": w.failures, "pending": w.pending,
            "last_error": w.last_error, "last_error_at": w.last_error_at,
            "next_attempt_at": w.next_attempt_at,
        })).collect::<Vec<_>>(),
        "account_problems": account_problems
            .iter()
            .map(|(name, problem)| json!({"account": name, "problem": problem}))
            .collect::<Vec<_>>(),
        "counts": counts,
        "due": due,
        "oldest_due": oldest.map(|(id, at)| json!({"id": id, "due_since": at})),
        "runners": list.iter().map(|r| json!({
            "id": r.id, "enabled": r.enabled, "last_seen": r.last_seen,
            "last_status": r.last_status, "software_version": r.software_version,
            "config_version": r.config_version,
        })).collect::<Vec<_>>(),
    });
    if let (Some(v), Value::Object(q)) = (value.as_object_mut(), quota_value) {
        v.extend(q);
    }
    out.listing(value, || {
        let mut s = String::new();
        for (k, v) in &counts {
            s.push_str(&format!("{k:<10} {v}\n"));
        }
        s.push_str(&format!("{:<10} {due}\n", "due now"));
        match oldest {
            Some((id, at)) => s.push_str(&format!(
                "oldest due: message {id}, due since {} ({})\n",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ago(Some(at))
            )),
            None => s.push_str("oldest due: -\n"),
        }
        s.push('\n');
        s.push_str(&super::runner::runner_table(&list));
        if !account_problems.is_empty() {
            s.push('\n');
            for (name, problem) in &account_problems {
                s.push_str(&format!("account {name}: {problem}\n"));
            }
        }
        if !quota_text.is_empty() {
            s.push('\n');
            s.push_str(&quota_text);
        }
        for w in &failing {
            s.push_str(&format!(
                "\nwebhook {} ({}): {} failed post(s), {} event(s) waiting: {}\n",
                w.id,
                w.url,
                w.failures,
                w.pending,
                w.last_error.as_deref().unwrap_or("-")
            ));
        }
        s
    });
    Ok(EXIT_OK)
}

pub(super) fn show(db: &mut postgres::Client, id: i64, out: Output) -> anyhow::Result<u8> {
    let (message, attempts) = stats::message_detail(db, id)?
        .ok_or_else(|| CliError::new(EXIT_DATA, format!("no message {id}")))?;
    let value = json!({"message": message, "attempts": attempts});
    out.listing(value, || show_text(&message, &attempts));
    Ok(EXIT_OK)
}

pub(super) fn show_text(m: &Value, attempts: &[Value]) -> String {
    let answer = |v: &Value| {
        let text = crate::dispatcher::report::smtp_answer(
            v["smtp_code"].as_i64(),
            v["enhanced_status"].as_str(),
            v["text"].as_str(),
        );
        if text.is_empty() {
            "-".to_string()
        } else {
            text
        }
    };
    let field = |v: &Value| match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".to_string(),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let mut s = String::new();
    for key in [
        "id",
        "state",
        "account",
        "from",
        "reply_to",
        "to",
        "cc",
        "bcc",
        "subject",
        "message_id",
        "size_bytes",
        "created_at",
        "send_at",
        "next_attempt_at",
        "expires_at",
        "attempts",
        "lease_runner",
        "lease_expires_at",
        "recipients_sent",
        "recipients_failed",
        "last_code",
        "last_enhanced",
        "last_text",
        "finished_at",
        "recurring_job_id",
        "held_for_review",
        "held",
        "failover_accounts",
    ] {
        s.push_str(&format!("{key:<18} {}\n", field(&m[key])));
    }
    s.push_str(&format!("\nattempts ({}):\n", attempts.len()));
    for a in attempts {
        s.push_str(&format!(
            "  {}  runner {}  {}{}  {}\n",
            field(&a["attempted_at"]),
            field(&a["runner"]),
            field(&a["outcome"]),
            if a["late"] == json!(true) {
                " (late, not applied)"
            } else {
                ""
            },
            answer(a),
        ));
        if let Some(list) = a["recipients"].as_array() {
            for r in list {
                s.push_str(&format!(
                    "      {}  {}  {}\n",
                    field(&r["address"]),
                    field(&r["outcome"]),
                    answer(r),
                ));
            }
        }
    }
    s
}

#[derive(Clone, Copy)]
pub(super) enum Op {
    Cancel,
    Retry,
}

pub(super) fn each(
    db: &mut postgres::Client,
    ids: &[i64],
    op: Op,
    out: Output,
) -> anyhow::Result<u8> {
    let verb = match op {
        Op::Cancel => "cancelled",
        Op::Retry => "retried",
    };
    // All or nothing: one bad id leaves every message as it was.
    let mut tx = db.transaction()?;
    let mut done = Vec::new();
    for &id in ids {
        let before = match op {
            Op::Cancel => queue::cancel(&mut tx, id)?,
            Op::Retry => queue::retry(&mut tx, id)?,
        };
        done.push((id, before));
    }
    tx.commit()?;
    out.result(
        json!({ verb: done.iter().map(|(id, was)| json!({"id": id, "was": was})).collect::<Vec<_>>() }),
        || {
            done.iter()
                .map(|(id, was)| format!("message {id} {verb} (was {was})"))
                .collect::<Vec<_>>()
                .join("\n")
        },
    );
    Ok(EXIT_OK)
}
