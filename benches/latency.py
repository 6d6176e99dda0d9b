#!/usr/bin/env python3
"""mailrun against Postfix when receiving servers answer late, as they do on the internet.

Run through `benches/bench.sh --latency` (builds the release binaries first). For each reply
delay (greeting, every RCPT answer, the answer to the final dot) and number of receiving
domains/accounts, the same messages go to the same server (benches/delay_smtp.py, one port
per domain) twice in one run:

- Postfix with stock settings (20 sessions per destination, 100 in all, slow start from 5),
  fed by smtp-source, each domain routed to its port by transport_maps;
- mailrun: the messages queued with `dispatch-admin enqueue --jsonl` (one SMTP account per
  domain), delivered by one runner's `runner-admin cycle` (then by two at once) with its
  default limits (100 sessions in all, 20 per account), dispatcher `--listen`.

With `--php`, the PHP runner (packaging/php/mailrun-runner.php, run as its crontab line
`php mailrun-runner.php cycle`) takes Postfix's place: the same messages to the same server,
one Rust runner then one PHP runner, and the ratio PHP / Rust (BENCHMARKS.md).

The rate is taken at the receiving server: messages / (last accepted - first accepted), so
injection and queueing do not count for either. Also printed: the sessions busy at once
(transactions between MAIL and the answer to the final dot, sampled every 50 ms: mean and
peak) and the ratio mailrun / Postfix. Loopback only; standard library only.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import load  # noqa: E402  (the load benchmark's helpers: processes, PostgreSQL, Postfix)

ROOT = load.ROOT
BIN = load.BIN
FROM = "bench@example.com"


class DelayServer:
    def __init__(self, workdir, delay, ports, tag):
        self.stats_path = os.path.join(workdir, f"delay-{tag}.json")
        self.base = free_ports(ports)
        self.proc = load.PROCS.start(
            [sys.executable, os.path.join(ROOT, "benches", "delay_smtp.py"),
             "--port-base", str(self.base), "--ports", str(ports), "--delay", str(delay),
             "--stats", self.stats_path],
            stdout=subprocess.PIPE)
        assert self.proc.stdout.readline().strip() == b"ready"

    def stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def wait_for(self, n, timeout, on_idle=None):
        deadline = time.monotonic() + timeout
        while self.stats().get("messages", 0) < n:
            if time.monotonic() > deadline:
                load.die(f"delay server has {self.stats().get('messages')} of {n} messages")
            if on_idle:
                on_idle()
            time.sleep(0.5)
        self.proc.terminate()
        self.proc.wait()
        return self.stats()


def free_ports(n):
    for _ in range(100):
        base = load.free_port()
        try:
            import socket
            socks = []
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            continue
    load.die(f"no {n} consecutive free ports")


def rate(stats):
    n = stats.get("messages", 0)
    first, last = stats.get("first_message_at"), stats.get("last_message_at")
    if not first or not last or last <= first:
        return 0.0
    return (n - 1) / (last - first)


def postfix_run(workdir, delay, domains, n, size):
    server = DelayServer(workdir, delay, domains, f"postfix-{delay}-{domains}")
    pf = load.Postfix(os.path.join(workdir, f"pf-{delay}-{domains}"), server.base)
    transport = os.path.join(pf.etc, "transport")
    with open(transport, "w") as f:
        for i in range(domains):
            f.write(f"d{i}.test smtp:[127.0.0.1]:{server.base + i}\n")
    subprocess.run(["postmap", "-c", pf.etc, transport], check=True)
    subprocess.run(["postconf", "-c", pf.etc, "-e", f"transport_maps = hash:{transport}"],
                   check=True)
    subprocess.run(["postfix", "-c", pf.etc, "reload"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    time.sleep(1)
    per = n // domains
    sources = []
    for i in range(domains):
        count = per + (1 if i < n % domains else 0)
        sources.append(subprocess.Popen(
            [load.tool("smtp-source"), "-s", "2", "-m", str(count), "-l", str(size), "-d",
             "-f", FROM, "-t", f"user@d{i}.test", f"127.0.0.1:{pf.port}"],
            stdout=subprocess.DEVNULL))
    for s in sources:
        s.wait()
    stats = server.wait_for(n, timeout=1800)
    pf.stop()
    return stats


PHP_RUNNER = os.path.join(ROOT, "packaging", "php", "mailrun-runner.php")


def mailrun_run(workdir, pg, delay, domains, n, size, runners, php=False):
    tag = f"{'php' if php else 'mr'}-{delay}-{domains}-{runners}"
    server = DelayServer(workdir, delay, domains, tag)
    pg.psql("DROP DATABASE IF EXISTS mailrun", db="postgres")
    pg.psql("CREATE DATABASE mailrun", db="postgres")
    w = os.path.join(workdir, tag)
    os.makedirs(w)
    env = dict(os.environ, MAILRUN_DATABASE_URL=pg.url)

    def admin(*args, stdin=None):
        return subprocess.run([f"{BIN}/dispatch-admin", *args], env=env, check=True,
                              capture_output=True, text=True, input=stdin).stdout

    admin("init")
    for i in range(domains):
        admin("account", "add", f"a{i}", "--host", "127.0.0.1", "--port", str(server.base + i),
              "--security", "none")
    line = "The quick brown fox jumps over the lazy dog, again and again. 0123456789\n"
    body = (line * (size // len(line) + 1))[:size]
    jsonl = "".join(json.dumps({"from": FROM, "to": [f"user@d{i % domains}.test"],
                                "subject": f"bench {i}", "text": body,
                                "account": f"a{i % domains}"}) + "\n" for i in range(n))
    admin("enqueue", "--jsonl", stdin=jsonl)
    port = load.free_port()
    listen = load.PROCS.start([f"{BIN}/dispatch-cgi", "--listen", f"127.0.0.1:{port}"], env=env,
                              stderr=open(os.path.join(w, "dispatch-cgi.log"), "wb"))
    load.wait_port(port, "dispatch-cgi --listen")
    states = []
    for r in range(runners):
        name = f"r{r}"
        state = os.path.join(w, name)
        key = json.loads(admin("--json", "runner", "add", name, "--endpoint",
                               "http://127.0.0.1:9/", "--batch-size", "500"))
        init = ["php", PHP_RUNNER, "init"] if php else [f"{BIN}/runner-admin", "init"]
        subprocess.run([*init, "--state-dir", state, "--dispatcher-url",
                        f"http://127.0.0.1:{port}/", "--runner-id", name, "--key-id",
                        key["key_id"], "--key-file", "-"],
                       input=key["key"], text=True, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if php:
            path = os.path.join(state, "runner.json")
            with open(path) as f:
                config = json.load(f)
            config["settings"]["batch_size"] = 500
            with open(path, "w") as f:
                json.dump(config, f)
        else:
            load.rewrite_toml(os.path.join(state, "runner.toml"), {"batch_size": "500"})
        states.append(state)
    cycle = ["php", PHP_RUNNER, "cycle"] if php else [f"{BIN}/runner-admin", "cycle"]
    cycles = [load.PROCS.start([*cycle, "--force", "--state-dir", s, "--max-seconds", "1800"],
                               stderr=open(os.path.join(w, f"cycle-{i}.log"), "wb"))
              for i, s in enumerate(states)]
    stats = server.wait_for(n, timeout=1800)
    for c in cycles:
        c.wait(timeout=600)
    listen.terminate()
    listen.wait()
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--delays", default="0.1,0.3", help="seconds, comma-separated")
    ap.add_argument("--domains", default="1,10,100")
    ap.add_argument("--out", help="also write the table as Markdown")
    ap.add_argument("--php", action="store_true",
                    help="one Rust runner against one PHP runner instead of Postfix")
    args = ap.parse_args()
    if args.php:
        return php_main(args)
    workdir = tempfile.mkdtemp(prefix="mailrun-latency-")
    os.chmod(workdir, 0o755)
    pg = load.Postgres(workdir)
    rows = []
    try:
        for delay in [float(d) for d in args.delays.split(",")]:
            for domains in [int(d) for d in args.domains.split(",")]:
                load.say(f"delay {delay * 1000:.0f} ms, {domains} domain(s), {args.messages} x "
                         f"{args.size // 1024} KB")
                pf = postfix_run(workdir, delay, domains, args.messages, args.size)
                load.say(f"  Postfix stock: {rate(pf):.1f} msgs/s, busy mean "
                         f"{pf.get('busy_mean', 0):.1f} peak {pf.get('busy_max')}")
                one = mailrun_run(workdir, pg, delay, domains, args.messages, args.size, 1)
                load.say(f"  mailrun 1 runner: {rate(one):.1f} msgs/s, busy mean "
                         f"{one.get('busy_mean', 0):.1f} peak {one.get('busy_max')}")
                two = mailrun_run(workdir, pg, delay, domains, args.messages, args.size, 2)
                load.say(f"  mailrun 2 runners: {rate(two):.1f} msgs/s, busy mean "
                         f"{two.get('busy_mean', 0):.1f} peak {two.get('busy_max')}")
                rows.append((delay, domains, pf, one, two))
    finally:
        load.PROCS.stop_all()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    head = ("| reply delay | domains | Postfix stock msgs/s (busy mean/peak) | mailrun 1 runner "
            "(busy) | 2 runners (busy) | 1 runner / Postfix | 2 runners / 1 runner |")
    lines = [head, "|---|---|---|---|---|---|---|"]
    for delay, domains, pf, one, two in rows:
        def cell(s):
            return f"{rate(s):.1f} ({s.get('busy_mean', 0):.1f}/{s.get('busy_max')})"
        r1 = rate(one) / rate(pf) if rate(pf) else 0
        r2 = rate(two) / rate(one) if rate(one) else 0
        lines.append(f"| {delay * 1000:.0f} ms | {domains} | {cell(pf)} | {cell(one)} | "
                     f"{cell(two)} | {r1:.2f}x | {r2:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


def php_main(args):
    """The PHP runner's rate as a ratio to the Rust runner's, same server, same messages."""
    workdir = tempfile.mkdtemp(prefix="mailrun-latency-php-")
    os.chmod(workdir, 0o755)
    pg = load.Postgres(workdir)
    rows = []
    try:
        for delay in [float(d) for d in args.delays.split(",")]:
            for domains in [int(d) for d in args.domains.split(",")]:
                load.say(f"delay {delay * 1000:.0f} ms, {domains} domain(s), {args.messages} x "
                         f"{args.size // 1024} KB")
                rust = mailrun_run(workdir, pg, delay, domains, args.messages, args.size, 1)
                load.say(f"  Rust runner: {rate(rust):.1f} msgs/s, busy mean "
                         f"{rust.get('busy_mean', 0):.1f} peak {rust.get('busy_max')}")
                php = mailrun_run(workdir, pg, delay, domains, args.messages, args.size, 1,
                                  php=True)
                load.say(f"  PHP runner: {rate(php):.1f} msgs/s, busy mean "
                         f"{php.get('busy_mean', 0):.1f} peak {php.get('busy_max')}")
                rows.append((delay, domains, rust, php))
    finally:
        load.PROCS.stop_all()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    lines = ["| reply delay | domains | Rust runner msgs/s (busy mean/peak) | PHP runner msgs/s "
             "(busy) | PHP / Rust |", "|---|---|---|---|---|"]
    for delay, domains, rust, php in rows:
        def cell(s):
            return f"{rate(s):.1f} ({s.get('busy_mean', 0):.1f}/{s.get('busy_max')})"
        ratio = rate(php) / rate(rust) if rate(rust) else 0
        lines.append(f"| {delay * 1000:.0f} ms | {domains} | {cell(rust)} | {cell(php)} | "
                     f"{ratio:.3f}x |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
