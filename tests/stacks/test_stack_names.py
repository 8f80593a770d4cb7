"""Two stacks must not share their cloud resource names: `llm-<stack>-...` keeps only
lowercase letters, digits and single dashes of the stack name, so `a.b` and `a-b` (or `Dev`
and `dev`) named the same resources, and the second stack's first `up` failed half-way on
names the first one holds. A new stack with such a name is refused before the engine runs;
a stack deployed before keeps working (renaming its resources would replace them)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.naming import base_name, names_its_own
from tests.stacks.fakes import FakeStack, fake_aws_project


@pytest.fixture
def engine(monkeypatch, tmp_path: Path):
    """AWS with a recording fake engine; credentials present; returns a setter for the
    fake stack's attributes."""
    fake_aws_project(monkeypatch, tmp_path)

    def with_stack(**attrs):
        opener = FakeStack.opener(**attrs)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    return with_stack


@pytest.mark.parametrize("name", ["a.b", "a_b", "A-b", "a--b", "-ab", "Prod"])
def test_names_that_share_a_prefix_are_told_apart(name: str) -> None:
    assert not names_its_own(name)
    assert base_name(name) in {"llm-a-b", "llm-ab", "llm-prod"}


@pytest.mark.parametrize("name", ["dev", "a-b", "prod-eu-1", "x"])
def test_plain_names_are_their_own(name: str) -> None:
    assert names_its_own(name) and base_name(name) == f"llm-{name}"


@pytest.mark.parametrize("command", ["up", "update"])
def test_a_new_stack_whose_names_are_another_stacks_is_refused(engine, cli, command):
    opener = engine()
    result = cli(command, "--provider", "aws", "--stack", "a.b", "--yes", "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert "llm-a-b-" in error["error"] and "'a-b'" in error["error"]
    assert "--stack a-b" in error["hint"]
    assert [name for name, _ in opener.opened[0].calls] == []  # nothing ran or was recorded


def test_a_new_plain_name_whose_twin_exists_in_the_project_is_refused(engine, cli):
    opener = engine(other_stacks=["myorg/a.b", "prod"])
    result = cli("up", "--provider", "aws", "--stack", "a-b", "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert "as stack 'a.b' of this project does" in error["error"]
    assert error["hint"].endswith("pulumi stack rm a.b")
    assert opener.opened[0].calls == []


def test_a_deployed_stack_with_such_a_name_keeps_working(engine, cli):
    deployed = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                               resource_changes={"create": 3})
    opener = engine(last=deployed, other_stacks=["a-b"])
    Path("Pulumi.a.b.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    result = cli("up", "--provider", "aws", "--stack", "a.b", "--json")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in opener.opened[0].calls] == ["set_all_config", "up"]


def test_a_new_stack_with_a_plain_name_goes_ahead(engine, cli):
    opener = engine(other_stacks=["staging", "a-c"])
    result = cli("up", "--provider", "aws", "--stack", "a-b", "--json")
    assert result.exit_code == 0, result.output
    assert [name for name, _ in opener.opened[0].calls] == ["set_all_config", "up"]


def test_a_stack_destroyed_whole_is_new_again(engine, cli):
    # the Pulumi stack stays after a destroy: its next up creates everything, so the names
    # are checked as a new stack's, and status shows no version served
    destroyed = SimpleNamespace(kind="destroy", result="succeeded", end_time=None,
                                resource_changes={"delete": 40})
    engine(last=destroyed, other_stacks=["myorg/a.b"])
    result = cli("up", "--provider", "aws", "--stack", "a-b", "--json")
    assert result.exit_code == 2, result.output
    assert "as stack 'a.b' of this project does" in json.loads(result.stdout)["error"]
    Path("Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: aws\n"
                                        "  llmcloud:model: {name: m, version: v9}\n")
    status = cli("status", "--provider", "aws", "--stack", "prod", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["model_version"] is None
