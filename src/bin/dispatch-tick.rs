use std::process::ExitCode;

use clap::Parser;
use mailrun::dispatcher::tick::{self, Args};

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-tick", || tick::main(Args::parse()))
}
