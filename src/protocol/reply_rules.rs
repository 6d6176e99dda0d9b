//! The reply policy as the runner applies it: the rules the dispatcher pushes with
//! JobRunnerConfigUpdate (`mailrun.reply_rules`), checked and matched exactly as
//! `mailrun.reply_decision` matches them in PostgreSQL (docs/quotas.md, "Reply policy").
//!
//! A rule matches an SMTP answer when every condition it has matches: `code` (three
//! characters, `x` = any digit), `enhanced` (a prefix by whole components: "5.7" matches
//! 5.7.1, not 5.71.0), `pattern` (a case-insensitive regular expression found anywhere in
//! the reply text), `domain` (the recipient's domain or a parent of it) and `account`
//! (the SMTP account name, exact). The first matching rule by position decides.
//!
//! The dispatcher uses PostgreSQL's POSIX AREs, the runner the `regex` crate: the common
//! syntax (alternation, classes, `.?`, groups, anchors) means the same in both. A pattern
//! the runner cannot compile (back-references, look-around) is skipped on the runner
//! only, with one warning; the dispatcher still applies it when the result arrives.

use regex::{Regex, RegexBuilder};

use super::ReplyRule;

pub use super::limits::reply_policy::*;

/// Compiled-regex memory per pattern: bounds what a hostile pattern can make the runner
/// allocate (the crate's matching is linear-time, so there is no catastrophic
/// backtracking to bound).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Checks one rule's fields; the message names the problem (without the whole pattern).
pub fn check_rule(rule: &ReplyRule) -> Result<(), String> {
    if !(1..=MAX_POSITION).contains(&rule.position) {
        return Err(format!(
            "position {} is not in 1..={MAX_POSITION}",
            rule.position
        ));
    }
    if rule.code.is_none() && rule.enhanced.is_none() && rule.pattern.is_none() {
        return Err("a rule needs a code, an enhanced status or a pattern".into());
    }
    if let Some(code) = &rule.code {
        if !valid_code(code) {
            return Err(format!(
                "code {:?} is not three characters like \"550\" or \"4xx\"",
                clip(code)
            ));
        }
    }
    if let Some(enhanced) = &rule.enhanced {
        if !valid_enhanced_prefix(enhanced) {
            return Err(format!(
                "enhanced status {:?} is not a prefix like \"5.7\" or \"5.7.1\"",
                clip(enhanced)
            ));
        }
    }
    if let Some(pattern) = &rule.pattern {
        if pattern.is_empty() || pattern.chars().count() > MAX_PATTERN_CHARS {
            return Err(format!(
                "pattern must be 1 to {MAX_PATTERN_CHARS} characters"
            ));
        }
        if pattern.contains(['\r', '\n']) {
            return Err("pattern contains a line break".into());
        }
    }
    if let Some(domain) = &rule.domain {
        if !valid_domain(domain) {
            return Err(format!(
                "domain {:?} is not a lowercase domain like example.com",
                clip(domain)
            ));
        }
    }
    if let Some(account) = &rule.account {
        if account.is_empty()
            || account.chars().count() > MAX_ACCOUNT_CHARS
            || account.chars().any(char::is_control)
        {
            return Err(format!(
                "account must be 1 to {MAX_ACCOUNT_CHARS} characters without control characters"
            ));
        }
    }
    Ok(())
}

/// Checks a whole policy: at most [`MAX_RULES`], each rule valid, positions strictly
/// increasing (the order is the policy). The error names the rule (1-based).
pub fn check_policy(rules: &[ReplyRule]) -> Result<(), String> {
    if rules.len() > MAX_RULES {
        return Err(format!(
            "the reply policy holds {} rules, at most {MAX_RULES} are accepted",
            rules.len()
        ));
    }
    let mut last = 0;
    for (i, rule) in rules.iter().enumerate() {
        check_rule(rule)
            .map_err(|e| format!("reply rule {} (position {}): {e}", i + 1, rule.position))?;
        if rule.position <= last {
            return Err(format!(
                "reply rule {} (position {}): positions must increase (previous {last})",
                i + 1,
                rule.position
            ));
        }
        last = rule.position;
    }
    Ok(())
}

