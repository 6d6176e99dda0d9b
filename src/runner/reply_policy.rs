//! The pushed reply policy applied while a batch is sent (docs/quotas.md, "Where it
//! applies").
//!
//! Each SMTP answer is classified with the same first-match rules as the dispatcher
//! ([`crate::protocol::reply_rules`]). Effects for the rest of the run (every batch it delivers):
//! - a rule with `throttle = account`, or action `another_account`: no further message
//!   starts through that SMTP account (sessions busy with one finish it);
//! - a rule with `throttle = domain`: no further message starts to that recipient
//!   domain;
//! - the outcome reported follows the rule (retry / another_account: Deferred; fail /
//!   suppress: Failed). The dispatcher re-decides on arrival anyway.
//!
//! Messages set aside are journalled NotAttempted with the reason, so the dispatcher
//! gives their quota reservations back and holds or fails them over as it does for any
//! throttled account.

use std::collections::HashMap;
use std::sync::Arc;

use crate::protocol::reply_rules::{address_domain, address_spec, Answer, Policy};
use crate::protocol::{
    MessageResult, OutboundMessage, Outcome, ReplyAction, ReplyRule, ReplyThrottle,
};

/// Longest reply text quoted in a "not attempted" reason.
const QUOTED_TEXT_CHARS: usize = 200;

/// Why a message is not started: the reason (the result's text) and the answer that
/// caused it (reported with the NotAttempted result, so the dispatcher can apply the
/// policy to it: docs/quotas.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub reason: String,
    pub smtp_code: Option<u16>,
    pub enhanced_status: Option<String>,
}

/// The policy's state for one batch: which accounts and domains are set aside, and why.
pub struct BatchGuard {
    policy: Arc<Policy>,
    accounts: HashMap<String, SetAside>,
    domains: HashMap<String, SetAside>,
}

impl BatchGuard {
    /// The guard of one batch; the policy is shared by every batch of a run.
    pub fn new(policy: Arc<Policy>) -> BatchGuard {
        BatchGuard {
            policy,
            accounts: HashMap::new(),
            domains: HashMap::new(),
        }
    }

    /// Why this message must not start in this batch, if it must not.
    pub fn skip_reason(&self, msg: &OutboundMessage) -> Option<&SetAside> {
        if let Some(aside) = self.accounts.get(&msg.account.name) {
            return Some(aside);
        }
        recipients(msg)
            .filter_map(address_domain)
            .find_map(|d| self.domains.get(&d))
    }

    /// Classifies a delivery's answers: rewrites the outcomes the policy decides and
    /// sets accounts and domains aside (for the rest of the run: one guard serves every
    /// batch a run delivers).
    pub fn review(&mut self, msg: &OutboundMessage, result: &mut MessageResult) {
        if self.policy.is_empty() {
            return;
        }
        let account = msg.account.name.as_str();
        for r in &mut result.recipients {
            if !matches!(r.outcome, Outcome::Deferred | Outcome::Failed) {
                continue;
            }
            let domain = address_domain(&r.address);
            let answer = Answer {
                code: r.smtp_code,
                enhanced: r.enhanced_status.as_deref(),
                text: r.text.as_deref(),
                domain: domain.as_deref(),
                account: Some(account),
            };
            if let Some(rule) = self.policy.decide(&answer) {
                r.outcome = outcome_of(rule);
                let rule = rule.clone();
                let cause = Cause {
                    code: r.smtp_code,
                    enhanced: r.enhanced_status.clone(),
                    quote: answer_quote(r.smtp_code, r.text.as_deref()),
                };
                self.set_aside(&rule, account, domain.as_deref(), &cause);
            }
        }
        if !matches!(result.outcome, Outcome::Deferred | Outcome::Failed) {
            return;
        }
        if !result.recipients.is_empty()
            && result
                .recipients
                .iter()
                .all(|r| matches!(r.outcome, Outcome::Deferred | Outcome::Failed))
        {
            // Every recipient was refused on its own: the message follows them.
            result.outcome = if result
                .recipients
                .iter()
                .any(|r| r.outcome == Outcome::Deferred)
            {
                Outcome::Deferred
            } else {
                Outcome::Failed
            };
            return;
        }
        // A message-level answer concerns every recipient without an answer of its own;
        // the dispatcher decides it per recipient domain, so does this.
        let own: Vec<&str> = result
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        let mut domains: Vec<Option<String>> = recipients(msg)
            .filter(|a| !own.iter().any(|o| o.eq_ignore_ascii_case(address_spec(a))))
            .map(address_domain)
            .collect();
        domains.sort();
        domains.dedup();
        if domains.is_empty() {
            domains.push(None);
        }
        let cause = Cause {
            code: result.smtp_code,
            enhanced: result.enhanced_status.clone(),
            quote: answer_quote(result.smtp_code, result.text.as_deref()),
        };
        let mut any_deferred = false;
        for domain in &domains {
            let answer = Answer {
                code: result.smtp_code,
                enhanced: result.enhanced_status.as_deref(),
                text: result.text.as_deref(),
                domain: domain.as_deref(),
                account: Some(account),
            };
            let outcome = match self.policy.decide(&answer) {
                Some(rule) => {
                    let rule = rule.clone();
                    self.set_aside(&rule, account, domain.as_deref(), &cause);
                    outcome_of(&rule)
                }
                None => result.outcome,
            };
            any_deferred |= outcome == Outcome::Deferred;
        }
        result.outcome = if any_deferred {
            Outcome::Deferred
        } else {
            Outcome::Failed
        };
    }

