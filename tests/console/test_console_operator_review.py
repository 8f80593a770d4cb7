"""Findings of an operator's review of the console, each reproduced first: a cloud stack's
versions listed from the stack file the console loaded (stale after any promote), an
unforeseen error leaving a page on "Loading…" with no word, Ctrl+C abandoning a promote
mid-way, times with an offset labelled UTC unconverted, and a NaN blanking a whole chart."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from llmcloud.console import server
from llmcloud.console.backend import StackBackend
from llmcloud.console.charts import charts
from llmcloud.console.render import _when
from llmcloud.console.server import create_app
from llmcloud.providers.base import Provider, StackContext
from llmcloud.stacks.config import resolve_spec

PLAN = {"resources": [], "checks": [], "cost": None}


class Cloud(Provider):
    """A cloud stack that serves `version` with `history` by its outputs."""

    name = "aws"

    def __init__(self, version: str, history: list[str]):
        self.version, self.history = version, history
        self.release = threading.Event()
        self.release.set()

    def status(self, ctx):
        return {"endpoint": "https://api.example/v1", "model_version": self.version,
                "outputs": {"model_version": self.version, "model_history": self.history}}

    def promote(self, ctx, version):
        self.release.wait(30)
        self.history, self.version = [*self.history, self.version], version
        return {"model_version": version, "previous_version": self.history[-1]}


def _backend(monkeypatch, provider: Provider, history: list[str]) -> StackBackend:
    import llmcloud.stacks.plan as plan

    monkeypatch.setattr(plan, "run_plan", lambda spec, stack: PLAN)
    spec = resolve_spec(file_values={}, environ={}, flags={
        "provider": "aws", "model.name": "m", "model.version": "v1", "model.history": history},
        defaults_for=lambda _: {})
    return StackBackend(provider, StackContext(Path("."), "prod", spec, environ={}))


def _versions(backend: StackBackend) -> list[tuple[str, bool, bool]]:
    return [(v["version"], v["serving"], v["good"]) for v in backend.models()["versions"]]


def test_a_cloud_stacks_versions_come_from_its_outputs_not_the_loaded_stack_file(
        monkeypatch):
    # The stack file said v1 with no history (a fresh checkout; a promote made in CI): the
    # stack serves v3 after v1 and v2. The console listed v1 and v3 only, v1 not as good,
    # and after its own promote to v4 it lost v3 altogether.
    provider = Cloud("v3", ["v1", "v2"])
    backend = _backend(monkeypatch, provider, [])
    assert _versions(backend) == [("v1", False, True), ("v2", False, True), ("v3", True, False)]
    backend.promote("v4")
    assert _versions(backend) == [("v1", False, True), ("v2", False, True),
                                  ("v3", False, True), ("v4", True, False)]


def test_a_stack_deployed_before_the_history_was_exported_keeps_the_files_history(
        monkeypatch):
    class Old(Cloud):
        def status(self, ctx):
            return {"model_version": "v2", "outputs": {"model_version": "v2"}}

    backend = _backend(monkeypatch, Old("v2", []), ["v1"])
    assert _versions(backend) == [("v1", False, True), ("v2", True, False)]


def test_an_unforeseen_error_is_shown_on_the_page_not_a_bare_500(monkeypatch):
    # e.g. the Pulumi CLI failing to read the outputs (its CommandError is no LlmcloudError):
    # the Deployment page stayed on "Loading…" (htmx swaps no 500) with nothing said.
    class Broken(Cloud):
        def status(self, ctx):
            raise RuntimeError("code: 255\n stderr: error: failed to decrypt: bad passphrase")

        def keys_list(self, ctx):
            raise RuntimeError("AccessDenied: not allowed to list the keys")

    backend = _backend(monkeypatch, Broken("v1", []), [])
    headers = {"Authorization": f"Bearer {backend.access_token}"}
    fragment = {**headers, "HX-Request": "true"}
    with TestClient(create_app(backend, scrape=False), raise_server_exceptions=False) as client:
        page = client.get("/api/deployment", headers=fragment)
        assert page.status_code == 200
        assert "RuntimeError: stderr: error: failed to decrypt: bad passphrase" in page.text
        assert client.get("/api/models", headers=headers).status_code == 200

        keys = client.get("/api/keys", headers=fragment)
        assert keys.status_code == 200 and keys.headers["hx-retarget"] == "#errors"
        assert "AccessDenied: not allowed to list the keys" in keys.text
        answer = client.get("/api/keys", headers=headers)
        assert answer.status_code == 500
        assert "AccessDenied" in answer.json()["error"]["message"]
        assert answer.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def _serve_and_stop(monkeypatch, backend: StackBackend, *, force: bool) -> list[str]:
    """`server.serve` with uvicorn's loop replaced by: a promote starts, then Ctrl+C (its
    shutdown), a second Ctrl+C first when `force`."""
    lines: list[str] = []

    def run(self, sockets=None):
        rollouts = self.config.app.state.console.rollouts
        rollouts.start("promote", "v2", "v1", lambda: backend.promote("v2"))
        self.servers, self.lifespan = [], _Lifespan()
        self.should_exit, self.force_exit = True, force
        asyncio.run(self.shutdown())

    monkeypatch.setattr(uvicorn.Server, "run", run)
    server.serve(backend, port=9999, announce=lines.append)
    return lines


class _Lifespan:
    async def shutdown(self) -> None:
        pass


def test_ctrl_c_lets_a_running_promote_end_first(monkeypatch):
    # A cloud promote runs `pulumi up` in the console's process: stopping the console
    # mid-way left the stack half rolled out, with no going back as the CLI's Ctrl+C does.
    provider = Cloud("v1", [])
    provider.release.clear()
    backend = _backend(monkeypatch, provider, [])
    threading.Timer(0.6, provider.release.set).start()
    started = time.monotonic()
    lines = _serve_and_stop(monkeypatch, backend, force=False)
    assert time.monotonic() - started >= 0.5
    assert provider.version == "v2"
    assert any("waiting for rollout-" in line and "promote to v2" in line for line in lines)


def test_a_second_ctrl_c_stops_at_once(monkeypatch):
    provider = Cloud("v1", [])
    provider.release.clear()
    backend = _backend(monkeypatch, provider, [])
    try:
        started = time.monotonic()
        lines = _serve_and_stop(monkeypatch, backend, force=True)
        assert time.monotonic() - started < 5
        assert provider.version == "v1"
        assert any("llmcloud status" in line for line in lines)
    finally:
        provider.release.set()


@pytest.mark.parametrize(("value", "shown"), [
    ("2026-11-28T23:17:00+02:00", "2026-11-28 21:17:00 UTC"),
    ("2026-11-28T23:17:00-05:00", "2026-11-29 04:17:00 UTC"),
    ("2026-11-28T23:17:00Z", "2026-11-28 23:17:00 UTC"),
    ("2026-11-28T23:17:00", "2026-11-28 23:17:00 UTC"),
    (1e20, "1e+20"),
])
def test_times_are_shown_in_utc_whatever_their_offset(value, shown):
    assert _when(value) == shown


def test_a_nan_sample_leaves_a_gap_not_a_blank_chart():
    nan, inf = math.nan, math.inf
    points = [{"requests_per_s": v} for v in (1.0, nan, 2.0, 3.0, inf)]
    chart = charts(points)[0]
    assert "nan" not in chart.svg and "inf" not in chart.svg
    assert "<polyline" in chart.svg and "<circle" in chart.svg and ">3.0<" in chart.svg
    assert chart.latest == "3.0 req/s"


def test_a_cloud_stacks_status_is_read_once_for_pages_polling_together(monkeypatch):
    # Each read of a cloud stack's status runs the Pulumi CLI several times; the Deployment
    # page polled it every 2 s, the Models page every 3 s and a rollout's watcher 4 times a
    # second, each its own read.
    class Counted(Cloud):
        reads = 0

        def status(self, ctx):
            self.reads += 1
            return super().status(ctx)

    provider = Counted("v1", [])
    backend = _backend(monkeypatch, provider, [])
    for _ in range(3):
        backend.deployment()
        backend.models()
    assert provider.reads == 1
    backend.promote("v2")  # what the stack serves changed: read again
    assert backend.deployment()["model_version"] == "v2" and provider.reads == 2
    backend.status_ttl = 0.0
    backend.models()
    assert provider.reads == 3


def test_a_key_without_a_known_prefix_shows_a_dash_not_none(monkeypatch):
    # the stack's own key on AWS and Azure, and a hash added by hand on GCP, have no prefix
    class WithKeys(Cloud):
        def keys_list(self, ctx):
            return [{"id": "stack-key", "name": "default", "prefix": None, "admin": False},
                    {"id": "k1", "name": "ci", "prefix": "llmc-AbCd", "admin": False}]

    backend = _backend(monkeypatch, WithKeys("v1", []), [])
    monkeypatch.setattr(backend, "rate_limit",
                        lambda: {"rate_limit": 10, "burst": 20, "quota": None})
    fragment = {"Authorization": f"Bearer {backend.access_token}", "HX-Request": "true"}
    with TestClient(create_app(backend, scrape=False)) as client:
        page = client.get("/api/keys", headers=fragment)
    assert page.status_code == 200
    assert "None" not in page.text
    assert "llmc-AbCd…" in page.text and "–" in page.text
