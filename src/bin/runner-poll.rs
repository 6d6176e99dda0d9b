use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-poll", || {
        mailrun::runner::poll::main(mailrun::cli::parse_args())
    })
}
