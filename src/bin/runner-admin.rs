use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mailrun::cli::run("runner-admin", || {
        mailrun::runner::admin::main(mailrun::runner::admin::Args::parse())
    })
}
