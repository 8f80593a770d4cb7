"""The local stack's alerts (`alerts.py`): the controller's gateway counts what it answers,
an evaluation judges the last 60 s, and the control API's `GET /status` carries the result
(what `status` and `promote --bake` read). The clock is the test's: nothing waits."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from llmcloud.providers.local import gateway as gateway_module
from llmcloud.providers.local.alerts import (
    LATENCY,
    MIN_REQUESTS,
    NO_SERVER_SERVING,
    SERVER_ERRORS,
    LocalAlerts,
    latency_threshold_seconds,
)
from llmcloud.providers.local.bake import STALE_SECONDS, firing, status_alerts
from llmcloud.providers.local.controller import Controller
from llmcloud.providers.local.keys import new_key
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.state import StateFile
from llmcloud.stacks.errors import DeploymentError
from tests.local.gateway_calls import asgi_exchange, read_request


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _controller(tmp_path, key_record) -> Controller:
    """A controller of a stack whose state file says what `up` would, not running: its
    gateway and control API are called in process."""
    folder = tmp_path / "stack"
    folder.mkdir()
    config = {"stack": "dev", "port": 1, "model": {"kind": "hub", "name": "m", "source": "m"},
              "version": "v1", "replicas": 1, "command": ["llmcloud-server"],
              "gateway": {"rate_limit": 10000, "burst": 10000, "quota": None,
                          "max_body_kb": 1024, "timeout_seconds": 300},
              "server": {"drain_timeout_seconds": 3, "max_batch_size": 8, "dtype": "auto"}}
    (folder / "state.json").write_text(json.dumps({"config": config, "keys": [key_record]}))
    return Controller(StateFile(folder))


async def _replica_answering(status: int) -> asyncio.base_events.Server:
    """A replica on loopback that answers every request with ``status``."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                body = b'{"error": {"message": "boom"}}' if status >= 500 else b'{"ok": true}'
                writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _call(app, method: str, path: str, key: str | None = None) -> tuple[int, bytes]:
    """One request to the ASGI ``app``: its status and body."""
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "client": ("127.0.0.1", 1234), "headers": headers}
    request = [{"type": "http.request", "body": b'{"prompt": "hi"}' if key else b"",
                "more_body": False}]
    sent = await asgi_exchange(app, scope, request)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _alerts_after(tmp_path, status: int, requests: int) -> tuple[list[int], dict]:
    """Send ``requests`` through a controller's gateway to one replica answering
    ``status``, evaluate once, and read the alerts from its control API."""
    key, record = new_key("t")
    controller = _controller(tmp_path, record)
    controller.alerts.clock = Clock()

    async def scenario() -> tuple[list[int], dict]:
        replica = await _replica_answering(status)
        one = Replica(id="r1", port=replica.sockets[0].getsockname()[1], version="v1")
        one.ready = True
        controller.pool.add(one)
        try:
            codes = [(await _call(controller.gateway, "POST", "/v1/completions", key))[0]
                     for _ in range(requests)]
        finally:
            replica.close()
            await controller.gateway.aclose()
        controller.alerts.evaluate()
        answer, body = await _call(controller.control, "GET", "/status")
        assert answer == 200
        return codes, json.loads(body)["alerts"]

    return asyncio.run(scenario())


def test_a_replica_answering_5xx_fires_server_errors_through_the_control_api(tmp_path):
    codes, alerts = _alerts_after(tmp_path, 500, 20)
    assert codes == [500] * 20  # (a 500 is the replica's answer: not retried)
    assert list(alerts["firing"]) == [SERVER_ERRORS]
    assert alerts["firing"][SERVER_ERRORS] == \
        "more than 5% of requests fail with 5xx (20 of 20 in the last 60 s)"


def test_a_healthy_replica_fires_nothing(tmp_path):
    codes, alerts = _alerts_after(tmp_path, 200, 20)
    assert codes == [200] * 20
    assert alerts == {"firing": {}, "judged_seconds_ago": 0.0}


def test_fewer_requests_than_the_minimum_judge_nothing(tmp_path):
    codes, alerts = _alerts_after(tmp_path, 500, MIN_REQUESTS - 1)
    assert alerts["firing"] == {}


def _ready_pool() -> Pool:
    pool = Pool()
    one = Replica(id="r1", port=1, version="v1")
    one.ready = True
    pool.add(one)
    return pool


def test_server_errors_counts_only_the_last_minute_and_over_5_percent():
    clock = Clock()
    alerts = LocalAlerts(_ready_pool(), lambda: 300.0, clock)
    for status in [200] * 95 + [503] * 5:  # 5%: not more than 5%
        alerts.answered(status)
    assert alerts.evaluate() == {}
    alerts.answered(502)
    assert list(alerts.evaluate()) == [SERVER_ERRORS]
    alerts.answered(499)  # the client went away: no answer, no request of the window
    clock.now += 60  # the errors are a minute old
    assert alerts.evaluate() == {}


def test_latency_fires_when_more_than_1_percent_are_slower_than_the_threshold():
    clock = Clock()
    alerts = LocalAlerts(_ready_pool(), lambda: 300.0, clock)  # threshold: 30 s
    for _ in range(199):
        alerts.answered(200, 0.5)
    alerts.answered(200, 31.0)  # 1 in 200: the p99 is still fast
    assert alerts.evaluate() == {}
    alerts.answered(200, 31.0)
    alerts.answered(200, 31.0)
    firing = alerts.evaluate()
    assert list(firing) == [LATENCY]
    assert "over 30 s (3 of 202 requests in the last 60 s)" in firing[LATENCY]


