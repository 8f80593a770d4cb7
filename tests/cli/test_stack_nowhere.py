"""`--stack` naming a stack that is nowhere: no stack file, no local stack, no --provider.

Without --provider such a stack fell to the local provider: `status` answered "not
running" and exited 0, as if a typo in --stack named a stack that was merely stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def home(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "llmcloud-home"
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    return home


@pytest.mark.parametrize("command", ["status", "outputs", "refresh"])
def test_a_command_on_a_stack_that_is_nowhere_is_refused(command: str, home: Path,
                                                         cli) -> None:
    result = cli(command, "--stack", "typo", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"].startswith("stack 'typo' does not exist")
    assert "--provider" in document["hint"]
    assert not (home / "stacks" / "typo").exists()


def test_destroy_of_a_stack_that_is_nowhere_still_does_nothing_and_exits_0(
        home: Path, cli) -> None:
    result = cli("destroy", "--stack", "typo", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["destroyed"] is False


def test_status_of_a_local_stack_without_a_stack_file_still_answers(
        home: Path, cli) -> None:
    state = home / "stacks" / "dev" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
