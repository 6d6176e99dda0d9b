use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("runner-admin", || {
        mailrun::runner::admin::main(mailrun::cli::parse_args())
    })
}