def test_no_server_serving_fires_after_two_evaluations_without_a_routable_replica():
    clock = Clock()
    pool = _ready_pool()
    alerts = LocalAlerts(pool, lambda: 300.0, clock)
    assert alerts.evaluate() == {}
    next(iter(pool)).ready = False
    assert alerts.evaluate() == {}  # a blip: a health check readmits it
    clock.now += 10
    assert list(alerts.evaluate()) == [NO_SERVER_SERVING]
    assert alerts.document()["firing"] == {
        NO_SERVER_SERVING: "no server is serving: outage (no replica ready for 10 s)"}
    next(iter(pool)).ready = True
    clock.now += 10
    assert alerts.evaluate() == {}


@pytest.mark.parametrize("timeout", [1, 8, 60, 100, 300, 3600])
def test_the_latency_threshold_is_the_aws_alarms(timeout):
    monitoring = pytest.importorskip("llmcloud.providers.aws.monitoring")
    assert latency_threshold_seconds(timeout) == monitoring.latency_threshold_seconds(timeout)


async def _replica_writing(answer: bytes) -> asyncio.base_events.Server:
    """A replica on loopback that answers each request with the bytes ``answer``, then
    closes the connection (a body shorter than its framing says: the replica broke)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def _judged_through_the_gateway(tmp_path, answer: bytes, requests: int) -> dict:
    """Send ``requests`` through a controller's gateway to a replica writing ``answer``,
    then evaluate: the alerts firing."""
    key, record = new_key("t")
    controller = _controller(tmp_path, record)
    controller.alerts.clock = Clock()

    async def scenario() -> dict:
        replica = await _replica_writing(answer)
        one = Replica(id="r1", port=replica.sockets[0].getsockname()[1], version="v1")
        controller.pool.add(one)
        try:
            for _ in range(requests):
                one.ready, one.ejected_at = True, None  # (a broken answer ejects it)
                await _call(controller.gateway, "POST", "/v1/chat/completions", key)
        finally:
            replica.close()
            await controller.gateway.aclose()
        return controller.alerts.evaluate()

    return asyncio.run(scenario())


_STREAM_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n")
_ROLE_EVENT = b'data: {"choices": [{"delta": {"role": "assistant"}}]}\n\n'


def test_a_stream_the_replica_breaks_after_its_headers_counts_as_a_server_error(tmp_path):
    # headers and the first event, then the replica dies: the client's stream ends with an
    # error event, which the window counted as a 200
    broken = _STREAM_HEAD + b"%x\r\n%s\r\n" % (len(_ROLE_EVENT), _ROLE_EVENT)
    firing = _judged_through_the_gateway(tmp_path, broken, MIN_REQUESTS)
    assert list(firing) == [SERVER_ERRORS]
    assert f"({MIN_REQUESTS} of {MIN_REQUESTS} in the last 60 s)" in firing[SERVER_ERRORS]


def test_a_stream_s_time_to_headers_is_not_its_latency(tmp_path, monkeypatch):
    # every answer takes 100 s to its headers, by the gateway's clock: streamed answers
    # (headers and a role event before any token) are not timed, answers in one piece are
    ticks = iter(range(0, 10**6, 100))
    monkeypatch.setattr(gateway_module, "time", SimpleNamespace(
        perf_counter=lambda: float(next(ticks))))
    done = _ROLE_EVENT + b"data: [DONE]\n\n"
    stream = _STREAM_HEAD + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)
    assert _judged_through_the_gateway(tmp_path, stream, MIN_REQUESTS) == {}
    whole = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
             b"content-length: 2\r\n\r\n{}")
    (tmp_path / "json").mkdir()
    assert list(_judged_through_the_gateway(tmp_path / "json", whole, MIN_REQUESTS)) == \
        [LATENCY]


def test_the_evaluation_goes_on_after_an_error(tmp_path):
    # a task that died on one error left `firing` as it was, for every later bake
    _, record = new_key("t")
    controller = _controller(tmp_path, record)
    calls: list[int] = []

    def evaluate() -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return {}

    controller.alerts.evaluate = evaluate

    async def scenario() -> None:
        task = asyncio.create_task(controller._evaluate_alerts(every=0))
        for _ in range(100):
            if len(calls) >= 3 or task.done():
                break
            await asyncio.sleep(0)
        task.cancel()

    asyncio.run(scenario())
    assert len(calls) >= 3


def test_a_judgement_that_stopped_is_unread_and_no_bake_trusts_it():
    clock = Clock()
    alerts = LocalAlerts(_ready_pool(), lambda: 300.0, clock)
    assert alerts.document()["judged_seconds_ago"] is None  # (none yet)
    alerts.evaluate()
    clock.now += STALE_SECONDS + 1
    status = {"alerts": alerts.document(), "controller_pid": 7}
    assert "last judged the stack's alerts 31 s ago" in status_alerts(status)["unread"]
    with pytest.raises(DeploymentError, match="the alerts of stack 'dev' could not be read"):
        firing(status, "dev", 7)
