"""`plan` says when a cloud stack's alerts would notify nobody (no `alerts.emails`): the
stack's `alerts` output says it after `up`, which text `plan` never shows."""

from __future__ import annotations

from pathlib import Path


def test_plan_notes_alerts_that_notify_nobody(project: Path, cli) -> None:
    result = cli("plan", "--provider", "aws")
    assert result.exit_code == 0, result.output
    assert "note: the alerts notify nobody: set alerts.emails" in result.stderr


def test_plan_says_nothing_of_alerts_with_addresses(project: Path, cli) -> None:
    (project / "Pulumi.dev.yaml").write_text(
        "config:\n  llmcloud:alerts:\n    emails: [oncall@example.com]\n")
    result = cli("plan", "--provider", "aws")
    assert result.exit_code == 0, result.output
    assert "notify nobody" not in result.stderr


def test_a_local_stack_has_no_alerts_to_note(project: Path, cli) -> None:
    result = cli("plan", "--provider", "local")
    assert "notify nobody" not in result.stderr
