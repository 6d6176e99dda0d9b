//! The allocator's share of a delivery run's memory. glibc gives each thread that
//! contends for the heap an arena of its own (up to 8 per core) and keeps freed memory in
//! each; with dozens of SMTP session threads going through batch after batch, that kept
//! memory, not the batches, made runner-send's peak grow with the number of spooled
//! messages (45 MiB with 100 k spooled against 18 MiB with 1 k; BENCHMARKS.md). Two
//! arenas hold it near the 1 k figure (22.6 MiB), and sessions wait on the network, not
//! on malloc. The crate forbids `unsafe`, so no `mallopt`: glibc reads the cap from
//! `GLIBC_TUNABLES` only when a program starts, hence one re-exec with it set.

use std::os::unix::process::CommandExt;

const ARENA_MAX: &str = "glibc.malloc.arena_max";

/// Re-executes this program with the arena cap unless it already runs with one (a cap
/// the operator set is kept). Returns only when nothing was to be done or the exec
/// failed; the run then goes on with glibc's defaults, which are correct, only larger.
pub fn cap_arenas() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    if current.contains(ARENA_MAX) {
        return;
    }
    let tunables = if current.is_empty() {
        format!("{ARENA_MAX}=2")
    } else {
        format!("{current}:{ARENA_MAX}=2")
    };
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args
        .next()
        .unwrap_or_else(|| program.clone().into_os_string());
    let error = std::process::Command::new(&program)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .exec();
    // Not fatal: the same run with more memory.
    eprintln!(
        "warning: cannot restart {} with a capped heap: {error}",
        program.display()
    );
}
