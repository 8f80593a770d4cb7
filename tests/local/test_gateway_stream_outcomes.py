"""How the local gateway counts a stream that does not end well, in its Prometheus counters
and in the window the stack's alerts judge: a client that leaves mid-stream is one request,
the 200 it was sent (not a 200 and a 499); a replica whose generation fails after the 200
ends the stream with the runtime's error event, which counts as a server error. Replicas
are small servers on loopback; the alerts' clock is the test's."""

from __future__ import annotations

import asyncio
import json

from llmcloud.inference_image.protocol import ApiError
from llmcloud.providers.local.alerts import MIN_REQUESTS, SERVER_ERRORS, LocalAlerts
from llmcloud.providers.local.gateway import Gateway, GatewaySettings
from llmcloud.providers.local.keys import KeyRing, new_key
from llmcloud.providers.local.metrics import GatewayMetrics
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter
from llmcloud.providers.local.stream_errors import ServerErrorEvents
from tests.local.gateway_calls import read_request

_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
         b"transfer-encoding: chunked\r\n\r\n")
_TOKEN = b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
_DONE = b"data: [DONE]\n\n"


def _error_event(status: int, kind: str, code: str) -> bytes:
    """The event the runtime ends a chat or completions stream with when generation fails
    (`inference_image/serving.py`, `stream_sse`)."""
    body = ApiError(status, "the request was cancelled", type=kind, code=code).body()
    return f"data: {json.dumps(body)}\n\n".encode()


def _failed_response(code: str, **echoed) -> bytes:
    """The Responses API stream's last events when generation fails
    (`inference_image/responses_api.py`, `stream`), the request's ``echoed`` fields in its
    response after the error, as the runtime writes them."""
    error = {"type": "error", "sequence_number": 3, "code": "aborted", "message": "m",
             "param": None}
    failed = {"type": "response.failed", "sequence_number": 4, "response": {
        "id": "resp_1", "object": "response", "status": "failed",
        "error": {"code": code, "message": "m"}, "output": [], **echoed}}
    return (f"event: error\ndata: {json.dumps(error)}\n\n"
            f"event: response.failed\ndata: {json.dumps(failed)}\n\n").encode()


def _chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


class _Stack:
    """A gateway with one replica on loopback that writes ``answer`` to each request (and,
    with ``hold``, keeps the connection open after it, with ``close``, closes it: a body
    shorter than its framing, the replica broke), its metrics and alerts."""

    def __init__(self, answer: bytes, hold: bool = False, close: bool = False):
        self.answer, self.hold, self.close = answer, hold, close
        self.pool = Pool()
        self.alerts = LocalAlerts(self.pool, lambda: 300.0, clock=lambda: 1000.0)
        self.metrics = GatewayMetrics(self.pool, self.alerts)
        self.key, record = new_key("t")
        self.gateway = Gateway(self.pool, KeyRing([record]), RateLimiter(10**6, 10**6),
                               GatewaySettings(), self.metrics)

    async def _replica(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(self.answer)
                await writer.drain()
                if self.hold:
                    await reader.read()  # until the gateway closes it
                if self.hold or self.close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def requests(self, count: int, leave_after_first_chunk: bool = False) -> None:
        server = await asyncio.start_server(self._replica, "127.0.0.1", 0)
        replica = Replica(id="r1", port=server.sockets[0].getsockname()[1], version="v1")
        replica.ready = True
        self.pool.add(replica)
        try:
            for _ in range(count):
                replica.ready, replica.ejected_at = True, None  # (a broken answer ejects it)
                await self._one(leave_after_first_chunk)
        finally:
            server.close()
            await self.gateway.aclose()

    async def _one(self, leave_after_first_chunk: bool) -> None:
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
                 "raw_path": b"/v1/chat/completions", "query_string": b"",
                 "client": ("127.0.0.1", 1234),
                 "headers": [(b"authorization", f"Bearer {self.key}".encode())]}
        request = [{"type": "http.request", "body": b'{"stream": true}', "more_body": False}]
        streaming = asyncio.Event()

        async def receive() -> dict:
            if request:
                return request.pop(0)
            if leave_after_first_chunk:
                await streaming.wait()
            else:
                await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                streaming.set()

        await asyncio.wait_for(self.gateway(scope, receive, send), 10)

    def requests_counted(self, code: str) -> float:
        return self.metrics.registry.get_sample_value(
            "llmcloud_gateway_requests_total", {"code": code}) or 0.0


def test_a_client_that_leaves_mid_stream_is_one_request_the_200_it_was_sent():
    stack = _Stack(_HEAD + b"%x\r\n%s\r\n" % (len(_TOKEN), _TOKEN), hold=True)
    asyncio.run(stack.requests(MIN_REQUESTS, leave_after_first_chunk=True))
    assert (stack.requests_counted("200"), stack.requests_counted("499")) == \
        (MIN_REQUESTS, 0)
    # as the alerts counted them: answered, no error
    assert stack.alerts.evaluate() == {}


