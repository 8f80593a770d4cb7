"""Reliability under replica failures (issue tests 2-5), with fake replicas for exact timing."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from tests.local.conftest import auth

STREAM = {"prompt": "hi", "stream": True}


async def _stream(client: httpx.AsyncClient, url: str, key: str, tokens: int,
                  interval: float) -> dict:
    """Open one stream; record who served it, its events and when it ended."""
    body = {**STREAM, "max_tokens": tokens, "fake_interval": interval}
    async with client.stream("POST", url + "/v1/completions", json=body,
                             headers=auth(key)) as response:
        record = {"status": response.status_code,
                  "replica": response.headers.get("x-llmcloud-replica"), "events": []}
        try:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    record["events"].append(line[6:])
        except httpx.HTTPError as exc:
            record["transport_error"] = repr(exc)
    record["ended"] = time.monotonic()
    record["error_event"] = any('"error"' in e for e in record["events"])
    record["done"] = bool(record["events"]) and record["events"][-1] == "[DONE]" and not \
        record["error_event"]
    return record


def test_sigterm_replica_with_long_stream_ends_it_within_drain_and_reroutes(fake_stack):
    stack = fake_stack(replicas=2, server__drain_timeout_seconds=2)
    key = stack.up()["api_key"]

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            long = asyncio.create_task(_stream(client, stack.url, key, 2000, 0.01))
            await asyncio.sleep(0.5)
            busy = next(r for r in stack.status()["replicas"] if r["in_flight"])
            os.kill(busy["pid"], signal.SIGTERM)
            signalled = time.monotonic()
            others = []
            for _ in range(25):
                others.append(await client.post(stack.url + "/v1/completions",
                                                json={"max_tokens": 2}, headers=auth(key)))
                await asyncio.sleep(0.05)
            return busy, signalled, await long, others

    busy, signalled, long, others = asyncio.run(scenario())
    assert long["replica"] == busy["id"]
    assert long["error_event"] and not long["done"]
    assert long["ended"] - signalled <= 2 + 2
    assert [r.status_code for r in others] == [200] * 25
    assert all(r.headers["x-llmcloud-replica"] != busy["id"] for r in others[5:])
    stack.wait(lambda s: s["ready_replicas"] == 2 and busy["id"] not in
               [r["id"] for r in s["replicas"]], what="the drained replica's replacement")


def test_sigkill_one_of_three_under_load_only_its_streams_fail(fake_stack):
    stack = fake_stack(replicas=3)
    key = stack.up()["api_key"]

    async def scenario():
        async with httpx.AsyncClient(timeout=30) as client:
            streams = [asyncio.create_task(_stream(client, stack.url, key, 150, 0.02))
                       for _ in range(12)]
            await asyncio.sleep(0.7)
            victim = max(stack.status()["replicas"], key=lambda r: r["in_flight"])
            os.kill(victim["pid"], signal.SIGKILL)
            killed = time.monotonic()
            return victim, killed, await asyncio.gather(*streams)

    victim, killed, streams = asyncio.run(scenario())
    mine = [s for s in streams if s["replica"] == victim["id"]]
    theirs = [s for s in streams if s["replica"] != victim["id"]]
    assert mine and theirs
    assert all(s["error_event"] and not s["done"] and s["ended"] - killed < 2 for s in mine)
    assert all(s["done"] and not s["error_event"] for s in theirs)
    client = httpx.Client(headers=auth(key))
    later = [client.post(stack.url + "/v1/completions", json={"max_tokens": 1})
             for _ in range(30)]
    assert [r.status_code for r in later] == [200] * 30
    status = stack.wait(lambda s: s["ready_replicas"] == 3, what="three ready replicas")
    assert victim["id"] not in [r["id"] for r in status["replicas"]]


def test_closed_port_is_retried_once_ejected_and_readmitted(fake_stack):
    stack = fake_stack(replicas=3)
    key = stack.up()["api_key"]
    target = stack.status()["replicas"][0]
    client = httpx.Client(headers=auth(key))
    client.post(f"http://127.0.0.1:{target['port']}/fake/close?seconds=2.5")
    closed = time.monotonic()
    responses = [client.post(stack.url + "/v1/completions", json={"max_tokens": 1})
                 for _ in range(40)]
    assert [r.status_code for r in responses] == [200] * 40
    assert all(int(r.headers["x-llmcloud-attempts"]) <= 2 for r in responses)
    assert stack.replica(id=target["id"])["ready"] is False  # ejected
    assert time.monotonic() - closed < 2.5
    metrics = httpx.get(stack.url + "/metrics").text
    assert "llmcloud_gateway_upstream_errors_total" in metrics
    stack.wait(lambda s: next(r for r in s["replicas"] if r["id"] == target["id"])["ready"],
               what="readmission")
    served = {client.post(stack.url + "/v1/completions", json={"max_tokens": 1})
              .headers["x-llmcloud-replica"] for _ in range(30)}
    assert target["id"] in served


def test_all_replicas_down_is_503_with_retry_after_at_once(fake_stack):
    stack = fake_stack(replicas=2)
    key = stack.up()["api_key"]
    for replica in stack.status()["replicas"]:
        httpx.post(f"http://127.0.0.1:{replica['port']}/fake/close?seconds=3")
    for _ in range(3):
        started = time.monotonic()
        response = httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                              headers=auth(key))
        assert time.monotonic() - started < 1.0
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "no_replica_ready"
    assert httpx.get(stack.url + "/health/ready").status_code == 503


def test_replicas_sleep_when_they_wait_as_they_share_the_machine(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    (replica,) = stack.status()["replicas"]
    raw = Path(f"/proc/{replica['pid']}/environ").read_text()
    environ = dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
    assert environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in environ
