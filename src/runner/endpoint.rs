//! `runner-cgi`: the runner's SOAP endpoint (JobRunnerReady, JobRunnerConfigUpdate), as
//! a CGI program or, for development and tests, a small server (`--listen ADDR`).
//!
//! Every request is checked before anything changes: signature with the current or the
//! previous key, timestamp window, nonce not seen before (recorded in `nonces/`), body
//! decoded within the request limits, SOAPAction matching the body, runner id ours.
//! Answers are signed with the key the request was signed with; faults before a key is
//! known go out unsigned.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE};
use crate::protocol::codec::{self, Limits};
use crate::protocol::faults;
use crate::protocol::sign::{self, SigningKey};
use crate::protocol::{
    Body, Fault, FaultReason, JobRunnerConfigUpdate, JobRunnerConfigUpdateResponse, JobRunnerReady,
    JobRunnerReadyResponse, ReadyStatus, SOFTWARE_VERSION,
};
use crate::runner::config::RunnerConfig;
use crate::runner::nonces;
use crate::runner::state::{now_unix, write_atomic, ConfigLock, StateDir};
use crate::web::{self, Request, RequestError, Response};

use crate::protocol::limits::RUNNER_MAX_REQUEST_BYTES as MAX_REQUEST_BYTES;

/// The runner's SOAP endpoint.
#[derive(Debug, Parser)]
#[command(
    name = "runner-cgi",
    version,
    about = "The runner's SOAP endpoint: JobRunnerReady and JobRunnerConfigUpdate",
    long_about = "The runner's SOAP endpoint, run by a web server as a CGI program (the \
default) or as a small HTTP server with --listen ADDR for development and tests.\n\n\
JobRunnerReady writes the `ready` marker and, when no cycle is running, starts \
`runner-admin cycle` detached so delivery begins at once (cron stays the fallback); \
the cycle's output goes to cycle.log in the state folder. \
JobRunnerConfigUpdate validates the pushed settings and reply policy (at most 1000 rules) \
and writes runner.toml atomically; a version that does not increase, or any invalid \
setting or rule, leaves the old config in force. An update without a reply policy keeps \
the one in force.\n\n\
The state folder must be outside the web root: set MAILRUN_RUNNER_DIR in the web \
server's environment for the CGI (see docs/runner.md). A request it cannot record there \
(a read-only or foreign folder) gets an Internal fault; the reason goes to stderr (the \
web server's error log) and a CGI run exits 75.",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// Runner state folder [default: $MAILRUN_RUNNER_DIR, else ~/.local/share/mailrun/runner]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Serve HTTP on ADDR (e.g. 127.0.0.1:8025) instead of answering one CGI request.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Do not start a delivery cycle after JobRunnerReady (leave it to cron).
    #[arg(long)]
    pub no_start: bool,
}

pub fn main(args: Args) -> Result<u8> {
    // Run by hand without --listen, it would print a CGI error response and exit 0, which
    // looks like success; say what is wrong instead (as dispatch-cgi does).
    if args.listen.is_none() && std::env::var_os("GATEWAY_INTERFACE").is_none() {
        return Err(CliError::new(
            EXIT_USAGE,
            "not started by a web server (GATEWAY_INTERFACE is unset); use --listen ADDR to \
             serve HTTP",
        )
        .into());
    }
    let state = StateDir::locate(args.state_dir.as_deref())?;
    // A missing or unsafe runner.toml: --listen refuses to start; a CGI run still answers
    // (an Internal fault, so the peer is not left with a bare 500) and then fails, the
    // reason going to the web server's error log.
    let config_check = RunnerConfig::load(&state);
    let endpoint = Endpoint {
        state,
        start_cycle: !args.no_start,
        failed: AtomicU8::new(EXIT_OK),
    };
    match &args.listen {
        Some(addr) => {
            config_check?;
            web::listen::serve(
                addr,
                move |req| endpoint.handle(req),
                RequestError::to_response,
                MAX_REQUEST_BYTES,
            )
            .map_err(|e| CliError::new(EXIT_UNAVAILABLE, format!("cannot listen on {addr}: {e}")))?
        }
        None => {
            web::cgi::serve_once(
                &|req| endpoint.handle(req),
                RequestError::to_response,
                MAX_REQUEST_BYTES,
            )
            .context("cannot answer the CGI request")?;
            config_check?;
            // The request was answered with a fault; the reason is already logged.
            return Ok(endpoint.failed.load(Ordering::Relaxed));
        }
    }
    Ok(EXIT_OK)
}

/// The request handler; one per process.
pub struct Endpoint {
    pub state: StateDir,
    /// Start `runner-admin cycle` detached after JobRunnerReady.
    pub start_cycle: bool,
    /// The exit code of a failure behind an Internal fault (a CGI run exits with it).
    failed: AtomicU8,
}