/// An SMTP reply code pattern: three characters, `x` for any digit ("550", "4xx").
pub fn valid_code(code: &str) -> bool {
    let b = code.as_bytes();
    b.len() == 3
        && matches!(b[0], b'2' | b'4' | b'5')
        && b[1..].iter().all(|c| c.is_ascii_digit() || *c == b'x')
}

/// An enhanced status code or a prefix of it by components ("5", "5.7", "5.7.1").
pub fn valid_enhanced_prefix(enhanced: &str) -> bool {
    let parts: Vec<&str> = enhanced.split('.').collect();
    matches!(parts[0], "2" | "4" | "5")
        && parts.len() <= 3
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= MAX_DOMAIN_CHARS
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !d.starts_with(['.', '-'])
        && !d.ends_with(['.', '-'])
}

/// At most 40 characters of a value, for error messages.
fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push('…');
    }
    out
}

/// One SMTP answer to classify.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    pub code: Option<u16>,
    pub enhanced: Option<&'a str>,
    pub text: Option<&'a str>,
    /// The recipient's domain (any case).
    pub domain: Option<&'a str>,
    /// The SMTP account the message went through.
    pub account: Option<&'a str>,
}

/// A rule ready to match: its regex compiled.
#[derive(Debug, Clone)]
struct Compiled {
    rule: ReplyRule,
    regex: Option<Regex>,
}

/// A policy ready to match answers.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Compiled>,
}

impl Policy {
    /// Compiles every rule. A pattern this side cannot compile skips its rule; the
    /// returned warnings say which (the dispatcher still applies it).
    pub fn compile(rules: &[ReplyRule]) -> (Policy, Vec<String>) {
        let mut warnings = Vec::new();
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            if let Some(p) = rule.pattern.as_deref().filter(|p| differs_in_meaning(p)) {
                warnings.push(format!(
                    "reply rule at position {} skipped on this runner: its pattern {:?} uses \\b \
                     or \\B, which PostgreSQL reads as backspace and backslash but the \
                     runner as word boundaries; the dispatcher still applies it",
                    rule.position,
                    clip(p)
                ));
                continue;
            }
            let regex = match &rule.pattern {
                None => None,
                Some(p) => match RegexBuilder::new(p)
                    .case_insensitive(true)
                    // As in an ARE without the `n` flag: `.` matches a newline too.
                    .dot_matches_new_line(true)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .dfa_size_limit(REGEX_SIZE_LIMIT)
                    .build()
                {
                    Ok(r) => Some(r),
                    Err(e) => {
                        let why = e.to_string();
                        let first = why.lines().last().unwrap_or("invalid").trim();
                        warnings.push(format!(
                            "reply rule at position {} skipped on this runner: its pattern \
                             {:?} does not compile here ({first}); the dispatcher still applies it",
                            rule.position,
                            clip(p)
                        ));
                        continue;
                    }
                },
            };
            compiled.push(Compiled {
                rule: rule.clone(),
                regex,
            });
        }
        (Policy { rules: compiled }, warnings)
    }

    /// How many rules are in force here (skipped ones not counted).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching the answer, if any.
    pub fn decide(&self, answer: &Answer<'_>) -> Option<&ReplyRule> {
        self.rules
            .iter()
            .find(|c| matches(c, answer))
            .map(|c| &c.rule)
    }
}

/// Escapes both engines accept with different meanings: in a POSIX ARE `\b` is a
/// backspace and `\B` a backslash, in the `regex` crate word-boundary assertions. (ARE's
/// own word boundaries, `\m` `\M` `\y` `\Y`, do not compile here and are skipped anyway.)
fn differs_in_meaning(pattern: &str) -> bool {
    let mut escaped = false;
    for c in pattern.chars() {
        if escaped {
            if matches!(c, 'b' | 'B') {
                return true;
            }
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        }
    }
    false
}

