use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-tick", || {
        Err(mailrun::cli::CliError::not_yet_available("dispatch-tick").into())
    })
}
