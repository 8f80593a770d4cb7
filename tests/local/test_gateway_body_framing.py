"""The local gateway's `gateway.max_body_kb` holds on the bytes it reads, whatever the
request declares: a small `Content-Length` beside chunked framing (the body an
HTTP server reads is the chunked one) gets 413, and no replica sees it."""

from __future__ import annotations

import asyncio
import json

from llmcloud.providers.local.gateway import Gateway, GatewaySettings
from llmcloud.providers.local.keys import KeyRing, new_key
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter


def _post(declared: list[tuple[bytes, bytes]], pieces: list[bytes]) -> tuple[int, dict, int]:
    """(status, JSON body, connections the replica got) for one POST through the gateway."""

    async def scenario() -> tuple[int, dict, int]:
        reached = 0

        async def replica(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal reached
            reached += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(replica, "127.0.0.1", 0)
        pool = Pool()
        one = Replica(id="r1", port=server.sockets[0].getsockname()[1], version="v1")
        one.ready = True
        pool.add(one)
        key, record = new_key("t")
        gateway = Gateway(pool, KeyRing([record]), RateLimiter(100, 100),
                          GatewaySettings(max_body_bytes=1024), GatewayMetrics(pool))
        scope = {"type": "http", "method": "POST", "path": "/v1/completions",
                 "raw_path": b"/v1/completions", "query_string": b"",
                 "client": ("127.0.0.1", 1234),
                 "headers": [(b"authorization", f"Bearer {key}".encode()), *declared]}
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

        await gateway(scope, receive, send)
        server.close()
        await gateway.aclose()
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return sent[0]["status"], json.loads(body), reached

    return asyncio.run(scenario())


def test_a_small_declared_length_does_not_carry_a_large_chunked_body():
    status, body, reached = _post([(b"content-length", b"10"),
                                   (b"transfer-encoding", b"chunked")], [b"x" * 512] * 4)
    assert (status, body["error"]["code"], reached) == (413, "request_too_large", 0)


def test_a_body_within_the_limit_reaches_a_replica():
    status, _, reached = _post([(b"transfer-encoding", b"chunked")], [b"x" * 512] * 2)
    assert (status, reached) == (200, 1)
