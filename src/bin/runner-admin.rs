use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-admin", || {
        Err(mailrun::cli::CliError::not_yet_available("runner-admin").into())
    })
}
