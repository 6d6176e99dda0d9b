//! The dispatcher alone, driven by benches/load.py (not a criterion bench): claim batches
//! with `mailrun.claim_batch` and encode each as the JobRun answer, against the database
//! in `MAILRUN_BENCH_DATABASE_URL`. Prints one JSON line.
//!
//!   cargo bench --bench claim -- drain RUNNER BATCH      claim+encode until the queue is empty
//!   cargo bench --bench claim -- latency RUNNER BATCH K  K claims, each timed (seconds)

use std::process::ExitCode;
use std::time::Instant;

use mailrun::dispatcher::{connection, queue};
use mailrun::protocol::codec;
use mailrun::protocol::types::Body;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("claim bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // cargo passes `--bench` to harness-less benches; it is not ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let url = std::env::var("MAILRUN_BENCH_DATABASE_URL")
        .map_err(|_| anyhow::anyhow!("set MAILRUN_BENCH_DATABASE_URL"))?;
    let mut client = connection::connect(&url)?;
    let number = |i: usize, what: &str| -> anyhow::Result<u32> {
        args.get(i)
            .ok_or_else(|| anyhow::anyhow!("missing {what}"))?
            .parse()
            .map_err(|_| anyhow::anyhow!("{what} must be a number"))
    };
    let usage = "usage: claim drain RUNNER BATCH | claim latency RUNNER BATCH K";
    let mode = args.first().ok_or_else(|| anyhow::anyhow!(usage))?;
    let runner = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?;
    let batch = number(2, "BATCH")?;
    match mode.as_str() {
        "drain" => {
            let (mut rows, mut claims, mut bytes) = (0usize, 0usize, 0usize);
            let mut enc = 0f64; // of which JobRun encoding
            let start = Instant::now();
            loop {
                let run = queue::claim_batch(&mut client, runner, batch, 600)?;
                if run.messages.is_empty() {
                    break;
                }
                rows += run.messages.len();
                claims += 1;
                let t = Instant::now();
                bytes += codec::encode(&Body::JobRun(run)).len();
                enc += t.elapsed().as_secs_f64();
            }
            let seconds = start.elapsed().as_secs_f64();
            println!(
                r#"{{"rows": {rows}, "claims": {claims}, "bytes": {bytes}, "seconds": {seconds}, "encode_seconds": {enc}}}"#
            );
        }
        "latency" => {
            let k = number(3, "K")?;
            let mut times = Vec::with_capacity(k as usize);
            for _ in 0..k {
                let start = Instant::now();
                let run = queue::claim_batch(&mut client, runner, batch, 600)?;
                times.push(start.elapsed().as_secs_f64());
                anyhow::ensure!(
                    run.messages.len() == batch as usize,
                    "claimed {} rows, expected {batch}: queue too short",
                    run.messages.len()
                );
            }
            let list: Vec<String> = times.iter().map(|t| format!("{t}")).collect();
            println!(r#"{{"seconds": [{}]}}"#, list.join(", "));
        }
        _ => anyhow::bail!(usage),
    }
    Ok(())
}
