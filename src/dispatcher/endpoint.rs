//! The dispatcher's SOAP endpoint (`dispatch-cgi`): answers a runner's JobRunRequest with
//! a signed JobRun.
//!
//! One handler serves both a web server's CGI (one request per process) and `--listen`
//! (development, quickstart, tests). Every refusal is a SOAP Fault with a precise reason,
//! decided before anything is written; the writes (nonce, results, reap, claim) happen in
//! one transaction, so a refused or failed request changes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cli::{CliError, EXIT_CODES_HELP, EXIT_CONFIG, EXIT_OK, EXIT_USAGE};
use crate::dispatcher::api::{self, ApiConfig};
use crate::dispatcher::status_page::{self, StatusPageConfig};
use crate::dispatcher::{connection, queue, runners, schema};
use crate::protocol::codec::{self, Limits};
use crate::protocol::faults;
use crate::protocol::sign::{self, Signature, SigningKey};
use crate::protocol::{Body, Fault, FaultReason, JobRun, JobRunRequest};
use crate::web::{Request, RequestError, Response};
use clap::Parser;

/// The SOAPAction a JobRunRequest carries (WSDL: `soapAction`).
pub const JOB_RUN_REQUEST_ACTION: &str = "urn:mailrun:soap:v1#JobRunRequest";

/// Largest request body accepted; bigger ones are refused (TooLarge) before parsing. The
/// codec's request limit: a JobRunRequest carrying a runner's 1000 results fits.
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;

/// Lease granted with each batch unless configured.
pub const DEFAULT_LEASE_SECONDS: u32 = 600;

#[derive(Parser)]
#[command(
    name = "dispatch-cgi",
    version,
    about = "Answer runners' JobRunRequest with a batch of queued mail (CGI program)",
    long_about = "Answer runners' JobRunRequest with a batch of queued mail.\n\n\
        Run by a web server as a CGI program (RFC 3875): it reads one request from the \
        environment and stdin and writes the response to stdout. Under CGI the command \
        line is ignored (a server may pass the query string as arguments); configure it \
        through the environment instead (MAILRUN_DATABASE_URL, MAILRUN_CONFIG, \
        MAILRUN_LEASE_SECONDS, MAILRUN_MAX_BODY, MAILRUN_VERBOSE).\n\n\
        With --listen ADDR it serves the same handler over HTTP, for development, the \
        quickstart and tests; each of its 8 worker threads keeps one database connection \
        from request to request.\n\n\
        POST with SOAPAction \"urn:mailrun:soap:v1#JobRunRequest\": verifies the runner's \
        signature and freshness, records the results it carries, reaps expired leases, \
        claims a batch and answers a signed JobRun.\n\n\
        GET shows the read-only status page (HTML; by default only to loopback clients, \
        see [status_page] in dispatcher.toml); GET ?health answers a one-line health \
        text without touching the database.\n\n\
        Paths containing /api/v1 are the HTTP JSON API for applications (bearer API keys \
        from dispatch-admin api-key, JSON bodies, Idempotency-Key, RFC 9457 problems): \
        see docs/api.md and protocol/openapi.yaml.",
    after_help = EXIT_CODES_HELP
)]
pub struct Args {
    /// Serve HTTP on this address (for example 127.0.0.1:8080) instead of one CGI request;
    /// each worker thread keeps its database connection between requests.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// PostgreSQL URL (default: MAILRUN_DATABASE_URL, then the config file); TLS:
    /// ?sslmode=verify-full&sslrootcert=FILE; primary and standby: HOST1,HOST2 with
    /// target_session_attrs=read-write (docs/dispatcher.md).
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Dispatcher config file (default: MAILRUN_CONFIG, ~/.config/mailrun/dispatcher.toml,
    /// /etc/mailrun/dispatcher.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Lease granted with each batch, in seconds.
    #[arg(long, value_name = "SECONDS", env = "MAILRUN_LEASE_SECONDS",
          default_value_t = DEFAULT_LEASE_SECONDS,
          value_parser = clap::value_parser!(u32).range(30..=86_400))]
    pub lease_seconds: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", env = "MAILRUN_MAX_BODY",
          default_value_t = DEFAULT_MAX_BODY as u64,
          value_parser = clap::value_parser!(u64).range(1024..=64 * 1024 * 1024))]
    pub max_body: u64,

    /// Log one line per request to stderr (errors are always logged). MAILRUN_VERBOSE
    /// takes 1/0, yes/no, on/off or true/false.
    #[arg(short, long, env = "MAILRUN_VERBOSE", value_parser = crate::cli::SwitchParser)]
    pub verbose: bool,
}