/// A refused request: the fault and, once a key was verified, the key to sign it with.
struct Refusal {
    fault: Fault,
    key: Option<SigningKey>,
}

impl From<Fault> for Refusal {
    fn from(fault: Fault) -> Self {
        Refusal { fault, key: None }
    }
}

impl Endpoint {
    pub fn handle(&self, req: Request) -> Response {
        if req.method != "POST" {
            let mut response = reply(
                &req,
                None,
                405,
                &Body::Fault(faults::method_not_allowed(&req.method)),
            );
            response
                .headers
                .push(("Allow".to_string(), "POST".to_string()));
            return response;
        }
        match self.answer(&req) {
            Ok((key, body)) => reply(&req, Some(&key), 200, &body),
            Err(refusal) => {
                let body = Body::Fault(refusal.fault);
                reply(&req, refusal.key.as_ref(), codec::FAULT_HTTP_STATUS, &body)
            }
        }
    }

    /// The checks in the order of protocol/faults.md, then the operation.
    fn answer(&self, req: &Request) -> Result<(SigningKey, Body), Refusal> {
        let action = req.soap_action();
        let Some(action_operation) = RUNNER_OPERATIONS
            .iter()
            .find(|op| action.strip_prefix(crate::protocol::NAMESPACE) == Some(&format!("#{op}")))
        else {
            return Err(faults::unknown_action(action).into());
        };
        let config = RunnerConfig::load(&self.state).map_err(|e| {
            // The details (paths, modes) are for the operator's log, not the peer.
            eprintln!("runner-cgi: error: runner is not configured: {e:#}");
            faults::not_configured()
        })?;
        let keys = config.accepted_keys().map_err(|e| {
            eprintln!("runner-cgi: error: runner key is invalid: {e:#}");
            faults::not_configured()
        })?;
        let sig =
            web::request_signature(req).map_err(|e| Fault::new(e.fault_reason(), e.to_string()))?;
        // A key of the named key id signs every refusal from here on.
        let Some(named_key) = keys.iter().find(|k| k.key_id == sig.key_id).cloned() else {
            return Err(faults::unknown_key_id(&sig.key_id).into());
        };
        let signed_with = |key: &SigningKey| {
            let key = key.clone();
            move |fault: Fault| Refusal {
                fault,
                key: Some(key.clone()),
            }
        };
        // A stale timestamp goes unsigned: one of the clocks is off, so the peer could
        // not verify a signature made on this one.
        let key = web::verify_request(req, &keys, sign::now_unix())
            .map_err(|e| {
                let fault = Fault::new(e.fault_reason(), e.to_string());
                match e {
                    sign::SignError::Stale { .. } => Refusal::from(fault),
                    _ => signed_with(&named_key)(fault),
                }
            })?
            .clone();
        let signed = signed_with(&key);
        let body = codec::decode_with(&req.body, &Limits::REQUEST).map_err(&signed)?;
        let body_operation = codec::operation_name(&body);
        if body_operation != *action_operation {
            return Err(signed(faults::action_mismatch(
                body_operation,
                action_operation,
            )));
        }
        let runner_id = match &body {
            Body::JobRunnerReady(ready) => ready.runner_id.as_str(),
            Body::JobRunnerConfigUpdate(update) => update.runner_id.as_str(),
            _ => "",
        };
        if runner_id != config.runner_id {
            return Err(signed(faults::wrong_runner_id(runner_id, &key.key_id)));
        }
        // Last, so that only a request about to be carried out uses up its nonce.
        match nonces::remember(&self.state, &sig.key_id, &sig.nonce) {
            Ok(true) => {}
            Ok(false) => return Err(signed(faults::replayed_nonce())),
            Err(e) => {
                return Err(signed(self.internal(&e, "cannot record the request nonce")));
            }
        }
        let answer = match body {
            Body::JobRunnerReady(ready) => self.ready(&config, &ready),
            Body::JobRunnerConfigUpdate(update) => self.config_update(&config, &update),
            other => Err(Fault::new(
                FaultReason::UnknownOperation,
                format!("a runner does not answer {}", codec::operation_name(&other)),
            )),
        }
        .map_err(signed)?;
        Ok((key, answer))
    }

    fn ready(&self, config: &RunnerConfig, _ready: &JobRunnerReady) -> Result<Body, Fault> {
        let answer = |status| {
            Ok(Body::JobRunnerReadyResponse(JobRunnerReadyResponse {
                status,
                software_version: SOFTWARE_VERSION.to_string(),
                config_version: config.settings.version,
            }))
        };
        if !config.enabled {
            return answer(ReadyStatus::Disabled);
        }
        // A unique marker content lets runner-poll tell a new hint from the one it used.
        let marker = format!("{} {}\n", now_unix(), sign::new_nonce());
        write_atomic(&self.state.ready_path(), marker.as_bytes(), 0o600)
            .map_err(|e| self.internal(&e, "cannot write the ready marker"))?;
        let busy = self
            .state
            .is_locked()
            .map_err(|e| self.internal(&e, "cannot check the runner lock"))?;
        if busy {
            // The running cycle polls again before it ends and sees the marker.
            return answer(ReadyStatus::Busy);
        }
        if self.start_cycle {
            if let Err(e) = start_cycle(self.state.root()) {
                // Cron remains the fallback; the marker is in place.
                eprintln!("runner-cgi: cannot start a delivery cycle: {e:#}");
            }
        }
        answer(ReadyStatus::Accepted)
    }

