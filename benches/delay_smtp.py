#!/usr/bin/env python3
"""A receiving SMTP server that answers like servers on the internet do: late.

Every reply that costs a real server work is delayed by --delay seconds: the greeting,
each RCPT answer and the answer to the final dot (MAIL, DATA's 354, RSET and QUIT are
answered at once). It listens on several ports at once, one per domain or SMTP account
(--port-base and --ports), offers PIPELINING and 8BITMIME, and answers pipelined
commands in order.

It counts what a benchmark needs and writes it to --stats as JSON, once a second and at
exit: messages accepted, sessions open now and at most at once (overall and per port),
and transactions busy at once (MAIL seen, final dot not yet answered), sampled every
50 ms. --record appends "port<TAB>Message-ID" per accepted message (for exactly-once
checks). --max-sessions N answers "421 4.7.0 too many connections" to the greeting of
every session beyond N open on one port (a provider's connection cap), and
--fail-rcpt ADDR answers 550 to that recipient.

Loopback only; runs until SIGTERM or SIGINT.
"""
import argparse
import asyncio
import json
import os
import signal
import time


class Stats:
    def __init__(self, ports):
        self.messages = 0
        self.sessions = {p: 0 for p in ports}
        self.sessions_max = {p: 0 for p in ports}
        self.sessions_total_max = 0
        self.busy = 0
        self.busy_max = 0
        self.busy_samples = []
        self.refused = 0
        self.started = time.time()
        self.first_message = None
        self.last_message = None

    def snapshot(self):
        samples = self.busy_samples or [0]
        return {
            "messages": self.messages,
            "sessions_now": sum(self.sessions.values()),
            "sessions_max": self.sessions_total_max,
            "sessions_max_per_port": max(self.sessions_max.values() or [0]),
            "busy_max": self.busy_max,
            "busy_mean": sum(samples) / len(samples),
            "refused_sessions": self.refused,
            "first_message_at": self.first_message,
            "last_message_at": self.last_message,
        }


async def session(reader, writer, port, args, stats, record):
    if args.max_sessions and stats.sessions[port] >= args.max_sessions:
        stats.refused += 1
        await asyncio.sleep(args.delay)
        writer.write(b"421 4.7.0 too many connections from your host\r\n")
        await writer.drain()
        writer.close()
        return
    stats.sessions[port] += 1
    stats.sessions_max[port] = max(stats.sessions_max[port], stats.sessions[port])
    stats.sessions_total_max = max(stats.sessions_total_max, sum(stats.sessions.values()))
    in_transaction = False
    try:
        await asyncio.sleep(args.delay)
        writer.write(b"220 delay.test ESMTP\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250-delay.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                             b"250-SMTPUTF8\r\n250 SIZE 104857600\r\n")
            elif verb == b"MAIL":
                if not in_transaction:
                    in_transaction = True
                    stats.busy += 1
                    stats.busy_max = max(stats.busy_max, stats.busy)
                writer.write(b"250 2.1.0 ok\r\n")
            elif verb == b"RCPT":
                await asyncio.sleep(args.delay)
                addr = line[8:].strip().strip(b"<>").decode("utf-8", "replace")
                if addr in args.fail_rcpt:
                    writer.write(b"550 5.1.1 no such user\r\n")
                else:
                    writer.write(b"250 2.1.5 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                message_id = None
                in_headers = True
                while True:
                    data = await reader.readline()
                    if not data:
                        return
                    if data == b".\r\n":
                        break
                    if in_headers:
                        if data in (b"\r\n", b"\n"):
                            in_headers = False
                        elif data[:11].lower() == b"message-id:":
                            message_id = data[11:].strip().decode("ascii", "replace")
                await asyncio.sleep(args.delay)
                stats.messages += 1
                now = time.time()
                stats.first_message = stats.first_message or now
                stats.last_message = now
                if record is not None:
                    record.write(f"{port}\t{message_id}\n")
                    record.flush()
                writer.write(b"250 2.0.0 queued\r\n")
                if in_transaction:
                    in_transaction = False
                    stats.busy -= 1
            elif verb == b"RSET":
                if in_transaction:
                    in_transaction = False
                    stats.busy -= 1
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        pass
    finally:
        if in_transaction:
            stats.busy -= 1
        stats.sessions[port] -= 1
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-base", type=int, required=True)
    p.add_argument("--ports", type=int, default=1, help="listen on port-base .. port-base+N-1")
    p.add_argument("--delay", type=float, default=0.1, help="seconds before each slow reply")
    p.add_argument("--stats", help="write the counters here (JSON), every second and at exit")
    p.add_argument("--record", help="append port<TAB>Message-ID per accepted message")
    p.add_argument("--max-sessions", type=int, default=0, help="421 beyond N sessions per port")
    p.add_argument("--fail-rcpt", action="append", default=[], help="550 this recipient")
    args = p.parse_args()
    ports = [args.port_base + i for i in range(args.ports)]
    stats = Stats(ports)
    record = open(args.record, "a", encoding="utf-8") if args.record else None
    servers = []
    for port in ports:
        servers.append(await asyncio.start_server(
            lambda r, w, port=port: session(r, w, port, args, stats, record),
            "127.0.0.1", port, backlog=1024))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def write_stats():
        if args.stats:
            tmp = args.stats + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(stats.snapshot(), f)
            os.replace(tmp, args.stats)

    async def sample():
        n = 0
        while not stop.is_set():
            await asyncio.sleep(0.05)
            if stats.busy:
                stats.busy_samples.append(stats.busy)
            n += 1
            if n % 20 == 0:
                write_stats()

    print("ready", flush=True)
    sampler = asyncio.create_task(sample())
    await stop.wait()
    sampler.cancel()
    write_stats()
    for s in servers:
        s.close()


if __name__ == "__main__":
    asyncio.run(main())