fn matches(c: &Compiled, a: &Answer<'_>) -> bool {
    let r = &c.rule;
    if let Some(code) = &r.code {
        let Some(got) = a.code else { return false };
        let got = got.to_string();
        if got.len() != 3
            || !code
                .bytes()
                .zip(got.bytes())
                .all(|(want, have)| want == b'x' || want == have)
        {
            return false;
        }
    }
    if let Some(prefix) = &r.enhanced {
        let Some(got) = a.enhanced else { return false };
        if !(got == prefix
            || got
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with('.')))
        {
            return false;
        }
    }
    if let Some(regex) = &c.regex {
        let Some(text) = a.text else { return false };
        if !regex.is_match(text) {
            return false;
        }
    }
    if let Some(domain) = &r.domain {
        let Some(got) = a.domain else { return false };
        let got = got.to_ascii_lowercase();
        if !(got == *domain
            || got
                .strip_suffix(domain.as_str())
                .is_some_and(|rest| rest.ends_with('.')))
        {
            return false;
        }
    }
    if let Some(account) = &r.account {
        if a.account != Some(account.as_str()) {
            return false;
        }
    }
    true
}

/// The addr-spec of an address ("Name <user@example.com>" → "user@example.com").
pub fn address_spec(address: &str) -> &str {
    match (address.rfind('<'), address.rfind('>')) {
        (Some(open), Some(close)) if open < close => address[open + 1..close].trim(),
        _ => address.trim(),
    }
}

