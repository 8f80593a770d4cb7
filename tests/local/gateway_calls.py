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
    sent: list[dict] = []

    async def receive() -> dict:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    try:
        await gateway(scope, receive, send)
    finally:
        await gateway.aclose()
    return sent
