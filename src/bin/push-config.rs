use std::process::ExitCode;

use clap::Parser;
use mailrun::dispatcher::push::{self, Args};

fn main() -> ExitCode {
    mailrun::cli::run("push-config", || push::main(Args::parse()))
}
