#!/usr/bin/env bash
# The quickstart: real delivery, end to end, on loopback.
#
# Installs what it needs (scripts/test-setup.sh), builds the release binaries, starts a
# private PostgreSQL cluster in .demo/ (kept and reused by the next run), a local SMTP
# capture server, the dispatcher endpoint and two runners, queues sample mail (some due
# now, some a minute ahead, one to an address the SMTP server refuses with 550 and one it
# defers with 451), then plays cron: `dispatch-tick` every few seconds, which alerts the
# runners, which poll, send and report. It prints what happened and stops every process it
# started.
#
#   ./scripts/quickstart.sh            run the demo (MESSAGES=N to change the volume)
#   ./scripts/quickstart.sh --clean    stop anything left and remove .demo/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DEMO=$ROOT/.demo
MESSAGES=${MESSAGES:-500}
PG_PORT=${PG_PORT:-54329}
SMTP_PORT=${SMTP_PORT:-25250}
DISPATCH_PORT=${DISPATCH_PORT:-18480}
RUNNER1_PORT=${RUNNER1_PORT:-18481}
RUNNER2_PORT=${RUNNER2_PORT:-18482}
BUDGET_SECONDS=${BUDGET_SECONDS:-110}

say() { printf 'quickstart: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin=""
find_pg() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$pg_bin" ] || die "PostgreSQL server binaries not found"
}

# PostgreSQL refuses to run as root: as root the cluster runs as `postgres`, which must be
# able to reach its folder. When the checkout is somewhere that user cannot enter (e.g. under
# /root), the cluster lives in /var/tmp and .demo/pg points there.
pg_dir() {
  if [ -L "$DEMO/pg" ] || [ -d "$DEMO/pg" ]; then
    readlink -f "$DEMO/pg"
    return
  fi
  if [ "$(id -u)" -eq 0 ] && ! runuser -u postgres -- test -x "$DEMO" 2>/dev/null; then
    local hash
    hash=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    mkdir -p "/var/tmp/mailrun-demo-pg-$hash"
    ln -s "/var/tmp/mailrun-demo-pg-$hash" "$DEMO/pg"
  else
    mkdir -p "$DEMO/pg"
  fi
  readlink -f "$DEMO/pg"
}

