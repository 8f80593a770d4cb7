"""What a passed local bake prints: the replicas as the bake leaves them, not as the rollout
left them 70 s before (found on a real stack: after a bake that judged 70 requests, the
promote printed `served: 3` and `served: 0`). A real controller and a fake replica; the
bake's clock is the test's, and its sleeps send the requests."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import httpx

from llmcloud.providers import bake as bake_module
from tests.local.conftest import auth, fake_model


def _bake_sending(stack, key: str, monkeypatch, per_sleep: int) -> list[int]:
    clock, sent = SimpleNamespace(now=0.0), []

    def sleep(seconds: float) -> None:
        clock.now += seconds
        for _ in range(per_sleep):
            sent.append(httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                                   headers=auth(key), timeout=10).status_code)

    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake, clock=lambda: clock.now, sleep=sleep))
    return sent


def test_a_baked_promote_shows_the_requests_its_replicas_served_in_the_bake(
        fake_stack, tmp_path, monkeypatch):
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    sent = _bake_sending(stack, key, monkeypatch, 2)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70)
    assert result["baked_requests"] == len(sent) == 14 and result["previous_version"] == "v1"
    assert [(r["version"], r["served"]) for r in result["replicas"]] == [("v2", len(sent))]


def test_a_baked_rollback_too(fake_stack, tmp_path, monkeypatch):
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    stack.promote("v2")
    sent = _bake_sending(stack, key, monkeypatch, 1)
    result = stack.provider.rollback(stack.ctx(), bake=70)
    assert (result["model_version"], result["previous_version"]) == ("v1", "v2")
    assert [(r["version"], r["served"]) for r in result["replicas"]] == [("v1", len(sent))]


def test_a_bake_without_traffic_warns_of_the_gateway_s_count_not_a_metrics_lag(
        fake_stack, tmp_path, monkeypatch, capsys):
    # (the clouds' warning said "in the stack's metrics, which lag a minute or more": a
    # local gateway counts each request as it answers it)
    stack = fake_stack(replicas=1)
    stack.up()
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    _bake_sending(stack, "", monkeypatch, 0)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70)
    err = capsys.readouterr().err
    assert result["baked_requests"] == 0 and "lag" not in err
    assert "warning: the bake saw no requests (the stack's gateway answered none" in err
