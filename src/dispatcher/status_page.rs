//! The read-only status page `dispatch-cgi` answers to GET: queue by state, scheduled
//! messages, recurring jobs, runners, recent failures and recent deliveries. One self-contained HTML
//! document (inline CSS, no scripts, no external assets) that reads well on a phone.
//!
//! Access (`[status_page]` in dispatcher.toml):
//!
//! ```toml
//! [status_page]
//! allow = "loopback"   # default: only requests from 127.0.0.0/8 or ::1
//! # allow = "any"      # anyone who can reach dispatch-cgi
//! # allow = "token"    # ?token=... or header X-Mailrun-Status-Token
//! # token = "64 hex characters, e.g. from: openssl rand -hex 32"
//! ```
//!
//! Behind a reverse proxy on the same host every request comes from loopback: use
//! "token" there (or restrict the location in the web server).

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use postgres::GenericClient;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::dispatcher::listing::Cursor;
use crate::dispatcher::{queue, recurring, runners, stats, webhooks};
use crate::protocol::Outcome;
use crate::web::{Request, Response};

/// Header carrying the status page token (alternative to `?token=`).
pub const TOKEN_HEADER: &str = "x-mailrun-status-token";
/// Shortest token accepted in the config.
pub const MIN_TOKEN_LEN: usize = 16;
/// Rows shown per list section.
pub const ROWS: i64 = 50;
/// A runner not seen for this long is shown as stale.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::hours(24);

/// Who may see the page.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Allow {
    #[default]
    Loopback,
    Any,
    Token,
}

/// The `[status_page]` section.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageConfig {
    #[serde(default)]
    pub allow: Allow,
    pub token: Option<String>,
}

impl std::fmt::Debug for StatusPageConfig {
    // The token is a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPageConfig")
            .field("allow", &self.allow)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl StatusPageConfig {
    /// A token is required with (and only with) `allow = "token"`, at least 16 URL-safe
    /// characters so it can go in a query string unescaped.
    pub fn validate(&self) -> anyhow::Result<()> {
        match (&self.allow, &self.token) {
            (Allow::Token, None) => {
                anyhow::bail!("[status_page] allow = \"token\" needs a token")
            }
            (Allow::Token, Some(t)) => anyhow::ensure!(
                t.len() >= MIN_TOKEN_LEN
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')),
                "[status_page] token must be at least {MIN_TOKEN_LEN} characters of A-Z a-z 0-9 - _ . ~"
            ),
            (_, Some(_)) => {
                anyhow::bail!("[status_page] token is set but allow is not \"token\"")
            }
            (_, None) => {}
        }
        Ok(())
    }
}

/// Why a request may not see the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// allow = "loopback" and the peer is elsewhere (or unknown).
    NotLoopback,
    /// allow = "token" and no token, or a wrong one, was given.
    BadToken,
}

impl Denied {
    /// The answer to send (no detail about the token).
    pub fn to_response(&self) -> Response {
        match self {
            Denied::NotLoopback => Response::text(
                403,
                "the status page is only shown to loopback clients (see [status_page] in dispatcher.toml)\n",
            ),
            Denied::BadToken => Response::text(401, "a valid status page token is required\n"),
        }
    }
}

/// Checks a request against the access setting.
pub fn authorize(request: &Request, config: &StatusPageConfig) -> Result<(), Denied> {
    match config.allow {
        Allow::Any => Ok(()),
        Allow::Loopback => match request.remote_addr {
            Some(ip) if is_loopback(ip) => Ok(()),
            _ => Err(Denied::NotLoopback),
        },
        Allow::Token => {
            let expected = config.token.as_deref().ok_or(Denied::BadToken)?;
            let given = request
                .header(TOKEN_HEADER)
                .map(str::to_string)
                .or_else(|| query_param(&request.query, "token"))
                .ok_or(Denied::BadToken)?;
            // Constant time: the comparison must not reveal how much of a guess matched.
            if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
                Ok(())
            } else {
                Err(Denied::BadToken)
            }
        }
    }
}

/// 127.0.0.0/8, ::1, and IPv4-mapped loopback (::ffff:127.0.0.1).
pub fn is_loopback(ip: IpAddr) -> bool {
    crate::web::is_loopback_ip(ip)
}

