//! Calling runners: one signed SOAP request to a runner's endpoint and its decoded
//! answer, and running such calls for many runners in parallel with a bound.
//!
//! Used by `dispatch-tick` (JobRunnerReady) and `push-config` (JobRunnerConfigUpdate).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::cli::{EXIT_TEMPFAIL, EXIT_UNAVAILABLE};
use crate::dispatcher::runners::Runner;
use crate::protocol::codec;
use crate::protocol::{Body, Fault, FaultReason};
use crate::web::client::{Client, TransportError};

/// Why a call to a runner did not produce the expected answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("runner has no endpoint (it polls on its own schedule)")]
    NoEndpoint,
    #[error("runner has no signing key")]
    NoKey,
    #[error("unreachable: {0}")]
    Transport(#[from] TransportError),
    /// The runner answered with a SOAP Fault (`signed` says whether it proved its key).
    #[error("refused: {fault}{}", if *.signed { "" } else { " (unsigned fault)" })]
    Fault { fault: Fault, signed: bool },
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl CallError {
    /// Unreachable means "try again later": network trouble or a runner-side outage.
    pub fn is_unreachable(&self) -> bool {
        match self {
            CallError::Transport(_) => true,
            CallError::Fault { fault, .. } => fault.reason == FaultReason::Unavailable,
            _ => false,
        }
    }

    /// The exit code this error suggests for a command that stops on it.
    pub fn exit_code(&self) -> u8 {
        match self {
            CallError::Transport(e) => e.exit_code(),
            CallError::Fault { fault, .. } if fault.reason == FaultReason::Unavailable => {
                EXIT_TEMPFAIL
            }
            _ => EXIT_UNAVAILABLE,
        }
    }

    /// A short token for JSON and the runners table.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::NoEndpoint => "no-endpoint",
            CallError::NoKey => "no-key",
            CallError::Transport(_) => "unreachable",
            CallError::Fault { .. } => "fault",
            CallError::Unexpected(_) => "unexpected-answer",
        }
    }
}

/// Sends `body` to the runner, signed with its first key; if the runner refuses the key
/// (mid-rotation it may know only the other one), retries with the next key.
pub fn call(client: &Client, runner: &Runner, body: &Body) -> Result<Body, CallError> {
    let endpoint = runner_endpoint(runner).ok_or(CallError::NoEndpoint)?;
    if runner.keys.is_empty() {
        return Err(CallError::NoKey);
    }
    let bytes = codec::encode(body);
    let action = codec::soap_action(body);
    let mut last = CallError::NoKey;
    for key in &runner.keys {
        match call_once(client, endpoint, key, action, &bytes) {
            Err(CallError::Fault { fault, signed })
                if matches!(
                    fault.reason,
                    FaultReason::BadSignature | FaultReason::UnknownRunner
                ) =>
            {
                last = CallError::Fault { fault, signed };
            }
            other => return other,
        }
    }
    Err(last)
}

fn runner_endpoint(runner: &Runner) -> Option<&str> {
    let endpoint = runner.endpoint.trim();
    (!endpoint.is_empty()).then_some(endpoint)
}

fn call_once(
    client: &Client,
    endpoint: &str,
    key: &crate::protocol::sign::SigningKey,
    action: &str,
    bytes: &[u8],
) -> Result<Body, CallError> {
    let response = client.post_signed(endpoint, key, action, bytes)?;
    let decoded = codec::decode(&response.body);
    match (response.status, decoded) {
        (_, Ok(Body::Fault(fault))) => Err(CallError::Fault {
            fault,
            signed: response.authenticated,
        }),
        (200, Ok(body)) => Ok(body),
        (status, Ok(body)) => Err(CallError::Unexpected(format!(
            "HTTP {status} with {}",
            codec::soap_action(&body)
        ))),
        (status, Err(fault)) => Err(CallError::Unexpected(format!(
            "HTTP {status}, body not a mailrun SOAP message ({fault})"
        ))),
    }
}

/// Runs `f` for every item on at most `max_parallel` threads; results in input order.
/// Each call carries its own timeout, so the whole run is bounded by
/// ceil(items / max_parallel) × timeout.
pub fn parallel_map<T, R, F>(items: &[T], max_parallel: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let workers = max_parallel.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                // A poisoned lock means another worker panicked; the scope re-raises it.
                if let Ok(mut slots) = results.lock() {
                    slots[i] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed by a worker"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_order_and_bounds_workers() {
        let items: Vec<u32> = (0..50).collect();
        let active = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = parallel_map(&items, 4, |x| {
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            active.fetch_sub(1, Ordering::SeqCst);
            x * 2
        });
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
    }

    #[test]
    fn parallel_map_of_nothing() {
        let out: Vec<u8> = parallel_map(&[] as &[u8], 8, |x| *x);
        assert!(out.is_empty());
    }
}
