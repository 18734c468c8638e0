"""Fake Alertmanager receiver for logyard's tests.

Usage: receiver.py SPEC_PATH

SPEC_PATH is Alertmanager's v2 OpenAPI (Swagger 2.0) spec. The receiver listens
on 127.0.0.1 (a free port), prints one line ``listening <port>`` and serves
until killed:

* ``POST /api/v2/alerts`` validates the JSON body against the spec's
  ``postableAlerts`` definition, as Alertmanager's own (go-swagger generated)
  API does, including the ``date-time`` and ``uri`` formats. It answers 200
  ``{}`` when the body is valid and 400 with a JSON list of
  ``"<path>: <message>"`` strings when it is not.
* ``GET /received`` answers every POST so far, in arrival order, as
  ``{"path", "valid", "errors", "body"}`` objects (body is null when it was
  not JSON).
* Anything else: 404 (POSTs elsewhere are still recorded, as invalid).
"""

import json
import re
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import jsonschema
import yaml

ALERTS_PATH = "/api/v2/alerts"

FORMATS = jsonschema.FormatChecker(formats=())

# RFC 3339 date-time: full-date "T" full-time, the offset is mandatory.
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"
)


@FORMATS.checks("date-time", raises=ValueError)
def is_date_time(value):
    if not isinstance(value, str):
        return True
    if not RFC3339.fullmatch(value):
        return False
    # fromisoformat checks the field ranges (month 13, hour 25, ...).
    datetime.fromisoformat(re.sub(r"[Zz]$", "+00:00", value))
    return True


@FORMATS.checks("uri")
def is_uri(value):
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def load_validator(spec_path):
    with open(spec_path, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    schema = {"$ref": "#/definitions/postableAlerts", "definitions": spec["definitions"]}
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=FORMATS)


class Handler(BaseHTTPRequestHandler):
    validator = None  # set in main()
    received = []
    lock = threading.Lock()

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError as e:
            body, errors = None, [f"body is not JSON: {e}"]
        else:
            errors = [
                f"{e.json_path}: {e.message}"
                for e in sorted(self.validator.iter_errors(body), key=lambda e: e.json_path)
            ]
        if self.path != ALERTS_PATH:
            errors = [f"unknown path {self.path}"]
        with self.lock:
            self.received.append(
                {"path": self.path, "valid": not errors, "errors": errors, "body": body}
            )
        if self.path != ALERTS_PATH:
            self.reply(404, {"error": "not found"})
        elif errors:
            self.reply(400, errors)
        else:
            self.reply(200, {})

    def do_GET(self):
        if self.path == "/received":
            with self.lock:
                self.reply(200, self.received)
        else:
            self.reply(404, {"error": "not found"})

    def reply(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # keep the test output quiet


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: receiver.py SPEC_PATH")
    Handler.validator = load_validator(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