/// The raw value of `name` in a query string (tokens are URL-safe; no decoding).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The page, or a plain 500 naming no internals when the database fails.
pub fn respond(
    request: &Request,
    config: &StatusPageConfig,
    db: impl FnOnce() -> anyhow::Result<String>,
) -> Response {
    if let Err(denied) = authorize(request, config) {
        return denied.to_response();
    }
    match db() {
        Ok(html) => {
            let body = if request.method == "HEAD" {
                Vec::new()
            } else {
                html.into_bytes()
            };
            Response::new(200, "text/html; charset=utf-8", body)
                .with_header("Cache-Control", "no-store")
                .with_header(
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'",
                )
                .with_header("X-Content-Type-Options", "nosniff")
        }
        Err(e) => {
            eprintln!("dispatch-cgi: status page: {e:#}");
            Response::text(
                500,
                "the status page is unavailable; see the dispatcher's log\n",
            )
        }
    }
}

/// HTML-escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "\
body{font:15px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;padding:12px;max-width:1100px;color:#1a1a1a;background:#fff}
h1{font-size:1.3em;margin:0 0 4px}h2{font-size:1.1em;margin:22px 0 6px;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.85em}.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f5f5f5;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
.counts{display:grid;grid-template-columns:repeat(auto-fill,minmax(100px,1fr));gap:6px}
.count{border:1px solid #ddd;border-radius:6px;padding:6px 8px}.count b{display:block;font-size:1.4em}
.ok{color:#17692b}.warn{color:#8a5a00}.bad{color:#a31515}.empty{color:#777;font-style:italic}
time,code{white-space:nowrap}code{font-size:.9em}
.smtp{font-family:ui-monospace,monospace;font-size:.85em;word-break:break-word}
@media (prefers-color-scheme:dark){body{background:#111;color:#e8e8e8}th{background:#222}th,td{border-color:#333}.count{border-color:#333}.ok{color:#6fd08a}.warn{color:#e0b050}.bad{color:#ff8080}}
";

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "5m ago" / "in 2h" relative to `now`.
fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let a = secs.unsigned_abs();
    let span = match a {
        0..=119 => format!("{a}s"),
        120..=7199 => format!("{}m", a / 60),
        7200..=172_799 => format!("{}h", a / 3600),
        _ => format!("{}d", a / 86400),
    };
    if secs >= 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

fn time_cell(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match t {
        None => "<td>-</td>".into(),
        Some(t) => format!(
            "<td><time datetime=\"{}\">{}</time><br><span class=\"meta\">{}</span></td>",
            t.to_rfc3339(),
            escape(&ts(t)),
            escape(&relative(t, now))
        ),
    }
}

/// A runner's health: (css class, text).
pub fn runner_health(
    enabled: bool,
    last_seen: Option<DateTime<Utc>>,
    last_status: Option<&str>,
    now: DateTime<Utc>,
) -> (&'static str, String) {
    if !enabled {
        return ("warn", "disabled".into());
    }
    let status = last_status.unwrap_or("");
    let kind = status.split(':').next().unwrap_or("").trim();
    if !status.is_empty() && !matches!(kind, "accepted" | "busy" | "poll-only" | "polled") {
        return ("bad", format!("problem: {status}"));
    }
    match last_seen {
        None => ("warn", "never seen".into()),
        Some(t) if now - t > STALE_AFTER => (
            "warn",
            format!("not seen for {}", relative(t, now).trim_end_matches(" ago")),
        ),
        Some(_) => ("ok", "ok".into()),
    }
}

/// Renders the whole page from the database as of `now` (pass the database's `now()`).
pub fn render(c: &mut impl GenericClient, now: DateTime<Utc>) -> anyhow::Result<String> {
    render_page(c, now, &Paging::default())
}

/// Where the scheduled list starts (`?scheduled=CURSOR`), and what links must carry
/// along (a `token` given in the query).
#[derive(Debug, Default, Clone)]
pub struct Paging {
    pub scheduled_after: Option<Cursor>,
    pub keep_query: String,
}

impl Paging {
    /// From the request's query string; a malformed cursor starts at the first page.
    pub fn from_query(query: &str) -> Paging {
        Paging {
            scheduled_after: query_param(query, "scheduled").and_then(|c| Cursor::decode(&c).ok()),
            keep_query: query_param(query, "token")
                .map(|t| format!("&token={t}"))
                .unwrap_or_default(),
        }
    }
}

/// The page, with the scheduled list starting where `paging` says.
pub fn render_page(
    c: &mut impl GenericClient,
    now: DateTime<Utc>,
    paging: &Paging,
) -> anyhow::Result<String> {
    let mut h = String::with_capacity(16 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str("<meta name=\"robots\" content=\"noindex\">\n<title>mailrun status</title>\n");
    let _ = write!(
        h,
        "<style>{CSS}</style></head><body>\n<h1>mailrun status</h1>\n"
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">as of <time id=\"now\" datetime=\"{}\">{}</time> (database clock)</p>",
        now.to_rfc3339(),
        escape(&ts(now))
    );
    queue_section(c, &mut h)?;
    scheduled_section(c, &mut h, now, paging)?;
    recurring_section(c, &mut h, now)?;
    runners_section(c, &mut h, now)?;
    webhooks_section(c, &mut h, now)?;
    failures_section(c, &mut h, now)?;
    h.push_str("</body></html>\n");
    Ok(h)
}

fn queue_section(c: &mut impl GenericClient, h: &mut String) -> anyhow::Result<()> {
    let mut counts: Vec<(String, i64)> = stats::counts_by_state(c)?
        .into_iter()
        .map(|(state, n)| (state.as_str().to_string(), n))
        .collect();
    counts.push(("due now".to_string(), queue::count_due(c)?));
    counts.push(("held for review".to_string(), stats::held_for_review(c)?));
    h.push_str("<h2>Queue</h2>\n<div class=\"counts\">\n");
    for (state, n) in &counts {
        let id = state.replace(' ', "-");
        let _ = writeln!(
            h,
            "<div class=\"count\"><b id=\"count-{}\">{n}</b>{}</div>",
            escape(&id),
            escape(state)
        );
    }
    h.push_str("</div>\n");
    Ok(())
}

fn scheduled_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
    paging: &Paging,
) -> anyhow::Result<()> {
    let after = paging.scheduled_after.map(|c| (c.send_at, c.id));
    // One more than shown tells whether a next page exists.
    let (total, mut rows) = stats::scheduled(c, now, after, ROWS + 1)?;
    let more = rows.len() as i64 > ROWS;
    rows.truncate(ROWS as usize);
    let _ = writeln!(
        h,
        "<h2>Scheduled <span class=\"meta\">(<span id=\"scheduled-total\">{total}</span>, soonest first)</span></h2>"
    );
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No messages scheduled for later.</p>\n");
        return Ok(());
    }
    h.push_str("<div class=\"scroll\"><table id=\"scheduled\"><tr><th>send at</th><th>message</th><th>to</th><th>subject</th><th>job</th></tr>\n");
    for r in &rows {
        let id = r.id;
        let _ = writeln!(
            h,
            "<tr class=\"scheduled\" data-id=\"{id}\">{}<td class=\"n\">{id}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            time_cell(Some(r.send_at), now),
            escape(&r.recipients),
            escape(&r.subject),
            r.recurring_job_id.map_or("-".to_string(), |j| j.to_string()),
        );
    }
    h.push_str("</table></div>\n");
    // Pages by keyset: a link per page, never an offset.
    let keep = escape(&paging.keep_query);
    h.push_str("<p class=\"meta\">");
    if paging.scheduled_after.is_some() {
        let _ = write!(
            h,
            "<a id=\"scheduled-first\" href=\"?scheduled={keep}\">first page</a> "
        );
    }
    match rows.last().filter(|_| more) {
        Some(last) => {
            let cursor = Cursor {
                send_at: last.send_at,
                id: last.id,
            }
            .encode();
            let _ = write!(
                h,
                "<a id=\"scheduled-next\" href=\"?scheduled={cursor}{keep}\">next {ROWS}</a>"
            );
        }
        None if total > ROWS => h.push_str("last page"),
        None => {}
    }
    h.push_str("</p>\n");
    Ok(())
}

fn recurring_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let jobs = recurring::list(c)?;
    let _ = writeln!(
        h,
        "<h2>Recurring jobs <span class=\"meta\">(<span id=\"recurring-total\">{}</span>)</span></h2>",
        jobs.len()
    );
    if jobs.is_empty() {
        h.push_str("<p class=\"empty\">No recurring jobs.</p>\n");
        return Ok(());
    }
    h.push_str("<div class=\"scroll\"><table id=\"recurring\"><tr><th>job</th><th>cron</th><th>next run</th><th>last run</th><th>subject</th></tr>\n");
    for job in &jobs {
        let name = job.name.clone().unwrap_or_else(|| format!("#{}", job.id));
        let next = if job.paused {
            "<td class=\"warn\">paused</td>".to_string()
        } else {
            match job.next_run() {
                Some(t) => time_cell(Some(t), now),
                None => "<td class=\"bad\">spec no longer valid</td>".to_string(),
            }
        };
        let subject = job
            .template
            .get("subject")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let _ = writeln!(
            h,
            "<tr class=\"recurring\" data-id=\"{}\"><td>{}</td><td><code>{}</code><br><span class=\"meta\">{}</span></td>{next}{}<td>{}</td></tr>",
            job.id,
            escape(&name),
            escape(&job.cron),
            escape(&job.time_zone),
            time_cell(job.last_occurrence_at, now),
            escape(subject),
        );
    }
    h.push_str("</table></div>\n");
    Ok(())
}

fn runners_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let latest = stats::latest_config_version(c)?;
    let rows = runners::list(c)?;
    let _ = writeln!(
        h,
        "<h2>Runners <span class=\"meta\">(<span id=\"runners-total\">{}</span>)</span></h2>",
        rows.len()
    );
    if rows.is_empty() {
        h.push_str("<p class=\"empty\">No runners registered.</p>\n");
        return Ok(());
    }
    h.push_str("<div class=\"scroll\"><table id=\"runners\"><tr><th>runner</th><th>health</th><th>last seen</th><th>version</th><th>config</th></tr>\n");
    for r in &rows {
        let id = &r.id;
        let last_seen = r.last_seen;
        let version = &r.software_version;
        let applied = r.config_version;
        let (class, health) = runner_health(r.enabled, last_seen, r.last_status.as_deref(), now);
        let config = match (applied, latest) {
            (Some(a), Some(l)) if a < l => format!("<td class=\"warn\">{a} (latest {l})</td>"),
            (Some(a), _) => format!("<td>{a}</td>"),
            (None, Some(l)) => format!("<td class=\"warn\">none (latest {l})</td>"),
            (None, None) => "<td>-</td>".to_string(),
        };
        let _ = writeln!(
            h,
            "<tr class=\"runner\" data-id=\"{}\"><td>{}</td><td class=\"{class}\">{}</td>{}<td>{}</td>{config}</tr>",
            escape(id),
            escape(id),
            escape(&health),
            time_cell(last_seen, now),
            escape(version.as_deref().unwrap_or("-")),
        );
    }
    h.push_str("</table></div>\n");
    Ok(())
}

/// Webhook endpoints whose posts fail (docs/webhooks.md); nothing when all are well.
fn webhooks_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let failing: Vec<_> = webhooks::list(c)?
        .into_iter()
        .filter(|w| w.failures > 0)
        .collect();
    if failing.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        h,
        "<h2>Failing webhooks <span class=\"meta\">(<span id=\"webhooks-failing\">{}</span>)</span></h2>",
        failing.len()
    );
    h.push_str("<div class=\"scroll\"><table id=\"webhooks\"><tr><th>endpoint</th><th>failed posts</th><th>events waiting</th><th>last error</th><th>next try</th></tr>\n");
    for w in &failing {
        let _ = writeln!(
            h,
            "<tr class=\"webhook\" data-id=\"{}\"><td>{} {}</td><td class=\"bad\">{}</td><td>{}</td><td>{}</td>{}</tr>",
            w.id,
            w.id,
            escape(&w.url),
            w.failures,
            w.pending,
            escape(w.last_error.as_deref().unwrap_or("-")),
            time_cell(Some(w.next_attempt_at), now),
        );
    }
    h.push_str("</table></div>\n");
    Ok(())
}