impl Args {
    /// Parses the command line, except under CGI: there argv may be the request's query
    /// string (RFC 3875 4.4), so only the environment configures the program.
    ///
    /// A bad setting in the environment under CGI still answers the web server (a fault,
    /// logged to stderr) before exiting 78, rather than leaving it a broken response.
    pub fn parse_cgi_aware() -> Args {
        if std::env::var_os("GATEWAY_INTERFACE").is_none() {
            return crate::cli::parse_args();
        }
        match Args::try_parse_from(["dispatch-cgi"]) {
            Ok(args) => args,
            Err(err) => {
                // clap names the flag; under CGI the operator set the variable.
                let text = err.to_string();
                let first = text
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ");
                eprintln!(
                    "dispatch-cgi: error: bad setting in the environment \
                     (MAILRUN_LEASE_SECONDS, MAILRUN_MAX_BODY or MAILRUN_VERBOSE): {first}"
                );
                answer_not_configured();
                std::process::exit(i32::from(EXIT_CONFIG));
            }
        }
    }
}

/// `dispatch-cgi`: one CGI request, or `--listen` forever.
pub fn main(args: Args) -> anyhow::Result<u8> {
    let max_body = usize::try_from(args.max_body).unwrap_or(DEFAULT_MAX_BODY);
    let database_url = crate::dispatcher::config::database_url(
        args.database_url.as_deref(),
        args.config.as_deref(),
    )
    .and_then(|url| {
        // The status page's access setting and the API's defaults live in the same file.
        let (config, _) =
            crate::dispatcher::config::DispatcherConfig::load(args.config.as_deref())?;
        let api = ApiConfig {
            defaults: config.defaults.clone(),
            time_zone: config.time_zone.clone(),
        };
        Ok((url, (config.status_page, api)))
    });
    let in_cgi = std::env::var_os("GATEWAY_INTERFACE").is_some();

    match (args.listen, in_cgi) {
        (Some(addr), _) => {
            let (database_url, (status_page, api)) = database_url?;
            let endpoint = Endpoint {
                database_url,
                lease_seconds: args.lease_seconds,
                max_body,
                verbose: args.verbose,
                status_page,
                api,
            };
            connection::keep_connections_between_requests();
            crate::web::listen::serve(
                &addr.to_string(),
                move |req| endpoint.handle(req),
                refusal,
                max_body,
            )?;
            Ok(EXIT_OK)
        }
        (None, true) => match database_url {
            Ok((database_url, (status_page, api))) => {
                let endpoint = Endpoint {
                    database_url,
                    lease_seconds: args.lease_seconds,
                    max_body,
                    verbose: args.verbose,
                    status_page,
                    api,
                };
                crate::web::cgi::serve_once(&|req| endpoint.handle(req), refusal, max_body)?;
                Ok(EXIT_OK)
            }
            Err(err) => {
                // Still answer the web server properly; the operator reads the log.
                eprintln!("dispatch-cgi: error: {err:#}");
                answer_not_configured();
                Ok(EXIT_CONFIG)
            }
        },
        (None, false) => Err(CliError::new(
            EXIT_USAGE,
            "not started by a web server (GATEWAY_INTERFACE is unset); use --listen ADDR to serve HTTP",
        )
        .into()),
    }
}

/// Answers the pending CGI request with an `Internal` fault: the dispatcher cannot work
/// until its operator fixes the configuration (the reason is in the log).
fn answer_not_configured() {
    let handler = |req: Request| fault_response(&faults::not_configured(), None, &req);
    if let Err(e) = crate::web::cgi::serve_once(&handler, refusal, DEFAULT_MAX_BODY) {
        eprintln!("dispatch-cgi: error: cannot answer the web server: {e}");
    }
}

