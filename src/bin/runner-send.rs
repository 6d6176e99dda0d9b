use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-send", || {
        Err(mailrun::cli::CliError::not_yet_available("runner-send").into())
    })
}