stop_processes() {
  if [ -d "$DEMO/pids" ]; then
    for pidfile in "$DEMO"/pids/*; do
      [ -f "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
  fi
  # Detached runner cycles started by runner-cgi end on their own (time budget); stop them too.
  pkill -f "runner-admin cycle --state-dir $DEMO/" 2>/dev/null || true
  find_pg
  local data
  data=$(readlink -f "$DEMO/pg" 2>/dev/null || true)
  if [ -n "$data" ] && [ -f "$data/data/postmaster.pid" ]; then
    as_postgres "$pg_bin/pg_ctl" -D "$data/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

if [ "${1:-}" = "--clean" ]; then
  stop_processes
  target=$(readlink -f "$DEMO/pg" 2>/dev/null || true)
  rm -rf "$DEMO"
  case "$target" in /var/tmp/mailrun-demo-pg-*) rm -rf "$target" ;; esac
  say "demo state removed"
  exit 0
fi
[ $# -eq 0 ] || die "usage: $0 [--clean]"

started=$(date +%s)
./scripts/test-setup.sh
say "building release binaries (the first build takes a few minutes)"
cargo build --release --bins --quiet
BIN=$ROOT/target/release
PY=$ROOT/.venv-test/bin/python3
export PATH="$BIN:$PATH"

mkdir -p "$DEMO/pids" "$DEMO/logs"
stop_processes
trap stop_processes EXIT

for port in "$PG_PORT" "$SMTP_PORT" "$DISPATCH_PORT" "$RUNNER1_PORT" "$RUNNER2_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port $port on 127.0.0.1 is in use; set PG_PORT/SMTP_PORT/DISPATCH_PORT/RUNNER1_PORT/RUNNER2_PORT"
  fi
done

# 1. PostgreSQL: a private cluster, made once and reused.
find_pg
PGROOT=$(pg_dir)
if [ ! -f "$PGROOT/data/PG_VERSION" ]; then
  say "creating a private PostgreSQL cluster in $PGROOT"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$PGROOT"
  as_postgres "$pg_bin/initdb" -A trust -U postgres -E UTF8 -D "$PGROOT/data" >/dev/null
fi
as_postgres "$pg_bin/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/postgres.log" \
  -o "-p $PG_PORT -h 127.0.0.1 -k $PGROOT/data" -w start >/dev/null
export MAILRUN_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/mailrun"
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tc \
  "SELECT 1 FROM pg_database WHERE datname = 'mailrun'" | grep -q 1 ||
  psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE mailrun" >/dev/null
# A fresh schema on every run (the cluster is reused).
psql -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d mailrun -c "DROP SCHEMA IF EXISTS mailrun CASCADE" 2>/dev/null
dispatch-admin init

# 2. A local SMTP capture server: accepts everything, except that it refuses
#    bounce@example.net (550) and defers later@example.net (451).
rm -f "$DEMO/captured.jsonl"
"$PY" tests/support/smtp_server.py --port "$SMTP_PORT" --record "$DEMO/captured.jsonl" \
  --reject bounce@example.net --defer later@example.net >"$DEMO/logs/smtp.log" 2>&1 &
echo $! >"$DEMO/pids/smtp"

# 3. The SMTP account and two runners, registered at the dispatcher.
dispatch-admin account add demo --host 127.0.0.1 --port "$SMTP_PORT" --security none >/dev/null
for n in 1 2; do
  port_var=RUNNER${n}_PORT
  key_json=$(dispatch-admin --json runner add "demo-$n" --endpoint "http://127.0.0.1:${!port_var}/")
  key_id=$(printf '%s' "$key_json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["key_id"])')
  key=$(printf '%s' "$key_json" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  rm -rf "$DEMO/runner$n"
  printf '%s' "$key" | runner-admin init --state-dir "$DEMO/runner$n" \
    --dispatcher-url "http://127.0.0.1:$DISPATCH_PORT/" --runner-id "demo-$n" \
    --key-id "$key_id" --key-file - >/dev/null
done

# 4. The endpoints (in production: CGI under a web server; here: --listen on loopback).
dispatch-cgi --listen "127.0.0.1:$DISPATCH_PORT" >"$DEMO/logs/dispatch-cgi.log" 2>&1 &
echo $! >"$DEMO/pids/dispatch-cgi"
for n in 1 2; do
  port_var=RUNNER${n}_PORT
  MAILRUN_RUNNER_DIR="$DEMO/runner$n" runner-cgi --listen "127.0.0.1:${!port_var}" \
    >"$DEMO/logs/runner-cgi-$n.log" 2>&1 &
  echo $! >"$DEMO/pids/runner-cgi-$n"
done
for port in "$SMTP_PORT" "$DISPATCH_PORT" "$RUNNER1_PORT" "$RUNNER2_PORT"; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done

# 5. Sample mail: MESSAGES due now, 3 scheduled a minute ahead, one refused, one deferred.
say "queueing $MESSAGES messages, 3 scheduled a minute ahead, 1 refused, 1 deferred"
"$PY" - "$MESSAGES" >"$DEMO/messages.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({
        "from": "demo@example.com",
        "to": [f"user{i}@example.org"],
        "subject": f"mailrun quickstart message {i}",
        "text": f"Hello from mailrun. This is message {i} of the quickstart.\n",
    }))
PY
dispatch-admin enqueue --jsonl "$DEMO/messages.jsonl" >/dev/null
for i in 1 2 3; do
  dispatch-admin enqueue --from demo@example.com --to "scheduled$i@example.org" \
    --subject "scheduled $i" --text "Sent a minute after it was queued." \
    --send-at "$(date -u -d '+60 seconds' +%Y-%m-%dT%H:%M:%SZ)" >/dev/null
done
dispatch-admin enqueue --from demo@example.com --to bounce@example.net \
  --subject "refused" --text "The SMTP server refuses this recipient." >/dev/null
dispatch-admin enqueue --from demo@example.com --to later@example.net \
  --subject "deferred" --text "The SMTP server defers this recipient." >/dev/null
expected=$((MESSAGES + 3))

# 6. Play cron: a tick every 3 seconds (in production: once a minute) until everything due
#    is delivered, or the time budget ends.
say "running dispatch-tick every 3 s; the runners poll and send when alerted"
t0=$(date +%s.%N)
first_done=""
deadline=$(( $(date +%s) + BUDGET_SECONDS ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  dispatch-tick >>"$DEMO/logs/dispatch-tick.log" 2>&1 || true
  sleep 3
  delivered=$(grep -c '"kind": "message"' "$DEMO/captured.jsonl" 2>/dev/null || true)
  if [ -z "$first_done" ] && [ "${delivered:-0}" -ge "$MESSAGES" ]; then
    first_done=$(date +%s.%N)
  fi
  [ "${delivered:-0}" -ge "$expected" ] && break
done
t1=$(date +%s.%N)

# 7. What happened.
status_json=$(dispatch-admin --json status)
delivered=$(grep -c '"kind": "message"' "$DEMO/captured.jsonl" 2>/dev/null || true)
"$PY" - "$status_json" "${delivered:-0}" "$MESSAGES" "$t0" "${first_done:-$t1}" "$t1" "$started" <<'PY'
import json, sys
status = json.loads(sys.argv[1])
captured, n = int(sys.argv[2]), int(sys.argv[3])
t0, first, t1, started = map(float, sys.argv[4:8])
counts = status.get("counts", status.get("states", {}))
def c(state):
    return counts.get(state, 0) if isinstance(counts, dict) else 0
burst = max(first - t0, 1e-9)
print()
print("mailrun quickstart: what happened")
print(f"  delivered  {c('sent'):6d}   (the SMTP server captured {captured} messages)")
print(f"  deferred   {c('deferred'):6d}   (451 from the server; retried with backoff)")
print(f"  failed     {c('failed'):6d}   (550 from the server; final)")
print(f"  queued     {c('queued'):6d}   leased {c('leased')}")
print(f"  first {n} messages delivered in {burst:.1f} s: {n / burst:.0f} msgs/s"
      " (includes waiting for the first 3 s tick)")
print(f"  whole run {t1 - t0:.1f} s (scheduled mail waits its minute); "
      f"script total {t1 - started:.0f} s")
PY
cat >&2 <<EOF

Where to look:
  MAILRUN_DATABASE_URL=$MAILRUN_DATABASE_URL $BIN/dispatch-admin status
  MAILRUN_DATABASE_URL=$MAILRUN_DATABASE_URL $BIN/dispatch-admin show ID
  captured mail (one JSON line per message):   $DEMO/captured.jsonl
  logs:                                        $DEMO/logs/
  runner state folders:                        $DEMO/runner1 $DEMO/runner2
The PostgreSQL cluster is stopped and kept for the next run; ./scripts/quickstart.sh --clean
removes everything.
EOF
[ "${delivered:-0}" -ge "$expected" ] || die "only ${delivered:-0} of $expected messages arrived in ${BUDGET_SECONDS}s"
