use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    mailrun::cli::run("runner-cgi", || {
        mailrun::runner::endpoint::main(mailrun::runner::endpoint::Args::parse())
    })
}
