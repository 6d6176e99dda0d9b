use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("push-config", || {
        Err(mailrun::cli::CliError::not_yet_available("push-config").into())
    })
}
