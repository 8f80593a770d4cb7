"""`promote --bake`: after the rollout, the stack's alerts are watched; one that begins to
fire puts the previous version back as any failed rollout does. Alerts firing before the
update never count, and a bake that could read nothing fails. No real waiting: the bake's
clock and sleep are a fake clock's."""

from __future__ import annotations

import functools
from pathlib import Path
from unittest import mock

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, DeploymentError, NotSupportedError
from tests.stacks.fakes import FakeStack

OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "image": "r/llm@sha256:" + "a" * 64, "model_version": "v1",
           "model_history": ["v0"], "alert_names": ["a-5xx", "a-latency"]}
FIVE_XX = {"a-5xx": "more than 5% of requests fail with 5xx"}


class Clock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class AlertingProvider:
    """A cloud whose alerts, read one after another, are `reads` (a dict fires those; an
    exception fails the read); the last one repeats."""

    name, display_name = "aws", "AWS"
    BAKE_MINIMUM_SECONDS = 60

    def __init__(self, *reads) -> None:
        self.opener = FakeStack.opener(stack_outputs=OUTPUTS)
        self.reads, self.asked, self.watched = list(reads), 0, 0

    def supports(self, operation):
        pass

    def check_bake(self, ctx, seconds):
        from llmcloud.providers.cloud import CloudProvider

        CloudProvider.check_bake(self, ctx, seconds)

    def firing_alerts(self, ctx, outputs):
        assert outputs["alert_names"] == OUTPUTS["alert_names"]
        read = self.reads[min(self.asked, len(self.reads) - 1)]
        self.asked += 1
        if isinstance(read, BaseException):
            raise read
        return dict(read)

    def wait_for_rollout(self, ctx, outputs, since, timeout):
        self.watched += 1
        return True

    def endpoint_reports_version(self, ctx):
        return True

    def _engine(self, ctx, operation):
        return PulumiStack(ctx.project_dir, ctx.stack, ctx.environ, opener=self.opener)

    @property
    def ups(self) -> int:
        return sum(name == "up" for stack in self.opener.opened for name, _ in stack.calls)

    @property
    def config(self) -> dict:
        return self.opener.opened[0].config


@pytest.fixture(autouse=True)
def in_store(monkeypatch):
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)


def _ctx(tmp_path: Path) -> StackContext:
    spec = resolve_spec(file_values={"provider": "aws", "image": OUTPUTS["image"], "model": {
        "name": "m", "version": "v1", "history": ["v0"]}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})


def _timed(clock: Clock):
    """The bake timed by `clock`."""
    return mock.patch.object(bake_module, "bake", functools.partial(
        bake_module.bake, clock=clock, sleep=clock.sleep))


def _promote(provider, tmp_path, bake, clock=None):
    clock = clock or Clock()
    with _timed(clock):
        return rollout.promote(provider, _ctx(tmp_path), "v2", bake=bake)


def test_an_alert_that_fires_during_the_bake_puts_the_previous_version_back(
        tmp_path: Path) -> None:
    provider = AlertingProvider({}, {}, {}, FIVE_XX)  # baseline, then 30 s, 60 s, 90 s
    with pytest.raises(DeploymentError) as caught:
        _promote(provider, tmp_path, 600)
    error = caught.value
    assert error.exit_code == 1
    assert error.message == "promoting v2 failed; v1 is serving again"
    assert "an alert fired during the bake, 90 s into its 600 s" in error.context
    assert "a-5xx: more than 5% of requests fail with 5xx" in error.context
    assert "llmcloud logs --stack prod" in error.hint
    assert provider.ups == 2 and provider.watched == 2  # the restore was watched too
    assert provider.config["llmcloud:model.version"] == "v1"


def test_an_alert_firing_before_the_update_never_fails_the_bake(tmp_path: Path,
                                                                capsys) -> None:
    provider = AlertingProvider(FIVE_XX)
    clock = Clock()
    result = _promote(provider, tmp_path, 120, clock)
    assert (result["outcome"], result["baked_seconds"]) == ("promoted", 120)
    assert provider.asked == 1 + 4 and clock.slept == [30.0] * 4
    assert provider.ups == 1
    assert "alert a-5xx (more than 5% of requests fail with 5xx) fires already" in \
        capsys.readouterr().err


def test_without_a_bake_no_alert_is_read(tmp_path: Path) -> None:
    provider = AlertingProvider(RuntimeError("no read expected"))
    result = _promote(provider, tmp_path, 0)
    assert provider.asked == 0 and "baked_seconds" not in result


def test_a_read_that_fails_during_the_bake_is_tried_again(tmp_path: Path) -> None:
    provider = AlertingProvider({}, DeploymentError("AWS could not be reached"), {})
    assert _promote(provider, tmp_path, 90)["outcome"] == "promoted"
    assert provider.asked == 4


def test_a_bake_that_could_read_nothing_puts_the_previous_version_back(
        tmp_path: Path) -> None:
    provider = AlertingProvider({}, DeploymentError("AWS refused it", context="Throttling"))
    with pytest.raises(DeploymentError) as caught:
        _promote(provider, tmp_path, 90)
    assert "the bake could not read the stack's alerts in 90 s" in caught.value.context
    assert "Throttling" in caught.value.context
    assert provider.ups == 2
    assert provider.config["llmcloud:model.version"] == "v1"


@pytest.mark.parametrize("refusal", [
    DeploymentError("AWS refused reading the stack's CloudWatch alarms: AccessDenied",
                    hint="check that your AWS credentials may cloudwatch:DescribeAlarms"),
    OSError("connection reset"),
], ids=["refused", "sdk"])
def test_alerts_that_cannot_be_read_before_the_update_refuse_the_promotion(
        tmp_path: Path, refusal) -> None:
    provider = AlertingProvider(refusal)
    with pytest.raises(DeploymentError) as caught:
        _promote(provider, tmp_path, 600)
    assert "could not be read before the update" in caught.value.message
    assert "nothing was deployed" in caught.value.message
    assert str(refusal.args[0]) in caught.value.context
    assert provider.ups == 0
    assert "llmcloud:model.version" not in provider.config


@pytest.mark.parametrize("error", [ConfigError("stack 'prod' names no alarms"),
                                   NotSupportedError("--bake is not offered")])
def test_a_stack_or_cloud_without_alerts_to_read_is_refused_in_its_own_words(
        tmp_path: Path, error) -> None:
    provider = AlertingProvider(error)
    with pytest.raises(type(error)) as caught:
        _promote(provider, tmp_path, 600)
    assert caught.value is error and provider.ups == 0


def test_a_bake_shorter_than_the_alerts_need_is_refused_before_anything(
        tmp_path: Path) -> None:
    provider = AlertingProvider({})
    with pytest.raises(ConfigError) as caught:
        _promote(provider, tmp_path, 59)
    assert "shorter than the 60 s" in caught.value.message
    assert provider.opener.opened == [] and provider.asked == 0


def test_a_rollback_bakes_too(tmp_path: Path) -> None:
    provider = AlertingProvider({}, FIVE_XX)
    clock = Clock()
    spec = resolve_spec(file_values={"provider": "aws", "image": OUTPUTS["image"], "model": {
        "name": "m", "version": "v1", "history": ["v0"]}}, environ={})
    ctx = StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})
    with pytest.raises(DeploymentError) as caught, _timed(clock):
        rollout.rollback(provider, ctx, bake=60)
    assert caught.value.message == "promoting v0 failed; v1 is serving again"
    assert provider.ups == 2
