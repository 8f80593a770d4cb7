"""A minimal HTTP/1.1 client for the gateway's hop to a replica, with keep-alive pooling.

Hand-written because the hop is the gateway's whole latency budget: httpx spends about 2 ms
of CPU per request on a small machine, this spends a tenth of that. It speaks only what
`llmcloud-server` answers with: a status line, headers, then a body framed by
Content-Length, chunked transfer encoding, or the connection's end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

_NO_BODY = {204, 304}


class ConnectFailed(Exception):
    """No connection could be made to the replica (refused, unreachable, timed out)."""


class ResetBeforeResponse(Exception):
    """The replica closed the connection before a response began."""


class BodyBroken(Exception):
    """The replica's response ended before its framing said it would."""


class Response:
    """A response whose headers have arrived; read the body with `chunks()`, then `close()`."""

    def __init__(self, upstream: Upstream, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, status: int,
                 headers: list[tuple[bytes, bytes]], method: str):
        self.status, self.headers = status, headers
        self._upstream, self._reader, self._writer = upstream, reader, writer
        self._reusable = True
        self._finished = False
        names = {name.lower(): value for name, value in headers}
        self.content_type = names.get(b"content-type", b"").decode("latin-1")
        self._chunked = b"chunked" in names.get(b"transfer-encoding", b"").lower()
        length = names.get(b"content-length")
        self._length = int(length) if length is not None and length.isdigit() else None
        self.length = None if self._chunked else self._length
        if names.get(b"connection", b"").lower() == b"close":
            self._reusable = False
        if method == "HEAD" or status in _NO_BODY or (self._length == 0 and not self._chunked):
            self._length, self._chunked = 0, False
        elif self._length is None and not self._chunked:
            self._reusable = False  # the body ends when the connection does

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (de-chunked); `BodyBroken` if the replica cuts it short."""
        reader = self._reader
        try:
            if self._chunked:
                while True:
                    line = await reader.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers: none are passed on
                        break
                    data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    data = await reader.read(min(remaining, 1 << 16))
                    if not data:
                        raise BodyBroken(f"{remaining} bytes of the body never came")
                    remaining -= len(data)
                    yield data
            else:
                while data := await reader.read(1 << 16):
                    yield data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError,
                ValueError) as exc:
            self._reusable = False
            raise BodyBroken(repr(exc)) from None
        self._finished = True

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def close(self) -> None:
        """Give the connection back for reuse if the body was read whole; else drop it."""
        if self._finished and self._reusable:
            self._upstream.release(self._reader, self._writer)
        else:
            self._writer.transport.abort()


class Upstream:
    """Pooled keep-alive connections to one replica on 127.0.0.1."""

    def __init__(self, port: int, connect_timeout: float = 1.0, max_idle: int = 64):
        self.port, self.connect_timeout, self.max_idle = port, connect_timeout, max_idle
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    def release(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._idle) < self.max_idle and not writer.is_closing():
            self._idle.append((reader, writer))
        else:
            writer.transport.abort()

    def close(self) -> None:
        """Drop every idle connection."""
        while self._idle:
            self._idle.pop()[1].transport.abort()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port, limit=1 << 16),
                self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectFailed(repr(exc)) from None

    async def request(self, method: str, target: str, headers: list[tuple[bytes, bytes]],
                      body: bytes) -> Response:
        """Send one request; return once the response's headers have arrived.

        A pooled connection the replica has meanwhile closed is retried once on a new one:
        that is keep-alive housekeeping, not a failure of the replica.
        """
        head = [f"{method} {target} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n".encode()]
        for name, value in headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        payload = b"".join(head) + body
        while self._idle:
            reader, writer = self._idle.pop()
            if writer.is_closing() or reader.at_eof():
                writer.transport.abort()
                continue
            with contextlib.suppress(ResetBeforeResponse):
                return await self._exchange(reader, writer, payload, method)
        reader, writer = await self._connect()
        return await self._exchange(reader, writer, payload, method)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        payload: bytes, method: str) -> Response:
        status, sent = 100, False
        while 100 <= status < 200:  # interim answers (100 Continue, 103 ...) come first
            try:
                if not sent:
                    writer.write(payload)
                    sent = True
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    ConnectionError) as exc:
                writer.transport.abort()
                raise ResetBeforeResponse(repr(exc)) from None
            except BaseException:
                writer.transport.abort()
                raise
            lines = head[:-4].split(b"\r\n")
            try:
                status = int(lines[0].split(b" ", 2)[1])
            except (IndexError, ValueError):
                writer.transport.abort()
                raise ResetBeforeResponse(f"not an HTTP response: {lines[0][:60]!r}") from None
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        return Response(self, reader, writer, status, headers, method)
