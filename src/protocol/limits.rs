//! Parse limits: how much untrusted XML the codec reads before refusing it.
//!
//! Every limit is checked while streaming, before anything proportional to the excess
//! is built, so a hostile peer cannot make the receiver allocate or recurse without bound.

/// Bounds applied by [`crate::protocol::codec::decode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole envelope, in bytes (checked first, before parsing).
    pub max_bytes: usize,
    /// Element nesting; the `soap:Envelope` is depth 1. Our messages need 7.
    pub max_depth: usize,
    /// Elements in the whole document.
    pub max_elements: usize,
    /// Attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Decoded text of one element (or one attribute value), in bytes.
    pub max_text_bytes: usize,
}

impl Limits {
    /// For envelopes from the dispatcher to a runner (JobRun): a batch of 1000 messages
    /// with 50 KB bodies and attachments fits comfortably.
    pub const RESPONSE: Limits = Limits {
        max_bytes: 128 * 1024 * 1024,
        max_depth: 32,
        max_elements: 2_000_000,
        max_attributes: 32,
        // One attachment of up to 48 MiB (64 MiB of base64).
        max_text_bytes: 64 * 1024 * 1024,
    };

    /// For requests a receiver answers without having asked for them (JobRunRequest at
    /// the dispatcher, JobRunnerReady and JobRunnerConfigUpdate at a runner): results
    /// of a 1000-message batch with per-recipient outcomes fit, little else does.
    pub const REQUEST: Limits = Limits {
        max_bytes: 8 * 1024 * 1024,
        max_depth: 32,
        max_elements: 200_000,
        max_attributes: 32,
        max_text_bytes: 64 * 1024,
    };

    /// The limits for inbound requests ([`Limits::REQUEST`]).
    pub const fn for_request() -> Limits {
        Limits::REQUEST
    }

    /// The limits for responses and spooled batches ([`Limits::RESPONSE`]).
    pub const fn for_response() -> Limits {
        Limits::RESPONSE
    }
}

impl Default for Limits {
    /// Generous enough for any JobRun the dispatcher sends ([`Limits::RESPONSE`]).
    fn default() -> Limits {
        Limits::RESPONSE
    }
}

/// Bounds of the reply policy the dispatcher pushes (the codec refuses more).
pub mod reply_policy {
    /// Most rules one policy may hold (the codec refuses more).
    pub const MAX_RULES: usize = 1000;
    /// Longest pattern, in characters.
    pub const MAX_PATTERN_CHARS: usize = 1000;
    /// Longest domain (RFC 1035).
    pub const MAX_DOMAIN_CHARS: usize = 253;
    /// Longest account name (the protocol's Identifier).
    pub const MAX_ACCOUNT_CHARS: usize = 128;
    /// Highest position (`mailrun.reply_rules` CHECK).
    pub const MAX_POSITION: u32 = 999_999_999;
}

/// Most batch ids a JobRunRequest lists in `heldJobRuns`; a runner holding more omits
/// the element (nothing is then released early).
pub const MAX_HELD_JOB_RUNS: usize = 1000;

/// Largest request body a runner's endpoint accepts (JobRunnerReady and
/// JobRunnerConfigUpdate are small); push-config checks an update against it before
/// sending.
pub const RUNNER_MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Most sessions to one SMTP account a JobRun may allow (`maxConnections`), and the
/// upper bound of a runner's `maxSessions` and `maxSessionsPerAccount` (a thread each).
pub const MAX_CONNECTIONS: u32 = 1000;
/// SMTP sessions a runner keeps busy at once over all accounts, by default (Postfix's
/// process limit).
pub const DEFAULT_MAX_SESSIONS: u32 = 100;
/// Sessions to one SMTP account at once, by default (Postfix's destination limit).
pub const DEFAULT_MAX_SESSIONS_PER_ACCOUNT: u32 = 20;

/// The longest value, in characters, the protocol carries in a message's fields. One
/// table for the codec (which refuses longer values in a JobRun), the enqueue checks of
/// `dispatch-admin` and the stored procedure (`mailrun.field_limits`, tested to hold the
/// same rows), so that nothing is queued that a runner would refuse.
pub mod field {
    /// A mailbox (`Name <local@domain>`) in from, reply_to, to, cc or bcc.
    pub const ADDRESS: usize = 998;
    pub const SUBJECT: usize = 16_384;
    /// RFC 5322 allows 998 with the colon; 76 keeps "Name: " on one folded line.
    pub const HEADER_NAME: usize = 76;
    pub const HEADER_VALUE: usize = 998;
    pub const MESSAGE_ID: usize = 998;
    pub const ATTACHMENT_FILENAME: usize = 255;
    pub const ATTACHMENT_CONTENT_TYPE: usize = 255;
    pub const ACCOUNT_NAME: usize = 128;
    pub const ACCOUNT_HOST: usize = 255;
    pub const ACCOUNT_USERNAME: usize = 255;
    pub const ACCOUNT_PASSWORD: usize = 1024;

    /// Every limit by the name `mailrun.field_limits` gives it.
    pub const TABLE: &[(&str, usize)] = &[
        ("address", ADDRESS),
        ("subject", SUBJECT),
        ("header_name", HEADER_NAME),
        ("header_value", HEADER_VALUE),
        ("message_id", MESSAGE_ID),
        ("attachment_filename", ATTACHMENT_FILENAME),
        ("attachment_content_type", ATTACHMENT_CONTENT_TYPE),
        ("account_name", ACCOUNT_NAME),
        ("account_host", ACCOUNT_HOST),
        ("account_username", ACCOUNT_USERNAME),
        ("account_password", ACCOUNT_PASSWORD),
    ];

    /// Characters XML 1.0 cannot carry, even escaped (C0 controls other than tab, LF
    /// and CR; U+FFFE and U+FFFF): the encoder would have to replace them, so enqueue
    /// refuses them instead.
    pub fn uncarriable(c: char) -> bool {
        matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
    }
}
