use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mailrun::cli::run("runner-send", || {
        mailrun::runner::send::main(mailrun::runner::send::Args::parse())
    })
}
