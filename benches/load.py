#!/usr/bin/env python3
"""mailrun load benchmark: every figure as a ratio against a reference measured in the same run.

Run through benches/bench.sh (builds the release binaries first). Standard library only.
Everything runs on 127.0.0.1 in a private folder: a PostgreSQL cluster from initdb, one
smtp-sink with a message counter (-c) that every measurement delivers to, a private Postfix
instance relaying to it, lighttpd for CGI. Each figure is the median of RUNS runs with
min/max; the ratios are printed last and, with --out, written as Markdown.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
FROM = "bench@example.com"
TO = "sink@example.org"


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def die(msg):
    say(f"error: {msg}")
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    die(f"{what} did not listen on 127.0.0.1:{port}")


def tool(name, *dirs):
    for d in dirs + ("/usr/sbin", "/usr/bin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    found = shutil.which(name)
    if not found:
        die(f"{name} not found: run scripts/test-setup.sh")
    return found


def stats(values):
    return statistics.median(values), min(values), max(values)


class Procs:
    """Every process this script starts, stopped by pid at exit."""

    def __init__(self):
        self.children = []

    def start(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.children.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.children):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


PROCS = Procs()


class Sink:
    """One smtp-sink for the whole run; `-c` prints `... mesg=N\\r` after each message."""

    def __init__(self, workdir):
        self.port = free_port()
        self.count = 0
        self.cond = threading.Condition()
        self.reached = {}
        self.proc = PROCS.start(
            [tool("smtp-sink"), "-u", "nobody", "-c", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(workdir, "smtp-sink.log"), "wb"))
        threading.Thread(target=self._read, daemon=True).start()
        wait_port(self.port, "smtp-sink")

    def _read(self):
        buf = b""
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                return
            buf += chunk
            *lines, buf = buf.split(b"\r")
            for line in lines:
                for field in line.split():
                    if field.startswith(b"mesg="):
                        n = int(field[5:])
                        with self.cond:
                            if n > self.count:
                                self.count = n
                                now = time.monotonic()
                                for target in [t for t in self.reached if self.reached[t] is None]:
                                    if n >= target:
                                        self.reached[target] = now
                                self.cond.notify_all()

    def expect(self, n):
        """Returns a target; wait(target) gives the monotonic time the sink reached it."""
        with self.cond:
            target = self.count + n
            self.reached[target] = None
            return target

    def wait(self, target, timeout, on_idle=None):
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.reached[target] is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"sink has {self.count}, waiting for {target}")
                self.cond.wait(min(left, 2.0))
                if self.reached[target] is None and on_idle:
                    self.cond.release()
                    try:
                        on_idle()
                    finally:
                        self.cond.acquire()
            return self.reached.pop(target)


def smtp_source(port, n, size, conc):
    subprocess.run([tool("smtp-source"), "-s", str(conc), "-m", str(n), "-l", str(size), "-d",
                    "-f", FROM, "-t", TO, f"127.0.0.1:{port}"], check=True,
                   stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------- PostgreSQL

class Postgres:
    def __init__(self, workdir):
        self.bin = sorted(
            (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql")),
            key=lambda p: [int(x) for x in p.split("/")[-2].split(".") if x.isdigit()])[-1] \
            if os.path.isdir("/usr/lib/postgresql") else os.path.dirname(tool("initdb"))
        self.dir = os.path.join(workdir, "pg")
        os.makedirs(self.dir)
        self.port = free_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if self.as_pg:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(self.as_pg + [f"{self.bin}/initdb", "-A", "trust", "-U", "postgres", "-E",
                                     "UTF8", "-D", f"{self.dir}/data"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-l",
                                     f"{self.dir}/log", "-o",
                                     f"-p {self.port} -h 127.0.0.1 -k {self.dir}/data "
                                     "-c max_connections=200 "
                                     # Profiling aid, e.g. "-c track_functions=all".
                                     + os.environ.get("MAILRUN_BENCH_PG_OPTIONS", ""),
                                     "-w", "start"],
                       check=True, stdout=subprocess.DEVNULL)
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/mailrun"
        self.psql("CREATE DATABASE mailrun", db="postgres")

    def psql(self, sql, db="mailrun"):
        out = subprocess.run([f"{self.bin}/psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-c", sql], capture_output=True, text=True)
        if out.returncode != 0:
            die(f"psql failed: {out.stderr.strip()[:2000]}")
        return out.stdout.strip()

    def stop(self):
        subprocess.run(self.as_pg + [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m", "fast",
                                     "-w", "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- Postfix

class Postfix:
    """A private Postfix instance (own config, queue and data folders) relaying to the sink."""

    def __init__(self, workdir, sink_port):
        self.dir = os.path.join(workdir, "postfix")
        self.etc = os.path.join(self.dir, "etc")
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.dir, d))
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        self.port = free_port()
        with open("/etc/postfix/master.cf") as f:
            master = f.read()
        lines = []
        for line in master.splitlines():
            if line.startswith("smtp ") and " inet " in line:
                line = f"127.0.0.1:{self.port} inet n - n - - smtpd"
            lines.append(line)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("\n".join(lines) + "\n")
        for extra in ("dynamicmaps.cf",):
            if os.path.exists(f"/etc/postfix/{extra}"):
                shutil.copy(f"/etc/postfix/{extra}", self.etc)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(f"""compatibility_level = 3.6
