"""Validates webhook post bodies against the WebhookPost schema of protocol/openapi.yaml
with jsonschema (a validator mailrun did not write).

Usage: validate.py SPEC BODIES.jsonl. Prints one line per invalid body; exit 1 if any.
"""
import json
import sys

import jsonschema
import yaml


def main(spec_path, bodies_path):
    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    post = spec["webhooks"]["deliveryEvents"]["post"]
    root = dict(post["requestBody"]["content"]["application/json"]["schema"])
    # The $refs point into the document's components.
    root["components"] = spec["components"]
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    failures = 0
    count = 0
    with open(bodies_path) as f:
        for n, line in enumerate(f, 1):
            count += 1
            for error in validator.iter_errors(json.loads(line)):
                failures += 1
                print(f"body {n}: {error.json_path}: {error.message}")
    if count == 0:
        print("no bodies")
        return 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