/// A request the web adapter refused before any handler ran: a problem document under
/// `/api/v1/` (the API's contract), else the SOAP fault `protocol/faults.md` names.
fn refusal(error: &RequestError) -> Response {
    match error.path.as_deref().and_then(api::api_path) {
        Some(_) => api::refusal(error),
        None => error.to_response(),
    }
}

/// The request handler shared by CGI and `--listen`.
pub struct Endpoint {
    pub database_url: String,
    pub lease_seconds: u32,
    pub max_body: usize,
    pub verbose: bool,
    /// Who may see the status page (GET); `[status_page]` in dispatcher.toml.
    pub status_page: StatusPageConfig,
    /// Defaults of the HTTP JSON API under `/api/v1/` (docs/api.md).
    pub api: ApiConfig,
}

/// A refusal: the fault to answer and, once the runner's key is known, the key that
/// signs the answer.
struct Refusal {
    fault: Fault,
    key: Option<SigningKey>,
    /// Full detail for the dispatcher's log (may be longer than the fault's message).
    log_detail: Option<String>,
    /// The database failed (not the request): its connection is not kept.
    database_error: bool,
}

impl Refusal {
    fn new(reason: FaultReason, message: impl Into<String>) -> Refusal {
        Refusal {
            fault: Fault::new(reason, message),
            key: None,
            log_detail: None,
            database_error: false,
        }
    }

    fn signed_with(mut self, key: &SigningKey) -> Refusal {
        self.key = Some(key.clone());
        self
    }
}

impl From<Fault> for Refusal {
    fn from(fault: Fault) -> Refusal {
        Refusal {
            fault,
            key: None,
            log_detail: None,
            database_error: false,
        }
    }
}

/// What a served JobRunRequest did, for the log line.
struct Served {
    runner_id: String,
    acknowledged: usize,
    claimed: usize,
}

impl Endpoint {
    pub fn handle(&self, request: Request) -> Response {
        let peer = request
            .remote_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".to_string());
        if let Some(path) = api::api_path(&request.path) {
            return api::handle(
                &request,
                path,
                &self.database_url,
                &self.api,
                self.max_body,
                self.verbose,
            );
        }
        match request.method.as_str() {
            "GET" | "HEAD" => {
                // `?health`: a check for monitoring that touches no database and needs
                // no access; anything else is the status page (docs/results.md).
                let response = if request.query == "health" {
                    Response {
                        status: 200,
                        content_type: "text/plain; charset=utf-8".to_string(),
                        headers: Vec::new(),
                        body: b"mailrun dispatcher OK\n".to_vec(),
                    }
                } else {
                    status_page::respond(&request, &self.status_page, || {
                        let mut db = connection::Kept::take_or_connect(&self.database_url)?;
                        schema::require_current(&mut *db)?;
                        let now = connection::db_now(&mut *db)?;
                        let paging = status_page::Paging::from_query(&request.query);
                        let page = status_page::render_page(&mut *db, now, &paging)?;
                        db.keep();
                        Ok(page)
                    })
                };
                if self.verbose || response.status >= 500 {
                    eprintln!(
                        "dispatch-cgi: {peer} {} {} {}",
                        request.method, request.path, response.status
                    );
                }
                return response;
            }
            "POST" => {}
            other => {
                let fault = faults::method_not_allowed(other);
                eprintln!("dispatch-cgi: {peer} {other} {} 405 {fault}", request.path);
                let mut response = fault_response(&fault, None, &request);
                response.status = 405;
                response
                    .headers
                    .push(("Allow".to_string(), "GET, POST".to_string()));
                return response;
            }
        }

        match self.serve(&request) {
            Ok((job_run, key, served)) => {
                if self.verbose {
                    eprintln!(
                        "dispatch-cgi: {peer} POST {} runner={} acknowledged={} claimed={} 200",
                        request.path, served.runner_id, served.acknowledged, served.claimed
                    );
                }
                signed_response(200, &Body::JobRun(job_run), Some(&key), &request)
            }
            Err(refusal) => {
                let response = fault_response(&refusal.fault, refusal.key.as_ref(), &request);
                let runner = refusal
                    .key
                    .as_ref()
                    .map(|k| format!(" key={}", k.key_id))
                    .unwrap_or_default();
                eprintln!(
                    "dispatch-cgi: {peer} POST {}{runner} {} {}{}",
                    request.path,
                    response.status,
                    refusal.fault,
                    refusal
                        .log_detail
                        .map(|d| format!(" ({d})"))
                        .unwrap_or_default()
                );
                response
            }
        }
    }

