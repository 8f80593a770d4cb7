"""The controller's management API: status, converge, promote, rollback, canary, keys,
shutdown.

Served on the owner-only unix socket `control.sock` (the CLI) and under `/admin/` on the
endpoint for admin keys. Long operations answer with NDJSON: `{"event": "progress",
"message"}` lines, then one `{"event": "result", "result"}` or `{"event": "error",
"error": {"message", "context", "hint", "kind"}}`. An operation keeps running if the caller
disconnects: a half-finished rollout is worse than an unwatched one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from llmcloud.providers.local.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Send,
    read_body,
    send_error,
    send_json,
)
from llmcloud.providers.local.state import StateError

if TYPE_CHECKING:
    from llmcloud.providers.local.controller import Controller


class OperationError(Exception):
    """An operation failed; `kind` is `config` (bad request) or `deployment`."""

    def __init__(self, message: str, *, context: str | None = None, hint: str | None = None,
                 kind: str = "deployment"):
        super().__init__(message)
        self.message, self.context, self.hint, self.kind = message, context, hint, kind

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "context": self.context, "hint": self.hint,
                "kind": self.kind}


#: a management request is a few fields; a configuration (converge) a few KiB
MAX_BODY_BYTES = 1024 * 1024

Operation = Callable[[Callable[[str], None]], Awaitable[dict[str, Any]]]


def _count(value: Any) -> int:
    """A whole number from a request's JSON (0 for anything else)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ControlApi:
    """The ASGI app of the management API, over one `Controller`."""

    def __init__(self, controller: Controller):
        self.controller = controller

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
            payload = json.loads(body) if body else {}
        except ClientGone:
            return
        except BodyTooLarge:
            await send_error(send, 413, f"the request body is larger than "
                             f"{MAX_BODY_BYTES // 1024} KiB", "request_too_large")
            return
        except ValueError:
            await send_error(send, 400, "the request body is not valid JSON")
            return
        if not isinstance(payload, dict):
            await send_error(send, 400, "the request body must be a JSON object")
            return
        try:
            await self._dispatch(method, path, payload, send)
        except StateError as exc:  # a key made or revoked must be written down first
            await send_error(send, 500, exc.message, "state_unwritable")

    async def _dispatch(self, method: str, path: str, payload: dict[str, Any],
                        send: Send) -> None:
        c = self.controller
        if (method, path) == ("GET", "/status"):
            await send_json(send, 200, c.status())
        elif (method, path) == ("GET", "/keys"):
            await send_json(send, 200, {"keys": c.keys_list()})
        elif (method, path) == ("POST", "/keys"):
            await send_json(send, 201, c.keys_create(str(payload.get("name") or "default"),
                                                     bool(payload.get("admin"))))
        elif method == "DELETE" and path.startswith("/keys/"):
            result = c.keys_revoke(path.rsplit("/", 1)[1])
            await send_json(send, 200 if result else 404, result or {"error": {
                "message": "no such key", "type": "not_found_error", "param": None,
                "code": None}})
        elif (method, path) == ("POST", "/shutdown"):
            c.request_stop()
            await send_json(send, 202, {"stopping": True})
        elif (method, path) == ("POST", "/converge"):
            await self._stream(send, lambda p: c.converge(payload, p))
        elif (method, path) == ("POST", "/promote"):
            await self._stream(send, lambda p: c.promote(str(payload.get("version", "")), p))
        elif (method, path) == ("POST", "/rollback"):
            await self._stream(send, c.rollback)
        elif (method, path) == ("POST", "/canary"):
            await self._stream(send, lambda p: c.canary_start(
                str(payload.get("version", "")), _count(payload.get("replicas")),
                _count(payload.get("owner_pid")) or None,
                "rollback" if payload.get("operation") == "rollback" else "promote", p))
        elif (method, path) == ("POST", "/canary/end"):
            await self._stream(send, lambda p: c.canary_end(bool(payload.get("keep")), p))
        else:
            await send_error(send, 404, f"no management action {method} {path}")

    async def _stream(self, send: Send, operation: Operation) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def progress(message: str) -> None:
            queue.put_nowait({"event": "progress", "message": message})

        async def run() -> None:
            try:
                result = await operation(progress)
                queue.put_nowait({"event": "result", "result": result})
            except OperationError as exc:
                queue.put_nowait({"event": "error", "error": exc.to_dict()})
            except asyncio.CancelledError:
                # the controller is stopping (`llmcloud destroy`, SIGTERM): the caller hears
                # why, not a lost connection that looks like a crash
                queue.put_nowait({"event": "error", "error": OperationError(
                    "the stack was stopped before this operation finished",
                    context="llmcloud destroy, or SIGTERM to the stack's controller, stopped "
                            "it and every replica", hint="llmcloud up").to_dict()})
                raise
            except Exception as exc:  # reported to the caller, not lost in a task
                queue.put_nowait({"event": "error", "error": OperationError(
                    f"the controller failed: {exc!r}", hint="see logs/controller.log").to_dict()})

        self.controller.spawn(run())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-ndjson")]})
        while True:
            event = await queue.get()
            line = (json.dumps(event) + "\n").encode()
            try:
                await send({"type": "http.response.body", "body": line, "more_body": True})
            except OSError:
                return
            if event["event"] != "progress":
                break
        await send({"type": "http.response.body", "body": b""})
