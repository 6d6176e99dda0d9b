//! The faults both endpoints send, in the words of `protocol/faults.md` (the one table
//! that defines them). dispatch-cgi and runner-cgi build every shared refusal here, so
//! they cannot drift apart; the unit tests check `FaultReason` against the table.

use super::types::{Fault, FaultReason};

/// The table itself, for the checks here and in the integration test.
pub const TABLE: &str = include_str!("../../protocol/faults.md");

/// A method other than POST (dispatch-cgi also serves GET).
pub fn method_not_allowed(method: &str) -> Fault {
    Fault::new(
        FaultReason::UnknownOperation,
        format!("method {method} is not allowed; use POST"),
    )
}

/// A SOAPAction (bare, possibly empty) that names none of the endpoint's operations.
pub fn unknown_action(action: &str) -> Fault {
    Fault::new(
        FaultReason::UnknownOperation,
        format!("SOAPAction {action:?} names no operation of this endpoint"),
    )
}

/// The endpoint cannot work until its operator fixes the configuration.
pub fn not_configured() -> Fault {
    Fault::new(
        FaultReason::Internal,
        "not configured; see the endpoint's log",
    )
}

/// The dispatcher's database is down (or mid-upgrade).
pub fn database_unavailable() -> Fault {
    Fault::new(
        FaultReason::Unavailable,
        "the dispatcher's database is unavailable; retry later",
    )
}

/// No runner has the key id the request names.
pub fn unknown_key_id(key_id: &str) -> Fault {
    Fault::new(
        FaultReason::UnknownRunner,
        format!("no runner has key id {key_id:?}"),
    )
}

/// The body's message is not the operation the SOAPAction names.
pub fn action_mismatch(body_operation: &str, action_operation: &str) -> Fault {
    Fault::new(
        FaultReason::UnknownOperation,
        format!("body is {body_operation} but SOAPAction says {action_operation}"),
    )
}

/// The body's runnerId is not the runner whose key signed the request.
pub fn wrong_runner_id(runner_id: &str, key_id: &str) -> Fault {
    Fault::new(
        FaultReason::UnknownRunner,
        format!("runnerId {runner_id:?} is not the runner of key id {key_id:?}"),
    )
}

/// The runner is disabled at the dispatcher.
pub fn runner_disabled(runner_id: &str) -> Fault {
    Fault::new(
        FaultReason::RunnerDisabled,
        format!("runner {runner_id:?} is disabled"),
    )
}

/// The nonce was seen before within the window.
pub fn replayed_nonce() -> Fault {
    Fault::new(
        FaultReason::ReplayedNonce,
        "nonce already used; sign every request afresh",
    )
}

/// One row of the table: the columns by name.
#[derive(Debug, Clone)]
pub struct Row {
    pub case: String,
    pub reason: String,
    pub faultcode: String,
    pub retry: String,
    pub dispatcher: String,
    pub runner: String,
    pub signed: String,
    /// The message template without its backquotes; `{…}` stands for any text.
    pub message: String,
}

/// The rows of the table in `protocol/faults.md`, in order.
pub fn rows() -> Vec<Row> {
    let mut lines = TABLE
        .lines()
        .skip_while(|l| !l.starts_with("| case |"))
        .filter(|l| l.starts_with('|'));
    let header: Vec<String> = lines.next().map(cells).unwrap_or_default();
    let col = |row: &[String], name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| row.get(i))
            .cloned()
            .unwrap_or_default()
    };
    lines
        .skip(1) // the |---| line
        .map(|l| {
            let c = cells(l);
            Row {
                case: col(&c, "case"),
                reason: col(&c, "reason"),
                faultcode: col(&c, "faultcode"),
                retry: col(&c, "retry"),
                dispatcher: col(&c, "dispatch-cgi"),
                runner: col(&c, "runner-cgi"),
                signed: col(&c, "signed"),
                message: col(&c, "message").trim_matches('`').to_string(),
            }
        })
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Whether `message` fits `template`, where each `{…}` matches any text.
pub fn message_matches(template: &str, message: &str) -> bool {
    let parts: Vec<&str> = template.split("{…}").collect();
    let (first, rest) = parts.split_first().expect("split yields one part");
    let Some(mut left) = message.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        if last {
            return left.ends_with(part);
        }
        match left.find(part) {
            Some(at) if !part.is_empty() => left = &left[at + part.len()..],
            Some(_) => {}
            None => return false,
        }
    }
    left.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FaultCode;
    use std::collections::BTreeSet;

    #[test]
    fn every_reason_is_in_the_table_and_nothing_else() {
        let rows = rows();
        assert!(rows.len() > 20, "table not found: {rows:?}");
        let in_table: BTreeSet<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
        let in_code: BTreeSet<&str> = FaultReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(in_table, in_code);
        for row in &rows {
            let reason = FaultReason::parse(&row.reason).expect("known reason");
            let code = match reason.code() {
                FaultCode::Client => "Client",
                FaultCode::Server => "Server",
            };
            assert_eq!(row.faultcode, code, "{}", row.case);
            let retry = if code == "Server" { "yes" } else { "no" };
            assert_eq!(row.retry, retry, "{}", row.case);
            assert!(["yes", "no"].contains(&row.signed.as_str()), "{}", row.case);
            for status in [&row.dispatcher, &row.runner] {
                assert!(
                    status == "—" || status.parse::<u16>().is_ok(),
                    "{}: {status}",
                    row.case
                );
            }
        }
        let cases: BTreeSet<&str> = rows.iter().map(|r| r.case.as_str()).collect();
        assert_eq!(cases.len(), rows.len(), "case names are unique");
    }

    #[test]
    fn the_xsd_enumerates_the_same_reasons() {
        let xsd = include_str!("../../protocol/mailrun.xsd");
        let start = xsd.find("name=\"FaultReason\"").expect("FaultReason type");
        let end = start + xsd[start..].find("</xs:simpleType>").expect("end of type");
        let in_xsd: BTreeSet<&str> = xsd[start..end]
            .split("<xs:enumeration value=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        let in_code: BTreeSet<&str> = FaultReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(in_xsd, in_code);
    }

    #[test]
    fn shared_faults_use_the_table_words() {
        let by_case = |case: &str| {
            rows()
                .into_iter()
                .find(|r| r.case == case)
                .unwrap_or_else(|| panic!("no row {case}"))
        };
        for (case, fault) in [
            ("method", method_not_allowed("PUT")),
            ("wrong-action", unknown_action("urn:x")),
            ("not-configured", not_configured()),
            ("database-down", database_unavailable()),
            ("unknown-key-id", unknown_key_id("k")),
            ("action-mismatch", action_mismatch("A", "B")),
            ("wrong-runner-id", wrong_runner_id("r", "k")),
            ("runner-disabled", runner_disabled("r")),
            ("replayed-nonce", replayed_nonce()),
        ] {
            let row = by_case(case);
            assert_eq!(fault.reason.as_str(), row.reason, "{case}");
            assert!(
                message_matches(&row.message, &fault.message),
                "{case}: {:?} does not fit {:?}",
                fault.message,
                row.message
            );
        }
    }

    #[test]
    fn templates_match() {
        assert!(message_matches("a {…} b", "a xyz b"));
        assert!(message_matches("{…}", "anything"));
        assert!(message_matches("x {…}", "x "));
        assert!(!message_matches("a {…} b", "a xyz c"));
        assert!(!message_matches("exact", "exact!"));
        assert!(message_matches(
            "timestamp {…} is outside the ±300 s window around {…}",
            "timestamp 1 is outside the ±300 s window around 1000"
        ));
    }
}