    fn config_update(
        &self,
        _loaded: &RunnerConfig,
        update: &JobRunnerConfigUpdate,
    ) -> Result<Body, Fault> {
        // Serialise updates so two pushes cannot interleave read-modify-write.
        let lock = ConfigLock::take(&self.state)
            .map_err(|e| self.internal(&e, "cannot lock the configuration"))?;
        let mut config = RunnerConfig::load(&self.state).map_err(|e| {
            eprintln!("runner-cgi: error: runner is not configured: {e:#}");
            faults::not_configured()
        })?;
        if update.version <= config.settings.version {
            return Err(Fault::new(
                FaultReason::VersionNotIncreasing,
                format!(
                    "version {} does not increase the applied version {}",
                    update.version, config.settings.version
                ),
            ));
        }
        config
            .apply_update(update.version, &update.settings)
            .map_err(|e| Fault::new(FaultReason::InvalidValue, e))?;
        config
            .save(&self.state)
            .map_err(|e| self.internal(&e, "cannot write runner.toml"))?;
        drop(lock);
        Ok(Body::JobRunnerConfigUpdateResponse(
            JobRunnerConfigUpdateResponse {
                applied_version: config.settings.version,
            },
        ))
    }
}

impl Endpoint {
    /// An Internal fault for the peer; the reason (paths, OS error) goes to the log only,
    /// and a CGI run then exits with the error's code (75 for a state folder it cannot
    /// write) instead of 0.
    fn internal(&self, err: &anyhow::Error, message: &str) -> Fault {
        eprintln!("runner-cgi: error: {message}: {err:#}");
        let code = crate::cli::exit_code_of(err);
        let _ = self
            .failed
            .compare_exchange(EXIT_OK, code, Ordering::Relaxed, Ordering::Relaxed);
        Fault::new(FaultReason::Internal, message)
    }
}

/// The operations runner-cgi serves (runner.wsdl), as SOAPAction names them.
const RUNNER_OPERATIONS: [&str; 2] = ["JobRunnerReady", "JobRunnerConfigUpdate"];

fn reply(req: &Request, key: Option<&SigningKey>, status: u16, body: &Body) -> Response {
    let bytes = codec::encode(body);
    let action = codec::soap_action(body);
    let headers = match key {
        Some(key) => web::sign_response(key, req, action, &bytes),
        None => vec![("SOAPAction".to_string(), format!("\"{action}\""))],
    };
    Response::new(status, codec::CONTENT_TYPE, bytes).with_headers(headers)
}

/// Starts `runner-admin cycle` (the sibling binary) detached from this request: own
/// process group, no stdin, its output appended to `cycle.log` in the state folder (not
/// to the web server, which would wait for it), so a cycle that fails says why.
fn start_cycle(state_root: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let admin = exe
        .parent()
        .context("program has no folder")?
        .join("runner-admin");
    let log = cycle_log(state_root);
    let (stdout, stderr) = match &log {
        Some(f) => (
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        ),
        None => (Stdio::null(), Stdio::null()),
    };
    let mut child = Command::new(&admin)
        .arg("cycle")
        .arg("--state-dir")
        .arg(state_root)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", admin.display()))?;
    if let Some(mut f) = log {
        use std::io::Write;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let _ = writeln!(f, "{at} runner-admin cycle started (pid {})", child.id());
    }
    // Under --listen this process lives on: reap the child when it ends (no zombies).
    // A CGI process exits first and the child is re-parented to init.
    std::thread::spawn(move || child.wait());
    Ok(())
}

/// Largest `cycle.log` kept: above it the next cycle starts the file afresh.
const CYCLE_LOG_MAX_BYTES: u64 = 1024 * 1024;

/// `cycle.log` in the state folder, opened for appending (mode 0600), or emptied first
/// when it grew past [`CYCLE_LOG_MAX_BYTES`]. None when it cannot be opened: the cycle
/// still runs, its messages are lost as before.
fn cycle_log(state_root: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_root.join("cycle.log");
    let too_big = std::fs::metadata(&path).is_ok_and(|m| m.len() > CYCLE_LOG_MAX_BYTES);
    std::fs::OpenOptions::new()
        .create(true)
        .append(!too_big)
        .write(true)
        .truncate(too_big)
        .mode(0o600)
        .open(&path)
        .ok()
}
