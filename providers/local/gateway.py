"""The API gateway and load balancer: keys, rate limits, body limit, least-outstanding
balancing, retries, unbuffered streaming, timeouts.

A request is retried on another replica only while nothing has been sent to the client:
after a connection error (the replica is ejected), a reset before the response started, or
a 503/429 from a replica that is draining or full. Once the response has started, an upstream
failure ends a server-sent-event stream with an error event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from llmcloud.inference_image.log_format import loggable_request_id
from llmcloud.providers.local.asgi import (
    BodyTooLarge,
    ClientGone,
    Receive,
    Send,
    bearer_token,
    error_document,
    header,
    read_body,
    send_error,
    send_json,
)
from llmcloud.providers.local.keys import KeyRing
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter, retry_after_header
from llmcloud.providers.local.stream_errors import ServerErrorEvents
from llmcloud.providers.local.upstream import (
    BodyBroken,
    ConnectFailed,
    ResetBeforeResponse,
    Response,
)

log = logging.getLogger("llmcloud.gateway")

_HOP = {
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
    # the gateway has read the whole body already: a replica asked to `100 Continue` would
    # answer that first (curl sends it for bodies over 1 MiB)
    b"expect",
}
#: what a client says of where it is: the gateway is the first hop, and tells the replica
#: itself (a client's own X-Forwarded-For would be taken for its address)
_CLIENT_FORWARDING = {b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto",
                      b"x-forwarded-port", b"x-real-ip", b"forwarded"}
_DROP_UPSTREAM = _HOP | _CLIENT_FORWARDING | {b"authorization"}


def _connection_options(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The headers `Connection` names: hop-by-hop too (RFC 9110 7.6.1), not passed on."""
    return {option.strip().lower() for name, value in headers if name.lower() == b"connection"
            for option in value.split(b",")}

AdminApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


#: What an admin key may do over HTTP. The controller's other actions (converge, which
#: takes a whole configuration, the servers' command line included, and shutdown) are for
#: the stack's owner only, on the unix socket.
ADMIN_ACTIONS = frozenset({("GET", "/status"), ("GET", "/keys"), ("POST", "/keys"),
                           ("POST", "/promote"), ("POST", "/rollback")})


def admin_action(method: str, action: str) -> bool:
    """Whether an admin key may ask for ``action`` (a path under /admin) over HTTP."""
    return (method, action) in ADMIN_ACTIONS or (
        method == "DELETE" and action.startswith("/keys/") and action.count("/") == 2)


@dataclass
class GatewaySettings:
    """The gateway's limits (from the spec's `gateway` and `server` sections)."""

    max_body_bytes: int = 1024 * 1024
    timeout_seconds: float = 300.0
    max_attempts: int = 3
    connect_timeout: float = 1.0


class _Cancelled(Exception):
    def __init__(self, reason: str):
        self.reason = reason


