"""`promote --bake --min-requests N` on a cloud stack: a bake that counted fewer than N
requests, or could not count them, fails as an alert does, and the previous version is
put back; since a cloud's metrics arrive late, the count is read again every poll for up
to `MIN_REQUESTS_GRACE_SECONDS` (the alerts still watched) before the bake fails. No real
waiting: the bake's clock is a fake clock."""

from __future__ import annotations

import functools
from pathlib import Path
from unittest import mock

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers import rollout
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.pipeline.test_promote_bake import (  # noqa: F401 - in_store: an autouse fixture
    FIVE_XX,
    AlertingProvider,
    Clock,
    _ctx,
    in_store,
)


class Lagging(AlertingProvider):
    """A cloud whose count of the bake's requests is `counts`, one read after another (the
    last repeated); its alerts are `alerts`, read in turn as `AlertingProvider`'s."""

    def __init__(self, counts, *alerts) -> None:
        super().__init__(*(alerts or ({},)))
        self.counts, self.windows = list(counts), []

    def requests_served(self, ctx, outputs, since, until):
        self.windows.append((since, until))
        return self.counts[min(len(self.windows) - 1, len(self.counts) - 1)]


def _promote(provider, tmp_path: Path, clock: Clock, heard: list | None = None, **asked):
    token = bake_module.bake_progress.set(
        lambda event, message: (heard if heard is not None else []).append((event, message)))
    try:
        with mock.patch.object(bake_module, "bake", functools.partial(
                bake_module.bake, clock=clock, sleep=clock.sleep)):
            return rollout.promote(provider, _ctx(tmp_path), "v2", bake=600, **asked)
    finally:
        bake_module.bake_progress.reset(token)


def test_enough_requests_pass_and_the_result_says_what_was_asked(tmp_path: Path) -> None:
    provider, clock = Lagging([150]), Clock()
    result = _promote(provider, tmp_path, clock, min_requests=100)
    assert (result["outcome"], result["baked_requests"], result["min_requests"]) == \
        ("promoted", 150, 100)
    assert clock.now == 1000.0 + 600 and provider.ups == 1


def test_too_few_requests_put_the_previous_version_back_after_the_grace(
        tmp_path: Path, capsys) -> None:
    provider, clock, heard = Lagging([3]), Clock(), []
    with pytest.raises(DeploymentError) as caught:
        _promote(provider, tmp_path, clock, heard, min_requests=100)
    error = caught.value
    assert (error.exit_code, error.message) == (1, "promoting v2 failed; v1 is serving again")
    assert "the bake counted 3 requests, fewer than the 100 --min-requests asks for" in \
        error.context
    assert "send the new version traffic" in error.hint and "--min-requests" in error.hint
    assert provider.ups == 2 and provider.config["llmcloud:model.version"] == "v1"
    # the bake's 600 s, then the grace, read every poll
    assert clock.now == 1000.0 + 600 + bake_module.MIN_REQUESTS_GRACE_SECONDS
    assert len(provider.windows) == 1 + bake_module.MIN_REQUESTS_GRACE_SECONDS // 30
    # each read of the grace is of the bake's own window
    assert len(set(provider.windows)) == 1
    assert heard[-1][0] == "failed"
    assert "3 of the 100 requests asked for counted" in capsys.readouterr().err


def test_a_count_that_arrives_late_passes_as_soon_as_it_is_reached(tmp_path: Path) -> None:
    provider, clock = Lagging([0, 40, 120, 500]), Clock()
    result = _promote(provider, tmp_path, clock, min_requests=100)
    assert (result["outcome"], result["baked_requests"]) == ("promoted", 120)
    assert clock.now == 1000.0 + 600 + 60 and provider.ups == 1


def test_a_count_that_cannot_be_read_fails_the_bake(tmp_path: Path) -> None:
    for provider in (Lagging([None]), AlertingProvider({})):
        with pytest.raises(DeploymentError) as caught:
            _promote(provider, tmp_path / str(id(provider)), Clock(), min_requests=1)
        assert "could not count its requests, so --min-requests 1 could not be proven" in \
            caught.value.context
        assert provider.ups == 2


def test_a_provider_that_never_counts_fails_without_waiting(tmp_path: Path) -> None:
    clock = Clock()
    with pytest.raises(DeploymentError):
        _promote(AlertingProvider({}), tmp_path, clock, min_requests=1)
    assert clock.now == 1000.0 + 600


def test_an_alert_in_the_grace_still_fails_the_bake(tmp_path: Path) -> None:
    # baseline, the bake's 20 reads, then one quiet read of the grace, then the 5xx
    provider = Lagging([0], *([{}] * 22), FIVE_XX)
    with pytest.raises(DeploymentError) as caught:
        _promote(provider, tmp_path, Clock(), min_requests=10)
    assert "an alert fired during the bake, 60 s after its 600 s, while" in caught.value.context
    assert provider.ups == 2


def test_without_min_requests_a_bake_without_traffic_still_passes(tmp_path: Path) -> None:
    provider, clock = Lagging([0]), Clock()
    result = _promote(provider, tmp_path, clock)
    assert (result["outcome"], result["baked_requests"], result["min_requests"]) == \
        ("promoted", 0, 0)
    assert clock.now == 1000.0 + 600


def test_a_baked_rollback_fails_the_same_way(tmp_path: Path) -> None:
    provider, clock = Lagging([0]), Clock()
    with mock.patch.object(bake_module, "bake", functools.partial(
            bake_module.bake, clock=clock, sleep=clock.sleep)), \
            pytest.raises(DeploymentError) as caught:
        rollout.rollback(provider, _ctx(tmp_path), bake=600, min_requests=5)
    assert "fewer than the 5 --min-requests asks for" in caught.value.context
    assert provider.ups == 2 and provider.config["llmcloud:model.version"] == "v1"


def test_min_requests_without_a_bake_is_a_usage_error() -> None:
    with pytest.raises(ConfigError, match="--min-requests needs --bake"):
        bake_module.check_min_requests(0, 10)
    bake_module.check_min_requests(600, 10)
    bake_module.check_min_requests(0, 0)


def test_the_wait_for_the_count_is_heard_once_by_the_bake_s_listener(tmp_path: Path) -> None:
    # (the console: its bar is full at the bake's end, and up to 5 minutes may follow)
    provider, clock, heard = Lagging([0, 40, 120]), Clock(), []
    _promote(provider, tmp_path, clock, heard, min_requests=100)
    assert [event for event, _ in heard] == ["started", "counting", "passed"]
    assert heard[1][1] == ("baked 600 s: no alert fired; 0 of the 100 requests asked for "
                           "counted, reading the count again for up to 300 s (the stack's "
                           "metrics arrive late)")
