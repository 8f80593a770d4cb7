"""One request through the local gateway, in process, to one replica on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from llmcloud.providers.local.gateway import Gateway, GatewaySettings
from llmcloud.providers.local.keys import KeyRing, new_key
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter

ReplicaHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """A replica's read of one request from the gateway: its head, then as many body bytes
    as its content-length says (none without one); the head."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return head


async def post_through_gateway(replica: ReplicaHandler, headers: list[tuple[bytes, bytes]],
                               pieces: list[bytes],
                               settings: GatewaySettings | None = None) -> list[dict]:
    """POST /v1/completions with a valid key, ``headers`` and a body sent in ``pieces``,
    through a gateway whose one replica ``replica`` serves; the ASGI messages it sent."""
    server = await asyncio.start_server(replica, "127.0.0.1", 0)
    try:
        return await post_to_replica_port(server.sockets[0].getsockname()[1], headers,
                                          pieces, settings)
    finally:
        server.close()


async def post_to_replica_port(port: int, headers: list[tuple[bytes, bytes]],
                               pieces: list[bytes],
                               settings: GatewaySettings | None = None) -> list[dict]:
    """The same, through a gateway whose one replica listens on loopback ``port``."""
    pool = Pool()
    one = Replica(id="r1", port=port, version="v1")
    one.ready = True
    pool.add(one)
    key, record = new_key("t")
    gateway = Gateway(pool, KeyRing([record]), RateLimiter(100, 100),
                      settings or GatewaySettings(), GatewayMetrics(pool))
    scope = {"type": "http", "method": "POST", "path": "/v1/completions",
             "raw_path": b"/v1/completions", "query_string": b"",
             "client": ("127.0.0.1", 1234),
             "headers": [(b"authorization", f"Bearer {key}".encode()), *headers]}
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    try:
        return await asgi_exchange(gateway, scope, messages)
    finally:
        await gateway.aclose()


async def asgi_exchange(app: Callable[..., Awaitable[None]], scope: dict,
                        messages: list[dict]) -> list[dict]:
    """One request to the ASGI ``app``: the client sends ``messages``, then stays connected
    until the app is done; the ASGI messages the app sent."""
    pending, sent = list(messages), []

    async def receive() -> dict:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
