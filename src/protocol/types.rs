//! Message types of the mailrun SOAP protocol, one struct per XSD element.
//!
//! These are the shapes the rest of the crate codes against; the codec maps them to and
//! from XML exactly as `protocol/mailrun.xsd` defines.

use chrono::{DateTime, Utc};

/// Every body a mailrun SOAP envelope can carry.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Runner → dispatcher: "give me work", carrying the results of the last batch.
    JobRunRequest(JobRunRequest),
    /// Dispatcher → runner: the answer to JobRunRequest; an empty list means no more work.
    JobRun(JobRun),
    /// Dispatcher → runner: "work is queued" (a hint only).
    JobRunnerReady(JobRunnerReady),
    /// Runner → dispatcher: the answer to JobRunnerReady.
    JobRunnerReadyResponse(JobRunnerReadyResponse),
    /// Dispatcher → runner: new settings with a strictly increasing version.
    JobRunnerConfigUpdate(JobRunnerConfigUpdate),
    /// Runner → dispatcher: the answer to JobRunnerConfigUpdate.
    JobRunnerConfigUpdateResponse(JobRunnerConfigUpdateResponse),
    /// Either side: the request was refused.
    Fault(Fault),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRunRequest {
    pub runner_id: String,
    /// How many messages the runner can take now (the dispatcher may send fewer).
    pub capacity: u32,
    pub software_version: String,
    pub config_version: i64,
    /// Outcomes of messages from earlier batches not yet acknowledged by the dispatcher.
    pub results: Vec<MessageResult>,
    /// Every batch (job run id) this runner holds: received in the last hour, spooled, or
    /// with results not yet acknowledged. A batch leased to the runner and missing here
    /// never arrived (the answer that carried it was lost): the dispatcher puts its
    /// messages back in the queue at once instead of when the lease expires. `None` (the
    /// element absent: an older runner, or more than [`MAX_HELD_JOB_RUNS`]): nothing is
    /// released early.
    ///
    /// [`MAX_HELD_JOB_RUNS`]: super::limits::MAX_HELD_JOB_RUNS
    pub held_job_runs: Option<Vec<String>>,
}

