use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-send", || {
        mailrun::runner::send::main(mailrun::cli::parse_args())
    })
}
