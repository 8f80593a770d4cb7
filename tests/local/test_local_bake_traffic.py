"""A local bake says how much traffic it judged (`baked_requests`): the controller counts
every request its gateway answers, and the bake reads that count at its start and end. A
real controller and fake replicas; the bake's clock is the test's, and its sleeps send the
requests (or none)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import httpx
import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers.local import bake as local_bake
from llmcloud.providers.local.bake import requests_since
from tests.local.conftest import auth, fake_model


@pytest.fixture
def baking(fake_stack, tmp_path, monkeypatch):
    """A running local stack on v1 with v2 uploaded; ``baking(per_sleep)`` makes each of
    the bake's sleeps send ``per_sleep`` requests through the gateway (one of them a 404:
    any status counts). Returns the stack and the requests sent."""
    stack = fake_stack(replicas=1)
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    sent: list[int] = []

    def with_traffic(per_sleep: int):
        clock = SimpleNamespace(now=0.0)

        def sleep(seconds: float) -> None:
            clock.now += seconds
            for n in range(per_sleep):
                path = "/v1/nowhere" if n == 0 else "/v1/completions"
                sent.append(httpx.post(stack.url + path, json={"max_tokens": 1},
                                       headers=auth(key), timeout=10).status_code)

        monkeypatch.setattr(bake_module, "bake", functools.partial(
            bake_module.bake, clock=lambda: clock.now, sleep=sleep))
        return stack, sent

    return with_traffic


def test_a_bake_under_traffic_reports_the_requests_it_saw(baking, capsys):
    stack, sent = baking(3)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70)
    assert (result["baked_seconds"], result["baked_requests"]) == (70, len(sent))
    assert len(sent) == 21 and 404 in sent and 200 in sent
    assert "no requests" not in capsys.readouterr().err


def test_a_bake_without_traffic_promotes_with_a_warning(baking, capsys):
    stack, _ = baking(0)
    result = stack.provider.promote(stack.ctx(), "v2", bake=70)
    assert (result["model_version"], result["baked_requests"]) == ("v2", 0)
    assert f"warning: {local_bake.BAKED_NO_TRAFFIC}" in capsys.readouterr().err


def test_a_baked_rollback_counts_too(baking):
    stack, sent = baking(2)
    stack.promote("v2")
    result = stack.provider.rollback(stack.ctx(), bake=70)
    assert (result["model_version"], result["baked_requests"]) == ("v1", len(sent))


def test_a_count_from_another_controller_or_none_is_unknown():
    started = {"controller_pid": 7, "requests_answered": 40}
    assert requests_since({"controller_pid": 7, "requests_answered": 52}, started) == 12
    # a new controller counts from 0; an old one counts nothing; no count at the start
    assert requests_since({"controller_pid": 8, "requests_answered": 52}, started) is None
    assert requests_since({"controller_pid": 7}, started) is None
    assert requests_since({"controller_pid": 7, "requests_answered": 52},
                          {"controller_pid": 7}) is None
