use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-cgi", || {
        mailrun::runner::endpoint::main(mailrun::cli::parse_args())
    })
}