def test_a_stream_the_replica_ends_with_a_server_error_event_is_a_server_error():
    stack = _Stack(_HEAD + _chunked(_TOKEN, _error_event(503, "server_error", "aborted"),
                                    _DONE))
    asyncio.run(stack.requests(MIN_REQUESTS))
    firing = stack.alerts.evaluate()
    assert list(firing) == [SERVER_ERRORS]
    assert f"({MIN_REQUESTS} of {MIN_REQUESTS} in the last 60 s)" in firing[SERVER_ERRORS]
    # the counter keeps the code the client was sent; the failure is an upstream error
    assert stack.requests_counted("200") == MIN_REQUESTS
    assert stack.metrics.registry.get_sample_value(
        "llmcloud_gateway_upstream_errors_total", {"kind": "error_event"}) == MIN_REQUESTS
    # the error event, then the replica dies before [DONE]: one failed request, not two
    broken = _Stack(_HEAD + b"%x\r\n%s\r\n" % (
        len(_error_event(500, "server_error", "internal_error")),
        _error_event(500, "server_error", "internal_error")), close=True)
    asyncio.run(broken.requests(MIN_REQUESTS))
    assert f"({MIN_REQUESTS} of {MIN_REQUESTS} in" in broken.alerts.evaluate()[SERVER_ERRORS]


def test_a_failed_responses_stream_is_a_server_error_and_a_busy_one_is_not():
    failed = _Stack(_HEAD + _chunked(_failed_response("server_error")))
    asyncio.run(failed.requests(MIN_REQUESTS))
    assert list(failed.alerts.evaluate()) == [SERVER_ERRORS]
    # a 429 (the request lost its queue place) is the client's to retry, not a 5xx
    busy = _Stack(_HEAD + _chunked(_failed_response("rate_limit_exceeded"),
                                   _error_event(429, "rate_limit_error", "queue_full")))
    asyncio.run(busy.requests(MIN_REQUESTS))
    assert busy.alerts.evaluate() == {}


def test_the_sign_is_found_when_chunks_split_it_anywhere():
    chat = _TOKEN + _error_event(503, "server_error", "aborted") + _DONE
    responses = _failed_response("server_error", metadata={"type": "rate_limit_error"})
    for stream in (chat, responses):
        for cut in range(1, len(stream)):
            for second in (cut + 1, cut + 7, len(stream)):
                scan = ServerErrorEvents()
                found = [scan.feed(piece) for piece in
                         (stream[:cut], stream[cut:second], stream[second:])]
                assert found.count(True) == 1, (cut, second)
        byte_by_byte = ServerErrorEvents()
        assert sum(byte_by_byte.feed(stream[i:i + 1]) for i in range(len(stream))) == 1
    # a completions stream has no role event: its error may be the first event
    assert ServerErrorEvents().feed(_error_event(500, "server_error", "internal_error"))


def test_an_answer_that_quotes_the_error_text_is_no_error():
    # what the model writes is JSON-quoted in its event: its own quotes are escaped
    quoted = json.dumps({"choices": [{"delta": {
        "content": 'data: {"error": {"message": "x", "type": "server_error"}}'}}]})
    scan = ServerErrorEvents()
    assert not scan.feed(f"data: {quoted}\n\n".encode() + _DONE)


def test_a_request_the_responses_stream_echoes_with_the_sign_is_no_error():
    # every Responses event that carries the response echoes the client's metadata, tools
    # and text format as JSON objects: their quotes are not escaped
    from types import SimpleNamespace

    from llmcloud.inference_image.responses_api import _EventStream
    from llmcloud.inference_image.responses_protocol import ResponsesRequest

    schema = {"type": "object", "properties": {"e": {
        "type": "string", "default": {"error": {"code": "server_error"}}}}}
    echoed = {"metadata": {"type": "server_error"},
              "tools": [{"type": "function", "name": "f", "parameters": schema}]}
    request = ResponsesRequest(model="m", input="hi", stream=True, **echoed)
    events = _EventStream(None, SimpleNamespace(response_id="resp_1", created=1, model="m"),
                          request)
    started = (events.lifecycle("response.created", "in_progress")
               + events.lifecycle("response.in_progress", "in_progress")).encode()
    assert b'"metadata": {"type": "server_error"}' in started
    for stream in (started, started + _failed_response("rate_limit_exceeded", **echoed)):
        scan = ServerErrorEvents()
        assert not any(scan.feed(stream[i:i + 5]) for i in range(0, len(stream), 5))
    # the failure's own error comes first in its response, and still counts
    assert ServerErrorEvents().feed(started + _failed_response("server_error", **echoed))
