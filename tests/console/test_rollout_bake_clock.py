"""The console's side of a bake, beyond `test_console_bake.py`: how far a bake is (its
`elapsed_seconds`) on a clock that does not jump, stopped where the bake ended; the bake
field hidden for a stack that bakes none (SageMaker); the field's values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from llmcloud.console import rollouts as rollouts_module
from llmcloud.console.api import RolloutRequest
from llmcloud.console.backend import StackBackend
from llmcloud.console.rollouts import Rollout, Rollouts
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from tests.providers.declared import spec_for


@pytest.fixture
def clocks(monkeypatch):
    """The rollouts' clocks, the test's: `wall` (time.time) and `steady` (monotonic)."""
    now = SimpleNamespace(wall=1_000_000.0, steady=50.0)
    monkeypatch.setattr(rollouts_module, "time", SimpleNamespace(
        time=lambda: now.wall, monotonic=lambda: now.steady))
    return now


def _baking(seconds: int = 600) -> tuple[Rollouts, Rollout]:
    rollouts = Rollouts(lambda: [])
    rollout = Rollout("rollout-1", "promote", "v2", "v1", bake_seconds=seconds)
    rollouts._hear_bake(rollout, "started", "baking: watching the stack's alerts for 600 s")
    return rollouts, rollout


def test_a_failed_bake_s_progress_stops_where_it_failed(clocks) -> None:
    rollouts, rollout = _baking()
    clocks.wall += 30
    clocks.steady += 30
    rollouts._hear_bake(rollout, "failed", "the bake failed: 5xx-rate")
    clocks.wall += 400  # the previous version goes back meanwhile
    clocks.steady += 400
    bake = rollout.to_dict()["bake"]
    assert rollout.phase == "restoring" and bake["elapsed_seconds"] == 30


def test_the_progress_does_not_follow_the_wall_clock_s_jumps(clocks) -> None:
    rollouts, rollout = _baking()
    clocks.wall -= 3600  # the machine's clock set back an hour (NTP, a time zone fix)
    clocks.steady += 60
    assert rollout.to_dict()["bake"]["elapsed_seconds"] == 60
    rollouts._hear_bake(rollout, "passed", "baked 600 s: no alert fired")
    clocks.steady += 5
    assert rollout.to_dict()["bake"]["elapsed_seconds"] == 60


def _backend(kind: str) -> StackBackend:
    spec = spec_for("aws", region="eu-west-1", compute={"kind": kind})
    return StackBackend(AwsProvider(), StackContext(Path("."), "prod", spec, environ={}))


def test_a_sagemaker_stack_offers_no_bake_field() -> None:
    # SageMaker's guardrails bake every update: any bake is refused, so none is offered
    assert _backend("sagemaker").bake_minimum() == 0
    assert _backend("instances").bake_minimum() == AwsProvider.BAKE_MINIMUM_SECONDS


@pytest.mark.parametrize("value", ["", "   ", None])
def test_a_blank_field_is_no_bake(value) -> None:
    assert RolloutRequest(action="rollback", bake_seconds=value).bake_seconds == 0


def test_true_is_not_a_number_of_seconds() -> None:
    with pytest.raises(ValidationError, match="a number of seconds"):
        RolloutRequest(action="rollback", bake_seconds=True)
