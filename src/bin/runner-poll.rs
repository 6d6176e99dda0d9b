use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mailrun::cli::run("runner-poll", || {
        mailrun::runner::poll::main(mailrun::runner::poll::Args::parse())
    })
}
