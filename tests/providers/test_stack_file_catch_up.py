"""A stack file left behind the deployed stack, seen by `preview` and for the image.

`preview` ran with the stale file's model version, so it showed a roll back to it where
`up` keeps the deployed one. And the image had no catch-up at all: a fresh checkout's bare
`up` (or `update`, `promote`) deployed the committed file's older image, or, with no image
in the file, declared only the registry and the store (taking the servers down)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.stacks.plain_pulumi import MARKER
from tests.stacks.fakes import FakeStack

IMAGE_A = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "a" * 64
IMAGE_B = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "b" * 64
IMAGE_C = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "c" * 64
DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
#: promoted v1 -> v2 and rolled image A -> B from another checkout
SERVING = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "model_version": "v2", "model_history": ["v0", "v1"], "image": IMAGE_B}


def _update(image: str | None, result: str = "succeeded", kind: str = "update"):
    """One entry of `pulumi stack history`: the update's config named `image`."""
    config = {"llmcloud:image": SimpleNamespace(value=image, secret=False)} if image else {}
    return SimpleNamespace(kind=kind, result=result, config=config, end_time=None,
                           resource_changes={})


class HistoryStack(FakeStack):
    """A fake stack with a `pulumi stack history` (newest first)."""

    updates: list = []

    def history(self, page_size=None, page=None, show_secrets=True):
        self.calls.append(("history", {"page_size": page_size}))
        return list(self.updates)[:page_size]


