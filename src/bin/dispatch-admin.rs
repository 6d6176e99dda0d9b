use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-admin", || {
        mailrun::dispatcher::admin::main(mailrun::cli::parse_args())
    })
}
