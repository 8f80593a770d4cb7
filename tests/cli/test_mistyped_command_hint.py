"""A mistyped command under --json: its error document's hint is a help that exists (it was
`llmcloud promte --help`, which fails the same way)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("args,hint", [
    (["promte", "--json"], "llmcloud --help"),
    (["keys", "lst", "--json"], "llmcloud keys --help"),
])
def test_a_mistyped_command_hints_at_its_groups_help(project: Path, cli, args, hint) -> None:
    result = cli(*args)
    assert result.exit_code == 2
    document = json.loads(result.stdout)
    assert document["hint"] == hint
    assert "Did you mean" in document["error"]
