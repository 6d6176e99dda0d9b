use std::process::ExitCode;

fn main() -> ExitCode {
    mailrun::runner::heap::cap_arenas();
    mailrun::cli::run("runner-send", || {
        mailrun::runner::send::main(mailrun::cli::parse_args())
    })
}
