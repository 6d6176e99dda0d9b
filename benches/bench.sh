#!/usr/bin/env bash
# The load benchmark in one command: builds the release binaries and the claim bench, then
# runs benches/load.py (every figure a median with min/max, ratios last). See BENCHMARKS.md.
#
#   benches/bench.sh                 full run (about 11 minutes on 2 cores, builds included)
#   benches/bench.sh --quick         smaller volumes (100k rows instead of 1M, ...)
#   benches/bench.sh --out FILE      also write the results as Markdown
#   benches/bench.sh --only api      the HTTP JSON API's enqueue rate (CGI and --listen,
#                                    batches and one message per request) as a ratio to
#                                    dispatch-admin enqueue --jsonl of the same messages
#   benches/bench.sh --only pooler   dispatch-tick direct, through PgBouncer (transaction
#                                    pooling) and over TLS vs a bare process start; a tick
#                                    with 10k vs 1M due (docs/scaling.md); --quick: 100k
#   benches/bench.sh --latency [--delays 0.1,0.3 --domains 1,10,100 --out FILE]
#                                    mailrun and stock Postfix against a receiving server
#                                    that answers late (benches/latency.py, delay_smtp.py)
#   benches/bench.sh --latency --php [--messages N --delays 0.1 --domains 1]
#                                    the PHP runner against the Rust runner on that server
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (private Postfix and PostgreSQL instances)" >&2; exit 1; }
for t in smtp-source smtp-sink postfix postsuper postmap lighttpd pgbench psql rustc; do
  command -v "$t" >/dev/null 2>&1 || [ -x "/usr/sbin/$t" ] ||
    { echo "bench: $t not found: run scripts/test-setup.sh" >&2; exit 1; }
done
cargo build --release --bins --quiet
if [ "${1:-}" = "--latency" ]; then
  shift
  exec python3 benches/latency.py "$@"
fi
cargo bench --no-run --quiet --bench claim
exec python3 benches/load.py "$@"
