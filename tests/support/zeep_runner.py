#!/usr/bin/env python3
"""Plays a runner with zeep, a SOAP stack mailrun did not write, given only the WSDL.

Usage: zeep_runner.py WSDL URL RUNNER_ID KEY_ID SECRET_HEX

Calls JobRunRequest on URL (dispatch-cgi), signing every request with the mailrun HMAC
headers (docs/signing.md) over the exact bytes zeep sends, and checking the response's
signature the same way. Prints {"job_run_id", "message_ids", "from"} as JSON on stdout.
Exits non-zero (with the reason on stderr) on a fault or a bad signature.
"""
import hashlib
import hmac
import json
import secrets
import sys
import time
from urllib.parse import urlparse

from zeep import Client, Settings
from zeep.exceptions import Fault
from zeep.transports import Transport

SCHEME = "MAILRUN-HMAC-SHA256"


def string_to_sign(method, path, action, timestamp, nonce, body, request_nonce=None):
    body_hash = hashlib.sha256(body).hexdigest()
    lines = [SCHEME, method, path, action, str(timestamp), nonce, body_hash]
    if request_nonce is not None:
        lines.append(request_nonce)  # a response is bound to the request it answers
    return "\n".join(lines)


class SigningTransport(Transport):
    """Adds X-Mailrun-* headers to each POST and verifies the signed response."""

    def __init__(self, key_id, secret, **kwargs):
        super().__init__(**kwargs)
        self.key_id = key_id
        self.secret = secret

    def post(self, address, message, headers):
        body = message if isinstance(message, bytes) else message.encode("utf-8")
        path = urlparse(address).path or "/"
        action = headers.get("SOAPAction", "").strip('"')
        timestamp = int(time.time())
        nonce = secrets.token_hex(16)
        text = string_to_sign("POST", path, action, timestamp, nonce, body)
        signature = hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
        headers = dict(headers)
        headers.update(
            {
                "X-Mailrun-Key-Id": self.key_id,
                "X-Mailrun-Timestamp": str(timestamp),
                "X-Mailrun-Nonce": nonce,
                "X-Mailrun-Signature": signature,
            }
        )
        response = super().post(address, body, headers)
        self.verify_response(path, response, nonce)
        return response

    def verify_response(self, path, response, request_nonce):
        h = response.headers
        given = h.get("X-Mailrun-Signature")
        if given is None:
            if response.status_code == 200:
                sys.exit("zeep_runner: a 200 response without a signature")
            return  # an unsigned fault: zeep raises it below
        action = h.get("SOAPAction", "").strip('"')
        text = string_to_sign(
            "RESPONSE", path, action, h["X-Mailrun-Timestamp"], h["X-Mailrun-Nonce"], response.content,
            request_nonce,
        )
        expected = hmac.new(self.secret, text.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            sys.exit("zeep_runner: response signature does not verify")
        if h.get("X-Mailrun-Key-Id") != self.key_id:
            sys.exit("zeep_runner: response signed with another key id")


def main():
    wsdl, url, runner_id, key_id, secret_hex = sys.argv[1:6]
    transport = SigningTransport(key_id, bytes.fromhex(secret_hex), timeout=30, operation_timeout=30)
    client = Client(wsdl, transport=transport, settings=Settings(strict=True))
    service = client.create_service("{urn:mailrun:soap:v1}JobDispatcherBinding", url)
    try:
        job_run = service.JobRunRequest(
            runnerId=runner_id, capacity=10, softwareVersion="zeep", configVersion=0
        )
    except Fault as fault:
        sys.exit(f"zeep_runner: fault {fault.code}: {fault.message}")
    messages = job_run.messages.message if job_run.messages is not None else []
    print(
        json.dumps(
            {
                "job_run_id": job_run.jobRunId,
                "message_ids": [m.id for m in messages],
                "from": messages[0]["from"] if messages else None,
            }
        )
    )


if __name__ == "__main__":
    main()
