//! How dispatch-admin prints: JSON with --json, text tables otherwise.

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Clone, Copy)]
pub(crate) struct Output {
    pub(super) json: bool,
    pub(super) verbose: bool,
}

impl Output {
    /// A result of a state-changing command: JSON with --json, text with --verbose.
    pub(crate) fn result(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else if self.verbose {
            println!("{}", text());
        }
    }

    /// A listing: always printed.
    pub(crate) fn listing(&self, value: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            print!("{}", text());
        }
    }
}

pub(super) fn ago(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let s = (Utc::now() - t).num_seconds().max(0);
            match s {
                0..=119 => format!("{s}s ago"),
                120..=7199 => format!("{}m ago", s / 60),
                7200..=172_799 => format!("{}h ago", s / 3600),
                _ => format!("{}d ago", s / 86400),
            }
        }
    }
}

pub(super) fn utc(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}
