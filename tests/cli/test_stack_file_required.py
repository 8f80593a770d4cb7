"""A deployed cloud stack is changed only from the folder of its stack file.

From another folder (or with a typo in --stack naming another deployed stack), the spec is
the provider's defaults: `up` and `update` deployed them over every setting the stack runs
with, `promote` and `rollback` did too with the new version, and `keys` opened (created) a
stack of that name in the backend."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from tests.stacks.fakes import FakeStack

DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "model_version": "v2", "model_history": ["v1"],
           "image": "r/llm@sha256:" + "a" * 64}


@pytest.fixture
def deployed(monkeypatch, project: Path):
    """AWS credentials and a fake engine whose stack `prod` is deployed; the project folder
    holds no Pulumi.prod.yaml."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setattr(AwsProvider, "before_up", lambda self, ctx: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    opener = FakeStack.opener(stack_outputs=OUTPUTS, last=DEPLOYED)
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    return opener


def _refused(result, project: Path) -> dict:
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == f"there is no Pulumi.prod.yaml in {project}"
    assert "check --stack" in document["hint"]
    return document


@pytest.mark.parametrize("command", ["up", "update"])
def test_a_deployed_stack_is_not_converged_to_the_defaults(deployed, cli, project,
                                                           command) -> None:
    result = cli(command, "--provider", "aws", "--stack", "prod", "--json")
    document = _refused(result, project)
    assert "would deploy the provider's defaults" in document["context"]
    assert [name for stack in deployed.opened for name, _ in stack.calls] == []


@pytest.mark.parametrize("args", [
    ["promote", "--model-version", "v3"], ["rollback"],
    ["keys", "create", "--name", "ci"], ["keys", "list"], ["keys", "revoke", "k-1"],
], ids=["promote", "rollback", "keys-create", "keys-list", "keys-revoke"])
def test_stack_commands_need_the_stack_file_here(deployed, cli, project, args) -> None:
    _refused(cli(*args, "--provider", "aws", "--stack", "prod", "--json"), project)
    assert deployed.opened == []  # no stack of that name was opened, or created


def test_a_new_stack_is_still_made_by_up_without_a_stack_file(cli, project, monkeypatch,
                                                              deployed) -> None:
    opener = FakeStack.opener()  # never updated
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    result = cli("up", "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in opener.opened[0].calls] == ["set_all_config", "up"]


def test_a_deployed_stack_converges_from_its_stack_file(deployed, cli, project) -> None:
    (project / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: aws\n  llmcloud:image: {OUTPUTS['image']}\n"
        "  llmcloud:model:\n    name: m\n    version: v2\n    history: [v1]\n")
    result = cli("update", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in deployed.opened[0].calls][-1] == "up"
