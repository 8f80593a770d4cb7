"""What a first-time user reads on the way from `init` to a running local stack: the next
step `init` names is one the provider runs, a misspelt spec key is named with the key that
was meant, and `refresh` shows its status as `status` does."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_init_of_a_local_stack_names_a_step_it_can_take(project: Path, cli) -> None:
    # `plan` refuses a local stack (exit 4): init sent every new user there first
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == (
        "next: review Pulumi.dev.yaml, then: llmcloud up --stack dev")
    header = (project / "Pulumi.dev.yaml").read_text().split("config:")[0]
    assert "llmcloud plan" not in header and "llmcloud up" in header
    assert cli("plan").exit_code == 4


def test_init_of_a_cloud_stack_still_names_plan(project: Path, cli) -> None:
    result = cli("init", "--provider", "aws", "--stack", "prod")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1].endswith("then: llmcloud plan --stack prod")
    assert "Check the result with: llmcloud plan" in (project / "Pulumi.prod.yaml").read_text()


def test_the_stack_files_header_names_its_own_stack(project: Path, cli) -> None:
    # a bare `llmcloud up` (or plan) from the header of Pulumi.prod.yaml went to stack 'dev'
    assert cli("init", "--stack", "prod").exit_code == 0
    assert "Start it with: llmcloud up --stack prod" in (project / "Pulumi.prod.yaml").read_text()
    assert cli("init", "--provider", "aws", "--stack", "ci").exit_code == 0
    assert "Check the result with: llmcloud plan --stack ci" in \
        (project / "Pulumi.ci.yaml").read_text()


def test_a_misspelt_key_is_named_with_the_key_meant(project: Path, cli) -> None:
    assert cli("init").exit_code == 0
    path = project / "Pulumi.dev.yaml"
    path.write_text(path.read_text().replace("    rate_limit: 10.0", "    rate_limt: 10.0"))
    result = cli("status", "--json")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "hint: did you mean llmcloud:gateway.rate_limit? fix the key, or see every key with "
        "its default: llmcloud init --stack NAME")


def test_a_misspelt_variable_is_named_with_the_variable_meant(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLOUD_GATEWAY__BRUST", "3")
    result = cli("status")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "hint: did you mean LLMCLOUD_GATEWAY__BURST? ")


def test_a_key_like_none_keeps_the_plain_hint(project: Path, cli,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMCLOUD_GATEWAY__XYZZY", "3")
    result = cli("status")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "hint: fix the value, or see every key with its default: llmcloud init --stack NAME")


def test_refresh_shows_the_alerts_as_status_does(project: Path, cli, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # a local stack whose controller is gone: refresh answered `alerts:` then `  unread: ...`
    home = tmp_path / "llmcloud-home"
    (home / "stacks" / "dev").mkdir(parents=True)
    (home / "stacks" / "dev" / "state.json").write_text('{"keys": []}')
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    status, refresh = cli("status"), cli("refresh")
    assert status.exit_code == refresh.exit_code == 0, refresh.output
    line = "alerts: unread: the stack is not running: no controller judges its alerts"
    assert line in status.stdout.splitlines()
    assert line in refresh.stdout.splitlines()
