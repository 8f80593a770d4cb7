"""The controller's listeners as the controller serves them (uvicorn with its settings, on a
loopback socket): forged forwarding headers, and the admin API's body limit."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import httpx

from llmcloud.providers.local.control import MAX_BODY_BYTES, ControlApi
from llmcloud.providers.local.controller import _Server, listener_config
from llmcloud.providers.local.gateway import Gateway, GatewaySettings
from llmcloud.providers.local.keys import KeyRing, new_key
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter

FORGED = [{"x-forwarded-for": "10.1.1.1", "x-real-ip": "10.1.1.1",
           "forwarded": "for=10.1.1.1", "x-forwarded-proto": "https"},
          {"x-forwarded-for": "10.2.2.2, 10.3.3.3", "x-forwarded-host": "elsewhere"}]


async def _serve(app, scenario) -> Any:
    """Run ``scenario(base_url)`` against ``app`` served as the controller serves it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = _Server(listener_config(app))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        return await scenario(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        await serving


async def _replica(seen: list[list[tuple[str, str]]]) -> asyncio.base_events.Server:
    """A replica that records the headers of each request it gets."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = [(n.strip().lower(), v.strip()) for n, _, v in
                   (line.partition(":") for line in lines if ":" in line)]
        seen.append(headers)
        length = int(dict(headers).get("content-length", "0"))
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_forged_forwarding_headers_neither_move_the_client_nor_reach_the_replica():
    """uvicorn trusted X-Forwarded-For from 127.0.0.1, which every client of the loopback
    endpoint is: a client passed for any address it named, to the gateway and (its header
    passed on beside the gateway's own) to the replica."""
    seen: list[list[tuple[str, str]]] = []
    clients: list[Any] = []

    async def scenario() -> list[int]:
        replica_server = await _replica(seen)
        pool = Pool()
        replica = Replica(id="r1", port=replica_server.sockets[0].getsockname()[1],
                          version="v1")
        replica.ready = True
        pool.add(replica)
        key, record = new_key("t")
        # one request a second with no burst: the second request of the key is refused
        gateway = Gateway(pool, KeyRing([record]), RateLimiter(0.001, 1), GatewaySettings(),
                          GatewayMetrics(pool))

        async def app(scope, receive, send):
            clients.append(scope.get("client"))
            await gateway(scope, receive, send)

        async def requests(base: str) -> list[int]:
            async with httpx.AsyncClient(base_url=base) as client:
                return [(await client.post("/v1/completions", json={}, headers={
                    "authorization": f"Bearer {key}", **forged})).status_code
                    for forged in FORGED]

        try:
            return await _serve(app, requests)
        finally:
            replica_server.close()
            await gateway.aclose()

    codes = asyncio.run(scenario())
    assert codes == [200, 429]  # one key, one bucket, whatever address it claims
    assert [c[0] for c in clients] == ["127.0.0.1", "127.0.0.1"]
    assert len(seen) == 1
    forwarding = [(n, v) for n, v in seen[0]
                  if n in {"x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-proto",
                           "x-forwarded-host"}]
    assert forwarding == [("x-forwarded-for", "127.0.0.1")]


class _Controller:
    """What the control API needs of a controller for these requests."""

    def keys_create(self, name: str, admin: bool) -> dict[str, Any]:
        return {"name": name, "admin": admin}


def _admin_gateway() -> tuple[Gateway, str]:
    key, record = new_key("ops", admin=True)
    pool = Pool()
    gateway = Gateway(pool, KeyRing([record]), RateLimiter(100, 100), GatewaySettings(),
                      GatewayMetrics(pool), admin=ControlApi(_Controller()))
    return gateway, key


def test_an_admin_request_over_the_body_limit_is_a_413_in_the_apis_error_shape():
    """It was a 500 (the limit's exception escaped the control API)."""
    gateway, key = _admin_gateway()

    async def requests(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            big = json.dumps({"name": "x" * MAX_BODY_BYTES}).encode()

            async def chunks():  # no Content-Length: the limit is met while reading
                for start in range(0, len(big), 65536):
                    yield big[start:start + 65536]

            return [await client.post("/admin/keys", content=big),
                    await client.post("/admin/keys", content=chunks()),
                    await client.post("/admin/keys", json={"name": "fits"})]

    too_big, streamed, fits = asyncio.run(_serve(gateway, requests))
    for response in (too_big, streamed):
        assert response.status_code == 413, response.text
        assert response.json() == {"error": {
            "message": "the request body is larger than 1024 KiB",
            "type": "invalid_request_error", "param": None, "code": "request_too_large"}}
    assert fits.status_code == 201 and fits.json()["name"] == "fits"


def test_an_admin_body_that_is_json_but_not_an_object_is_a_400():
    """`[]` or `"x"` was a 500: the actions read fields of a dictionary."""
    gateway, key = _admin_gateway()

    async def requests(base: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base,
                                     headers={"authorization": f"Bearer {key}"}) as client:
            return [await client.post("/admin/keys", content=body)
                    for body in (b"[]", b'"x"', b"3")]

    for response in asyncio.run(_serve(gateway, requests)):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"] == "the request body must be a JSON object"