    fn set_aside(&mut self, rule: &ReplyRule, account: &str, domain: Option<&str>, cause: &Cause) {
        let aside = |reason: String| SetAside {
            reason,
            smtp_code: cause.code,
            enhanced_status: cause.enhanced.clone(),
        };
        let quote = &cause.quote;
        if rule.throttle == ReplyThrottle::Account {
            self.accounts.entry(account.to_string()).or_insert_with(|| {
                aside(format!(
                    "not attempted: account {account} throttled ({quote})"
                ))
            });
        } else if rule.action == ReplyAction::AnotherAccount {
            self.accounts.entry(account.to_string()).or_insert_with(|| {
                aside(format!(
                    "not attempted: account {account} refused in this batch ({quote})"
                ))
            });
        }
        if rule.throttle == ReplyThrottle::Domain {
            if let Some(d) = domain {
                self.domains.entry(d.to_string()).or_insert_with(|| {
                    aside(format!("not attempted: domain {d} throttled ({quote})"))
                });
            }
        }
    }
}

/// The answer behind a set-aside.
struct Cause {
    code: Option<u16>,
    enhanced: Option<String>,
    quote: String,
}

fn outcome_of(rule: &ReplyRule) -> Outcome {
    if rule.action.is_permanent() {
        Outcome::Failed
    } else {
        Outcome::Deferred
    }
}

fn recipients(msg: &OutboundMessage) -> impl Iterator<Item = &str> {
    msg.to
        .iter()
        .chain(&msg.cc)
        .chain(&msg.bcc)
        .map(String::as_str)
}

