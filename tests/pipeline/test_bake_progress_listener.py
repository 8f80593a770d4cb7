"""Whoever hears a bake's progress (`bake_progress`: the console's rollout thread) cannot
change its outcome: a listener that raises is noted on stderr, and the bake passes or fails
on the stack's alerts alone."""

from __future__ import annotations

import pytest

from llmcloud.providers import bake as bake_module


class Quiet:
    """A cloud whose alerts are `firing` at every read and whose metrics count 42."""

    def __init__(self, firing: dict[str, str] | None = None) -> None:
        self.firing = firing or {}

    def firing_alerts(self, ctx, outputs):
        return self.firing

    def requests_served(self, ctx, outputs, since, until):
        return 42


def _bake(provider, listener) -> int | None:
    clock = iter(range(0, 10_000, 30)).__next__
    token = bake_module.bake_progress.set(listener)
    try:
        return bake_module.bake(provider, None, {}, {}, 120, interval=30, clock=clock,
                            sleep=lambda seconds: None)
    finally:
        bake_module.bake_progress.reset(token)


def _broken(event: str, message: str) -> None:
    raise RuntimeError("the page is gone")


def test_a_listener_that_raises_does_not_fail_a_bake_that_passed(capsys) -> None:
    assert _bake(Quiet(), _broken) == 42
    assert "the bake's progress could not be reported: RuntimeError: the page is gone" \
        in capsys.readouterr().err


def test_a_bake_that_fails_fails_on_its_alert_not_on_the_listener() -> None:
    with pytest.raises(bake_module.BakeFailed, match="an alert fired during the bake"):
        _bake(Quiet({"5xx-rate": "more than 5% of requests fail with 5xx"}), _broken)
