"""A stack file left behind the deployed stack: CI's fresh checkout holds the committed
`Pulumi.<stack>.yaml`, which names the version before the last promote (or a colleague
promoted from another machine). The stack's outputs (`model_version`, `model_history`) are
the truth: `update` kept redeploying the file's older version, promote counted its previous
version and history from the file, and rollback went to the wrong version."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import bake as bake_module
from llmcloud.providers import rollout
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.errors import DeploymentError
from tests.pipeline.test_rollout import OUTPUTS, FakeProvider, _ctx
from tests.stacks.fakes import FakeStack

#: what `stack.info()` says of a stack deployed before
DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
#: promoted v1 -> v2 from another checkout: the committed file still names v1
SERVED_V2 = {**OUTPUTS, "model_version": "v2", "model_history": ["v0", "v1"]}


def _serving(outputs):
    provider = FakeProvider()
    provider.opener = FakeStack.opener(stack_outputs=outputs)
    return provider


@pytest.fixture(autouse=True)
def _in_store(monkeypatch):
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)


def _recorded(provider) -> tuple[str, list[str]]:
    config = provider.stack.config
    return config["llmcloud:model.version"], json.loads(config["llmcloud:model.history"])


def test_promote_counts_from_the_deployed_version_not_a_stale_file(tmp_path, capsys) -> None:
    provider = _serving(SERVED_V2)
    result = rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v3")
    assert (result["previous_version"], result["outcome"]) == ("v2", "promoted")
    assert _recorded(provider) == ("v3", ["v0", "v1", "v2"])
    assert "Pulumi.prod.yaml is behind stack 'prod'" in capsys.readouterr().err


def test_promote_to_the_deployed_version_changes_nothing_but_the_stale_file(tmp_path) -> None:
    provider = _serving(SERVED_V2)
    result = rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert (result["previous_version"], result["outcome"]) == ("v2", "unchanged")
    assert "up" not in [name for name, _ in provider.stack.calls]
    assert _recorded(provider) == ("v2", ["v0", "v1"])


def test_a_failed_promote_restores_the_deployed_version(tmp_path) -> None:
    from tests.pipeline.test_rollout import FlakyStack

    provider = FakeProvider(FlakyStack)
    provider.opener = FlakyStack.opener(stack_outputs=SERVED_V2)
    with pytest.raises(DeploymentError, match="v2 is serving again"):
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v3")
    assert _recorded(provider) == ("v2", ["v0", "v1"])


def test_promote_counts_from_the_deployed_version_not_one_edited_in(tmp_path) -> None:
    # the file names v5, edited by hand and never rolled out: v2 is what serves
    provider = _serving(SERVED_V2)
    result = rollout.promote(provider, _ctx(tmp_path, "v5", ["v0", "v1"]), "v3")
    assert result["previous_version"] == "v2"
    assert _recorded(provider) == ("v3", ["v0", "v1", "v2"])


def test_rollback_goes_to_the_last_of_the_deployed_history(tmp_path) -> None:
    provider = _serving(SERVED_V2)
    result = rollout.rollback(provider, _ctx(tmp_path, "v1", ["v0"]))
    assert (result["previous_version"], result["model_version"]) == ("v2", "v1")
    assert result["outcome"] == "rolled back"
    assert _recorded(provider) == ("v1", ["v0"])


def test_rollback_after_a_rollback_made_elsewhere_goes_further_back(tmp_path) -> None:
    # the file still names v2, which a colleague rolled back from: the stack serves v1
    provider = _serving({**OUTPUTS, "model_version": "v1", "model_history": ["v0"]})
    result = rollout.rollback(provider, _ctx(tmp_path, "v2", ["v0", "v1"]))
    assert (result["previous_version"], result["model_version"]) == ("v1", "v0")
    assert _recorded(provider) == ("v0", [])


# -- up and update, through the CLI ------------------------------------------------------


@pytest.fixture
def aws_stack(monkeypatch, tmp_path: Path):
    """AWS with a recording fake engine whose stack serves `outputs`, in a project folder
    whose `Pulumi.prod.yaml` names `model` (what `write` is given)."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setattr(AwsProvider, "before_up", lambda self, ctx: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    for name in ("LLMCLOUD_MODEL", "LLMCLOUD_MODEL__VERSION", "LLMCLOUD_MODEL__HISTORY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    monkeypatch.chdir(tmp_path)

    def serving(outputs, version, history):
        (tmp_path / "Pulumi.prod.yaml").write_text(
            f"config:\n  llmcloud:provider: aws\n  llmcloud:image: {OUTPUTS['image']}\n"
            "  llmcloud:model:\n    name: m\n"
            f"    version: {version}\n    history: {json.dumps(history)}\n")
        opener = FakeStack.opener(stack_outputs=outputs, last=DEPLOYED)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    return serving


@pytest.mark.parametrize("command", ["update", "up"])
def test_an_update_from_a_stale_file_keeps_the_deployed_version(aws_stack, cli,
                                                               command) -> None:
    opener = aws_stack(SERVED_V2, "v1", ["v0"])
    image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "b" * 64
    result = cli(command, "--stack", "prod", "--image", image, "--json")
    assert result.exit_code == 0, result.output
    config = opener.opened[0].config
    assert config["llmcloud:model.version"] == "v2"
    assert json.loads(config["llmcloud:model.history"]) == ["v0", "v1"]
    assert config["llmcloud:image"] == image
    assert [name for name, _ in opener.opened[0].calls][-1] == "up"
    said = result.stderr
    assert "names model version v1" in said and "the stack serves v2" in said
    assert "commit it" in said
    assert "llmcloud promote --model-version v1 --stack prod" in said