/// The domain of an address ("Name <user@Example.COM>" → "example.com").
pub fn address_domain(address: &str) -> Option<String> {
    let (_, domain) = address_spec(address).rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ReplyAction, ReplyThrottle};

    fn rule(
        position: u32,
        code: Option<&str>,
        enhanced: Option<&str>,
        pattern: Option<&str>,
        action: ReplyAction,
        throttle: ReplyThrottle,
    ) -> ReplyRule {
        ReplyRule {
            position,
            code: code.map(str::to_owned),
            enhanced: enhanced.map(str::to_owned),
            pattern: pattern.map(str::to_owned),
            domain: None,
            account: None,
            action,
            throttle,
        }
    }

    /// The shipped defaults of migrations/0007_baseline.sql, verbatim.
    fn shipped() -> Vec<ReplyRule> {
        use ReplyAction::*;
        use ReplyThrottle as T;
        let limits = "rate.?limit|too many (messages|connections|mails|emails)|throttl|sending (limit|quota)|quota exceeded|try again later";
        let limits5 = "rate.?limit|connection frequency limited|too many (messages|connections|mails|emails)|throttl|sending (limit|quota)|quota exceeded|try again later";
        vec![
            rule(10, Some("421"), None, None, AnotherAccount, T::Account),
            rule(20, Some("4xx"), None, Some("receiving mail at a rate|rate that prevents"), Retry, T::Domain),
            rule(30, Some("4xx"), None, Some(limits), Retry, T::Account),
            rule(40, Some("5xx"), None, Some(limits5), Retry, T::Account),
            rule(50, Some("535"), None, None, AnotherAccount, T::None),
            rule(60, Some("5xx"), None, Some("relay access denied|relaying denied|not permitted to relay"), AnotherAccount, T::None),
            rule(70, Some("552"), Some("5.2.2"), None, Retry, T::None),
            rule(80, Some("5xx"), Some("5.1.1"), None, Suppress, T::None),
            rule(90, Some("5xx"), Some("5.1.10"), None, Suppress, T::None),
            rule(100, Some("550"), None, Some("user unknown|unknown user|no such user|mailbox does not exist|recipient address rejected: user"), Suppress, T::None),
        ]
    }

    fn decide(
        policy: &Policy,
        code: u16,
        enhanced: Option<&str>,
        text: &str,
    ) -> Option<(ReplyAction, ReplyThrottle, u32)> {
        policy
            .decide(&Answer {
                code: Some(code),
                enhanced,
                text: Some(text),
                domain: Some("example.org"),
                account: Some("main"),
            })
            .map(|r| (r.action, r.throttle, r.position))
    }

    #[test]
    fn shipped_defaults_classify_the_known_answers() {
        let (p, warnings) = Policy::compile(&shipped());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(p.len(), 10);
        check_policy(&shipped()).unwrap();
        use ReplyAction::*;
        use ReplyThrottle as T;
        assert_eq!(
            decide(&p, 550, Some("5.7.1"), "5.7.1 Rate limited, slow down"),
            Some((Retry, T::Account, 40))
        );
        assert_eq!(
            decide(&p, 550, Some("5.7.1"), "Connection frequency limited"),
            Some((Retry, T::Account, 40))
        );
        assert_eq!(
            decide(&p, 421, Some("4.7.0"), "4.7.0 Too many messages, slow down"),
            Some((AnotherAccount, T::Account, 10))
        );
        assert_eq!(
            decide(&p, 450, None, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional messages"),
            Some((Retry, T::Domain, 20))
        );
        assert_eq!(
            decide(&p, 451, None, "THROTTLED: try again"),
            Some((Retry, T::Account, 30))
        );
        assert_eq!(
            decide(&p, 550, Some("5.1.1"), "5.1.1 No such user here"),
            Some((Suppress, T::None, 80))
        );
        assert_eq!(
            decide(&p, 550, Some("5.1.10"), "5.1.10 null MX"),
            Some((Suppress, T::None, 90))
        );
        assert_eq!(
            decide(
                &p,
                550,
                None,
                "Recipient address rejected: User unknown in local table"
            ),
            Some((Suppress, T::None, 100))
        );
        assert_eq!(
            decide(&p, 535, Some("5.7.8"), "Authentication credentials invalid"),
            Some((AnotherAccount, T::None, 50))
        );
        assert_eq!(
            decide(&p, 554, Some("5.7.1"), "Relay access denied"),
            Some((AnotherAccount, T::None, 60))
        );
        assert_eq!(
            decide(&p, 552, Some("5.2.2"), "Mailbox full"),
            Some((Retry, T::None, 70))
        );
        // Nothing matches: the runner's own reading stands.
        assert_eq!(
            decide(&p, 554, Some("5.7.1"), "Message rejected as spam"),
            None
        );
        assert_eq!(decide(&p, 450, None, "Mailbox busy"), None);
    }

    #[test]
    fn enhanced_prefixes_match_by_whole_components() {
        let (p, _) = Policy::compile(&[rule(
            1,
            None,
            Some("5.7"),
            None,
            ReplyAction::Fail,
            ReplyThrottle::None,
        )]);
        assert!(decide(&p, 550, Some("5.7.1"), "x").is_some());
        assert!(decide(&p, 550, Some("5.7"), "x").is_some());
        assert!(decide(&p, 550, Some("5.71.1"), "x").is_none());
        assert!(decide(&p, 550, None, "x").is_none());
        let (p, _) = Policy::compile(&[rule(
            1,
            None,
            Some("5.1.1"),
            None,
            ReplyAction::Fail,
            ReplyThrottle::None,
        )]);
        assert!(decide(&p, 550, Some("5.1.10"), "x").is_none());
        assert!(decide(&p, 550, Some("5.1.1"), "x").is_some());
    }

    #[test]
    fn codes_domains_accounts_and_order() {
        let mut gmail = rule(
            5,
            Some("4xx"),
            None,
            None,
            ReplyAction::Fail,
            ReplyThrottle::Domain,
        );
        gmail.domain = Some("gmail.com".into());
        let mut acct = rule(
            6,
            Some("4x1"),
            None,
            None,
            ReplyAction::Suppress,
            ReplyThrottle::None,
        );
        acct.account = Some("other".into());
        let last = rule(
            7,
            Some("4x1"),
            None,
            None,
            ReplyAction::Retry,
            ReplyThrottle::Account,
        );
        let (p, _) = Policy::compile(&[gmail, acct, last]);
        let at = |code, domain, account| {
            p.decide(&Answer {
                code: Some(code),
                enhanced: None,
                text: None,
                domain,
                account,
            })
            .map(|r| r.position)
        };
        assert_eq!(at(450, Some("gmail.com"), Some("main")), Some(5));
        assert_eq!(at(450, Some("MX.Gmail.COM"), Some("main")), Some(5));
        assert_eq!(at(450, Some("notgmail.com"), Some("main")), None);
        assert_eq!(at(451, Some("notgmail.com"), Some("other")), Some(6));
        assert_eq!(at(451, None, Some("main")), Some(7));
        assert_eq!(at(461, None, None), Some(7));
        assert_eq!(at(551, None, None), None);
        // A rule with a pattern never matches an answer without text.
        let (p, _) = Policy::compile(&[rule(
            1,
            None,
            None,
            Some("x"),
            ReplyAction::Fail,
            ReplyThrottle::None,
        )]);
        assert!(p
            .decide(&Answer {
                code: Some(550),
                ..Answer::default()
            })
            .is_none());
    }

    #[test]
    fn patterns_this_side_cannot_compile_are_skipped_with_a_warning() {
        let rules = [
            rule(
                1,
                None,
                None,
                Some(r"(a)\1"),
                ReplyAction::Fail,
                ReplyThrottle::None,
            ),
            rule(
                2,
                Some("5xx"),
                None,
                None,
                ReplyAction::Retry,
                ReplyThrottle::None,
            ),
        ];
        let (p, warnings) = Policy::compile(&rules);
        assert_eq!(p.len(), 1);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("position 1"), "{warnings:?}");
        assert_eq!(decide(&p, 550, None, "aa").map(|d| d.2), Some(2));
        // Compiles here, means something else there: skipped too.
        for pattern in [r"\brate\b", r"x\By", r"[a]\b"] {
            let (p, warnings) = Policy::compile(&[rule(
                1,
                None,
                None,
                Some(pattern),
                ReplyAction::Fail,
                ReplyThrottle::None,
            )]);
            assert!(p.is_empty(), "{pattern}");
            assert!(warnings[0].contains("word boundaries"), "{warnings:?}");
        }
        for pattern in [r"\\b", r"a\.b", r"\d+ b"] {
            let (p, _) = Policy::compile(&[rule(
                1,
                None,
                None,
                Some(pattern),
                ReplyAction::Fail,
                ReplyThrottle::None,
            )]);
            assert_eq!(p.len(), 1, "{pattern}");
        }
    }

    #[test]
    fn policies_are_checked() {
        assert!(check_policy(&shipped()).is_ok());
        let mut r = rule(
            1,
            Some("42"),
            None,
            None,
            ReplyAction::Fail,
            ReplyThrottle::None,
        );
        assert!(check_rule(&r).unwrap_err().contains("code"));
        r.code = Some("6xx".into());
        assert!(check_rule(&r).is_err());
        r.code = None;
        assert!(check_rule(&r).unwrap_err().contains("needs"));
        r.enhanced = Some("5.7.1.1".into());
        assert!(check_rule(&r).is_err());
        r.enhanced = Some("5.7".into());
        assert!(check_rule(&r).is_ok());
        r.pattern = Some("a\nb".into());
        assert!(check_rule(&r).is_err());
        r.pattern = Some("x".repeat(MAX_PATTERN_CHARS + 1));
        assert!(check_rule(&r).is_err());
        r.pattern = None;
        r.domain = Some("Gmail.com".into());
        assert!(check_rule(&r).is_err());
        r.domain = None;
        r.position = 0;
        assert!(check_rule(&r).is_err());
        let twice = [
            rule(
                5,
                Some("4xx"),
                None,
                None,
                ReplyAction::Fail,
                ReplyThrottle::None,
            ),
            rule(
                5,
                Some("5xx"),
                None,
                None,
                ReplyAction::Fail,
                ReplyThrottle::None,
            ),
        ];
        assert!(check_policy(&twice).unwrap_err().contains("increase"));
        let many: Vec<ReplyRule> = (1..=MAX_RULES as u32 + 1)
            .map(|i| {
                rule(
                    i,
                    Some("5xx"),
                    None,
                    None,
                    ReplyAction::Fail,
                    ReplyThrottle::None,
                )
            })
            .collect();
        assert!(check_policy(&many).unwrap_err().contains("at most"));
        assert!(check_policy(&many[..MAX_RULES]).is_ok());
    }

    #[test]
    fn domains_of_addresses() {
        assert_eq!(
            address_domain("a@Example.ORG").as_deref(),
            Some("example.org")
        );
        assert_eq!(
            address_domain("Name <a@b.example>").as_deref(),
            Some("b.example")
        );
        assert_eq!(address_domain("nobody"), None);
        assert_eq!(address_domain("a@"), None);
    }
}
