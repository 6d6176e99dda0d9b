#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/test-setup.sh), then runs every
# test against real PostgreSQL, SMTP, web server and SOAP client, then stops the private
# PostgreSQL cluster the tests started. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-setup.sh

# The tests find python3 (with zeep and aiosmtpd), smtp-sink and the PostgreSQL binaries here.
export PATH="$PWD/.venv-test/bin:/usr/sbin:$PATH"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
export PATH="$PATH:$pg_bin"
export MAILRUN_TEST_PG_DIR="${MAILRUN_TEST_PG_DIR:-$(mktemp -d /tmp/mailrun-test-pg.XXXXXX)}"
chmod 755 "$MAILRUN_TEST_PG_DIR"

stop_cluster() {
  if [ -f "$MAILRUN_TEST_PG_DIR/data/postmaster.pid" ]; then
    if [ "$(id -u)" -eq 0 ]; then
      runuser -u postgres -- "$pg_bin/pg_ctl" -D "$MAILRUN_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    else
      "$pg_bin/pg_ctl" -D "$MAILRUN_TEST_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
  fi
  rm -rf "$MAILRUN_TEST_PG_DIR"
}
trap stop_cluster EXIT

cargo build --bins --quiet
cargo test --no-fail-fast "$@"
