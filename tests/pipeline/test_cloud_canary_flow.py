"""`promote --canary N` on a cloud stack (`providers/cloud_canary.py`) with a fake engine: the
canary is recorded as `model.canary` and declared by an `up`, sent traffic once healthy,
baked on its own verdict; a failed canary is unset and `up` removes it (nothing else
recorded), a passed one rolls the fleet and is removed after; a canary left by a killed
promote is removed by the next one first. No real waiting: the bake's clock is fake."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from unittest import mock

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers import cloud_canary, rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, DeploymentError, NotSupportedError
from tests.pipeline.test_promote_bake import Clock
from tests.stacks.fakes import FakeStack

OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "image": "r/llm@sha256:" + "a" * 64, "model_version": "v1",
           "model_history": ["v0"], "alert_names": ["a-5xx", "a-latency"]}
CANARY = "llmcloud:model.canary"
FIRED = {"canary-server-errors": "3 of the canary's 40 requests failed with 5xx"}


class RecordingStack(FakeStack):
    """A fake stack that keeps the config each `up` ran with."""

    def up(self, **kwargs):
        self.ran_with = [*getattr(self, "ran_with", []), dict(self.config)]
        return super().up(**kwargs)


class FakeCloud:
    """A cloud with a canary: its verdicts, read one after another, are `verdicts` (the
    last repeats; an exception fails the read); `rollout_fails` fails the fleet's roll."""

    name, display_name = "aws", "AWS"
    BAKE_MINIMUM_SECONDS = 60
    canary_bake = {"grace": 0, "interval": 30.0}

    def __init__(self, *verdicts, outputs=None, rollout_fails=None) -> None:
        self.opener = RecordingStack.opener(stack_outputs=outputs or OUTPUTS)
        self.verdicts = list(verdicts) or [({}, 50)]
        self.read, self.waited, self.rolled = 0, [], []
        self.rollout_fails = rollout_fails

    def supports(self, operation):
        pass

    def check_bake(self, ctx, seconds):
        pass

    def firing_alerts(self, ctx, outputs):
        assert outputs["alert_names"] == OUTPUTS["alert_names"]
        return {}

    def canary_fleet_weight(self, ctx, outputs):
        return 3

    def wait_for_canary(self, ctx, outputs, timeout):
        self.waited.append(json.loads(self.config[CANARY]))

    def read_canary_verdict(self, ctx, outputs, since):
        verdict = self.verdicts[min(self.read, len(self.verdicts) - 1)]
        self.read += 1
        if isinstance(verdict, BaseException):
            raise verdict
        return verdict

    def wait_for_rollout(self, ctx, outputs, since, timeout):
        self.rolled.append(dict(self.config))
        if self.rollout_fails is not None and len(self.rolled) == 1:
            raise self.rollout_fails
        return True

    def endpoint_reports_version(self, ctx):
        return False

    def _engine(self, ctx, operation):
        return PulumiStack(ctx.project_dir, ctx.stack, ctx.environ, opener=self.opener)

    @property
    def stack(self) -> RecordingStack:
        return self.opener.opened[0]

    @property
    def config(self) -> dict:
        return self.stack.config

    def canaries_up(self) -> list:
        """The canary each `up` ran with (None: unset)."""
        return [json.loads(c[CANARY]) if c.get(CANARY) else None
                for c in getattr(self.stack, "ran_with", [])]


@pytest.fixture(autouse=True)
def in_store(monkeypatch):
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)


