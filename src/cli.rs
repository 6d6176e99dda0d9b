//! Exit codes and the error type shared by every command.
//!
//! Codes follow sysexits(3) where one fits and are identical across commands, so cron
//! wrappers and shell compositions (`runner-poll && runner-send`) can branch on them.

use std::process::ExitCode;

/// Done.
pub const EXIT_OK: u8 = 0;
/// Nothing to do this time (empty queue, no batch, another instance holds the lock).
pub const EXIT_NO_WORK: u8 = 3;
/// Command line usage error (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Bad input data (EX_DATAERR).
pub const EXIT_DATA: u8 = 65;
/// A peer (database, dispatcher, runner, SMTP server) is unavailable (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Internal error (EX_SOFTWARE).
pub const EXIT_SOFTWARE: u8 = 70;
/// Temporary failure; retry later (EX_TEMPFAIL).
pub const EXIT_TEMPFAIL: u8 = 75;
/// Configuration error (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// The exit-code table, as printed in every man page and `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0   done
  3   no work (nothing due, no batch, or another run holds the lock)
  64  usage error
  65  bad input data
  69  a peer (database, dispatcher, runner, SMTP server) is unavailable
  70  internal error
  75  temporary failure; retry later
  78  configuration error";

/// An error that knows which exit code it maps to.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// For commands whose issue has not landed yet: fail loudly, never pretend.
    pub fn not_yet_available(command: &str) -> Self {
        CliError::new(
            EXIT_SOFTWARE,
            format!("{command}: not yet available in this build of mailrun"),
        )
    }
}

/// Runs a command body and maps its result to an exit code, printing the whole error
/// chain (`{:#}`) to stderr. A `CliError` anywhere in the chain picks the code; any other
/// error is an internal error unless it is a broken pipe, which exits 0 (like ripgrep).
pub fn run(command: &str, body: impl FnOnce() -> anyhow::Result<u8>) -> ExitCode {
    exit_quietly_when_stdout_closes();
    match body() {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("{command}: error: {err:#}");
            ExitCode::from(exit_code_of(&err))
        }
    }
}

/// The exit code an error maps to.
pub fn exit_code_of(err: &anyhow::Error) -> u8 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<CliError>().map(|e| e.code))
        .unwrap_or(EXIT_SOFTWARE)
}

/// `println!` panics when stdout is a pipe whose reader has gone (`dispatch-admin report |
/// head`). That is the same broken pipe as above: exit 0 without a panic message and
/// backtrace instead. Any other panic keeps the default report.
fn exit_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(i32::from(EXIT_OK));
        }
        default(info);
    }));
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses the command line like `T::parse()`, but exits with EXIT_USAGE (64) on a usage
/// error instead of clap's 2, so every command keeps the documented exit codes. Help and
/// version requests print and exit 0.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    i32::from(EXIT_OK)
                }
                _ => i32::from(EXIT_USAGE),
            };
            // clap prints help to stdout and errors to stderr.
            let _ = err.print();
            std::process::exit(code);
        }
    }
}
