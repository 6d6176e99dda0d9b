#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for tests/quotas.rs, on 127.0.0.1.

--mode accept: accepts every message and appends one JSON line per message to --log
               ({"from", "rcpt", "message_id"}), flushed at once: the log is what the
               tests count deliveries from.
--mode 421:    answers MAIL FROM with "421 4.7.0 Too many messages, slow down" and
               accepts nothing (a provider rate-limiting the account).
--mode relay:  refuses every RCPT with "554 5.7.1 Relay access denied" (an account
               that may not relay).
--attempts:    optional; appends one JSON line per MAIL FROM received ({"from"}), in
               either mode: how many transactions reached the server.
Prints "ready" on stdout once listening; runs until terminated.
"""
import argparse
import json
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Handler:
    def __init__(self, mode, log, attempts):
        self.mode = mode
        self.log = log
        self.attempts = attempts
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.attempts:
            with self.lock:
                with open(self.attempts, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"from": address}) + "\n")
                    f.flush()
        if self.mode == "421":
            return "421 4.7.0 Too many messages, slow down"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.mode == "relay":
            return "554 5.7.1 <%s>: Relay access denied" % address
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        message_id = None
        for line in envelope.content.decode("utf-8", "replace").splitlines():
            if line == "":
                break
            if line.lower().startswith("message-id:"):
                message_id = line.split(":", 1)[1].strip()
        with self.lock:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(json.dumps({"from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
                                    "message_id": message_id}) + "\n")
                f.flush()
        return "250 2.0.0 Message accepted"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["accept", "421", "relay"], required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--attempts")
    a = p.parse_args()
    controller = Controller(Handler(a.mode, a.log, a.attempts), hostname="127.0.0.1",
                            port=a.port)
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
