#!/usr/bin/env python3
"""Builds every mailrun request message with zeep, from the WSDLs alone.

Usage: zeep_build.py PROTOCOL_DIR
Prints a JSON object {name: envelope XML} on stdout. The values mirror the Rust test
samples (tests/protocol/samples.rs) so tests/protocol.rs can compare what the codec
decodes from zeep's XML with the values it expects.
"""
import datetime
import json
import os
import sys

from lxml import etree
from zeep import Client, Settings

UTC = datetime.timezone.utc


def at(secs, micros=0):
    return datetime.datetime.fromtimestamp(secs, UTC) + datetime.timedelta(microseconds=micros)


def main():
    protocol = sys.argv[1]
    settings = Settings(strict=True, raw_response=False)
    dispatcher = Client(os.path.join(protocol, "dispatcher.wsdl"), settings=settings)
    runner = Client(os.path.join(protocol, "runner.wsdl"), settings=settings)
    out = {}

    def build(client, operation, name, **kwargs):
        envelope = client.create_message(client.service, operation, **kwargs)
        out[name] = etree.tostring(envelope, encoding="utf-8", xml_declaration=True).decode("utf-8")

    build(
        dispatcher,
        "JobRunRequest",
        "job-run-request",
        runnerId="runner-eu-1",
        capacity=200,
        softwareVersion="0.1.0",
        configVersion=7,
        results={
            "result": [
                {
                    "jobRunId": "jr-20261123-0001",
                    "messageId": 1040,
                    "leaseToken": "lt-1040",
                    "outcome": "Sent",
                    "smtpCode": 250,
                    "enhancedStatus": "2.0.0",
                    "text": "Ok: queued as 4Xy1Zk",
                    "attemptedAt": at(1795430000),
                },
                {
                    "jobRunId": "jr-20261123-0001",
                    "messageId": 1041,
                    "leaseToken": "lt-1041",
                    "outcome": "Deferred",
                    "smtpCode": 451,
                    "enhancedStatus": "4.7.1",
                    "text": "Greylisted, try again later",
                    "attemptedAt": at(1795430001, 250000),
                    "recipient": [
                        {
                            "address": "alice@example.org",
                            "outcome": "Sent",
                            "smtpCode": 250,
                            "enhancedStatus": "2.1.5",
                            "text": "Recipient ok",
                        },
                        {
                            "address": "nobody@example.org",
                            "outcome": "Failed",
                            "smtpCode": 550,
                            "enhancedStatus": "5.1.1",
                            "text": "User unknown",
                        },
                        {"address": "later@example.org", "outcome": "Deferred"},
                    ],
                },
                {
                    "jobRunId": "jr-20261123-0001",
                    "messageId": 1039,
                    "leaseToken": "lt-1039",
                    "outcome": "NotAttempted",
                    "attemptedAt": at(1795430002, 123456),
                },
            ]
        },
        heldJobRuns={"jobRunId": ["jr-20261123-0001", "jr-20261123-0002"]},
    )
    build(
        dispatcher,
        "JobRunRequest",
        "job-run-request-minimal",
        runnerId="runner-eu-1",
        capacity=200,
        softwareVersion="0.1.0",
        configVersion=0,
    )
    build(runner, "JobRunnerReady", "job-runner-ready", runnerId="runner-eu-1", queued=1342)
    settings_value = {
        "batchSize": 100,
        "sendRatePerSecond": 12.5,
        "smtpConnectTimeoutSeconds": 30,
        "smtpCommandTimeoutSeconds": 300,
        "smtpDataTimeoutSeconds": 600,
        "pollIntervalSeconds": 60,
        "leaseSafetyMarginSeconds": 30,
        "dispatcherUrl": "https://dispatch.example.com/cgi-bin/dispatch-cgi",
        "software": {
            "version": "0.2.0",
            "url": "https://downloads.example.com/mailrun/mailrun-0.2.0-x86_64.tar.gz",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
        "replyPolicy": {
            "rule": [
                {"position": 10, "code": "421", "action": "another_account",
                 "throttle": "account"},
                {"position": 40, "code": "5xx", "enhanced": "5.7",
                 "pattern": "rate.?limit|connection frequency limited", "action": "retry",
                 "throttle": "account"},
                {"position": 55, "code": "4xx", "domain": "gmail.com",
                 "account": "provider-eu", "action": "retry", "throttle": "domain"},
                {"position": 80, "code": "5xx", "enhanced": "5.1.1", "action": "suppress",
                 "throttle": "none"},
                {"position": 120, "pattern": "spam", "action": "fail", "throttle": "none"},
            ]
        },
        "maxSessions": 50,
        "maxSessionsPerAccount": 10,
    }
    build(
        runner,
        "JobRunnerConfigUpdate",
        "job-runner-config-update",
        runnerId="runner-eu-1",
        version=8,
        settings=settings_value,
    )
    without_software = dict(settings_value)
    del without_software["software"]
    del without_software["replyPolicy"]
    del without_software["maxSessions"]
    del without_software["maxSessionsPerAccount"]
    build(
        runner,
        "JobRunnerConfigUpdate",
        "job-runner-config-update-minimal",
        runnerId="runner-eu-1",
        version=8,
        settings=without_software,
    )
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
