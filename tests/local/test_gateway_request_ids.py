"""The local gateway's X-Request-Id, through the real gateway to a real `llmcloud-server`
(no model loaded: it refuses with 503 and logs the refusal under the id it got)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket

import uvicorn
from gateway_calls import post_to_replica_port

from llmcloud.inference_image.router import ServerState, create_app


async def _through_gateway(headers: list[tuple[bytes, bytes]]) -> int:
    """POST /v1/completions with ``headers`` through a gateway to a real server; the
    status the client got."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(ServerState()), log_config=None,
                                           lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        sent = await post_to_replica_port(
            sock.getsockname()[1], [(b"content-type", b"application/json"), *headers],
            [b'{"prompt": "hi"}'])
    finally:
        server.should_exit = True
        await serving
    return sent[0]["status"]


def _logged_ids(caplog, headers: list[tuple[bytes, bytes]]) -> list[str | None]:
    caplog.set_level(logging.INFO, logger="llmcloud.requests")
    caplog.clear()
    assert asyncio.run(_through_gateway(headers)) == 503
    lines = [r for r in caplog.records if r.name == "llmcloud.requests"]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    return [getattr(lines[0], "fields", {}).get("client_request_id")]


def test_the_clients_own_request_id_reaches_the_servers_log_line(caplog):
    assert _logged_ids(caplog, [(b"x-request-id", b"client-42")]) == ["client-42"]


def test_a_request_id_the_server_would_drop_is_replaced_by_the_gateways(caplog):
    # The gateway used to pass on any id the client sent, and made its own only when there
    # was none: one with a space reached the server, which leaves such ids out of its log,
    # and the request was logged with no id at all.
    for bad in (b"two words", b"x" * 129, b""):
        (logged,) = _logged_ids(caplog, [(b"x-request-id", bad)])
        assert logged is not None and re.fullmatch(r"[0-9a-f]{16}", logged), (bad, logged)


def test_a_second_request_id_cannot_slip_past_the_first(caplog):
    (logged,) = _logged_ids(caplog, [(b"x-request-id", b"a b"), (b"x-request-id", b"forged")])
    assert logged is not None and re.fullmatch(r"[0-9a-f]{16}", logged)


def test_without_an_id_the_gateway_gives_one(caplog):
    (logged,) = _logged_ids(caplog, [])
    assert logged is not None and re.fullmatch(r"[0-9a-f]{16}", logged)
