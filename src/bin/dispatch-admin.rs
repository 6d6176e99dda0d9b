use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-admin", || {
        Err(mailrun::cli::CliError::not_yet_available("dispatch-admin").into())
    })
}
