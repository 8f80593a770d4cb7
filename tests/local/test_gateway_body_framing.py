"""The local gateway's `gateway.max_body_kb` holds on the bytes it reads, whatever the
request declares: a small `Content-Length` beside chunked framing (the body an
HTTP server reads is the chunked one) gets 413, and no replica sees it."""

from __future__ import annotations

import asyncio
import json

from gateway_calls import post_through_gateway

from llmcloud.providers.local.gateway import GatewaySettings


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

        sent = await post_through_gateway(replica, declared, pieces,
                                          GatewaySettings(max_body_bytes=1024))
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