/// "421 4.7.0 Too many messages", the text clipped and on one line.
fn answer_quote(code: Option<u16>, text: Option<&str>) -> String {
    let text: String = text
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_TEXT_CHARS)
        .collect();
    match code {
        Some(code) => format!("{code} {}", text.trim()),
        None => text.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{RecipientResult, Security, SmtpAccount};
    use chrono::Utc;

    fn policy() -> Policy {
        let rule = |position, code: &str, pattern: Option<&str>, action, throttle| ReplyRule {
            position,
            code: Some(code.into()),
            enhanced: None,
            pattern: pattern.map(str::to_owned),
            domain: None,
            account: None,
            action,
            throttle,
        };
        Policy::compile(&[
            rule(
                10,
                "421",
                None,
                ReplyAction::AnotherAccount,
                ReplyThrottle::Account,
            ),
            rule(
                20,
                "4xx",
                Some("receiving mail at a rate"),
                ReplyAction::Retry,
                ReplyThrottle::Domain,
            ),
            rule(
                40,
                "5xx",
                Some("rate limited"),
                ReplyAction::Retry,
                ReplyThrottle::Account,
            ),
            rule(
                80,
                "550",
                Some("no such user"),
                ReplyAction::Suppress,
                ReplyThrottle::None,
            ),
        ])
        .0
    }

    fn msg(account: &str, to: &[&str]) -> OutboundMessage {
        OutboundMessage {
            id: 1,
            lease_token: "t".into(),
            message_id_header: "<x@y>".into(),
            account: SmtpAccount {
                name: account.into(),
                host: "127.0.0.1".into(),
                port: 25,
                security: Security::None,
                username: None,
                password: None,
                max_connections: None,
            },
            from: "a@example.com".into(),
            reply_to: None,
            to: to.iter().map(|s| s.to_string()).collect(),
            cc: vec![],
            bcc: vec![],
            subject: "s".into(),
            text_body: None,
            html_body: None,
            headers: vec![],
            attachments: vec![],
        }
    }

    fn result(outcome: Outcome, code: Option<u16>, text: &str) -> MessageResult {
        MessageResult {
            job_run_id: "j".into(),
            message_id: 1,
            lease_token: "t".into(),
            outcome,
            smtp_code: code,
            enhanced_status: None,
            text: Some(text.into()),
            attempted_at: Utc::now(),
            recipients: vec![],
        }
    }

    #[test]
    fn a_421_sets_the_account_aside_and_defers() {
        let p = policy();
        let mut g = BatchGuard::new(Arc::new(p.clone()));
        let m = msg("slow", &["u@example.org"]);
        assert!(g.skip_reason(&m).is_none());
        let mut r = result(
            Outcome::Deferred,
            Some(421),
            "MAIL FROM refused: 4.7.0 Too many messages",
        );
        g.review(&m, &mut r);
        assert_eq!(r.outcome, Outcome::Deferred);
        let aside = g.skip_reason(&msg("slow", &["v@other.example"])).unwrap();
        assert!(
            aside
                .reason
                .starts_with("not attempted: account slow throttled (421 MAIL FROM refused"),
            "{aside:?}"
        );
        assert_eq!(aside.smtp_code, Some(421));
        assert!(g.skip_reason(&msg("main", &["v@example.org"])).is_none());
    }

    #[test]
    fn rate_limits_sent_as_5xx_are_deferred_and_throttle() {
        let p = policy();
        let mut g = BatchGuard::new(Arc::new(p.clone()));
        let m = msg("main", &["u@example.org"]);
        let mut r = result(
            Outcome::Failed,
            Some(550),
            "message refused: 5.7.1 Rate limited",
        );
        g.review(&m, &mut r);
        assert_eq!(r.outcome, Outcome::Deferred);
        assert!(g.skip_reason(&m).is_some());
    }

    #[test]
    fn domain_throttles_set_only_that_domain_aside() {
        let p = policy();
        let mut g = BatchGuard::new(Arc::new(p.clone()));
        let m = msg("main", &["u@Gmail.com"]);
        let mut r = result(
            Outcome::Deferred,
            Some(450),
            "4.2.1 receiving mail at a rate that prevents",
        );
        g.review(&m, &mut r);
        let reason = &g
            .skip_reason(&msg("main", &["Someone <x@gmail.com>"]))
            .unwrap()
            .reason;
        assert!(
            reason.starts_with("not attempted: domain gmail.com throttled (450 "),
            "{reason}"
        );
        assert!(g.skip_reason(&msg("main", &["x@example.org"])).is_none());
    }

    #[test]
    fn recipient_answers_follow_the_policy() {
        let p = policy();
        let mut g = BatchGuard::new(Arc::new(p.clone()));
        let m = msg("main", &["a@example.org", "b@example.org"]);
        let mut r = result(Outcome::Sent, Some(250), "ok");
        r.recipients = vec![RecipientResult {
            address: "b@example.org".into(),
            outcome: Outcome::Deferred,
            smtp_code: Some(550),
            enhanced_status: None,
            text: Some("no such user".into()),
        }];
        g.review(&m, &mut r);
        assert_eq!(r.outcome, Outcome::Sent);
        assert_eq!(r.recipients[0].outcome, Outcome::Failed);
        assert!(g.skip_reason(&m).is_none());
        // Nothing matches: the runner's own reading stands.
        let mut r = result(Outcome::Failed, Some(554), "spam");
        g.review(&m, &mut r);
        assert_eq!(r.outcome, Outcome::Failed);
        let empty = Policy::default();
        let mut g = BatchGuard::new(Arc::new(empty.clone()));
        let mut r = result(Outcome::Deferred, Some(421), "bye");
        g.review(&m, &mut r);
        assert!(g.skip_reason(&m).is_none());
    }
}
