#!/usr/bin/env python3
"""Scripted SMTP server for mailrun's tests (aiosmtpd on 127.0.0.1).

Every event is appended to --record as one JSON line, flushed before the server answers:
  {"kind": "message", "mail_from", "rcpt_tos", "message_id", "data"}  after a message is
      accepted (written before the 250 goes out, so a message the client saw accepted is
      always in the record)
  {"kind": "command", "verb": "SESSION"|"AUTH"|"MAIL"|"STARTTLS"|"EHLO", "secure": bool}
Faults on demand: refuse chosen recipients (550) or defer them (451), answer the end of
DATA with a chosen reply, drop the connection instead of answering DATA, or wait before
answering DATA (a slow server for kill -9 tests).
"""
import argparse
import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--record", required=True)
    p.add_argument("--reject", action="append", default=[], help="550 this RCPT")
    p.add_argument("--defer", action="append", default=[], help="451 this RCPT")
    p.add_argument("--data-reply", help='reply to the end of DATA, e.g. "451 4.3.0 later"')
    p.add_argument("--data-reply-count", type=int, default=-1,
                   help="give --data-reply only to the first N messages, then accept")
    p.add_argument("--drop-on-data", action="store_true", help="close instead of answering DATA")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering DATA")
    p.add_argument("--delay-count", type=int, default=-1, help="delay only the first N DATA answers")
    p.add_argument("--auth", action="store_true", help="offer AUTH over plain text, accept any login")
    p.add_argument("--pipelining", action="store_true", help="offer PIPELINING (RFC 2920)")
    p.add_argument("--tls-cert", help="offer STARTTLS with this certificate (PEM)")
    p.add_argument("--tls-key", help="private key of --tls-cert (PEM)")
    p.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (SMTPS) instead of STARTTLS")
    p.add_argument("--max-per-connection", type=int, default=0,
                   help="after N accepted messages on a connection: --over-limit")
    p.add_argument("--over-limit", choices=["close", "421"], default="close",
                   help="close the connection silently after the Nth 250, or answer the next MAIL with 421 and close")
    args = p.parse_args()

    record = open(args.record, "a", encoding="utf-8")

    def write(event):
        record.write(json.dumps(event) + "\n")
        record.flush()
        os.fsync(record.fileno())

    def secure(server):
        return args.implicit_tls or server._tls_protocol is not None

    class Recording(SMTP):
        async def smtp_EHLO(self, arg):
            # One SESSION per connection that says EHLO (a port probe says nothing;
            # mailrun says EHLO more than once per connection).
            if not getattr(self, "_said_ehlo", False):
                self._said_ehlo = True
                write({"kind": "command", "verb": "SESSION", "secure": secure(self)})
            write({"kind": "command", "verb": "EHLO", "secure": secure(self)})
            return await super().smtp_EHLO(arg)

        async def smtp_AUTH(self, arg):
            write({"kind": "command", "verb": "AUTH", "secure": secure(self)})
            return await super().smtp_AUTH(arg)

        async def smtp_MAIL(self, arg):
            write({"kind": "command", "verb": "MAIL", "secure": secure(self)})
            if (args.max_per_connection and args.over_limit == "421"
                    and getattr(self, "accepted", 0) >= args.max_per_connection):
                await self.push("421 4.7.0 Too many messages on this connection")
                self.transport.close()
                return
            return await super().smtp_MAIL(arg)

        async def smtp_STARTTLS(self, arg):
            write({"kind": "command", "verb": "STARTTLS", "secure": False})
            return await super().smtp_STARTTLS(arg)

    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            if args.pipelining:
                responses.insert(len(responses) - 1, "250-PIPELINING")
            return responses

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
            if address in args.reject:
                return "550 5.1.1 <%s>: Recipient address rejected: User unknown" % address
            if address in args.defer:
                return "451 4.2.0 <%s>: Recipient address deferred: try later" % address
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 OK"

        async def handle_DATA(self, server, session, envelope):
            if args.delay and args.delay_count != 0:
                args.delay_count -= 1
                await asyncio.sleep(args.delay)
            if args.drop_on_data:
                server.transport.close()
                return "421 closing"
            if args.data_reply and args.data_reply_count != 0:
                args.data_reply_count -= 1
                return args.data_reply
            data = envelope.content.decode("utf-8", "replace")
            message_id = None
            for line in data.split("\r\n"):
                if line == "":
                    break
                if line.lower().startswith("message-id:"):
                    message_id = line.split(":", 1)[1].strip()
            write({
                "kind": "message",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message_id": message_id,
                "data": data,
            })
            server.accepted = getattr(server, "accepted", 0) + 1
            if (args.max_per_connection and args.over_limit == "close"
                    and server.accepted >= args.max_per_connection):
                # After the 250 has gone out: the client sees a healthy session end.
                asyncio.get_running_loop().call_later(0.1, server.transport.close)
            return "250 2.0.0 Ok: queued"

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=True)

    tls_context = None
    if args.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(args.tls_cert, args.tls_key)

    def factory():
        kwargs = {}
        if args.auth:
            kwargs = dict(authenticator=authenticator, auth_require_tls=False)
        if tls_context is not None and not args.implicit_tls:
            kwargs["tls_context"] = tls_context
        return Recording(Handler(), hostname="test.invalid", **kwargs)

    loop = asyncio.new_event_loop()
    ssl_arg = tls_context if args.implicit_tls else None
    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", args.port, ssl=ssl_arg))
    print("listening", args.port, file=sys.stderr, flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()


if __name__ == "__main__":
    main()