@pytest.fixture
def stack(monkeypatch, tmp_path: Path):
    """AWS with a fake engine whose stack serves `outputs` after `updates`, in a project
    whose `Pulumi.prod.yaml` names `version`, `history` and `image`."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setattr(AwsProvider, "before_up", lambda self, ctx: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    monkeypatch.chdir(tmp_path)

    def serving(*, version="v2", history=("v0", "v1"), image=IMAGE_B, outputs=None,
                updates=()):
        image_line = f"  llmcloud:image: {image}\n" if image else ""
        (tmp_path / "Pulumi.prod.yaml").write_text(
            f"config:\n  llmcloud:provider: aws\n{image_line}  llmcloud:model:\n    name: m\n"
            f"    version: {version}\n    history: {json.dumps(list(history))}\n")
        # the newest update, from another machine, deployed B
        monkeypatch.setattr(HistoryStack, "updates", [_update(IMAGE_B), *updates])
        outputs = SERVING if outputs is None else outputs
        opener = HistoryStack.opener(stack_outputs=dict(outputs), last=DEPLOYED)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    serving.file = tmp_path / "Pulumi.prod.yaml"
    return serving


def _written(opener) -> list:
    return [stack.config for stack in opener.opened if stack.config]


# -- preview shows what up would do ------------------------------------------------------


def test_a_preview_from_a_stale_file_shows_the_deployed_version_and_writes_nothing(
        stack, cli) -> None:
    opener = stack(version="v1", history=["v0"])
    before = stack.file.read_text()
    result = cli("preview", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    previewed = opener.opened[-1]
    assert [name for name, _ in previewed.calls] == ["preview"]
    assert previewed.env["LLMCLOUD_MODEL__VERSION"] == "v2"
    assert json.loads(previewed.env["LLMCLOUD_MODEL__HISTORY"]) == ["v0", "v1"]
    assert _written(opener) == [] and stack.file.read_text() == before
    said = result.stderr
    assert "Pulumi.prod.yaml is behind stack 'prod'" in said
    assert "names model version v1" in said and "This preview keeps v2" in said
    assert "llmcloud promote --model-version v1 --stack prod" in said
    assert json.loads(result.stdout)["operation"] == "preview"


@pytest.mark.parametrize(("file", "flags", "shown"), [
    (("v3", ["v0", "v1"]), (), None),  # edited in for `up` to roll out
    (("v1", ["v0"]), ("--model-version", "v1"), "v1"),  # the user's word
], ids=["edited", "flag"])
def test_a_preview_shows_a_version_the_user_chose(stack, cli, file, flags, shown) -> None:
    opener = stack(version=file[0], history=file[1])
    result = cli("preview", "--stack", "prod", *flags, "--json")
    assert result.exit_code == 0, result.output
    assert opener.opened[-1].env.get("LLMCLOUD_MODEL__VERSION") == shown
    assert "LLMCLOUD_MODEL__HISTORY" not in opener.opened[-1].env
    assert "warning" not in result.stderr


def test_a_preview_of_a_stale_image_shows_the_deployed_one(stack, cli) -> None:
    opener = stack(image=IMAGE_A, updates=[_update(IMAGE_A)])
    result = cli("preview", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert opener.opened[-1].env["LLMCLOUD_IMAGE"] == IMAGE_B
    assert _written(opener) == []
    assert f"This preview keeps image {IMAGE_B}" in result.stderr


def test_a_preview_of_a_new_stack_previews_the_file(stack, cli) -> None:
    opener = stack(version="v1", history=[], image=None, outputs={})
    result = cli("preview", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert len(opener.opened) == 1
    # the file as it is: no spec variable over it, only the mark of llmcloud's own runs
    assert {name for name in opener.opened[0].env if name.startswith("LLMCLOUD_")} == {MARKER}
    assert "warning" not in result.stderr


# -- the image ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["update", "up"])
def test_an_update_from_a_file_with_an_image_deployed_before_keeps_the_deployed_one(
        stack, cli, command) -> None:
    # A was deployed (its update named it), then B from another machine, uncommitted
    opener = stack(image=IMAGE_A, updates=[_update(IMAGE_A)])
    result = cli(command, "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    engine = opener.opened[0]
    assert engine.config["llmcloud:image"] == IMAGE_B
    assert [name for name, _ in engine.calls][-1] == "up"
    said = result.stderr
    assert f"it names image {IMAGE_A}, the stack runs {IMAGE_B}" in said
    assert "commit it" in said
    assert f"llmcloud up --image {IMAGE_A} --stack prod" in said


def test_an_update_from_a_file_with_no_image_keeps_the_servers(stack, cli) -> None:
    # without an image, the update would declare only the registry and the model store
    opener = stack(image=None)
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert opener.opened[0].config["llmcloud:image"] == IMAGE_B
    assert "it names no image" in result.stderr
    assert "history" not in [name for name, _ in opener.opened[0].calls]


@pytest.mark.parametrize(("updates", "flags", "env", "deployed"), [
    # an image no update ever named: edited in by hand, for `up` to roll out
    ([], (), {}, None),
    # one whose update failed (the servers never took it over): tried again
    ([_update(IMAGE_A, result="failed")], (), {}, None),
    # the user's word on the command line or in the environment
    ([_update(IMAGE_A)], ("--image", IMAGE_A), {}, IMAGE_A),
    ([_update(IMAGE_A)], (), {"LLMCLOUD_IMAGE": IMAGE_A}, None),
], ids=["edited", "failed-before", "flag", "environment"])
def test_an_update_deploys_an_image_the_user_chose(stack, cli, monkeypatch, updates, flags,
                                                   env, deployed) -> None:
    opener = stack(image=IMAGE_A, updates=updates)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = cli("update", "--stack", "prod", *flags, "--json")
    assert result.exit_code == 0, result.output
    assert opener.opened[0].config.get("llmcloud:image") == deployed
    assert "warning" not in result.stderr


def test_the_deployed_image_is_kept_when_the_file_names_it(stack, cli) -> None:
    opener = stack(image=IMAGE_B, updates=[_update(IMAGE_A)])
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert "llmcloud:image" not in opener.opened[0].config
    assert "history" not in [name for name, _ in opener.opened[0].calls]
    assert "warning" not in result.stderr


def test_a_promote_from_a_file_with_a_stale_image_keeps_the_deployed_one(
        stack, cli, monkeypatch) -> None:
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)
    monkeypatch.setattr(AwsProvider, "wait_for_rollout", lambda *args: False)
    opener = stack(image=IMAGE_A, updates=[_update(IMAGE_C), _update(IMAGE_A)])
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    config = opener.opened[0].config
    assert config["llmcloud:image"] == IMAGE_B
    assert config["llmcloud:model.version"] == "v3"
    assert f"the stack runs {IMAGE_B}" in result.stderr