    /// Checks the request in the order that reveals least to an unauthenticated peer,
    /// then applies it in one transaction.
    fn serve(&self, request: &Request) -> Result<(JobRun, SigningKey, Served), Refusal> {
        // The adapters refuse a body over `max_body` (413) before this runs.
        check_soap_action(request)?;

        let signature = Signature::from_headers(|name| request.header(name).map(str::to_string))
            .map_err(|e| Refusal::new(e.fault_reason(), e.to_string()))?;

        let mut client = connection::Kept::take_or_connect(&self.database_url)
            .map_err(|e| db_refusal(e.into()))?;
        let served = self.serve_on(&mut client, request, &signature);
        if !matches!(&served, Err(r) if r.database_error) {
            client.keep();
        }
        served
    }

    fn serve_on(
        &self,
        client: &mut postgres::Client,
        request: &Request,
        signature: &Signature,
    ) -> Result<(JobRun, SigningKey, Served), Refusal> {
        // Mid-upgrade (binary and schema out of step) the runner should come back later.
        schema::require_current(client).map_err(|err| {
            let mut refusal = db_refusal(err);
            refusal.fault = faults::database_unavailable();
            refusal
        })?;

        let runner = runners::find_by_key_id(client, &signature.key_id)
            .map_err(db_refusal)?
            .ok_or_else(|| Refusal::from(faults::unknown_key_id(&signature.key_id)))?;

        // The runner is known: even a refusal of a bad signature is signed with the key
        // it named, so the real runner can trust the fault. Not a stale timestamp: one
        // of the two clocks is off, so the client could not verify the signature.
        let named_key = runner
            .keys
            .iter()
            .find(|k| k.key_id == signature.key_id)
            .or_else(|| runner.keys.first())
            .cloned();
        let key = sign::verify(
            &runner.keys,
            signature,
            "POST",
            &request.path,
            JOB_RUN_REQUEST_ACTION,
            &request.body,
            sign::now_unix(),
        )
        .map_err(|e| {
            let refusal = Refusal::new(e.fault_reason(), e.to_string());
            match &named_key {
                Some(k) if !matches!(e, sign::SignError::Stale { .. }) => refusal.signed_with(k),
                _ => refusal,
            }
        })?
        .clone();

        // From here on the peer proved it holds the runner's key: faults are signed.
        let job_request = match codec::decode_with(&request.body, &Limits::for_request()) {
            Ok(Body::JobRunRequest(r)) => r,
            Ok(other) => {
                let fault = faults::action_mismatch(codec::operation_name(&other), "JobRunRequest");
                return Err(Refusal::from(fault).signed_with(&key));
            }
            Err(fault) => return Err(Refusal::from(fault).signed_with(&key)),
        };
        if job_request.runner_id != runner.id {
            let fault = faults::wrong_runner_id(&job_request.runner_id, &key.key_id);
            return Err(Refusal::from(fault).signed_with(&key));
        }
        if !runner.enabled {
            return Err(Refusal::from(faults::runner_disabled(&runner.id)).signed_with(&key));
        }

        let limit = job_request.capacity.min(runner.batch_size);
        let job_run = self
            .apply(client, &runner.id, signature, &job_request, limit)
            .map_err(|r| r.signed_with(&key))?;
        let served = Served {
            runner_id: runner.id.clone(),
            acknowledged: job_run.acknowledged.len(),
            claimed: job_run.messages.len(),
        };
        Ok((job_run, key, served))
    }

