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
    disable_core_dumps(command);
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

/// Every command holds secrets (SMTP passwords, runner keys, the database URL): no core
/// dump may write them to disk. Core size limit 0 (hard too, so nothing raises it again)
/// and, on Linux, not dumpable, which also stops ptrace and /proc/PID/mem reads by the
/// same user. Before anything else runs; a failure is said, not fatal.
fn disable_core_dumps(command: &str) {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, zero) {
        eprintln!("{command}: warning: cannot turn core dumps off: {e}");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("{command}: warning: cannot make the process non-dumpable: {e}");
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

/// Reads an on/off switch: 1/0, yes/no, on/off, true/false (any case, surrounding
/// blanks ignored); empty is off, as an unset variable is. `None` for anything else.
pub fn parse_switch(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "" | "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// What [`parse_switch`] accepts, for error messages and help.
pub const SWITCH_SPELLINGS: &str = "1/0, yes/no, on/off or true/false";

/// An environment variable that is a switch (unset: off), read with [`parse_switch`].
pub fn env_switch(name: &str) -> Result<bool, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(false),
        Ok(value) => {
            parse_switch(&value).ok_or_else(|| format!("{name}={value:?}: want {SWITCH_SPELLINGS}"))
        }
        Err(std::env::VarError::NotUnicode(value)) => {
            Err(format!("{name}={value:?}: want {SWITCH_SPELLINGS}"))
        }
    }
}

/// The value parser of every flag that an environment variable can also set
/// (`#[arg(long, env = "MAILRUN_...", value_parser = cli::SwitchParser)]`): clap's own
/// bool parser takes only "true" and "false", so `MAILRUN_VERBOSE=1` was an error.
#[derive(Debug, Clone, Copy)]
pub struct SwitchParser;

impl clap::builder::TypedValueParser for SwitchParser {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<bool, clap::Error> {
        if let Some(on) = value.to_str().and_then(parse_switch) {
            return Ok(on);
        }
        // Name the variable too: a bad value almost always comes from the environment.
        let name = match arg {
            Some(arg) => {
                let long = arg
                    .get_long()
                    .map(|l| format!("--{l}"))
                    .unwrap_or_else(|| arg.get_id().to_string());
                match arg.get_env() {
                    Some(env) => format!("{long} (or {})", env.to_string_lossy()),
                    None => long,
                }
            }
            None => "a switch".to_string(),
        };
        let mut err = clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!(
                "invalid value {:?} for {name}: want {SWITCH_SPELLINGS}\n",
                value.to_string_lossy()
            ),
        );
        err = err.with_cmd(cmd);
        Err(err)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Switches {
        #[arg(long, env = "MAILRUN_TEST_SWITCH_CLI", value_parser = SwitchParser)]
        verbose: bool,
    }

    #[test]
    fn switch_spellings() {
        for on in ["1", "yes", "YES", "On", "true", "TRUE", " 1 "] {
            assert_eq!(parse_switch(on), Some(true), "{on:?}");
        }
        for off in ["", "0", "no", "No", "off", "OFF", "false", "False"] {
            assert_eq!(parse_switch(off), Some(false), "{off:?}");
        }
        for bad in ["maybe", "2", "y", "enable", "-1"] {
            assert_eq!(parse_switch(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn switch_flag_on_the_command_line() {
        assert!(
            Switches::try_parse_from(["x", "--verbose"])
                .unwrap()
                .verbose
        );
        assert!(!Switches::try_parse_from(["x"]).unwrap().verbose);
    }
}
