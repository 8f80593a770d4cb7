"""A command refused because another operation holds the stack exits 75 (sysexits.h's
EX_TEMPFAIL, "temp failure; user is invited to retry"), not 1 like a failed rollout: a CI
job can tell "run it again later, nothing changed" from "your rollout failed". Each lock
that refuses: llmcloud's own on the stack file, Pulumi's on the stack (an `up`, a
promote), the local provider's on its stack."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from pulumi import automation as auto

from llmcloud.providers import rollout
from llmcloud.providers.aws.provider import AwsProvider
from tests.stacks.fakes import FakeStack, fake_aws_project

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/r@sha256:" + "b" * 64
DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "model_version": "v2", "model_history": ["v1"], "image": IMAGE}


def _pulumi_locked() -> Exception:
    return auto.ConcurrentUpdateError(auto.CommandResult(
        stdout="", stderr="error: [409] Conflict: Another update is currently in progress.",
        code=255))


def _ups(opener) -> int:
    return sum(name == "up" for stack in opener.opened for name, _ in stack.calls)


@pytest.fixture
def aws_stack(monkeypatch, tmp_path: Path):
    """An AWS stack `prod` serving v2 (its stack file says so), its engine a fake built
    with `attrs`; the fake engine's opener."""
    project = fake_aws_project(monkeypatch, tmp_path)
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)
    monkeypatch.setattr(AwsProvider, "wait_for_rollout", lambda *args: False)
    (project / "Pulumi.prod.yaml").write_text(
        f"config:\n  llmcloud:provider: aws\n  llmcloud:image: {IMAGE}\n"
        "  llmcloud:model:\n    name: m\n    version: v2\n    history: [\"v1\"]\n")

    def serving(**attrs):
        opener = FakeStack.opener(stack_outputs=dict(OUTPUTS), last=DEPLOYED, **attrs)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    serving.project = project
    return serving


