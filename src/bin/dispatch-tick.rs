use std::process::ExitCode;

use mailrun::dispatcher::tick::{self, Args};

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-tick", || {
        tick::main(mailrun::cli::parse_args::<Args>())
    })
}