    /// The one transaction: remember the nonce, record results, confirm a key rotation,
    /// reap, claim, record the contact.
    fn apply(
        &self,
        client: &mut postgres::Client,
        runner_id: &str,
        signature: &Signature,
        job_request: &JobRunRequest,
        limit: u32,
    ) -> Result<JobRun, Refusal> {
        let mut tx = client.transaction().map_err(|e| db_refusal(e.into()))?;
        let fresh = queue::remember_nonce(
            &mut tx,
            &signature.key_id,
            &signature.nonce,
            signature.timestamp,
        )
        .map_err(db_refusal)?;
        if !fresh {
            // Dropping `tx` rolls back: nothing of this request is kept.
            return Err(Refusal::from(faults::replayed_nonce()));
        }
        let acknowledged =
            queue::apply_results(&mut tx, runner_id, &job_request.results).map_err(db_refusal)?;
        // A runner signing with its new key has finished the rotation: stop accepting
        // the old one.
        runners::confirm_key(&mut tx, runner_id, &signature.key_id).map_err(db_refusal)?;
        if let Some(held) = &job_request.held_job_runs {
            queue::release_lost_batches(&mut tx, runner_id, held).map_err(db_refusal)?;
        }
        queue::reap_expired(&mut tx).map_err(db_refusal)?;
        let mut job_run = if limit == 0 {
            empty_job_run()
        } else {
            queue::claim_batch(&mut tx, runner_id, limit, self.lease_seconds).map_err(db_refusal)?
        };
        job_run.acknowledged = acknowledged;
        runners::record_contact(
            &mut tx,
            runner_id,
            "polled",
            Some(&job_request.software_version),
            Some(job_request.config_version),
        )
        .map_err(db_refusal)?;
        tx.commit().map_err(|e| db_refusal(e.into()))?;
        Ok(job_run)
    }
}

fn empty_job_run() -> JobRun {
    JobRun {
        job_run_id: String::new(),
        lease_seconds: 0,
        acknowledged: Vec::new(),
        messages: Vec::new(),
    }
}

/// The SOAPAction header must name JobRunRequest (quotes optional, as clients differ).
fn check_soap_action(request: &Request) -> Result<(), Refusal> {
    let action = request.soap_action();
    if action != JOB_RUN_REQUEST_ACTION {
        return Err(Refusal::from(faults::unknown_action(action)));
    }
    Ok(())
}

/// Maps a database failure to a fault: unreachable or busy is `Unavailable` (retry
/// later); a value the database refused (a bad result in the request) is `InvalidValue`
/// with the database's message; anything else `Internal`, details in the log only.
fn db_refusal(err: anyhow::Error) -> Refusal {
    let fault = if connection::is_unavailable(&err) {
        faults::database_unavailable()
    } else if let Some(refused) = connection::refused_value(&err) {
        Fault::new(FaultReason::InvalidValue, refused)
    } else {
        Fault::new(
            FaultReason::Internal,
            "internal error in the dispatcher; see its log",
        )
    };
    Refusal {
        fault,
        key: None,
        // Which host answered matters with several (a standby answering read-only).
        log_detail: Some(match connection::answered_by() {
            Some(database) => format!("{database}: {err:#}"),
            None => format!("{err:#}"),
        }),
        database_error: true,
    }
}

/// A SOAP response, signed with `key` when the runner is known (contract: method
/// `RESPONSE`, the request's path, the response's own SOAPAction). The SOAPAction header
/// goes with every answer, signed or not (protocol/faults.md).
fn signed_response(
    status: u16,
    body: &Body,
    key: Option<&SigningKey>,
    request: &Request,
) -> Response {
    let bytes = codec::encode(body);
    let action = codec::soap_action(body);
    let headers = match key {
        Some(key) => crate::web::sign_response(key, request, action, &bytes),
        None => vec![("SOAPAction".to_string(), format!("\"{action}\""))],
    };
    Response {
        status,
        content_type: codec::CONTENT_TYPE.to_string(),
        headers,
        body: bytes,
    }
}

/// SOAP 1.1 faults travel with HTTP 500; an unavailable database answers 503 so proxies
/// and runners know to retry.
fn fault_response(fault: &Fault, key: Option<&SigningKey>, request: &Request) -> Response {
    let status = if fault.reason == FaultReason::Unavailable {
        503
    } else {
        500
    };
    signed_response(status, &Body::Fault(fault.clone()), key, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_constant_matches_codec() {
        let body = Body::JobRunRequest(JobRunRequest {
            runner_id: "r".into(),
            capacity: 1,
            software_version: "1".into(),
            config_version: 0,
            results: Vec::new(),
            held_job_runs: None,
        });
        assert_eq!(codec::soap_action(&body), JOB_RUN_REQUEST_ACTION);
    }
}
