"""`keys list` on a terminal shows a key's times in UTC (it showed `created: 1796098343`);
`--json` keeps the seconds since the epoch every provider gives."""

from __future__ import annotations

import json

from llmcloud.cli.keys_commands import _readable


def test_times_are_shown_in_utc() -> None:
    key = {"id": "k1", "name": "ci", "created": 1796098343, "last_used": None, "admin": False}
    shown = _readable(key)
    assert shown["created"] == "2026-12-01 04:12:23Z"
    assert shown["last_used"] is None and shown["id"] == "k1" and shown["admin"] is False


def test_the_terminal_and_json_outputs_of_a_local_stack(cli, tmp_path, monkeypatch) -> None:
    from llmcloud.providers.local.keys import new_key
    from llmcloud.providers.local.state import StateFile, stack_dir

    home = tmp_path / "home"
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    state = StateFile(stack_dir({"LLMCLOUD_HOME": str(home)}, "dev"))
    state.ensure()
    _, record = new_key("ci")
    state.update(lambda s: s.setdefault("keys", []).append(record))
    shown = cli("keys", "list", "--provider", "local", "--stack", "dev")
    assert shown.exit_code == 0, shown.output
    created = json.loads(cli("keys", "list", "--provider", "local", "--stack", "dev",
                             "--json").stdout)["keys"][0]["created"]
    assert isinstance(created, int)
    assert f"created: {created}" not in shown.stdout
    assert _readable(record)["created"] in shown.stdout


def test_a_key_created_on_a_terminal_shows_its_time_in_utc(cli, tmp_path, monkeypatch) -> None:
    from llmcloud.providers.local.state import StateFile, stack_dir

    home = tmp_path / "home"
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    StateFile(stack_dir({"LLMCLOUD_HOME": str(home)}, "dev")).ensure()
    shown = cli("keys", "create", "--name", "ci", "--provider", "local", "--stack", "dev")
    assert shown.exit_code == 0, shown.output
    created = [line for line in shown.stdout.splitlines() if line.startswith("created: ")]
    assert created and created[0].endswith("Z"), shown.stdout
