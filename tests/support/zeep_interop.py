#!/usr/bin/env python3
"""Interop with zeep, a SOAP stack mailrun did not write, driven only by protocol/'s WSDL
and the documented signing rule (docs/signing.md; the signing transport is the one in
zeep_runner.py).

Usage:
  zeep_interop.py runner WSDL URL RUNNER_ID KEY_ID SECRET_HEX
      Plays a runner against dispatch-cgi: JobRunRequest for a batch, then a second
      JobRunRequest (capacity 0) reporting every message of it as Sent.
      Prints {"batch": [ids], "acknowledged": [ids], "final_messages": n}.
  zeep_interop.py dispatcher WSDL URL RUNNER_ID KEY_ID SECRET_HEX DISPATCHER_URL
      Plays the dispatcher against runner-cgi: JobRunnerReady, JobRunnerConfigUpdate
      version 1, then version 1 again (which must be refused).
      Prints {"ready": status, "config_version": n, "applied": n, "again": fault reason}.
URL "-" uses the WSDL's own soap:address (a WSDL printed by `wsdl --url`, as it is).
Exits non-zero with the reason on stderr on an unexpected fault or a bad signature.
"""
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zeep import Client, Settings  # noqa: E402
from zeep.exceptions import Fault  # noqa: E402

from zeep_runner import SigningTransport  # noqa: E402

NS = "{urn:mailrun:soap:v1}"


def client_for(wsdl, key_id, secret_hex):
    transport = SigningTransport(key_id, bytes.fromhex(secret_hex), timeout=30, operation_timeout=30)
    return Client(wsdl, transport=transport, settings=Settings(strict=True))


def fault_reason(fault):
    """The FaultReason from the fault's detail, whatever prefix the server used."""
    if fault.detail is not None:
        for element in fault.detail.iter():
            if element.tag.endswith("reason") and element.text:
                return element.text.strip()
    return fault.message


def play_runner(wsdl, url, runner_id, key_id, secret_hex):
    client = client_for(wsdl, key_id, secret_hex)
    service = client.service if url == "-" else client.create_service(NS + "JobDispatcherBinding", url)
    try:
        job_run = service.JobRunRequest(
            runnerId=runner_id, capacity=10, softwareVersion="zeep", configVersion=0
        )
        messages = job_run.messages.message if job_run.messages is not None else []
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        results = [
            {
                "jobRunId": job_run.jobRunId,
                "messageId": m.id,
                "leaseToken": m.leaseToken,
                "outcome": "Sent",
                "smtpCode": 250,
                "text": "2.0.0 Ok: queued by zeep",
                "attemptedAt": now,
            }
            for m in messages
        ]
        final = service.JobRunRequest(
            runnerId=runner_id,
            capacity=0,
            softwareVersion="zeep",
            configVersion=0,
            results={"result": results},
        )
    except Fault as fault:
        sys.exit(f"zeep_interop: fault {fault_reason(fault)}: {fault.message}")
    acks = final.acknowledged.ack if final.acknowledged is not None else []
    final_messages = final.messages.message if final.messages is not None else []
    print(
        json.dumps(
            {
                "batch": [m.id for m in messages],
                "acknowledged": [a.messageId for a in acks],
                "final_messages": len(final_messages),
            }
        )
    )


def play_dispatcher(wsdl, url, runner_id, key_id, secret_hex, dispatcher_url):
    client = client_for(wsdl, key_id, secret_hex)
    service = client.service if url == "-" else client.create_service(NS + "JobRunnerBinding", url)
    settings = {
        "batchSize": 25,
        "sendRatePerSecond": 0.0,
        "smtpConnectTimeoutSeconds": 30,
        "smtpCommandTimeoutSeconds": 300,
        "smtpDataTimeoutSeconds": 600,
        "pollIntervalSeconds": 60,
        "leaseSafetyMarginSeconds": 30,
        "dispatcherUrl": dispatcher_url,
    }
    try:
        ready = service.JobRunnerReady(runnerId=runner_id, queued=3)
        update = service.JobRunnerConfigUpdate(runnerId=runner_id, version=1, settings=settings)
    except Fault as fault:
        sys.exit(f"zeep_interop: fault {fault_reason(fault)}: {fault.message}")
    try:
        service.JobRunnerConfigUpdate(runnerId=runner_id, version=1, settings=settings)
        again = None
    except Fault as fault:
        again = fault_reason(fault)
    print(
        json.dumps(
            {
                "ready": ready.status,
                "config_version": ready.configVersion,
                "applied": getattr(update, "appliedVersion", update),
                "again": again,
            }
        )
    )


def main():
    if len(sys.argv) >= 7 and sys.argv[1] == "runner":
        play_runner(*sys.argv[2:7])
    elif len(sys.argv) >= 8 and sys.argv[1] == "dispatcher":
        play_dispatcher(*sys.argv[2:8])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