class Gateway:
    """The ASGI app on the stack's endpoint. `admin` serves `/admin/*` for admin keys."""

    def __init__(
        self,
        pool: Pool,
        keys: KeyRing,
        limiter: RateLimiter,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        admin: AdminApp | None = None,
        replica_key: str | None = None,
    ):
        self.pool, self.keys, self.limiter = pool, keys, limiter
        self.settings, self.metrics, self.admin = settings, metrics, admin
        # what the gateway tells the replicas it is (the client's own key stays here)
        self._replica_auth = ([(b"authorization", f"Bearer {replica_key}".encode())]
                              if replica_key else [])

    async def aclose(self) -> None:
        for replica in self.pool:
            replica.upstream.close()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/metrics":
            body = self.metrics.render()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", self.metrics.content_type.encode()),
                (b"content-length", str(len(body)).encode()),
            ]})
            await send({"type": "http.response.body", "body": body})
            return
        if path == "/health/live":
            await send_json(send, 200, {"status": "ok"})
            return
        if path == "/health/ready":
            ready = len(self.pool.routable())
            await send_json(send, 200 if ready else 503, {"ready_replicas": ready})
            return
        record = self.keys.lookup(bearer_token(scope))
        if record is None:
            await self._answer(send, 401, "invalid or missing API key: send "
                               "'Authorization: Bearer <key>'", "invalid_api_key",
                               [(b"www-authenticate", b'Bearer realm="llmcloud"')])
            return
        # every request of a key spends its limits, management ones too: an admin key
        # otherwise made keys (each a write of the state file) as fast as it could send
        wait = self.limiter.take(record["id"])
        if wait is not None:
            self.metrics.rate_limited.inc()
            await self._answer(send, 429, "rate limit reached for this API key; retry after "
                               f"{wait:.2f}s", "rate_limit_exceeded",
                               [(b"retry-after", retry_after_header(wait).encode())])
            return
        if path.startswith("/admin/"):
            if not record.get("admin"):
                await self._answer(send, 403, "this action needs an admin key "
                                   "(llmcloud keys create --admin)", "admin_key_required")
                return
            action = path[len("/admin"):].rstrip("/")
            if not admin_action(scope["method"], action):
                await self._answer(send, 404, f"no management action {scope['method']} "
                                   f"{path} over HTTP", "not_found")
                return
            if self.admin is not None:
                await self.admin({**scope, "path": action}, receive, send)
                return
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
            await self._too_large(send)
            return
        try:
            body = await read_body(receive, self.settings.max_body_bytes)
        except BodyTooLarge:
            await self._too_large(send)
            return
        except ClientGone:
            return
        await self._proxy(scope, receive, send, body)

    async def _answer(self, send: Send, status: int, message: str, code: str | None,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.metrics.answered(status)
        await send_error(send, status, message, code, headers or [])

    async def _too_large(self, send: Send) -> None:
        limit_kb = self.settings.max_body_bytes // 1024
        # the model servers' and API Management's code for the same refusal
        await self._answer(send, 413, f"request body is larger than {limit_kb} KiB",
                           "request_too_large")

    async def _proxy(self, scope: dict[str, Any], receive: Receive, send: Send,
                     body: bytes) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        started = time.perf_counter()
        state = {"reason": None, "response_started": False}

        def cancel(reason: str) -> None:
            # After the last byte, uvicorn reports "disconnect" to a waiting receive(): ignore.
            if state["reason"] is None and not state.get("complete"):
                state["reason"] = reason
                task.cancel()

        timer = loop.call_later(self.settings.timeout_seconds, cancel, "timeout")
        watcher = loop.create_task(_watch_disconnect(receive, cancel))
        try:
            await self._attempts(scope, send, body, state, started)
        except asyncio.CancelledError:
            if state["reason"] is None:
                raise
            await self._after_cancel(send, state)
        finally:
            timer.cancel()
            watcher.cancel()

    async def _after_cancel(self, send: Send, state: dict[str, Any]) -> None:
        if state["reason"] != "timeout":
            # the client went away: 499 when it had no answer yet; once counted at its
            # headers, the request stays the one answer it was sent (as the alerts count it)
            if "status" not in state:
                self.metrics.answered(499)
            return
        message = f"the request took longer than {self.settings.timeout_seconds:g}s"
        if not state["response_started"]:
            state["complete"] = True
            await self._answer(send, 504, message, "timeout")
        else:
            self.metrics.upstream_errors.labels("timeout").inc()
            self._failed_after_headers(state)
            await _end_with_error(send, state, 504, message, "timeout")

    def _failed_after_headers(self, state: dict[str, Any]) -> None:
        """Count, once per request, a response that failed after its headers (the replica
        broke, said so in an error event, or the timeout struck): a 5xx for the alerts."""
        if not state.get("failed"):
            state["failed"] = True
            self.metrics.cut_short(state["status"])
            if state.get("tally") is not None:
                state["tally"].cut_short(state["status"])

    async def _attempts(self, scope: dict[str, Any], send: Send, body: bytes,
                        state: dict[str, Any], started: float) -> None:
        headers = _forward_headers(scope) + self._replica_auth
        target = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        tried: list[Replica] = []
        for attempt in range(self.settings.max_attempts):
            replica = self.pool.pick(exclude=tried)
            if replica is None:
                break
            if attempt:
                self.metrics.retries.inc()
            tried.append(replica)
            replica.in_flight += 1
            try:
                try:
                    upstream = await replica.upstream.request(scope["method"], target, headers,
                                                              body)
                except ConnectFailed:
                    self._eject(replica, "connect")
                    _canary_refused(replica)
                    continue
                except ResetBeforeResponse:
                    # The replica died or reset us before answering: safe to try another.
                    self._eject(replica, "reset")
                    _canary_refused(replica)
                    continue
                if upstream.status in (429, 503) and self._has_other(tried):
                    # Draining, loading or full: this replica did not take the request.
                    if upstream.status == 503:
                        replica.ready = False
                        _canary_refused(replica)
                    upstream.close()
                    continue
                try:
                    await self._relay(upstream, send, state, replica, attempt + 1, started)
                finally:
                    upstream.close()
                replica.served += 1
                return
            finally:
                replica.in_flight -= 1
        state["complete"] = True
        await self._answer(send, 503, "no replica is ready to serve the request",
                           "no_replica_ready", [(b"retry-after", b"1")])

    def _has_other(self, tried: list[Replica]) -> bool:
        return len(tried) < self.settings.max_attempts and self.pool.pick(exclude=tried) is not None

    def _eject(self, replica: Replica, kind: str) -> None:
        self.metrics.upstream_errors.labels(kind).inc()
        if replica.ejected_at is None:
            self.metrics.ejections.inc()
            log.warning("ejected replica %s (port %d): %s error", replica.id, replica.port, kind)
        self.pool.eject(replica)

    async def _relay(self, upstream: Response, send: Send, state: dict[str, Any],
                     replica: Replica, attempts: int, started: float) -> None:
        drop = _HOP | _connection_options(upstream.headers)
        headers = [(k, v) for k, v in upstream.headers if k.lower() not in drop]
        headers.append((b"x-llmcloud-replica", replica.id.encode()))
        headers.append((b"x-llmcloud-attempts", str(attempts).encode()))
        if upstream.length is not None:
            headers.append((b"content-length", str(upstream.length).encode()))
        state["sse"] = upstream.content_type.startswith("text/event-stream")
        state["status"] = upstream.status
        seconds = time.perf_counter() - started
        self.metrics.answered(upstream.status, seconds, streamed=state["sse"])
        if replica.tally is not None:  # a canary's replica: its verdict counts it too
            state["tally"] = replica.tally
            replica.tally.count(upstream.status, None if state["sse"] else seconds)
        await send({"type": "http.response.start", "status": upstream.status,
                    "headers": headers})
        state["response_started"] = True
        errors = ServerErrorEvents() if state["sse"] else None
        try:
            async for chunk in upstream.chunks():
                if errors is not None and errors.feed(chunk):
                    # the replica's generation failed after a 200: a server error all the
                    # same (the replica stays in: it answered, and ends the stream itself)
                    self.metrics.upstream_errors.labels("error_event").inc()
                    self._failed_after_headers(state)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except BodyBroken as exc:
            self._eject(replica, "stream")
            log.warning("replica %s broke a response: %s", replica.id, exc)
            self._failed_after_headers(state)
            await _end_with_error(send, state, 502, "the replica serving this request failed",
                                  "upstream_failed")
            return
        state["complete"] = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _canary_refused(replica: Replica) -> None:
    # A canary's failure the client never saw (retried on another replica) still judges it.
    if replica.tally is not None:
        replica.tally.refused()


def _forward_headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    drop = _DROP_UPSTREAM | _connection_options(scope["headers"]) | {b"x-request-id"}
    headers = [(k, v) for k, v in scope["headers"] if k not in drop]
    headers.append((b"x-request-id", request_id(scope).encode()))
    client = scope.get("client")
    if client:
        headers.append((b"x-forwarded-for", str(client[0]).encode()))
    return headers


def request_id(scope: dict[str, Any]) -> str:
    """The X-Request-Id the replica gets and logs: the client's own where its log line can
    carry it, else one of the gateway's (a replica would drop an id with spaces, or over
    128 characters, and log the request with none)."""
    sent = header(scope, b"x-request-id")
    own = loggable_request_id(sent.decode("latin-1")) if sent is not None else None
    return own or secrets.token_hex(8)


async def _end_with_error(send: Send, state: dict[str, Any], status: int, message: str,
                          code: str) -> None:
    state["complete"] = True
    if state.get("sse"):
        # As the runtime ends a stream it must cut short: an error event, then [DONE].
        event = json.dumps(error_document(status, message, code))
        await send({"type": "http.response.body",
                    "body": f"data: {event}\n\ndata: [DONE]\n\n".encode(), "more_body": True})
    # A JSON body cut short cannot be marked in HTTP/1.1 except by ending the response before
    # its length, which makes the server drop the connection: the client sees the failure.
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _watch_disconnect(receive: Receive, cancel: Callable[[str], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel("disconnect")
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
