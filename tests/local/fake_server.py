"""A stand-in for `llmcloud-server` with exact timing, for the gateway's reliability tests.

It takes the same command line (`--model FOLDER --model-version V --port P --drain-timeout S`,
other flags ignored) and speaks the same HTTP: `/health/live`, `/health/ready` (503 while
loading or draining), `/v1/completions` and `/v1/chat/completions` (JSON or SSE ending with
`data: [DONE]`, one token every `interval` seconds), OpenAI-shaped 400s. `fake.json` in the
model folder sets `load_seconds`, `never_ready`, `interval`, `exit_on_start`,
`exit_after_ready` (seconds: then exit 1, as a model that dies once serving),
`fail_every` (N: every Nth completion answers `fail_status`, 500 unless set). Test hooks:
`GET /fake/stats`, `POST /fake/close?seconds=S` (stop listening and drop every connection
for S seconds).
SIGTERM drains: new requests get 503, streams still open after the drain timeout end with
an error event, then the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path


class Fake:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        folder = Path(args.model)
        config_file = folder / "fake.json"
        self.config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        self.version = args.model_version or self.config.get("version", "unversioned")
        self.loaded_at = time.monotonic() + float(self.config.get("load_seconds", 0))
        self.draining = False
        self.stats = {"requests": 0, "completed": 0, "cancelled": 0, "in_flight": 0,
                      "pid": os.getpid(), "version": self.version}
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.streams: set[asyncio.Event] = set()  # set = end this stream with an error

    def authorized(self, headers: dict[str, str]) -> bool:
        """As the real server with --api-keys-file: a bearer key whose hash is listed."""
        if not self.args.api_keys_file:
            return True
        hashes = Path(self.args.api_keys_file).read_text().split()
        scheme, _, key = headers.get("authorization", "").partition(" ")
        digest = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return scheme.lower() == "bearer" and digest in hashes

    @property
    def ready(self) -> bool:
        return (not self.draining and not self.config.get("never_ready")
                and time.monotonic() >= self.loaded_at)

    async def listen(self) -> None:
        self.server = await asyncio.start_server(self.handle, self.args.host, self.args.port,
                                                 reuse_address=True)

    async def close_for(self, seconds: float) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await asyncio.sleep(seconds)
        await self.listen()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                if target.startswith("/v1/") and not self.authorized(headers):
                    await respond(writer, 401, error("invalid or missing API key"))
                    continue
                if not await self.route(method, target, body, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def route(self, method: str, target: str, body: bytes,
                    writer: asyncio.StreamWriter) -> bool:
        path, _, query = target.partition("?")
        if path == "/health/live":
            return await respond(writer, 200, {"status": "ok"})
        if path == "/health/ready":
            return await respond(writer, 200 if self.ready else 503, {"ready": self.ready})
        if path == "/fake/stats":
            return await respond(writer, 200, self.stats)
        if path == "/fake/close":
            seconds = float(query.partition("=")[2] or 1)
            await respond(writer, 200, {"closing": seconds})
            asyncio.get_running_loop().create_task(self.close_for(seconds))
            return False
        if path == "/metrics":
            return await respond(writer, 200, {"in_flight": self.stats["in_flight"]})
        if path not in ("/v1/completions", "/v1/chat/completions") or method != "POST":
            return await respond(writer, 404, error("not found"))
        if not self.ready:
            return await respond(writer, 503, error("draining or loading"))
        try:
            request = json.loads(body)
            max_tokens = int(request.get("max_tokens", 16))
            if not isinstance(request, dict) or max_tokens < 1:
                raise ValueError
        except (ValueError, TypeError, AttributeError):
            return await respond(writer, 400, error("invalid request body"))
        interval = float(request.get("fake_interval", self.config.get("interval", 0.0)))
        self.stats["requests"] += 1
        if self.config.get("fail_every") and \
                self.stats["requests"] % int(self.config["fail_every"]) == 0:
            return await respond(writer, int(self.config.get("fail_status", 500)),
                                 error("fake failure (fail_every)"))
        self.stats["in_flight"] += 1
        try:
            if request.get("stream"):
                return await self.stream(writer, max_tokens, interval)
            await asyncio.sleep(interval * max_tokens)
            self.stats["completed"] += 1
            return await respond(writer, 200, {
                "object": "text_completion", "model": self.version,
                "choices": [{"index": 0, "text": "tok " * max_tokens, "finish_reason": "length"}],
                "usage": {"completion_tokens": max_tokens}, "pid": os.getpid(),
            })
        finally:
            self.stats["in_flight"] -= 1

    async def stream(self, writer: asyncio.StreamWriter, tokens: int, interval: float) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                     b"transfer-encoding: chunked\r\n\r\n")
        abort = asyncio.Event()
        self.streams.add(abort)
        try:
            for index in range(tokens):
                if abort.is_set():
                    await chunk(writer, b'data: {"error": {"message": "drain timeout", '
                                        b'"type": "server_error", "code": 503}}\n\n')
                    writer.write(b"0\r\n\r\n")
                    await writer.drain()
                    return False
                event = {"object": "text_completion", "model": self.version, "pid": os.getpid(),
                         "choices": [{"index": 0, "text": f"t{index} ", "finish_reason": None}]}
                await chunk(writer, f"data: {json.dumps(event)}\n\n".encode())
                if interval:
                    await asyncio.sleep(interval)
            await chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self.stats["completed"] += 1
            return True
        except ConnectionError:
            self.stats["cancelled"] += 1
            return False
        finally:
            self.streams.discard(abort)

    async def drain_and_exit(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.draining = True
        deadline = time.monotonic() + self.args.drain_timeout
        while self.stats["in_flight"] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for abort in list(self.streams):
            abort.set()
        await asyncio.sleep(0.2)


async def chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
    await writer.drain()


def error(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": None}}


async def respond(writer: asyncio.StreamWriter, status: int, document: dict) -> bool:
    body = json.dumps(document).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}
    writer.write(f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\ncontent-type: "
                 f"application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
    await writer.drain()
    return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--model-version")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--drain-timeout", type=float, default=5.0)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--api-keys-file")
    args, _ = parser.parse_known_args()
    fake = Fake(args)
    if fake.config.get("exit_on_start"):
        reason = fake.config["exit_on_start"]  # a text: said on stderr, exit code 1
        raise SystemExit(reason if isinstance(reason, str) else 3)
    if args.max_model_len is not None and args.max_model_len < 16:
        # as the real server refuses a setting it cannot serve: exit at start
        raise SystemExit("error: --max-model-len is too small for this model")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await fake.listen()
    if fake.config.get("exit_after_ready") is not None:  # a model that dies once serving
        loop.create_task(exit_later(fake.loaded_at + float(fake.config["exit_after_ready"])))
    await fake.drain_and_exit(stop)


async def exit_later(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.monotonic()))
    print("error: CUDA error: an illegal memory access was encountered", file=sys.stderr,
          flush=True)
    os._exit(1)


if __name__ == "__main__":
    asyncio.run(main())
