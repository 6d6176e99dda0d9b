#!/usr/bin/env python3
"""Parses envelopes the mailrun codec emitted with zeep, as a zeep client would parse
the HTTP response of an operation, using only the WSDLs.

Usage: zeep_parse.py PROTOCOL_DIR < requests.json
stdin: [{"name", "service": "dispatcher"|"runner", "operation", "status", "xml"}]
stdout: {name: {"ok": value} | {"fault": {"code", "message", "reason", "detail_message"}}}
with values made JSON-friendly (dates as ISO strings, bytes as hex).
"""
import datetime
import json
import os
import sys

from zeep import Client, Settings
from zeep.exceptions import Fault
from zeep.helpers import serialize_object

NS = "{urn:mailrun:soap:v1}"


class Response:
    """The parts of a requests.Response that zeep's binding reads."""

    def __init__(self, status, xml):
        self.status_code = status
        self.content = xml.encode("utf-8")
        self.encoding = "utf-8"
        self.headers = {"Content-Type": "text/xml; charset=utf-8"}


def plain(value):
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def main():
    protocol = sys.argv[1]
    settings = Settings(strict=True)
    clients = {
        "dispatcher": Client(os.path.join(protocol, "dispatcher.wsdl"), settings=settings),
        "runner": Client(os.path.join(protocol, "runner.wsdl"), settings=settings),
    }
    out = {}
    for item in json.load(sys.stdin):
        client = clients[item["service"]]
        binding = client.service._binding
        operation = binding.get(item["operation"])
        try:
            result = binding.process_reply(client, operation, Response(item["status"], item["xml"]))
            out[item["name"]] = {"ok": plain(serialize_object(result, dict))}
        except Fault as fault:
            detail = {}
            if fault.detail is not None:
                for child in fault.detail.iter():
                    if child.tag == NS + "reason":
                        detail["reason"] = child.text
                    elif child.tag == NS + "message":
                        detail["detail_message"] = child.text
            out[item["name"]] = {
                "fault": dict(code=fault.code, message=fault.message, **detail)
            }
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
