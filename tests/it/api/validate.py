"""Validates recorded API exchanges against protocol/openapi.yaml with openapi-core (a
validator mailrun did not write).

Usage: validate.py SPEC EXCHANGES.jsonl. Each line: method, url, headers, body (text),
status, response_headers, response_body (text), request (true: the request must satisfy
the document; false: it must not; null: not checked, e.g. bodies only the server can
judge). Every response must satisfy the document. Prints one line per failure; exit 1
if any.
"""
import json
import sys

import jsonschema
import requests
import yaml
from requests.structures import CaseInsensitiveDict
from openapi_core import Config, OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse


def main(spec_path, exchanges_path):
    # RFC 9457 problems are JSON under their own media type.
    config = Config(extra_media_type_deserializers={
        "application/problem+json": lambda body: json.loads(body),
    })
    api = OpenAPI.from_file_path(spec_path, config=config)
    # Answers to paths or methods the document does not have are still problems.
    with open(spec_path) as f:
        problem_schema = yaml.safe_load(f)["components"]["schemas"]["Problem"]
    failures = 0
    count = 0
    with open(exchanges_path) as f:
        for n, line in enumerate(f, 1):
            x = json.loads(line)
            count += 1
            # The document's server is relative (/api/v1): wherever the web server
            # mounts dispatch-cgi, the API path starts there.
            url = x["url"]
            url = "http://localhost" + url[url.index("/api/v1"):]
            req = requests.Request(
                x["method"], url, headers=x["headers"],
                data=x["body"].encode() if x["body"] else None,
            ).prepare()
            oreq = RequestsOpenAPIRequest(req)
            where = f"exchange {n}: {x['method']} {x['url']} -> {x['status']}"
            if x.get("request") is not None:
                try:
                    api.validate_request(oreq)
                    ok = True
                    err = None
                except Exception as e:  # noqa: BLE001 - any validation error
                    ok = False
                    err = e
                if ok != x["request"]:
                    failures += 1
                    print(f"{where}: request {'should have failed' if ok else 'invalid: ' + repr(err)}")
            resp = requests.Response()
            resp.status_code = x["status"]
            resp._content = x["response_body"].encode()
            resp.headers = CaseInsensitiveDict(x["response_headers"])
            resp.request = req
            try:
                try:
                    api.validate_response(oreq, RequestsOpenAPIResponse(resp))
                except (PathNotFound, OperationNotFound):
                    if x["status"] not in (404, 405):
                        raise
                    assert resp.headers.get("Content-Type") == "application/problem+json"
                    jsonschema.validate(json.loads(x["response_body"]), problem_schema)
            except Exception as e:  # noqa: BLE001
                failures += 1
                detail = getattr(e, "__cause__", None) or e
                print(f"{where}: response invalid: {e!r} {detail!r} body={x['response_body'][:300]}")
    print(f"{count} exchanges checked, {failures} failures")
    return 1 if failures or count == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
