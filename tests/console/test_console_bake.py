"""Promote and rollback from the console with a bake (`bake_seconds`, as `--bake`): refused
on the request as the CLI refuses it, narrated and shown by phase while it runs, and the
previous version back when an alert fires. A running local stack (fake replicas); the
alerts' reads are the test's (one after another, the last repeated) and the bake's clock
does not wait."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers.base import StackContext
from llmcloud.providers.gcp.provider import GcpProvider
from llmcloud.providers.local.provider import LocalProvider
from llmcloud.stacks.config import resolve_spec
from tests.console.conftest import fake_model, wait_rollout
from tests.local.conftest import alerts_read_in_turn

FIRING = {"server-errors": "more than 5% of requests fail with 5xx (9 of 20 in the last 60 s)"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def fragment_of(key: str) -> dict[str, str]:
    return {**bearer(key), "HX-Request": "true"}


@pytest.fixture
def baking(running, tmp_path, monkeypatch):
    """`running` with v2 uploaded and the bake's clock the test's (`clock.sleeps`: set to
    hold the bake at its first wait until `clock.release` is set); ``baking(reads)`` sets
    the alerts each read finds, the first the baseline before the rollout."""
    running.stack.upload(fake_model(tmp_path / "v2"), "v2")
    clock = SimpleNamespace(now=0.0, waiting=threading.Event(), release=None)

    def sleep(seconds: float) -> None:
        if clock.release is not None:
            clock.waiting.set()
            assert clock.release.wait(20)
        clock.now += seconds

    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake, clock=lambda: clock.now, sleep=sleep))

    def with_reads(*reads: dict) -> SimpleNamespace:
        alerts_read_in_turn(monkeypatch, *reads)
        return clock

    return with_reads


def _messages(document: dict) -> list[str]:
    return [e["message"] for e in document["events"]]


def test_a_bake_too_short_or_negative_is_refused_before_anything_runs(console, running):
    headers = bearer(running.admin_key)
    short = console.post("/api/rollouts", json={"action": "promote", "version": "v1",
                                                "bake_seconds": 30}, headers=headers)
    assert short.status_code == 400, short.text
    error = short.json()["error"]
    assert "shorter than the 70 s" in error["message"] and "70 or more" in error["hint"]
    negative = console.post("/api/rollouts", json={"action": "rollback", "bake_seconds": -1},
                            headers=headers)
    assert negative.status_code == 422 and "bake_seconds" in negative.text
    # on the form: the refusal shows in the confirmation's error slot
    on_form = console.post("/api/rollouts", data={"action": "rollback", "bake_seconds": "30"},
                           headers={**fragment_of(running.admin_key), "HX-Target": "confirm"})
    assert on_form.headers["HX-Retarget"] == "#confirm-error"
    assert "70 or more" in on_form.text
    assert console.get("/api/rollouts/current", headers=headers).status_code == 404


def test_a_provider_that_reads_no_alerts_cannot_bake(console, running, monkeypatch):
    monkeypatch.delattr(LocalProvider, "firing_alerts")
    refused = console.post("/api/rollouts", json={"action": "rollback", "bake_seconds": 70},
                           headers=bearer(running.admin_key))
    assert refused.status_code == 501
    assert "not offered by the local provider" in refused.json()["error"]["message"]
    confirm = console.get("/models/confirm?action=rollback", headers=bearer(running.admin_key))
    assert 'name="bake_seconds"' not in confirm.text


def test_the_confirmation_offers_a_bake_with_the_stacks_minimum(console, running):
    confirm = console.get("/models/confirm?action=promote&version=v2",
                          headers=bearer(running.admin_key)).text
    assert 'name="bake_seconds"' in confirm
    assert 'hx-include="#bake-seconds, #min-requests"' in confirm
    assert "At least 70 s for this stack's alerts" in confirm


def test_a_quiet_bake_of_the_minimum_promotes_and_narrates_it(console, running, baking):
    baking({"server-errors": "fires already"}, {"server-errors": "still"})
    headers = bearer(running.admin_key)
    # as the form sends it: form-encoded, the field's text
    started = console.post("/api/rollouts", data={"action": "promote", "version": "v2",
                                                  "bake_seconds": "70"}, headers=headers)
    assert started.status_code == 202, started.text
    assert started.json()["bake"] == {"seconds": 70, "started": None, "elapsed_seconds": None,
                                      "min_requests": 0}
    done = wait_rollout(console, headers)
    assert done["state"] == "succeeded" and done["phase"] == "done", done
    assert done["result"]["baked_seconds"] == 70 and done["bake"]["started"] is not None
    messages = _messages(done)
    baking_at = messages.index("baking: watching the stack's alerts for 70 s")
    # (no request reached the stack: the console says the version is unproven)
    assert messages[baking_at + 1:] == [
        f"baked 70 s: no alert fired, but {LocalProvider.baked_no_traffic}", "done: serving v2"]
    assert done["result"]["baked_requests"] == 0
    assert any(m.endswith("ready on v2") for m in messages[:baking_at])
    assert console.get("/api/deployment", headers=headers).json()["model_version"] == "v2"


def test_an_empty_bake_field_is_no_bake(console, running, baking):
    baking({})
    headers = bearer(running.admin_key)
    started = console.post("/api/rollouts", data={"action": "promote", "version": "v2",
                                                  "bake_seconds": ""}, headers=headers)
    assert started.status_code == 202 and started.json()["bake"] is None
    done = wait_rollout(console, headers)
    assert done["state"] == "succeeded" and "baked_seconds" not in done["result"]
    assert not any(m.startswith("bak") for m in _messages(done))


def test_an_alert_in_the_bake_fails_the_rollout_and_the_previous_version_serves(
        console, running, baking):
    baking({}, {}, FIRING)
    headers = bearer(running.admin_key)
    started = console.post("/api/rollouts", json={"action": "promote", "version": "v2",
                                                  "bake_seconds": 70}, headers=headers)
    assert started.status_code == 202, started.text
    done = wait_rollout(console, headers)
    assert done["state"] == "failed" and done["phase"] == "done", done
    assert done["error"]["message"] == "promoting v2 failed; v1 is serving again"
    assert "server-errors" in done["error"]["context"]
    messages = _messages(done)
    failed = next(m for m in messages if m.startswith("the bake failed: "))
    assert "20 s into its 70 s" in failed and "server-errors" in failed
    assert messages[-1] == "failed: promoting v2 failed; v1 is serving again"
    deployment = console.get("/api/deployment", headers=headers).json()
    assert deployment["model_version"] == "v1"
    assert {r["version"] for r in deployment["replicas"]} == {"v1"}


def test_the_rollout_fragment_shows_the_bake_in_progress(console, running, baking):
    clock = baking({})
    clock.release = threading.Event()
    headers = bearer(running.admin_key)
    try:
        started = console.post("/api/rollouts", json={"action": "promote", "version": "v2",
                                                      "bake_seconds": 600}, headers=headers)
        assert started.status_code == 202, started.text
        rolling = console.get("/api/rollouts/current", headers=fragment_of(running.admin_key))
        assert 'data-phase="rolling"' in rolling.text or 'data-phase="baking"' in rolling.text
        assert clock.waiting.wait(20), "the bake never began"
        current = console.app.state.console.rollouts.current()
        assert current.phase == "baking"
        current.bake_began -= 185  # three minutes into it
        document = console.get("/api/rollouts/current", headers=headers).json()
        assert document["phase"] == "baking" and document["bake"]["seconds"] == 600
        assert 185 <= document["bake"]["elapsed_seconds"] < 200
        page = console.get("/api/rollouts/current", headers=fragment_of(running.admin_key))
        assert 'data-phase="baking"' in page.text
        assert "baking, 3 of 10 min" in page.text and 'max="600"' in page.text
        assert "baking: watching the stack&#39;s alerts for 600 s" in page.text
    finally:
        clock.release.set()
    done = wait_rollout(console, headers)
    assert done["state"] == "succeeded", done
    assert 'data-phase' not in console.get("/api/rollouts/current",
                                           headers=fragment_of(running.admin_key)).text


class QuietGcp(GcpProvider):
    """GCP's own bake checks; a status without the Pulumi CLI, and a promote whose bake
    (`bake.bake`, as the cloud's promote calls it) reads no alert and does not wait."""

    def __init__(self):
        super().__init__()
        self.baked: list[int] = []

    def status(self, ctx):
        return {"model_version": "v3", "outputs": {}}

    def firing_alerts(self, ctx, outputs):
        return {}

    def requests_served(self, ctx, outputs, since, until):
        return 1234

    def promote(self, ctx, version, *, bake=0):
        self.baked.append(bake)
        bake_module.bake(self, ctx, {}, {}, bake, sleep=lambda s: None,
                     clock=iter(range(0, 10_000, 300)).__next__)
        return {"model_version": version, "previous_version": "v3", "baked_seconds": bake}


def test_a_cloud_stack_bakes_at_least_its_alerts_minimum(monkeypatch):
    from fastapi.testclient import TestClient

    import llmcloud.stacks.plan as plan
    from llmcloud.console.backend import StackBackend
    from llmcloud.console.server import create_app

    monkeypatch.setattr(plan, "run_plan", lambda spec, stack: {
        "resources": [], "checks": [], "cost": None})
    spec = resolve_spec(file_values={}, environ={}, flags={
        "provider": "gcp", "model.name": "m", "compute.min_replicas": 1,
        "compute.max_replicas": 2}, defaults_for=lambda _: {})
    provider = QuietGcp()
    backend = StackBackend(provider, StackContext(Path("."), "prod", spec, environ={}))
    headers = bearer(backend.access_token)
    with TestClient(create_app(backend, scrape=False)) as client:
        confirm = client.get("/models/confirm?action=promote&version=v4", headers=headers)
        assert "At least 600 s (10 min) for this stack's alerts" in confirm.text
        short = client.post("/api/rollouts", json={"action": "promote", "version": "v4",
                                                   "bake_seconds": 300}, headers=headers)
        assert short.status_code == 400 and "600 or more" in short.json()["error"]["hint"]
        assert provider.baked == []
        started = client.post("/api/rollouts", json={"action": "promote", "version": "v4",
                                                     "bake_seconds": 600}, headers=headers)
        assert started.status_code == 202, started.text
        done = wait_rollout(client, headers)
    assert done["state"] == "succeeded" and provider.baked == [600]
    assert _messages(done)[-3:] == ["baking: watching the stack's alerts for 600 s",
                                    "baked 600 s: no alert fired over 1234 requests",
                                    "done: serving v4"]
