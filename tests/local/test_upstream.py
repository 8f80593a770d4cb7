"""The gateway's hop to replicas: body framings, keep-alive reuse, a closed idle connection,
a refused connection, a response cut short, and interim (1xx) answers before the response."""

from __future__ import annotations

import asyncio

import pytest

from llmcloud.providers.local.procs import free_port
from llmcloud.providers.local.upstream import BodyBroken, ConnectFailed, Upstream

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
    b"/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    b"/eof": b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
    b"/short": b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nonly this",
    b"/once": b"HTTP/1.1 204 No Content\r\n\r\n",
    # interim answers first (a client's `Expect: 100-continue`, early hints)
    b"/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n"
                 b"\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
}


async def _serve(connections: list[int]):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            path = head.split(b" ")[1]
            writer.write(ANSWERS[path])
            await writer.drain()
            if path in (b"/eof", b"/short", b"/once"):
                break  # /once: answer, then close the kept-alive connection
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_framings_reuse_and_failures():
    async def scenario() -> None:
        connections: list[int] = []
        server = await _serve(connections)
        port = server.sockets[0].getsockname()[1]
        upstream = Upstream(port)
        for path, body in (("/length", b"hello"), ("/chunked", b"abcde"),
                           ("/length", b"hello")):
            response = await upstream.request("GET", path, [], b"")
            assert response.status == 200 and await response.read() == body
            response.close()
        assert len(connections) == 1  # one kept-alive connection for all three
        response = await upstream.request("GET", "/once", [], b"")
        assert response.status == 204 and await response.read() == b""
        response.close()
        await asyncio.sleep(0.1)  # the server has closed the pooled connection meanwhile
        response = await upstream.request("GET", "/length", [], b"")
        assert await response.read() == b"hello"
        response.close()
        response = await upstream.request("POST", "/eof", [(b"x-a", b"1")], b"{}")
        assert await response.read() == b"until the end"
        response.close()
        response = await upstream.request("POST", "/interim", [], b"{}")
        assert response.status == 200 and await response.read() == b"final"
        response.close()
        response = await upstream.request("GET", "/short", [], b"")
        with pytest.raises(BodyBroken):
            await response.read()
        response.close()
        server.close()
        await server.wait_closed()
        upstream.close()
        with pytest.raises(ConnectFailed):
            await Upstream(free_port()).request("GET", "/", [], b"")

    asyncio.run(scenario())
