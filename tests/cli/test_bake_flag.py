"""`llmcloud promote --bake SECONDS` (and `rollback --bake`): the flag, its refusals before
anything runs, and the `baked_seconds` of the JSON result."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers import rollout
from llmcloud.providers.aws.provider import AwsProvider
from tests.stacks.fakes import FakeStack, fake_aws_project

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "b" * 64
DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "model_version": "v2", "model_history": ["v1"], "image": IMAGE,
           "alert_names": ["llm-prod-monitoring-5xx-rate-1a2b3c4"]}


@pytest.fixture
def stack(monkeypatch, tmp_path: Path):
    """An AWS stack `prod` serving v2 whose outputs are `outputs`, its alarms firing
    `firing` (one read after another, the last repeated), with a bake that does not wait;
    the fake engine's opener."""
    project = fake_aws_project(monkeypatch, tmp_path)
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)
    monkeypatch.setattr(AwsProvider, "wait_for_rollout", lambda *args: False)
    clock = SimpleNamespace(now=0.0)

    def sleep(seconds):
        clock.now += seconds

    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake, clock=lambda: clock.now, sleep=sleep))

    def serving(*, kind="instances", outputs=OUTPUTS, firing=({},)):
        (project / "Pulumi.prod.yaml").write_text(
            f"config:\n  llmcloud:provider: aws\n  llmcloud:image: {IMAGE}\n"
            f"  llmcloud:compute:\n    kind: {kind}\n  llmcloud:model:\n    name: m\n"
            "    version: v2\n    history: [\"v1\"]\n")
        if firing is not None:  # (None: AWS's own read)
            reads = iter(firing)
            last: dict = {}

            def firing_alerts(self, ctx, outputs):
                nonlocal last
                last = next(reads, last)
                return last

            monkeypatch.setattr(AwsProvider, "firing_alerts", firing_alerts)
        opener = FakeStack.opener(stack_outputs=dict(outputs), last=DEPLOYED)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    return serving


def _ups(opener) -> int:
    return sum(name == "up" for stack in opener.opened for name, _ in stack.calls)


def test_a_baked_promote_reports_its_bake(stack, cli) -> None:
    opener = stack()
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300",
                 "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["outcome"], document["baked_seconds"]) == ("promoted", 300)
    assert _ups(opener) == 1


def test_an_unbaked_promote_says_it_baked_nothing(stack, cli) -> None:
    stack()
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["baked_seconds"] == 0


def test_an_alert_during_the_bake_exits_1_naming_it(stack, cli) -> None:
    opener = stack(firing=({}, {}, {"llm-prod-monitoring-5xx-rate-1a2b3c4":
                                    "more than 5% of requests fail with 5xx"}))
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--bake", "300")
    assert result.exit_code == 1, result.output
    assert "promoting v3 failed; v2 is serving again" in result.stderr
    assert "llm-prod-monitoring-5xx-rate-1a2b3c4" in result.stderr
    assert _ups(opener) == 2


@pytest.mark.parametrize(("args", "kind", "outputs", "said"), [
    (["--bake", "-1"], "instances", OUTPUTS, "greater than or equal to 0"),
    (["--bake", "60"], "instances", OUTPUTS, "shorter than the 240 s"),
    (["--bake", "600"], "sagemaker", OUTPUTS, "not available with compute.kind: sagemaker"),
    (["--bake", "600"], "instances", {k: v for k, v in OUTPUTS.items() if k != "alert_names"},
     "llmcloud update --provider aws --stack prod"),
], ids=["negative", "too-short", "sagemaker", "no-output"])
def test_a_bake_that_could_not_work_is_refused_with_nothing_deployed(
        stack, cli, args, kind, outputs, said) -> None:
    # the provider's own read, which refuses a stack without the output
    opener = stack(kind=kind, outputs=outputs, firing=None)
    result = cli("promote", "--model-version", "v3", "--stack", "prod", *args)
    assert result.exit_code == 2, result.output
    assert said in result.output + result.stderr
    assert _ups(opener) == 0


def test_rollback_takes_the_flag(stack, cli) -> None:
    stack()
    result = cli("rollback", "--stack", "prod", "--bake", "240", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["model_version"], document["baked_seconds"]) == ("v1", 240)


def test_the_local_provider_bakes_too() -> None:
    from llmcloud.cli.model_commands import _baked
    from llmcloud.providers.local.provider import LocalProvider

    assert _baked(LocalProvider(), 0) == {}
    assert _baked(LocalProvider(), 600) == {"bake": 600}
