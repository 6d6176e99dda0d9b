//! SMTP delivery of one message over lettre, with per-recipient outcomes.
