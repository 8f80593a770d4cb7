"""A path prefix that a proxy in front of the server may put before every request's path.

API Gateway's REST private integrations (AWS) may send the stage's name ahead of the path
they were configured with (`/api/v1/models` for `/v1/models`, as AWS documents for them);
the server answers both forms, so it serves either way the gateway behaves.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


def check_prefix(prefix: str) -> str:
    """``prefix`` if it is one (``/api``, ``/a/b``), else ValueError saying what is."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"{prefix!r} is not a path prefix: '/' and a name, e.g. /api "
                         "(letters, digits, '.', '_', '~', '-'; no '/' at the end)")
    return prefix


class StripPathPrefix:
    """Serves a request under ``prefix`` as if the prefix were not there; other paths pass
    as they are."""

    def __init__(self, app: ASGIApp, prefix: str):
        self.app = app
        self.prefix = check_prefix(prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                rest = path[len(self.prefix):] or "/"
                scope = {**scope, "path": rest}
                raw = scope.get("raw_path")
                if raw and raw.startswith(self.prefix.encode()):
                    scope["raw_path"] = raw[len(self.prefix):] or b"/"
        await self.app(scope, receive, send)
