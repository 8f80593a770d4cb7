"""`llmcloud logs --json` is JSON Lines, its error too: "an error is one more line"
(docs/commands.md), and it was the usual error document over six lines, which a reader
taking a line at a time could not parse."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from llmcloud.cli import logs_command
from llmcloud.stacks.errors import DeploymentError


@pytest.fixture
def logs(logs: Path) -> Path:
    """The local stack's logs folder (conftest's), its controller having said one line."""
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,000")
    (logs / "controller.log").write_text(f"{stamp} INFO llmcloud.controller: started\n")
    return logs


def test_an_error_after_lines_is_one_more_line(cli, logs: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def reading_fails(*args, **kwargs) -> None:
        raise DeploymentError("the logs could not be read", hint="llmcloud logs --follow")

    monkeypatch.setattr(logs_command, "_follow", reading_fails)
    result = cli("logs", "--follow", "--json")
    assert result.exit_code == 1, result.output
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert documents[0]["server"] == "controller"
    assert documents[-1] == {"error": "the logs could not be read", "context": None,
                             "hint": "llmcloud logs --follow", "exit_code": 1}
    assert len(documents) == 2


def test_a_refused_flag_is_one_line(cli, logs: Path) -> None:
    result = cli("logs", "--since", "5x", "--json")
    assert result.exit_code == 2, result.output
    [line] = result.stdout.splitlines()
    assert json.loads(line)["error"] == "--since '5x' is not a duration"


def test_other_commands_keep_their_indented_document(cli, logs: Path) -> None:
    result = cli("status", "--json")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('{\n  "provider": "local"')