/// What happened to one message (or one recipient of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted by the SMTP server (2xx after DATA; for a recipient: RCPT accepted).
    Sent,
    /// Temporary failure (4xx, timeout, dropped connection before DATA was accepted).
    Deferred,
    /// Permanent failure (5xx).
    Failed,
    /// Not started: the local lease deadline passed or the runner stopped first.
    NotAttempted,
    /// DATA was sent but no final answer came (timeout after the final dot, connection
    /// lost): it may or may not have been delivered. Message level only; the dispatcher
    /// never retries it silently (docs/quotas.md).
    Unknown,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Sent,
        Outcome::Deferred,
        Outcome::Failed,
        Outcome::NotAttempted,
        Outcome::Unknown,
    ];

    /// The name in PostgreSQL (`delivery_attempts.outcome`), the runner's journal,
    /// reports and JSON output. The XML enumeration spells it in CamelCase (codec).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Deferred => "deferred",
            Outcome::Failed => "failed",
            Outcome::NotAttempted => "not_attempted",
            Outcome::Unknown => "unknown",
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Outcome, String> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("unknown outcome {s:?}"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageResult {
    pub job_run_id: String,
    pub message_id: i64,
    pub lease_token: String,
    pub outcome: Outcome,
    pub smtp_code: Option<u16>,
    /// RFC 3463 enhanced status code, e.g. "5.1.1".
    pub enhanced_status: Option<String>,
    pub text: Option<String>,
    pub attempted_at: DateTime<Utc>,
    /// Per-recipient outcomes, present when the server treated recipients differently.
    pub recipients: Vec<RecipientResult>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecipientResult {
    pub address: String,
    pub outcome: Outcome,
    pub smtp_code: Option<u16>,
    pub enhanced_status: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    /// Identifies this batch; empty only when `messages` is empty.
    pub job_run_id: String,
    /// How long the runner holds the lease, counted on its own clock from receipt.
    pub lease_seconds: u32,
    /// Results of the request that the dispatcher recorded (the runner may forget them).
    pub acknowledged: Vec<Acknowledgement>,
    pub messages: Vec<OutboundMessage>,
}

/// One result the dispatcher has durably recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    pub message_id: i64,
    pub lease_token: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundMessage {
    /// The dispatcher's row id.
    pub id: i64,
    pub lease_token: String,
    /// The fixed RFC 5322 Message-ID header value, e.g. "<uuid@host>".
    pub message_id_header: String,
    pub account: SmtpAccount,
    pub from: String,
    pub reply_to: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub headers: Vec<Header>,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP; never used with credentials unless the account says so explicitly.
    None,
    /// STARTTLS required: no fallback to plain text.
    StartTls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

impl Security {
    pub const ALL: [Security; 3] = [Security::None, Security::StartTls, Security::Tls];

    /// The name everywhere: the XML enumeration, PostgreSQL, the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::StartTls => "starttls",
            Security::Tls => "tls",
        }
    }
}

impl std::str::FromStr for Security {
    type Err = String;

    fn from_str(s: &str) -> Result<Security, String> {
        Security::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown SMTP security {s:?}"))
    }
}

#[derive(Clone, PartialEq)]
pub struct SmtpAccount {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Most sessions a runner may hold to this account at once (providers cap it);
    /// `None`: the runner's `max_sessions_per_account`.
    pub max_connections: Option<u32>,
}

impl std::fmt::Debug for SmtpAccount {
    // The password never reaches logs, errors or panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpAccount")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    /// Raw bytes (base64 on the wire).
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRunnerReady {
    pub runner_id: String,
    /// Number of messages due when the tick ran (informational).
    pub queued: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyStatus {
    Accepted,
    Busy,
    Disabled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRunnerReadyResponse {
    pub status: ReadyStatus,
    pub software_version: String,
    pub config_version: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRunnerConfigUpdate {
    pub runner_id: String,
    /// Strictly increasing; a runner refuses a version not above the one it has.
    pub version: i64,
    pub settings: RunnerSettings,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunnerSettings {
    pub batch_size: u32,
    /// Messages per second across the runner; 0 means unlimited.
    pub send_rate_per_second: f64,
    pub smtp_connect_timeout_seconds: u32,
    pub smtp_command_timeout_seconds: u32,
    /// Wait for the answer after the final dot (RFC 5321 4.5.3.2.6: 10 minutes).
    pub smtp_data_timeout_seconds: u32,
    pub poll_interval_seconds: u32,
    /// No message starts later than lease minus this margin.
    pub lease_safety_margin_seconds: u32,
    pub dispatcher_url: String,
    pub software: Option<SoftwareUpdate>,
    /// The dispatcher's reply policy (docs/quotas.md), rules in the order they are tried.
    /// `None` (element absent, an older dispatcher): the runner keeps the policy it has;
    /// `Some(empty)`: no rules.
    pub reply_policy: Option<Vec<ReplyRule>>,
    /// SMTP sessions a runner keeps busy at once over all accounts; `None` (an older
    /// dispatcher): the runner keeps its value.
    pub max_sessions: Option<u32>,
    /// Sessions to one SMTP account unless the account carries `maxConnections`.
    pub max_sessions_per_account: Option<u32>,
}

impl RunnerSettings {
    /// The settings a runner works with before its first JobRunnerConfigUpdate, and the
    /// starting point of the dispatcher's first pushed version: Postfix-like SMTP timeouts
    /// (connect 30 s, commands 300 s, after the final dot 600 s as RFC 5321 asks) and
    /// session limits (100 in all, 20 per account). `dispatcher_url` has no sensible
    /// default and must be set.
    pub fn defaults() -> RunnerSettings {
        RunnerSettings {
            batch_size: 50,
            send_rate_per_second: 0.0,
            smtp_connect_timeout_seconds: 30,
            smtp_command_timeout_seconds: 300,
            smtp_data_timeout_seconds: 600,
            poll_interval_seconds: 60,
            lease_safety_margin_seconds: 60,
            dispatcher_url: String::new(),
            software: None,
            reply_policy: None,
            max_sessions: Some(super::limits::DEFAULT_MAX_SESSIONS),
            max_sessions_per_account: Some(super::limits::DEFAULT_MAX_SESSIONS_PER_ACCOUNT),
        }
    }
}

/// One rule of the reply policy; every condition given must match, the first matching
/// rule (by position) decides. Mirrors a row of `mailrun.reply_rules`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRule {
    /// Order among the rules (strictly increasing in a policy).
    pub position: u32,
    /// Three characters, `x` = any digit: "421", "5xx".
    pub code: Option<String>,
    /// RFC 3463 prefix by components: "5.7" matches 5.7.1.
    pub enhanced: Option<String>,
    /// Case-insensitive regular expression on the reply text.
    pub pattern: Option<String>,
    /// Recipient domain or a parent of it, lowercase.
    pub domain: Option<String>,
    /// SMTP account name.
    pub account: Option<String>,
    pub action: ReplyAction,
    pub throttle: ReplyThrottle,
}

/// What a matching reply rule does with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyAction {
    /// Temporary: retry with backoff.
    Retry,
    /// Temporary, and the account is at fault: use the next account of the failover list.
    AnotherAccount,
    /// Permanent, and the recipient goes on the suppression list.
    Suppress,
    /// Permanent.
    Fail,
}

impl ReplyAction {
    pub const ALL: [ReplyAction; 4] = [
        ReplyAction::Retry,
        ReplyAction::AnotherAccount,
        ReplyAction::Suppress,
        ReplyAction::Fail,
    ];

    /// The wire and database token.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyAction::Retry => "retry",
            ReplyAction::AnotherAccount => "another_account",
            ReplyAction::Suppress => "suppress",
            ReplyAction::Fail => "fail",
        }
    }

    pub fn parse(token: &str) -> Option<ReplyAction> {
        ReplyAction::ALL.into_iter().find(|a| a.as_str() == token)
    }

    /// Retry and another_account are temporary; suppress and fail are permanent.
    pub fn is_permanent(self) -> bool {
        matches!(self, ReplyAction::Suppress | ReplyAction::Fail)
    }
}

/// Whom a matching reply rule slows down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyThrottle {
    None,
    /// The SMTP account the message was sent with.
    Account,
    /// The recipient's domain.
    Domain,
}

impl ReplyThrottle {
    pub const ALL: [ReplyThrottle; 3] = [
        ReplyThrottle::None,
        ReplyThrottle::Account,
        ReplyThrottle::Domain,
    ];

    /// The wire and database token.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyThrottle::None => "none",
            ReplyThrottle::Account => "account",
            ReplyThrottle::Domain => "domain",
        }
    }

    pub fn parse(token: &str) -> Option<ReplyThrottle> {
        ReplyThrottle::ALL.into_iter().find(|t| t.as_str() == token)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftwareUpdate {
    pub version: String,
    pub url: String,
    /// Lowercase hex SHA-256 of the download.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRunnerConfigUpdateResponse {
    pub applied_version: i64,
}

/// Who is at fault, as SOAP 1.1 faultcode says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// soap:Client: the request is wrong; resending it unchanged will fail again.
    Client,
    /// soap:Server: the receiver failed; the same request may succeed later.
    Server,
}

