"""`llmcloud init` writes a commented stack file that resolves to the provider's defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec


@pytest.mark.parametrize("provider", ["local", "aws", "gcp", "azure"])
def test_init_writes_every_key_with_comments(project: Path, cli, provider: str) -> None:
    result = cli("init", "--provider", provider, "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == ["Pulumi.prod.yaml"]
    text = (project / "Pulumi.prod.yaml").read_text()
    assert f'llmcloud:provider: "{provider}"' in text
    comments = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert len(comments) > 30
    spec = resolve_spec(file_values=read_stack_config(project / "Pulumi.prod.yaml"),
                        environ={}, defaults_for=provider_defaults)
    assert spec == resolve_spec(file_values={"provider": provider}, environ={},
                                defaults_for=provider_defaults)


def test_init_refuses_to_overwrite(project: Path, cli) -> None:
    (project / "Pulumi.dev.yaml").write_text("config: {}\n")
    result = cli("init", "--provider", "aws")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: Pulumi.dev.yaml exists already"
    assert result.stderr.splitlines()[-1] == (
        "hint: edit it, or start over with: llmcloud init --provider aws --stack dev --force")
    assert (project / "Pulumi.dev.yaml").read_text() == "config: {}\n"
    assert cli("init", "--provider", "aws", "--force").exit_code == 0
    assert "llmcloud:compute" in (project / "Pulumi.dev.yaml").read_text()


def test_init_outside_a_project_writes_a_runnable_project(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "my service"
    folder.mkdir()
    monkeypatch.chdir(folder)
    result = cli("init", "--provider", "gcp")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "Pulumi.dev.yaml", "Pulumi.yaml", "__main__.py"]
    assert "name: my-service" in (folder / "Pulumi.yaml").read_text()
    assert "main: __main__.py" in (folder / "Pulumi.yaml").read_text()
    source = (folder / "__main__.py").read_text()
    compile(source, "__main__.py", "exec")
    assert "from llmcloud.stacks.program import main" in source


def test_init_rejects_unknown_provider(project: Path, cli) -> None:
    result = cli("init", "--provider", "oracle")
    assert result.exit_code == 2
    assert not (project / "Pulumi.dev.yaml").exists()


@pytest.mark.parametrize("name", ["a b", "../prod", "", "x" * 101, "."])
def test_a_stack_name_pulumi_would_refuse_is_refused(project: Path, cli, name: str) -> None:
    before = sorted(path.name for path in project.iterdir())
    result = cli("init", "--provider", "aws", "--stack", name)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"error: {name!r} is not a stack name"
    assert sorted(path.name for path in project.iterdir()) == before  # nothing written
    assert cli("plan", "--provider", "aws", "--stack", name).exit_code == 2


def test_the_model_name_init_derives_follows_a_later_source(project: Path, cli) -> None:
    """The store's model name comes from the source unless chosen: init leaves it unset,
    so `--model` (or a new `model.source`) names the model in the store too."""
    assert cli("init", "--provider", "aws", "--stack", "prod").exit_code == 0
    text = (project / "Pulumi.prod.yaml").read_text()
    assert "    # name:\n" in text
    file_values = read_stack_config(project / "Pulumi.prod.yaml")
    spec = resolve_spec(file_values=file_values, environ={}, defaults_for=provider_defaults,
                        flags={"model.source": "./models/Llama-3-8B"})
    assert spec.model.name == "llama-3-8b"
