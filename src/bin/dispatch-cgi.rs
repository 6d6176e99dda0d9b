use std::process::ExitCode;

use mailrun::dispatcher::endpoint::{self, Args};

fn main() -> ExitCode {
    mailrun::cli::run("dispatch-cgi", || endpoint::main(Args::parse_cgi_aware()))
}
