use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-admin", || {
        mailrun::dispatcher::admin::main(mailrun::dispatcher::admin::Args::parse())
    })
}
