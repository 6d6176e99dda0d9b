use std::process::ExitCode;

use mailrun::dispatcher::push::{self, Args};

fn main() -> ExitCode {
    mailrun::cli::run("push-config", || {
        push::main(mailrun::cli::parse_args::<Args>())
    })
}