/// Which attempts an attempts table shows.
struct AttemptsTable {
    outcomes: &'static [Outcome],
    title: &'static str,
    note: &'static str,
    empty: &'static str,
    id: &'static str,
    row_class: &'static str,
}

const FAILURES: AttemptsTable = AttemptsTable {
    outcomes: &[Outcome::Failed, Outcome::Deferred],
    title: "Recent failures",
    note: "failed or deferred, newest first",
    empty: "No failed or deferred deliveries.",
    id: "failures",
    row_class: "failure",
};

const DELIVERIES: AttemptsTable = AttemptsTable {
    outcomes: &[Outcome::Sent],
    title: "Recently sent",
    note: "accepted by the SMTP server, newest first",
    empty: "Nothing sent yet.",
    id: "deliveries",
    row_class: "delivery",
};

fn failures_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    attempts_section(c, h, now, &FAILURES)?;
    attempts_section(c, h, now, &DELIVERIES)
}

/// The latest attempts with the table's outcomes, per recipient where the runner gave
/// per-recipient answers, else the attempt's own answer.
fn attempts_section(
    c: &mut impl GenericClient,
    h: &mut String,
    now: DateTime<Utc>,
    table: &AttemptsTable,
) -> anyhow::Result<()> {
    let rows = stats::recent_attempts(c, table.outcomes, ROWS)?;
    let _ = writeln!(
        h,
        "<h2>{} <span class=\"meta\">({})</span></h2>",
        table.title, table.note
    );
    if rows.is_empty() {
        let _ = writeln!(h, "<p class=\"empty\">{}</p>", table.empty);
        return Ok(());
    }
    let _ = writeln!(
        h,
        "<div class=\"scroll\"><table id=\"{}\"><tr><th>when</th><th>message</th><th>recipient</th><th>runner</th><th>outcome</th><th>SMTP answer</th></tr>",
        table.id
    );
    for r in &rows {
        let message = r.message_id;
        let outcome = &r.outcome;
        let answer = [
            r.smtp_code.map(|c| c.to_string()),
            r.enhanced_status.clone(),
            r.text.clone(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let class = match outcome.as_str() {
            "failed" => "bad",
            "sent" => "ok",
            _ => "warn",
        };
        let _ = writeln!(
            h,
            "<tr class=\"{}\" data-message=\"{message}\">{}<td class=\"n\">{message}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td class=\"smtp\">{}</td></tr>",
            table.row_class,
            time_cell(Some(r.attempted_at), now),
            escape(&r.recipient),
            escape(&r.runner_id),
            escape(outcome),
            escape(if answer.is_empty() { "-" } else { &answer }),
        );
    }
    h.push_str("</table></div>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(addr: &str, query: &str, token: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/".into(),
            query: query.into(),
            headers: token
                .map(|t| vec![(TOKEN_HEADER.to_string(), t.to_string())])
                .unwrap_or_default(),
            body: Vec::new(),
            remote_addr: addr.parse().ok(),
        }
    }

    #[test]
    fn loopback_by_default() {
        let c = StatusPageConfig::default();
        assert!(authorize(&req("127.0.0.1", "", None), &c).is_ok());
        assert!(authorize(&req("127.8.9.1", "", None), &c).is_ok());
        assert!(authorize(&req("::1", "", None), &c).is_ok());
        assert!(authorize(&req("::ffff:127.0.0.1", "", None), &c).is_ok());
        assert_eq!(
            authorize(&req("192.0.2.1", "", None), &c),
            Err(Denied::NotLoopback)
        );
        assert_eq!(authorize(&req("", "", None), &c), Err(Denied::NotLoopback));
    }

    #[test]
    fn token() {
        let c = StatusPageConfig {
            allow: Allow::Token,
            token: Some("0123456789abcdef0123".into()),
        };
        c.validate().unwrap();
        assert!(authorize(&req("192.0.2.1", "token=0123456789abcdef0123", None), &c).is_ok());
        assert!(authorize(
            &req("192.0.2.1", "a=b&token=0123456789abcdef0123", None),
            &c
        )
        .is_ok());
        assert!(authorize(&req("192.0.2.1", "", Some("0123456789abcdef0123")), &c).is_ok());
        assert_eq!(
            authorize(&req("127.0.0.1", "", None), &c),
            Err(Denied::BadToken)
        );
        assert_eq!(
            authorize(&req("192.0.2.1", "token=0123456789abcdef012", None), &c),
            Err(Denied::BadToken)
        );
        assert!(!format!("{c:?}").contains("0123456789"));
    }

    #[test]
    fn config_checks() {
        let bad = [
            StatusPageConfig {
                allow: Allow::Token,
                token: None,
            },
            StatusPageConfig {
                allow: Allow::Token,
                token: Some("short".into()),
            },
            StatusPageConfig {
                allow: Allow::Token,
                token: Some("has space in it 0123456".into()),
            },
            StatusPageConfig {
                allow: Allow::Any,
                token: Some("0123456789abcdef0123".into()),
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn escapes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>\u{7}"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;\u{FFFD}"
        );
    }
}