def _ctx(tmp_path: Path, environ=None, **model) -> StackContext:
    spec = resolve_spec(file_values={"provider": "aws", "image": OUTPUTS["image"], "model": {
        "name": "m", "version": "v1", "history": ["v0"], **model}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ=environ or {})


def _canary_promote(provider, tmp_path, version="v2", bake=120, clock=None, **kwargs):
    clock = clock or Clock()
    with mock.patch.object(bake_module, "bake", functools.partial(
            bake_module.bake, clock=clock, sleep=clock.sleep)):
        return cloud_canary.promote(provider, _ctx(tmp_path), version, 1, bake=bake, **kwargs)


def test_a_canary_that_fails_is_removed_and_nothing_is_recorded(tmp_path: Path) -> None:
    provider = FakeCloud(({}, 5), (FIRED, 40))
    with pytest.raises(DeploymentError) as caught:
        _canary_promote(provider, tmp_path)
    error = caught.value
    assert error.exit_code == 1
    assert error.message == "promoting v2 failed at its canary; v1 serves all traffic"
    assert "canary-server-errors" in error.context
    start = {"version": "v2", "servers": 1, "fleet_weight": 3}
    # declared without traffic, sent its share once healthy, then removed
    assert provider.canaries_up() == [{**start, "serving": False}, {**start, "serving": True},
                                      None]
    assert provider.waited == [{**start, "serving": False}]
    assert provider.rolled == []  # the fleet never rolled
    assert "llmcloud:model.version" not in provider.config
    assert "llmcloud:model.history" not in provider.config


def test_a_canary_that_passes_rolls_the_fleet_then_goes(tmp_path: Path) -> None:
    provider = FakeCloud(({}, 40))
    result = _canary_promote(provider, tmp_path)
    assert (result["outcome"], result["previous_version"], result["model_version"]) == (
        "promoted", "v1", "v2")
    assert result["canary"] == {"version": "v2", "servers": 1, "requests": 40,
                                "verdict": "passed"}
    assert (result["baked_seconds"], result["baked_requests"]) == (120, 40)
    canaries = provider.canaries_up()
    assert len(canaries) == 4 and canaries[2]["serving"] and canaries[3] is None
    # the fleet rolled with the canary kept, the version and history recorded
    fleet = provider.rolled[0]
    assert fleet["llmcloud:model.version"] == "v2" and fleet[CANARY]
    assert json.loads(provider.config["llmcloud:model.history"]) == ["v0", "v1"]
    assert provider.config[CANARY] == ""


def test_a_rollback_through_a_canary_goes_to_the_version_before(tmp_path: Path) -> None:
    provider = FakeCloud(({}, 40))
    result = _canary_promote(provider, tmp_path, version=None)
    assert (result["outcome"], result["model_version"]) == ("rolled back", "v0")
    assert provider.canaries_up()[0]["version"] == "v0"
    assert json.loads(provider.config["llmcloud:model.history"]) == []


def test_too_few_canary_requests_fail_with_min_requests(tmp_path: Path) -> None:
    provider = FakeCloud(({}, 3))
    with pytest.raises(DeploymentError) as caught:
        _canary_promote(provider, tmp_path, min_requests=20)
    assert "fewer than the 20 --min-requests" in caught.value.context
    assert provider.canaries_up()[-1] is None and provider.rolled == []


def test_ctrl_c_during_the_bake_removes_the_canary(tmp_path: Path) -> None:
    provider = FakeCloud(({}, 1), KeyboardInterrupt())
    with pytest.raises(DeploymentError) as caught:
        _canary_promote(provider, tmp_path)
    assert caught.value.exit_code == 130
    assert provider.canaries_up()[-1] is None
    assert "llmcloud:model.version" not in provider.config


def test_a_fleet_roll_that_fails_puts_the_previous_version_back_without_the_canary(
        tmp_path: Path) -> None:
    provider = FakeCloud(({}, 40), rollout_fails=DeploymentError("the refresh ended Failed"))
    with pytest.raises(DeploymentError) as caught:
        _canary_promote(provider, tmp_path)
    assert caught.value.message == ("promoting v2 failed after its canary passed; v1 is "
                                    "serving again")
    assert provider.config["llmcloud:model.version"] == "v1"
    assert json.loads(provider.config["llmcloud:model.history"]) == ["v0"]
    assert provider.canaries_up()[-1] is None and len(provider.rolled) == 2


def test_a_canary_of_the_version_served_is_refused(tmp_path: Path) -> None:
    provider = FakeCloud()
    with pytest.raises(ConfigError, match="serves v1 already"):
        _canary_promote(provider, tmp_path, version="v1")
    assert provider.canaries_up() == []


@pytest.mark.parametrize("plain", [True, False], ids=["promote", "promote --canary"])
def test_a_canary_left_by_a_killed_promote_is_removed_first(tmp_path: Path, capsys,
                                                            plain) -> None:
    left = {"version": "v9", "servers": 1, "group": "g", "target_group": "tg"}
    provider = FakeCloud(({}, 40), outputs={**OUTPUTS, "model_canary": left})
    if plain:
        rollout.promote(provider, _ctx(tmp_path), "v2")
    else:
        _canary_promote(provider, tmp_path)
    assert provider.canaries_up()[0] is None  # the first up removes it
    assert "a canary of v9 is left by a promote or rollback that did not end" in \
        capsys.readouterr().err
    assert provider.config["llmcloud:model.version"] == "v2"


def test_the_canary_from_the_environment_is_refused(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, environ={"LLMCLOUD_MODEL__CANARY": '{"version": "v2"}'})
    with pytest.raises(ConfigError, match="LLMCLOUD_MODEL__CANARY"):
        cloud_canary.promote(FakeCloud(), ctx, "v2", 1, bake=120)


def test_sagemaker_refuses_a_canary_before_anything(tmp_path: Path) -> None:
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.providers.canary import check_canary

    check_canary(1, 600)
    spec = resolve_spec(file_values={"provider": "aws", "compute": {"kind": "sagemaker"}},
                        environ={})
    ctx = StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})
    with pytest.raises(NotSupportedError, match="compute.kind: sagemaker") as caught:
        AwsProvider().promote(ctx, "v2", bake=600, canary=1)
    assert caught.value.exit_code == 4
    AwsProvider().supports("promote_canary")  # the instances flavour offers it


def test_status_shows_the_canary_the_stack_runs() -> None:
    line = cloud_canary.status_line({"model_canary": {"version": "v7", "servers": 1}})
    assert line.startswith("v7 on 1 server beside the fleet")
    assert cloud_canary.status_line({}) is None