def test_an_up_refused_by_llmclouds_lock_on_the_stack_file_exits_75(aws_stack, cli,
                                                                     tmp_path) -> None:
    from llmcloud.stacks import stack_file_lock

    opener = aws_stack()
    with stack_file_lock.hold(aws_stack.project, "prod", "promote",
                              {"LLMCLOUD_HOME": str(tmp_path / "home")}):
        result = cli("up", "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 75, result.output
    assert _ups(opener) == 0
    document = json.loads(result.stdout)
    assert document["exit_code"] == 75
    assert document["error"].startswith(
        "another llmcloud operation is running on stack 'prod' from this folder: promote")


@pytest.mark.parametrize("command", ["up", "refresh", "destroy"])
def test_a_command_pulumi_refuses_for_another_update_exits_75(aws_stack, cli,
                                                             command) -> None:
    aws_stack(fail_with=_pulumi_locked())
    yes = ["--yes"] if command == "destroy" else []
    result = cli(command, "--provider", "aws", "--stack", "prod", *yes, "--json")
    assert result.exit_code == 75, result.output
    document = json.loads(result.stdout)
    assert (document["error"], document["exit_code"]) == (
        "another update of stack 'prod' is in progress", 75)
    assert document["hint"] == "wait for it, or if it died: pulumi cancel --stack prod --yes"


class _WritingStack(FakeStack):
    """Writes its config into the stack file, as Pulumi's `set_all_config` does."""

    def set_all_config(self, config, path: bool = False) -> None:
        super().set_all_config(config, path)
        stack_file = self.project_dir / f"Pulumi.{self.name}.yaml"
        stack_file.write_text(stack_file.read_text() + "".join(
            f"  {key}: {value.value}\n" for key, value in config.items()))


@pytest.mark.parametrize("command", ["up", "update"])
def test_an_up_pulumi_refuses_leaves_the_stack_file_as_it_was(aws_stack, cli, monkeypatch,
                                                              command) -> None:
    opener = _WritingStack.opener(stack_outputs=dict(OUTPUTS), last=DEPLOYED,
                                  fail_with=_pulumi_locked())
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    stack_file = aws_stack.project / "Pulumi.prod.yaml"
    before = stack_file.read_bytes()
    provider = ["--provider", "aws"] if command == "up" else []
    result = cli(command, *provider, "--stack", "prod", "--max-replicas", "7", "--json")
    assert result.exit_code == 75, result.output
    stack, = opener.opened
    assert "llmcloud:compute.max_replicas" in stack.config  # the flag was written, then
    assert stack_file.read_bytes() == before  # put back: a 75 changed nothing


def test_a_promote_pulumi_refuses_exits_75_and_changes_nothing(aws_stack, cli) -> None:
    opener = aws_stack(fail_with=_pulumi_locked())
    result = cli("promote", "--model-version", "v3", "--stack", "prod", "--json")
    assert result.exit_code == 75, result.output
    assert json.loads(result.stdout)["exit_code"] == 75
    assert _ups(opener) == 1  # the one Pulumi refused; no restore was rolled out
    # the stack's config names what it served before, as it did
    stack, = opener.opened
    assert stack.config == {"llmcloud:model.version": "v2",
                            "llmcloud:model.history": '["v1"]'}


def test_a_local_command_refused_by_the_stacks_lock_exits_75(monkeypatch, tmp_path,
                                                            cli) -> None:
    from llmcloud.providers.local.state import StateFile, stack_dir

    environ = {"LLMCLOUD_HOME": str(tmp_path / "home")}
    monkeypatch.setenv("LLMCLOUD_HOME", environ["LLMCLOUD_HOME"])
    monkeypatch.chdir(tmp_path)
    state_file = StateFile(stack_dir(environ, "dev"))
    with state_file.operation("dev"):
        result = cli("destroy", "--provider", "local", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 75, result.output
    assert json.loads(result.stdout)["error"] == \
        "another llmcloud command is changing stack 'dev' right now"
    assert state_file.folder.is_dir()  # nothing destroyed


SALT = "encryptionsalt: v1:8h4bQyXz1Qo=:v1:abcdEFGH:ijklMNOPqrstUVWXyz==\n"


class _CreatingStack(_WritingStack):
    """Creates the stack as `pulumi stack init` does with the passphrase provider: its salt
    at the top of the stack file (made when there is none), before the config."""

    def set_all_config(self, config, path: bool = False) -> None:
        stack_file = self.project_dir / f"Pulumi.{self.name}.yaml"
        if not stack_file.exists():
            stack_file.write_text("config:\n")
        if "encryptionsalt" not in stack_file.read_text():
            stack_file.write_text(SALT + stack_file.read_text())
        super().set_all_config(config, path)


@pytest.mark.parametrize("had_a_file", [True, False])
def test_a_first_up_pulumi_refuses_keeps_the_secrets_key_pulumi_wrote(
        aws_stack, cli, monkeypatch, had_a_file) -> None:
    # the stack was created in the backend, and its secrets are under that salt from now on
    opener = _CreatingStack.opener(last=None, fail_with=_pulumi_locked())
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    stack_file = aws_stack.project / "Pulumi.prod.yaml"
    stack_file.write_text("config:\n  llmcloud:provider: aws\n  llmcloud:model:\n"
                          "    name: m\n")
    if had_a_file:
        stack_file.chmod(0o600)
    else:
        stack_file.unlink()
    before = stack_file.read_text() if had_a_file else ""
    result = cli("up", "--provider", "aws", "--stack", "prod", "--max-replicas", "7",
                 "--json")
    assert result.exit_code == 75, result.output
    assert stack_file.read_text() == SALT + before  # the flag gone, the salt kept
    if had_a_file:
        assert stack_file.stat().st_mode & 0o777 == 0o600
    # and the same up, run again, goes on from that file
    monkeypatch.setattr(AwsProvider, "stack_opener", _CreatingStack.opener(last=None))
    result = cli("up", "--provider", "aws", "--stack", "prod", "--max-replicas", "7",
                 "--json")
    assert result.exit_code == 0, result.output
    assert stack_file.read_text().startswith(SALT)