queue_directory = {self.dir}/queue
data_directory = {self.dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = bench.localdomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
smtpd_relay_restrictions = permit_mynetworks, reject
maillog_file = {self.dir}/maillog
maillog_file_prefixes = {self.dir}
smtp_tls_security_level = none
alias_maps =
alias_database =
local_recipient_maps =
""")
        subprocess.run(["postfix", "-c", self.etc, "start"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, "postfix")

    def concurrency(self, n):
        subprocess.run(["postconf", "-c", self.etc, "-e",
                        f"default_destination_concurrency_limit = {n}",
                        f"smtp_destination_concurrency_limit = {n}",
                        f"initial_destination_concurrency = {n}"], check=True)
        subprocess.run(["postfix", "-c", self.etc, "reload"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)

    def clear(self):
        subprocess.run(["postsuper", "-c", self.etc, "-d", "ALL"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        subprocess.run(["postfix", "-c", self.etc, "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


# ---------------------------------------------------------------- mailrun

class Mailrun:
    def __init__(self, workdir, pg, sink):
        self.w = workdir
        self.pg = pg
        self.sink = sink
        self.env = dict(os.environ, MAILRUN_DATABASE_URL=pg.url,
                        PATH=f"{BIN}:{os.environ.get('PATH', '')}")
        self.admin("init")
        self.admin("account", "add", "bench", "--host", "127.0.0.1", "--port", str(sink.port),
                   "--security", "none")
        self.dispatch_port = free_port()
        self.listen = PROCS.start([f"{BIN}/dispatch-cgi", "--listen",
                                   f"127.0.0.1:{self.dispatch_port}"], env=self.env,
                                  stderr=open(os.path.join(workdir, "dispatch-cgi.log"), "wb"))
        wait_port(self.dispatch_port, "dispatch-cgi --listen")
        self.runners = {}
        self.lighttpd = None
        # dispatch-cgi under lighttpd through PgBouncer (transport "cgi-pgbouncer").
        self.bouncer = None

    def admin(self, *args):
        out = subprocess.run([f"{BIN}/dispatch-admin", *args], env=self.env, check=True,
                             capture_output=True, text=True)
        return out.stdout

    def runner(self, name, endpoint_port=None, listen=True):
        """Registers a runner and creates its state folder (with runner-cgi --listen)."""
        state = os.path.join(self.w, "runners", name)
        port = endpoint_port or free_port()
        key = json.loads(self.admin("--json", "runner", "add", name, "--endpoint",
                                    f"http://127.0.0.1:{port}/"))
        subprocess.run([f"{BIN}/runner-admin", "init", "--state-dir", state, "--dispatcher-url",
                        f"http://127.0.0.1:{self.dispatch_port}/", "--runner-id", name,
                        "--key-id", key["key_id"], "--key-file", "-"],
                       input=key["key"], text=True, check=True, env=self.env,
                       stdout=subprocess.DEVNULL)
        if listen:
            env = dict(self.env, MAILRUN_RUNNER_DIR=state)
            PROCS.start([f"{BIN}/runner-cgi", "--listen", f"127.0.0.1:{port}"], env=env,
                        stderr=open(os.path.join(self.w, f"runner-cgi-{name}.log"), "wb"))
            wait_port(port, f"runner-cgi {name}")
        self.runners[name] = {"state": state, "port": port}
        return state

    def configure(self, name, batch, transport):
        """Batch size on both sides; endpoints over --listen or through lighttpd's CGI."""
        r = self.runners[name]
        if transport in ("cgi", "cgi-pgbouncer"):
            endpoint = f"http://127.0.0.1:{self.lighttpd}/cgi-bin/{name}"
            pooled = "-pooled" if transport == "cgi-pgbouncer" else ""
            dispatcher = f"http://127.0.0.1:{self.lighttpd}/cgi-bin/dispatch{pooled}"
        else:
            endpoint = f"http://127.0.0.1:{r['port']}/"
            dispatcher = f"http://127.0.0.1:{self.dispatch_port}/"
        self.admin("runner", "set", name, "--endpoint", endpoint, "--batch-size", str(batch))
        rewrite_toml(os.path.join(r["state"], "runner.toml"),
                     {"dispatcher_url": f'"{dispatcher}"', "batch_size": str(batch)})

    def start_lighttpd(self, names):
        root = os.path.join(self.w, "www")
        cgi = os.path.join(root, "cgi-bin")
        os.makedirs(cgi)
        self.lighttpd = free_port()

        def wrapper(name, env, binary):
            path = os.path.join(cgi, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + "".join(f"{k}='{v}' " for k, v in env.items())
                        + f"exec {binary}\n")
            os.chmod(path, 0o755)

        wrapper("dispatch", {"MAILRUN_DATABASE_URL": self.pg.url}, f"{BIN}/dispatch-cgi")
        if self.bouncer:
            wrapper("dispatch-pooled", {"MAILRUN_DATABASE_URL": self.bouncer.url("mailrun")},
                    f"{BIN}/dispatch-cgi")
        for name in names:
            wrapper(name, {"MAILRUN_RUNNER_DIR": self.runners[name]["state"]},
                    f"{BIN}/runner-cgi")
        conf = os.path.join(self.w, "lighttpd.conf")
        with open(conf, "w") as f:
            f.write(f"""server.document-root = "{root}"
server.bind = "127.0.0.1"
server.port = {self.lighttpd}
server.errorlog = "{self.w}/lighttpd-error.log"
server.breakagelog = "{self.w}/lighttpd-cgi-stderr.log"
server.pid-file = "{self.w}/lighttpd.pid"
server.modules = ("mod_cgi")
server.max-request-size = 262144
$HTTP["url"] =~ "^/cgi-bin/" {{
    cgi.assign = ("" => "")
}}
""")
        PROCS.start([tool("lighttpd"), "-D", "-f", conf], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
        wait_port(self.lighttpd, "lighttpd")

    def reset_queue(self):
        self.pg.psql("TRUNCATE mailrun.delivery_attempts, mailrun.messages, mailrun.job_runs,"
                     " mailrun.leases CASCADE")

    def tick(self):
        subprocess.run([f"{BIN}/dispatch-tick"], env=self.env, stdout=subprocess.DEVNULL,
                       stderr=open(os.path.join(self.w, "dispatch-tick.log"), "ab"))

    def idle(self, names):
        """True when no runner cycle holds a lock (then nothing is delivering)."""
        import fcntl
        for name in names:
            path = os.path.join(self.runners[name]["state"], "lock")
            if not os.path.exists(path):
                continue
            with open(path, "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    return False
        return True

    def wait_idle(self, names, timeout=120):
        deadline = time.monotonic() + timeout
        while not self.idle(names):
            if time.monotonic() > deadline:
                die("runner cycles did not finish")
            time.sleep(0.1)


def jsonl(path, n, size):
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
    body = (line * (size // len(line) + 1))[:size]
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"from": FROM, "to": [TO], "subject": f"bench {i}",
                                "text": body}) + "\n")


# ---------------------------------------------------------------- the measurements

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer messages and rows (about 4 minutes); 1M rows become 100k")
    ap.add_argument("--runs", type=int, help="runs per figure (default 3)")
    ap.add_argument("--out", help="also write the results as Markdown to this file")
    ap.add_argument("--only", default="ceiling,postfix,e2e,claim,latency,tick,rss,api",
                    help="comma-separated sections (ratios need their references); "
                         "`pooler` (not in the default run): dispatch-tick direct, through "
                         "PgBouncer and over TLS, and with 10k vs 1M due")
    ap.add_argument("--sizes", default="2048,51200", help="message body sizes in bytes")
    ap.add_argument("--transports", default="listen,cgi",
                    help="end-to-end transports: listen, cgi, cgi-pgbouncer (dispatch-cgi "
                         "under lighttpd reaching PostgreSQL through PgBouncer, transaction "
                         "pooling)")
    ap.add_argument("--runner-counts", default="1,2", help="end-to-end runner counts")
    ap.add_argument("--batches", default="100,1000", help="end-to-end batch sizes")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    only = set(a.only.split(","))
    q = a.quick
    runs = a.runs or 3
    cfg = {
        "n": {2048: 500 if q else 2000, 51200: 100 if q else 400},  # other sizes: 2048's
        "claim_rows": 5000 if q else 20000,
        "latency_small": 10_000,
        "latency_big": 100_000 if q else 1_000_000,
        "latency_k": 20,
        "tick_runs": 10 if q else 30,
        "rss_small": 1000,
        "pooler_small": 10_000,
        "pooler_big": 100_000 if q else 1_000_000,
        "rss_big": 10_000 if q else 100_000,
        "api_n": 1000 if q else 5000,
    }

    workdir = tempfile.mkdtemp(prefix="mailrun-bench-", dir="/var/tmp")
    os.chmod(workdir, 0o755)
    results = []   # (section, label, unit, (median, min, max), extra)
    lines_out = []

    def record(section, label, unit, values, note=""):
        m = stats(values)
        results.append((section, label, unit, m, note))
        s = f"  {label:<52} {m[0]:>12.4g} {unit:<8} (min {m[1]:.4g}, max {m[2]:.4g}, n={len(values)}) {note}"
        print(s, flush=True)
        lines_out.append(s)
        return m[0]

    def heading(t):
        print(f"\n{t}", flush=True)
        lines_out.append("")
        lines_out.append(t)

    pg = postfix = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        sink = Sink(workdir)
        pg = Postgres(workdir)
        mr = Mailrun(workdir, pg, sink)
        sizes = [int(x) for x in a.sizes.split(",")]
        concs = [int(x) for x in a.runner_counts.split(",")]
        ceiling, pfx = {}, {}

        if "ceiling" in only:
            heading("1. ceiling: smtp-source -> smtp-sink (msgs/s)")
            # At the runner counts (the old, flattering reference) and at -s 8, the
            # reference a runner with many sessions is held to.
            for size in sizes:
                for conc in sorted(set(concs) | {8}):
                    n, vals = cfg["n"].get(size, cfg["n"][2048]), []
                    for _ in range(runs):
                        t = sink.expect(n)
                        t0 = time.monotonic()
                        smtp_source(sink.port, n, size, conc)
                        vals.append(n / (sink.wait(t, 300) - t0))
                    ceiling[(size, conc)] = record("ceiling", f"{size // 1024} KB x {n}, {conc} session(s)",
                                                   "msgs/s", vals)

        if "postfix" in only:
            heading("2. Postfix relaying: smtp-source -> private Postfix -> smtp-sink (msgs/s)")
            postfix = Postfix(workdir, sink.port)
            for conc in concs:
                postfix.concurrency(conc)
                for size in sizes:
                    n, vals = cfg["n"].get(size, cfg["n"][2048]), []
                    for _ in range(runs):
                        postfix.clear()
                        t = sink.expect(n)
                        t0 = time.monotonic()
                        smtp_source(postfix.port, n, size, conc)
                        vals.append(n / (sink.wait(t, 600) - t0))
                    pfx[(size, conc)] = record("postfix", f"{size // 1024} KB x {n}, concurrency {conc}",
                                               "msgs/s", vals)
            postfix.stop()
            postfix = None

        e2e = {}
        if "e2e" in only:
            heading("3. mailrun end to end: enqueue -> dispatch-tick -> runners -> smtp-sink (msgs/s)")
            names = ["r1", "r2"]
            for name in names:
                mr.runner(name)
            if "cgi-pgbouncer" in a.transports.split(","):
                mr.bouncer = PgBouncer(workdir, pg.port)
            mr.start_lighttpd(names)
            for size in sizes:
                n = cfg["n"].get(size, cfg["n"][2048])
                path = os.path.join(workdir, f"messages-{size}.jsonl")
                jsonl(path, n, size)
                for transport in a.transports.split(","):
                    for nr in concs:
                        active = names[:nr]
                        for batch in [int(x) for x in a.batches.split(",")]:
                            for name in names:
                                mr.configure(name, batch, transport)
                            # Only the active runners are enabled.
                            for name in names:
                                mr.admin("runner", "enable" if name in active else "disable", name)
                            vals = []
                            splits = []   # (enqueue, enqueued to first delivered, first to last) s
                            for _ in range(runs):
                                mr.wait_idle(names)
                                mr.reset_queue()
                                t_first = sink.expect(1)
                                t = sink.expect(n)
                                t0 = time.monotonic()
                                subprocess.run([f"{BIN}/dispatch-admin", "enqueue", "--jsonl", path],
                                               env=mr.env, check=True, stdout=subprocess.DEVNULL)
                                t_enqueued = time.monotonic()
                                mr.tick()

                                def again():
                                    # What cron does: a tick when no cycle is running.
                                    if mr.idle(active):
                                        mr.tick()
                                first = sink.wait(t_first, 900, on_idle=again)
                                last = sink.wait(t, 900, on_idle=again)
                                vals.append(n / (last - t0))
                                splits.append((t_enqueued - t0, first - t_enqueued, last - first))
                            mr.wait_idle(names)
                            parts = [statistics.median(s[i] for s in splits) for i in range(3)]
                            e2e[(size, transport, nr, batch)] = record(
                                "e2e", f"{size // 1024} KB x {n}, {transport}, {nr} runner(s), batch {batch}",
                                "msgs/s", vals,
                                note="[median s: enqueue %.3f, to first delivered %.3f, first to last %.3f]"
                                % tuple(parts))
            for name in names:
                mr.admin("runner", "disable", name)

        claim = {}
        if "claim" in only:
            heading("4. dispatcher alone: claim (+ encode) of the same rows, batch 100 (rows/s)")
            rows = cfg["claim_rows"]
            mr.admin("runner", "add", "claimer", "--endpoint", "http://127.0.0.1:9/",
                     "--batch-size", "100")
            fill(mr, pg, rows, 2048)
            script = os.path.join(workdir, "bare-claim.sql")
            with open(script, "w") as f:
                f.write(BARE_CLAIM)
            cvals, bvals = [], []
            for _ in range(runs):
                requeue(pg)
                out = cargo_bench_claim(pg.url, "drain", "claimer", "100")
                d = json.loads(out)
                if d["rows"] != rows:
                    die(f"claim drained {d['rows']} rows, expected {rows}")
                cvals.append(d["rows"] / d["seconds"])
                say(f"claim drain: {d['seconds']:.3f} s, of which JobRun encoding {d['encode_seconds']:.3f} s")
                requeue(pg)
                bvals.append(100 * pgbench(pg, script, rows // 100))
            claim["mailrun"] = record("claim", f"mailrun.claim_batch + JobRun encode, {rows} rows x 2 KB",
                                      "rows/s", cvals)
            claim["bare"] = record("claim", "bare UPDATE .. FOR UPDATE SKIP LOCKED (pgbench)", "rows/s", bvals)

        lat = {}
        if "latency" in only:
            heading("5. claim latency, batch 100 (seconds per claim, median of K claims per run)")
            mr.admin("runner", "add", "lat", "--endpoint", "http://127.0.0.1:9/", "--batch-size", "100")
            mr.reset_queue()
            for label, rows in (("small", cfg["latency_small"]), ("big", cfg["latency_big"])):
                fill(mr, pg, rows - int(pg.psql("SELECT count(*) FROM mailrun.messages")), 512,
                     reset=False)
                pg.psql("VACUUM ANALYZE mailrun.messages")
                vals = []
                for _ in range(runs):
                    requeue(pg)
                    d = json.loads(cargo_bench_claim(pg.url, "latency", "lat", "100",
                                                     str(cfg["latency_k"])))
                    vals.append(statistics.median(d["seconds"]))
                lat[label] = record("latency", f"claim_batch(100) with {rows} queued rows", "s", vals)

        tick = {}
        if "tick" in only:
            heading("6. dispatch-tick on an empty queue vs a bare Rust binary (seconds per run)")
            mr.reset_queue()
            bare = os.path.join(workdir, "bare")
            subprocess.run(["rustc", "-O", "-o", bare, os.path.join(ROOT, "benches/support/bare.rs")],
                           check=True)
            tv, bv = [], []
            for _ in range(runs):
                tv.append(statistics.median(timed(lambda: mr.tick(), cfg["tick_runs"])))
                bv.append(statistics.median(timed(lambda: subprocess.run([bare]), cfg["tick_runs"])))
            tick["tick"] = record("tick", "dispatch-tick, nothing due (exit 3)", "s", tv)
            tick["bare"] = record("tick", "bare `fn main() {}` built with rustc -O", "s", bv)

        pool = {}
        if "pooler" in only:
            pool = pooler_section(mr, pg, workdir, cfg, runs, record, heading)

        rss = {}
        if "rss" in only:
            heading("7. runner-send peak RSS with spooled messages (2 KB each, batches of 1000)")
            mr.reset_queue()
            # A dispatcher endpoint with a lease long enough to send 100k messages.
            port = free_port()
            PROCS.start([f"{BIN}/dispatch-cgi", "--listen", f"127.0.0.1:{port}"],
                        env=dict(mr.env, MAILRUN_LEASE_SECONDS="86400"),
                        stderr=open(os.path.join(workdir, "dispatch-cgi-rss.log"), "wb"))
            wait_port(port, "dispatch-cgi (rss)")
            state = mr.runner("rss", listen=False)
            mr.admin("runner", "set", "rss", "--batch-size", "1000")
            rewrite_toml(os.path.join(state, "runner.toml"),
                         {"dispatcher_url": f'"http://127.0.0.1:{port}/"', "batch_size": "1000"})
            rss_runs = 1 if q else 2
            for label, n in (("small", cfg["rss_small"]), ("big", cfg["rss_big"])):
                vals = []
                for _ in range(rss_runs if label == "big" else runs):
                    # The first poll also reports the previous run's results (truncated: "unknown").
                    fill(mr, pg, n, 2048)
                    polls = 0
                    while int(pg.psql("SELECT count(*) FROM mailrun.messages WHERE state = 'queued'")) > 0:
                        subprocess.run([f"{BIN}/runner-poll", "--force", "--state-dir", state],
                                       env=mr.env, check=True)
                        polls += 1
                    t = sink.expect(n)
                    p = subprocess.Popen([f"{BIN}/runner-send", "--state-dir", state], env=mr.env)
                    _, status, usage = os.wait4(p.pid, 0)
                    p.returncode = os.waitstatus_to_exitcode(status)
                    if p.returncode != 0:
                        die(f"runner-send exited {p.returncode}")
                    sink.wait(t, 60)
                    vals.append(usage.ru_maxrss / 1024)  # KiB -> MiB
                rss[label] = record("rss", f"runner-send, {n} messages spooled", "MiB", vals)

        api = {}
        if "api" in only:
            heading("8. HTTP JSON API enqueue vs dispatch-admin enqueue --jsonl (msgs/s)")
            if mr.lighttpd is None:
                mr.start_lighttpd([])
            key = json.loads(mr.admin("--json", "api-key", "add", "--scope", "send"))["key"]
            n = cfg["api_n"]
            path = os.path.join(workdir, "api.jsonl")
            jsonl(path, n, 2048)
            with open(path) as f:
                msgs = [json.loads(line) for line in f]
            bases = {"listen": f"http://127.0.0.1:{mr.dispatch_port}/mailrun/api/v1",
                     "cgi": f"http://127.0.0.1:{mr.lighttpd}/cgi-bin/dispatch/api/v1"}
            vals = []
            for _ in range(runs):
                mr.reset_queue()
                t0 = time.monotonic()
                subprocess.run([f"{BIN}/dispatch-admin", "enqueue", "--jsonl", path],
                               env=mr.env, check=True, stdout=subprocess.DEVNULL)
                vals.append(n / (time.monotonic() - t0))
            api["jsonl"] = record("api", f"enqueue --jsonl, 2 KB x {n}", "msgs/s", vals)
            for transport, base in bases.items():
                for mode, size, conc in (("batch", 1000, 1), ("single", 1, 8)):
                    chunks = [msgs[i:i + size] for i in range(0, n, size)]
                    vals = []
                    for _ in range(runs):
                        mr.reset_queue()
                        t0 = time.monotonic()
                        api_post_all(base, key, chunks, mode, conc)
                        vals.append(n / (time.monotonic() - t0))
                        got = int(pg.psql("SELECT count(*) FROM mailrun.messages"))
                        if got != n:
                            die(f"API {transport} {mode}: {got} messages queued, want {n}")
                    label = (f"API {transport}, batches of {size}" if mode == "batch"
                             else f"API {transport}, one per request, {conc} clients")
                    api[(transport, mode)] = record("api", f"{label}, 2 KB x {n}", "msgs/s", vals)
            mr.reset_queue()

        # ------------------------------------------------------------ ratios last
        heading("Ratios (median / median; target in brackets)")

        def ratio(label, num, den, target):
            if num is None or den is None:
                return
            r = num / den
            ok = target[1](r)
            s = f"  {label:<64} {r:8.3f}   [{target[0]}] {'met' if ok else 'NOT met'}"
            print(s)
            lines_out.append(s)

        for key, v in sorted((k, v) for k, v in api.items() if k != "jsonl"):
            ratio(f"API enqueue {key[0]} {key[1]} / enqueue --jsonl", v, api.get("jsonl"),
                  ("reference", lambda r: True))
        for key, v in sorted(e2e.items()):
            size, transport, nr, batch = key
            ratio(f"e2e {size // 1024} KB {transport} {nr}r b{batch} / ceiling -s 8", v,
                  ceiling.get((size, 8)), (">= 0.5", lambda r: r >= 0.5))
        for key, v in sorted(e2e.items()):
            size, transport, nr, batch = key
            ratio(f"e2e {size // 1024} KB {transport} {nr}r b{batch} / ceiling -s {nr}", v,
                  ceiling.get((size, nr)), ("reference only", lambda r: True))
        for key, v in sorted(e2e.items()):
            size, transport, nr, batch = key
            ratio(f"e2e {size // 1024} KB {transport} {nr}r b{batch} / Postfix", v,
                  pfx.get((size, nr)), (">= 3", lambda r: r >= 3))
        for key, v in sorted(pfx.items()):
            ratio(f"Postfix {key[0] // 1024} KB conc {key[1]} / ceiling", v, ceiling.get(key),
                  ("reference", lambda r: True))
        # Issue 19's target (0.5 was the first one).
        ratio("claim+encode / bare SKIP LOCKED", claim.get("mailrun"), claim.get("bare"),
              (">= 0.8", lambda r: r >= 0.8))
        ratio(f"claim latency {cfg['latency_big']} / {cfg['latency_small']} rows", lat.get("big"),
              lat.get("small"), ("<= 1.2", lambda r: r <= 1.2))
        ratio("empty dispatch-tick / bare process start", tick.get("tick"), tick.get("bare"),
              ("<= 3", lambda r: r <= 3))
        ratio("empty dispatch-tick through PgBouncer / bare process start", pool.get("pooled"),
              pool.get("bare"), ("<= 3", lambda r: r <= 3))
        ratio("empty dispatch-tick direct / bare process start", pool.get("direct"),
              pool.get("bare"), ("reference", lambda r: True))
        ratio("empty dispatch-tick TLS (require) / direct", pool.get("tls"), pool.get("direct"),
              ("reference", lambda r: True))
        ratio(f"dispatch-tick with {cfg['pooler_big']} due / {cfg['pooler_small']} due",
              pool.get("big"), pool.get("small"), ("<= 1.2", lambda r: r <= 1.2))
        ratio(f"runner-send RSS {cfg['rss_big']} / {cfg['rss_small']} spooled", rss.get("big"),
              rss.get("small"), ("<= 1.2", lambda r: r <= 1.2))
    finally:
        if postfix:
            postfix.stop()
        PROCS.stop_all()
        if pg:
            pg.stop()
        if a.keep:
            say(f"work folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if a.out:
        with open(a.out, "w") as f:
            f.write("```\n" + "\n".join(lines_out).strip("\n") + "\n```\n")


def pooler_section(mr, pg, workdir, cfg, runs, record, heading):
    """dispatch-tick's cost per run: on an empty queue direct, through a private PgBouncer
    (transaction pooling) and over TLS, against a bare process start; then with 10k and
    with 1M messages due (one runner that refuses connections at once, so the tick's own
    work is what is timed). Returns the medians by name."""
    out = {}
    heading("8. dispatch-tick: direct, through PgBouncer, over TLS; 10k vs 1M due (seconds per run)")
    mr.reset_queue()
    bare = os.path.join(workdir, "bare")
    if not os.path.exists(bare):
        subprocess.run(["rustc", "-O", "-o", bare, os.path.join(ROOT, "benches/support/bare.rs")],
                       check=True)
    bouncer = PgBouncer(workdir, pg.port)
    # TLS on the server: a throwaway self-signed certificate (require: encrypted, no check).
    data = f"{pg.dir}/data"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", f"{data}/server.key",
                    "-out", f"{data}/server.crt"], check=True, capture_output=True)
    if os.getuid() == 0:
        for f in ("server.key", "server.crt"):
            shutil.chown(f"{data}/{f}", "postgres", "postgres")
    os.chmod(f"{data}/server.key", 0o600)
    pg.psql("ALTER SYSTEM SET ssl = on", db="postgres")
    pg.psql("SELECT pg_reload_conf()", db="postgres")
    time.sleep(1)

    def tick(url):
        subprocess.run([f"{BIN}/dispatch-tick", "--database-url", url], env=mr.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    urls = {"direct": pg.url, "pooled": bouncer.url("mailrun"),
            "tls": pg.url + "?sslmode=require"}
    # Each way in works (a refused TLS or pooler would time a quick failure instead);
    # sslmode=require fails without TLS.
    for k, url in urls.items():
        r = subprocess.run([f"{BIN}/dispatch-tick", "--database-url", url], env=mr.env,
                           capture_output=True, text=True)
        if r.returncode != 3:
            die(f"dispatch-tick ({k}) exited {r.returncode}, expected 3: {r.stderr.strip()}")
    vals = {k: [] for k in ("bare", "direct", "pooled", "tls")}
    # Interleaved, one start of each per round, so this VM's drifting speed weighs on
    # the bare start and the ticks alike (blocks of one then the other swung the ratio
    # by ±20 %).
    for _ in range(runs):
        samples = {k: [] for k in vals}
        for _ in range(cfg["tick_runs"]):
            samples["bare"] += timed(lambda: subprocess.run([bare]), 1)
            for k, url in urls.items():
                samples[k] += timed(lambda: tick(url), 1)
        for k in vals:
            vals[k].append(statistics.median(samples[k]))
    out["bare"] = record("pooler", "bare `fn main() {}` built with rustc -O", "s", vals["bare"])
    out["direct"] = record("pooler", "dispatch-tick, nothing due, direct (loopback)", "s", vals["direct"])
    out["pooled"] = record("pooler", "dispatch-tick, nothing due, through PgBouncer", "s", vals["pooled"])
    out["tls"] = record("pooler", "dispatch-tick, nothing due, direct over TLS", "s", vals["tls"])

    mr.admin("runner", "add", "tickbench", "--endpoint", "http://127.0.0.1:9/", "--batch-size", "100")
    for label, rows in (("small", cfg["pooler_small"]), ("big", cfg["pooler_big"])):
        fill(mr, pg, rows - int(pg.psql("SELECT count(*) FROM mailrun.messages")), 512, reset=False)
        pg.psql("VACUUM ANALYZE mailrun.messages")
        # Unmeasured ticks first: the first one after a fill tries to wake the (unreachable)
        # runner, later ones skip it as recently failed; both sizes are timed in that state.
        timed(lambda: tick(urls["pooled"]), 3)
        v = [statistics.median(timed(lambda: tick(urls["pooled"]), cfg["tick_runs"]))
             for _ in range(runs)]
        out[label] = record("pooler", f"dispatch-tick through PgBouncer, {rows} due", "s", v)
    mr.admin("runner", "disable", "tickbench")
    conns = pg.psql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'mailrun' "
                    "AND application_name = ''")
    say(f"server connections PgBouncer kept open to mailrun: {conns}")
    bouncer.stop()
    return out


class PgBouncer:
    """A private PgBouncer (transaction pooling) in front of the bench's PostgreSQL."""

    def __init__(self, workdir, pg_port):
        self.port = free_port()
        # One folder per instance: the e2e and pooler sections may each start one.
        self.dir = os.path.join(workdir, f"pgbouncer-{self.port}")
        os.makedirs(self.dir)
        with open(f"{self.dir}/userlist.txt", "w") as f:
            f.write('"postgres" ""\n')
        with open(f"{self.dir}/pgbouncer.ini", "w") as f:
            f.write(f"""[databases]
* = host=127.0.0.1 port={pg_port}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        argv = [tool("pgbouncer", "/usr/sbin")]
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            argv += ["-u", "postgres"]
        PROCS.start(argv + [f"{self.dir}/pgbouncer.ini"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
        wait_port(self.port, "pgbouncer")

    def url(self, db):
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self):
        pass  # PROCS.stop_all() ends it with the rest


BARE_CLAIM = """UPDATE mailrun.messages m
SET state = 'leased', lease_runner = 'bare', lease_token = gen_random_uuid(),
    lease_expires_at = now() + interval '600 seconds'
WHERE m.id IN (SELECT d.id FROM mailrun.messages d
               WHERE d.state IN ('queued', 'deferred') AND d.next_attempt_at <= now()
               ORDER BY d.next_attempt_at, d.id LIMIT 100 FOR UPDATE SKIP LOCKED)
RETURNING m.*;
"""


def api_post_all(base, key, chunks, mode, conc):
    """POSTs every chunk (a batch, or one message) to the API from `conc` threads."""
    import urllib.request
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    todo = list(chunks)
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not todo or errors:
                    return
                chunk = todo.pop()
            if mode == "batch":
                url, body = f"{base}/messages/batch", {"messages": chunk}
            else:
                url, body = f"{base}/messages", chunk[0]
            req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
            try:
                with urllib.request.urlopen(req, timeout=300) as r:
                    r.read()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        die(f"API request failed: {errors[0]}")


def fill(mr, pg, n, size, reset=True):
    """n due messages of `size` body bytes: one enqueued through mailrun.enqueue, the rest
    copied from it in one INSERT .. SELECT (each with its own Message-ID)."""
    if reset:
        mr.reset_queue()
    if n <= 0:
        return
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
    body = (line * (size // len(line) + 1))[:size]
    tmpl = int(pg.psql("SELECT mailrun.enqueue(" + sql_literal(json.dumps(
        {"from": FROM, "to": [TO], "subject": "bench", "text": body})) + "::jsonb)"))
    if n > 1:
        pg.psql(f"""INSERT INTO mailrun.messages (account_id, from_addr, to_addrs, subject, text_body,
                 size_bytes, message_id_header, send_at, next_attempt_at, expires_at)
             SELECT account_id, from_addr, to_addrs, subject, text_body, size_bytes,
                 '<' || g || '.' || {tmpl} || '.bench@example.com>', send_at,
                 next_attempt_at, expires_at
             FROM mailrun.messages t, generate_series(1, {n - 1}) g WHERE t.id = {tmpl}""")
    pg.psql("ANALYZE mailrun.messages")


def requeue(pg):
    """Puts leased rows back (same rows, same order) and forgets the leases."""
    pg.psql("""UPDATE mailrun.messages SET state = 'queued', lease_runner = NULL,
                   lease_token = NULL, lease_expires_at = NULL, job_run_id = NULL
               WHERE state = 'leased';
               TRUNCATE mailrun.leases, mailrun.job_runs CASCADE;""")
    pg.psql("VACUUM mailrun.messages")
    # Each pass then starts right after a checkpoint: a WAL-triggered one landing in the
    # middle of one side's pass (every ~540 MB here) swung single runs by 2x.
    pg.psql("CHECKPOINT")


def sql_literal(s):
    return "'" + s.replace("'", "''") + "'"


def cargo_bench_claim(url, *args):
    out = subprocess.run(["cargo", "bench", "-q", "--bench", "claim", "--", *args], cwd=ROOT,
                         env=dict(os.environ, MAILRUN_BENCH_DATABASE_URL=url), check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def pgbench(pg, script, transactions):
    out = subprocess.run([f"{pg.bin}/pgbench", "-n", "-f", script, "-t", str(transactions), "-c", "1",
                          "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "mailrun"],
                         check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    die(f"no tps in pgbench output:\n{out.stdout}")


def timed(fn, n):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        fn()
        times.append(time.monotonic() - t0)
    return times


def rewrite_toml(path, values):
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        key = line.split("=")[0].strip()
        if key in values:
            lines[i] = f"{key} = {values[key]}"
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(path + ".tmp", 0o600)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
