use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-cgi", || {
        Err(mailrun::cli::CliError::not_yet_available("runner-cgi").into())
    })
}
