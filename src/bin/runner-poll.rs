use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-poll", || {
        Err(mailrun::cli::CliError::not_yet_available("runner-poll").into())
    })
}
