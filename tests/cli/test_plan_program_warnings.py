"""`plan` shows the warnings of the stack's program as the CLI shows warnings (`warning: `
on stderr) and carries them in `plan --json`; they printed bare before, and not in JSON."""

from __future__ import annotations

import json
from pathlib import Path

DRAIN = "server.drain_timeout_seconds (60) is shorter than gateway.timeout_seconds (300)"


def _short_drain(project: Path) -> None:
    (project / "Pulumi.dev.yaml").write_text(
        "config:\n  llmcloud:server:\n    drain_timeout_seconds: 60\n")


def test_plan_shows_the_programs_warning_with_the_clis_prefix(project: Path, cli) -> None:
    _short_drain(project)
    result = cli("plan", "--provider", "aws")
    assert result.exit_code == 0, result.output
    assert f"warning: {DRAIN}" in result.stderr


def test_plan_json_carries_the_programs_warnings(project: Path, cli) -> None:
    _short_drain(project)
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert [w for w in document["warnings"] if w.startswith(DRAIN)]
    assert f"warning: {DRAIN}" in result.stderr


def test_an_unknown_azure_region_is_a_warning_not_a_refusal(project: Path, cli) -> None:
    result = cli("plan", "--provider", "azure", "--region", "marsnorth", "--json")
    assert result.exit_code == 0, result.output
    assert "warning: region marsnorth is not an Azure location known to llmcloud" \
        in result.stderr