def test_an_update_from_a_file_rolled_back_elsewhere_keeps_the_deployed_version(
        aws_stack, cli) -> None:
    opener = aws_stack({**OUTPUTS, "model_version": "v1", "model_history": ["v0"]},
                       "v2", ["v0", "v1"])
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert opener.opened[0].config["llmcloud:model.version"] == "v1"
    assert json.loads(opener.opened[0].config["llmcloud:model.history"]) == ["v0"]


@pytest.mark.parametrize(("file", "flags", "env"), [
    # a version edited into the file for `up` to roll it out (the documented flow)
    (("v3", ["v0", "v1"]), (), {}),
    # the file is behind, but the version is given on the command line or in the environment
    (("v1", ["v0"]), ("--model-version", "v1"), {}),  # (`up` takes it, not `update`)
    (("v1", ["v0"]), (), {"LLMCLOUD_MODEL__VERSION": "v1"}),
], ids=["edited", "flag", "environment"])
def test_an_update_deploys_a_version_the_user_chose(aws_stack, cli, monkeypatch, file, flags,
                                                    env) -> None:
    # the same stack as above (the file behind it) catches up, so this is not a fake pass
    caught_up = aws_stack(SERVED_V2, "v1", ["v0"])
    assert cli("update", "--stack", "prod", "--json").exit_code == 0
    assert caught_up.opened[0].config["llmcloud:model.version"] == "v2"

    opener = aws_stack(SERVED_V2, *file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("up" if flags else "update", "--stack", "prod", *flags, "--json")
    assert result.exit_code == 0, result.output
    config = opener.opened[0].config
    assert config.get("llmcloud:model.version") == (file[0] if flags else None)
    assert "llmcloud:model.history" not in config
    assert "warning" not in result.stderr


def test_a_stack_deployed_without_the_history_output_deploys_the_file_and_says_so(
        aws_stack, cli) -> None:
    # deployed by an llmcloud that exported no model_history: behind or edited cannot be
    # told apart, so the file's version is deployed as before, with a warning
    opener = aws_stack({**OUTPUTS, "model_version": "v2"}, "v1", ["v0"])
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert "llmcloud:model.version" not in opener.opened[0].config
    assert "stack 'prod' serves model version v2, Pulumi.prod.yaml names v1" in result.stderr
    assert "llmcloud promote --model-version v2 --stack prod" in result.stderr


# -- the CI examples, release after release ------------------------------------------------


def _production_calls(example: str) -> list[list[str]]:
    """The `update` and `promote` of the example's production job, in order."""
    import yaml

    from tests.pipeline.test_ci_examples import EXAMPLES, _llmcloud_calls, _scripts

    document = yaml.safe_load((EXAMPLES / example).read_text())
    job = document["jobs"]["production"] if "jobs" in document else document["production"]
    calls = [call for script in _scripts(job) for call in _llmcloud_calls(script)]
    return [call for call in calls if call[0] in ("update", "promote")]


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_each_release_from_a_fresh_checkout_starts_where_the_last_one_left(
        aws_stack, cli, monkeypatch, example) -> None:
    # every job checks out the committed stack file, which names v1 for ever: the release
    # of v3 rolled the servers back to v1 with its `update`, and promote recorded v1 (not
    # v2) as the version before v3
    # (the alarms `update` exports, which the production promote's --bake reads)
    cloud = {**OUTPUTS, "model_version": "v1", "model_history": [],
             "alert_names": ["llm-prod-monitoring-5xx-rate-1a2b3c4"]}

    class Deployed(FakeStack):
        """Deploys what the stack file names under what llmcloud set in the config."""

        def up(self, **kwargs):
            version = self.config.get("llmcloud:model.version", "v1")
            history = json.loads(self.config.get("llmcloud:model.history", "[]"))
            cloud.update(model_version=version, model_history=history)
            return super().up(**kwargs)

    monkeypatch.setattr(AwsProvider, "wait_for_rollout", lambda *args: False)
    # the bake reads no alarm firing, on a clock that does not wait
    monkeypatch.setattr(AwsProvider, "firing_alerts", lambda self, ctx, outputs: {})
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(bake_module, "bake", functools.partial(
        bake_module.bake, clock=lambda: clock.now,
        sleep=lambda seconds: setattr(clock, "now", clock.now + seconds)))
    calls = _production_calls(example)
    assert [call[0] for call in calls] == ["update", "promote"]
    for release in ("v2", "v3"):
        aws_stack(cloud, "v1", [])  # a fresh checkout of the committed file
        monkeypatch.setattr(AwsProvider, "stack_opener", Deployed.opener(stack_outputs=cloud,
                                                                     last=DEPLOYED))
        for call in calls:
            args = [release if word == "$MODEL_VERSION" else
                    "r@sha256:" + "c" * 64 if word.startswith("$") else word for word in call]
            result = cli(*args)
            assert result.exit_code == 0, result.output
            if call[0] == "update":
                assert cloud["model_version"] == ("v1" if release == "v2" else "v2")
        document = json.loads(result.stdout)
        assert (document["previous_version"], document["model_version"]) == (
            "v1" if release == "v2" else "v2", release)
        assert document["baked_seconds"] == 600  # the examples bake production's promote
    assert (cloud["model_version"], cloud["model_history"]) == ("v3", ["v1", "v2"])
