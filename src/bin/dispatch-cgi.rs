use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-cgi", || {
        Err(mailrun::cli::CliError::not_yet_available("dispatch-cgi").into())
    })
}