/// Machine-readable reason carried in the fault's detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultReason {
    MalformedXml,
    DoctypeRefused,
    TooLarge,
    TooDeep,
    TooManyElements,
    UnknownOperation,
    WrongNamespace,
    MissingField,
    InvalidValue,
    MissingSignature,
    BadSignature,
    StaleTimestamp,
    ReplayedNonce,
    UnknownRunner,
    RunnerDisabled,
    VersionNotIncreasing,
    PlainHttpRefused,
    Unavailable,
    Internal,
}

impl FaultReason {
    pub const ALL: [FaultReason; 19] = [
        FaultReason::MalformedXml,
        FaultReason::DoctypeRefused,
        FaultReason::TooLarge,
        FaultReason::TooDeep,
        FaultReason::TooManyElements,
        FaultReason::UnknownOperation,
        FaultReason::WrongNamespace,
        FaultReason::MissingField,
        FaultReason::InvalidValue,
        FaultReason::MissingSignature,
        FaultReason::BadSignature,
        FaultReason::StaleTimestamp,
        FaultReason::ReplayedNonce,
        FaultReason::UnknownRunner,
        FaultReason::RunnerDisabled,
        FaultReason::VersionNotIncreasing,
        FaultReason::PlainHttpRefused,
        FaultReason::Unavailable,
        FaultReason::Internal,
    ];

    /// The wire token, as listed in the XSD's FaultReason enumeration.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultReason::MalformedXml => "MalformedXml",
            FaultReason::DoctypeRefused => "DoctypeRefused",
            FaultReason::TooLarge => "TooLarge",
            FaultReason::TooDeep => "TooDeep",
            FaultReason::TooManyElements => "TooManyElements",
            FaultReason::UnknownOperation => "UnknownOperation",
            FaultReason::WrongNamespace => "WrongNamespace",
            FaultReason::MissingField => "MissingField",
            FaultReason::InvalidValue => "InvalidValue",
            FaultReason::MissingSignature => "MissingSignature",
            FaultReason::BadSignature => "BadSignature",
            FaultReason::StaleTimestamp => "StaleTimestamp",
            FaultReason::ReplayedNonce => "ReplayedNonce",
            FaultReason::UnknownRunner => "UnknownRunner",
            FaultReason::RunnerDisabled => "RunnerDisabled",
            FaultReason::VersionNotIncreasing => "VersionNotIncreasing",
            FaultReason::PlainHttpRefused => "PlainHttpRefused",
            FaultReason::Unavailable => "Unavailable",
            FaultReason::Internal => "Internal",
        }
    }

    pub fn parse(token: &str) -> Option<FaultReason> {
        FaultReason::ALL.into_iter().find(|r| r.as_str() == token)
    }

    /// Client faults are the sender's to fix; server faults may pass if retried.
    pub fn code(self) -> FaultCode {
        match self {
            FaultReason::Unavailable | FaultReason::Internal => FaultCode::Server,
            _ => FaultCode::Client,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub code: FaultCode,
    pub reason: FaultReason,
    /// Human-readable, precise, never containing a secret.
    pub message: String,
}

impl Fault {
    pub fn new(reason: FaultReason, message: impl Into<String>) -> Self {
        Fault {
            code: reason.code(),
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason.as_str(), self.message)
    }
}

impl std::error::Error for Fault {}
