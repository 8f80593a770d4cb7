"""`llmcloud status` on a local stack says a promote or rollback is rolling its replicas
(the controller's `GET /status` names the version: `rolling_to`): `rolling_to` in the
document and "rolling to v4" on the terminal while one runs, neither once it ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.local.provider import LocalProvider
from tests.cli.controller_fake import RollingController


@pytest.fixture
def controller(cli, project, monkeypatch) -> RollingController:
    """The controller of a local stack `dev` serving v3."""
    folder = Path.home() / ".llmcloud" / "stacks" / "dev"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({
        "config": {"model": {"name": "m", "kind": "store"}, "version": "v3"},
        "version": "v3", "history": ["v2", "v3"]}))
    found = RollingController(
        "v4", running=True, endpoint="http://127.0.0.1:8080/v1", model="m",
        model_version="v3", replicas=[])
    monkeypatch.setattr(LocalProvider, "_client", lambda self, state_file: found)
    return found


def test_status_says_the_version_a_rollout_runs_to_while_it_runs(controller, cli) -> None:
    result = cli("status", "--stack", "dev", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["model_version"], document["rolling_to"]) == ("v3", "v4")
    # (next to the version in service, which it will replace)
    keys = list(document)
    assert keys.index("rolling_to") == keys.index("model_version") + 1
    text = cli("status", "--stack", "dev").stdout
    assert "\nmodel_version: v3\nrolling to v4 (a promote or rollback runs now)\n" in text
    # once the rollout ended, neither says anything of it
    controller.rolling_to = None
    document = json.loads(cli("status", "--stack", "dev", "--json").stdout)
    assert "rolling_to" not in document
    assert "rolling" not in cli("status", "--stack", "dev").stdout
