"""`llmcloud plan` refuses `autoscaling.signal: requests` left with the in_flight default
target (8 concurrent requests, read as 8 requests a minute), before anything runs."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

STACK_FILE = """\
config:
  llmcloud:provider: aws
  llmcloud:autoscaling:
    signal: requests
"""


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the Pulumi-mock plan with one that records the spec it was given."""
    specs: list = []

    def run_plan(spec, stack):
        specs.append(spec)
        return {"provider": spec.provider, "stack": stack, "resources": [], "checks": [],
                "cost": {"currency": "USD", "hourly_min": 1.0, "hourly_max": 2.0, "items": []},
                "budget": {"max_hourly_usd": None, "exceeded": False}}

    module = types.ModuleType("llmcloud.stacks.plan")
    module.run_plan = run_plan
    monkeypatch.setitem(__import__("sys").modules, "llmcloud.stacks.plan", module)
    from llmcloud.providers.aws.provider import AwsProvider

    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    return specs


def test_plan_refuses_requests_without_a_target(project: Path, cli, planned) -> None:
    (project / "Pulumi.ci.yaml").write_text(STACK_FILE)
    result = cli("plan", "--stack", "ci", "--json")
    assert result.exit_code == 2, result.output
    assert "invalid value for llmcloud:autoscaling.target" in result.stderr
    assert "requests a minute" in result.stderr and "e.g. 120" in result.stderr
    assert "Traceback" not in result.output and not planned


def test_plan_takes_the_target_from_the_environment(project: Path, cli, planned,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "Pulumi.ci.yaml").write_text(STACK_FILE)
    monkeypatch.setenv("LLMCLOUD_AUTOSCALING__TARGET", "90")
    result = cli("plan", "--stack", "ci", "--json")
    assert result.exit_code == 0, result.output
    assert planned[0].autoscaling.signal == "requests" and planned[0].autoscaling.target == 90
