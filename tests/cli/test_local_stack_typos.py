"""Without `--provider`, a stack that is neither a stack file nor a local stack fell to the
local provider: `model upload --stack typo` made `~/.llmcloud/stacks/typo` and uploaded into
it. The commands that act on an existing stack now refuse it (2), naming what is there;
`up` still creates a local stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.local.provider import LocalProvider


@pytest.fixture
def stacks(project: Path) -> Path:
    """A project with the stack file of an AWS stack `prod`, and a local stack `dev`."""
    (project / "Pulumi.prod.yaml").write_text("config:\n  llmcloud:provider: aws\n")
    local = Path.home() / ".llmcloud" / "stacks"
    (local / "dev").mkdir(parents=True)
    (local / "dev" / "state.json").write_text("{}")
    return local


@pytest.mark.parametrize("args", [
    ["model", "upload", "MODEL", "--version", "v1"],
    ["promote", "--model-version", "v2", "--yes"],
    ["rollback", "--yes"],
    ["keys", "list"],
    ["keys", "revoke", "key_1"],
], ids=["model-upload", "promote", "rollback", "keys-list", "keys-revoke"])
def test_a_stack_that_is_nowhere_is_refused(cli, project, stacks, model, args) -> None:
    args = [str(model) if a == "MODEL" else a for a in args]
    result = cli(*args, "--stack", "prdo", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == (f"stack 'prdo' does not exist: there is no Pulumi.prdo.yaml "
                                 f"in {project} and no local stack of that name")
    assert "stack files here: Pulumi.prod.yaml" in document["context"]
    assert f"local stacks (in {stacks}): dev" in document["context"]
    assert "--provider" in document["hint"] and "llmcloud up --stack prdo" in document["hint"]
    assert not (stacks / "prdo").exists()  # nothing made for the typo


def test_an_existing_local_stack_still_takes_an_upload(cli, stacks, model) -> None:
    result = cli("model", "upload", str(model), "--name", "m", "--version", "v1",
                 "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    assert (stacks / "dev" / "models" / "m" / "v1" / "manifest.json").is_file()


def test_up_still_creates_a_local_stack(cli, stacks, monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(LocalProvider, "up", lambda self, ctx: seen.append(ctx.stack) or {})
    result = cli("up", "--stack", "fresh", "--json")
    assert result.exit_code == 0, result.output
    assert seen == ["fresh"]
