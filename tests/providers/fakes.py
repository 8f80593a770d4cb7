"""Stand-ins the cloud providers' tests share: a stack's outputs, a clock, a cloud API's
answer, and a JSON API served on loopback."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Outputs:
    """A stack whose outputs are ``outputs`` (what `CloudProvider._engine` gives)."""

    def __init__(self, outputs: dict):
        self._outputs = outputs

    def outputs(self) -> dict:
        return self._outputs

    def update_in_progress(self) -> bool:
        return False

    def backend_url(self) -> str:
        return "https://api.pulumi.com"


class Clock:
    """A monotonic clock that moves only when slept on."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Answer:
    """A `requests` response: a status and a JSON (or text) body."""

    def __init__(self, status: int, body: dict | str):
        self.status_code = status
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self):
        return json.loads(self.text)


class JsonApi(BaseHTTPRequestHandler):
    """A handler that answers JSON, quietly."""

    def answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]):
    """``handler`` served on a loopback port for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class AzureToken:
    """An Azure credential that hands out one token, noting the scopes asked for."""

    scopes: list[str] = []
    refuse = False

    def get_token(self, scope):
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import ClientAuthenticationError

        if self.refuse:
            raise ClientAuthenticationError("AADSTS700016: application not found")
        type(self).scopes.append(scope)
        return AccessToken("token-1", 2**31)


class Python310Datetime(datetime):
    """`datetime` as Python 3.10 (the oldest the project supports) parses: no `Z`, and three
    or six fractional digits only."""

    @classmethod
    def fromisoformat(cls, text):
        fraction = re.search(r"\.(\d+)", text)
        if text.endswith("Z") or (fraction and len(fraction[1]) not in (3, 6)):
            raise ValueError(f"Invalid isoformat string: {text!r}")
        return datetime.fromisoformat(text)


class DeployedStack:
    """A stack's engine as `status` reads it: its outputs and its last update (one that
    succeeded)."""

    def __init__(self, outputs: dict):
        self._outputs = outputs

    def outputs(self) -> dict:
        return self._outputs

    def last_update(self) -> dict:
        return {"kind": "update", "result": "succeeded"}
