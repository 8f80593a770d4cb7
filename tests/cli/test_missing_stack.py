"""Only `up`, `update` and `preview` create a cloud stack; every other command selects it.

Every command opened its stack with the Automation API's `create_or_select_stack`, so a
typo in --stack (`image push`, `model upload`), or a stack file whose stack is not in this
backend (`pulumi stack rm`, a fresh backend, a file copied from elsewhere), silently made
an empty stack of that name in the user's Pulumi backend, and then said "has no registry
yet: run llmcloud up", or destroyed nothing and exited 0."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers import image_builder as ib
from llmcloud.providers.aws.provider import AwsProvider
from tests.stacks.fakes import FakeStack

DEPLOYED = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "registry_url": "1.dkr.ecr.us-east-1.amazonaws.com/llm-prod",
           "model_version": "v2", "model_history": ["v1"], "api_key_id": "k"}


@pytest.fixture
def aws(monkeypatch, project: Path):
    """AWS with credentials and a fake engine (`aws(exists=...)` replaces it); the project
    holds `Pulumi.prod.yaml`."""
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setattr(AwsProvider, "before_up", lambda self, ctx: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    (project / "Pulumi.prod.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:model:\n    name: m\n"
        "    version: v2\n    history: [v1]\n")

    def with_engine(**attrs):
        opener = FakeStack.opener(**attrs)
        monkeypatch.setattr(AwsProvider, "stack_opener", opener)
        return opener

    return with_engine


def _missing(result, stack: str) -> dict:
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == f"stack '{stack}' does not exist in this project's Pulumi backend"
    assert f"llmcloud up --provider aws --stack {stack} creates it" in document["hint"]
    assert "pulumi stack ls" in document["hint"]
    return document


@pytest.mark.parametrize("args", [
    ["outputs"], ["status"], ["refresh"], ["destroy", "--yes"],
    ["promote", "--model-version", "v3", "--yes"], ["rollback", "--yes"], ["keys", "list"],
], ids=lambda args: args[0])
def test_commands_on_a_deployed_stack_do_not_create_a_missing_one(aws, cli, args) -> None:
    engine = aws(exists=False, stack_outputs=OUTPUTS)
    _missing(cli(*args, "--provider", "aws", "--stack", "prod", "--json"), "prod")
    assert engine.asked == [("prod", False)]
    assert engine.created == [] and engine.opened == []


@pytest.mark.parametrize("args", [["outputs"], ["destroy", "--yes"]], ids=lambda a: a[0])
def test_commands_on_a_deployed_stack_still_select_it(aws, cli, args) -> None:
    engine = aws(stack_outputs=OUTPUTS, last=DEPLOYED)
    result = cli(*args, "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert engine.asked == [("prod", False)]


@pytest.mark.parametrize("command", ["up", "update", "preview"])
def test_up_update_and_preview_create_a_new_stack(aws, cli, command) -> None:
    engine = aws(exists=False)
    result = cli(command, "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert engine.created == ["prod"]
    assert {create for _, create in engine.asked} == {True}


def test_the_backend_is_named_without_its_password(aws, cli, monkeypatch) -> None:
    aws(exists=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "postgres://ops:hunter2@db.example/pulumi")
    document = _missing(cli("outputs", "--provider", "aws", "--stack", "prod", "--json"),
                        "prod")
    assert "postgres://db.example/pulumi (PULUMI_BACKEND_URL)" in document["context"]
    assert "hunter2" not in json.dumps(document)


@pytest.fixture
def builder(monkeypatch) -> list:
    """A container builder that records what it was asked to tag or push."""
    asked: list = []
    monkeypatch.setattr(ib, "detect_builder", lambda name=None: ib.Builder("docker", "docker"))
    monkeypatch.setattr(ib, "tag_image", lambda *a, **k: asked.append(("tag", a)))
    monkeypatch.setattr(ib, "push_image", lambda *a, **k: asked.append(("push", a)) or "sha256:1")
    return asked


def test_image_push_to_a_typo_creates_no_stack(aws, cli, builder) -> None:
    engine = aws(exists=False, stack_outputs=OUTPUTS)
    document = _missing(cli("image", "push", "--provider", "aws", "--stack", "prdo", "--json"),
                        "prdo")
    assert "--registry" in document["hint"]  # the way to push without a stack
    assert engine.asked == [("prdo", False)] and engine.created == []
    assert builder == []


def test_image_push_still_reads_a_deployed_stacks_registry(aws, cli, builder,
                                                           monkeypatch) -> None:
    engine = aws(stack_outputs=OUTPUTS, last=DEPLOYED)
    monkeypatch.setattr(AwsProvider, "registry_login", lambda self, ctx, registry: ("u", "p"))
    result = cli("image", "push", "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["image"].startswith(OUTPUTS["registry_url"] + "/")
    assert engine.asked == [("prod", False)]


def test_model_upload_to_a_typo_creates_no_stack(aws, cli, monkeypatch, tmp_path) -> None:
    from llmcloud.providers import model_upload

    uploads = []
    monkeypatch.setattr(model_upload, "upload_model", lambda *a, **k: uploads.append(a))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    engine = aws(exists=False, stack_outputs=OUTPUTS)
    document = _missing(cli("model", "upload", str(model), "--version", "v3", "--provider",
                            "aws", "--stack", "prdo", "--json"), "prdo")
    assert "--to URI" in document["hint"]
    assert engine.asked == [("prdo", False)] and engine.created == []
    assert uploads == []
