"""`llmcloud plan` prints the plan document, renders it for people, and gates on budget and
failed checks. The plan itself (Pulumi mocks) is tested with the providers."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest


def _document(spec, stack: str, *, exceeded: bool = False, passed: bool = True) -> dict:
    return {
        "provider": spec.provider,
        "stack": stack,
        "resources": [
            {"type": "aws:s3/bucket:Bucket", "name": "models", "layer": "model_store",
             "inputs": {}},
            {"type": "aws:ec2/vpc:Vpc", "name": "vpc", "layer": "network", "inputs": {}},
        ],
        "checks": [{"id": "CKV_AWS_21", "resource": "models", "passed": passed,
                    "message": "versioning is off" if not passed else "versioning is on"}],
        "cost": {"currency": "USD", "hourly_min": 1.25, "hourly_max": 2.5,
                 "items": [{"name": "g6.xlarge", "hourly_min": 0.8, "hourly_max": 1.6}]},
        "budget": {"max_hourly_usd": spec.budget.max_hourly_usd, "exceeded": exceeded},
    }


@pytest.fixture
def fake_plan(monkeypatch: pytest.MonkeyPatch):
    """Replace the Pulumi-mock plan with one that records the spec it was given."""
    calls = []
    behaviour = {"exceeded": False, "passed": True}

    def run_plan(spec, stack):
        calls.append((spec, stack))
        return _document(spec, stack, **behaviour)

    module = types.ModuleType("llmcloud.stacks.plan")
    module.run_plan = run_plan
    monkeypatch.setitem(__import__("sys").modules, "llmcloud.stacks.plan", module)
    from llmcloud.providers.aws.provider import AwsProvider

    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    return calls, behaviour


def test_plan_json_is_the_document(project: Path, cli, fake_plan) -> None:
    calls, _ = fake_plan
    result = cli("plan", "--provider", "aws", "--stack", "ci", "--json", "--budget", "9")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["provider"] == "aws" and document["stack"] == "ci"
    spec, stack = calls[0]
    assert stack == "ci" and spec.budget.max_hourly_usd == 9


def test_plan_renders_layers_checks_and_cost(project: Path, cli, fake_plan) -> None:
    result = cli("plan", "--provider", "aws")
    assert result.exit_code == 0, result.output
    for text in ("model_store", "network", "aws:s3/bucket:Bucket", "CKV_AWS_21", "passed",
                 "2 resources to create", "g6.xlarge", "2.50"):
        assert text in result.stdout


def test_plan_over_budget_exits_1_with_the_numbers(project: Path, cli, fake_plan) -> None:
    _, behaviour = fake_plan
    behaviour["exceeded"] = True
    result = cli("plan", "--provider", "aws", "--budget", "2", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["budget"]["exceeded"] is True
    assert "may cost $2.50/h at max replicas, over the budget of $2.00/h" in result.stderr


def test_plan_with_a_failed_check_exits_1(project: Path, cli, fake_plan) -> None:
    _, behaviour = fake_plan
    behaviour["passed"] = False
    result = cli("plan", "--provider", "aws")
    assert result.exit_code == 1
    assert "versioning is off" in result.stdout
    assert "1 security check(s) failed" in result.stderr


def test_plan_on_local_is_not_supported(project: Path, cli) -> None:
    result = cli("plan", "--provider", "local")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[0] == "error: 'plan' is not supported by the local provider"


@pytest.mark.parametrize("command", ["plan", "up", "preview", "update"])
@pytest.mark.parametrize("counts", [("--max-replicas", "10"), ("--min-replicas", "1")])
def test_replicas_with_min_or_max_replicas_is_refused(
        project: Path, cli, command: str, counts: tuple[str, str]) -> None:
    # `--replicas 3 --max-replicas 10` planned and deployed 3, dropping the 10 without a word
    result = cli(command, "--provider", "aws", "--replicas", "3", *counts, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == (
        "--replicas cannot be given with --min-replicas or --max-replicas")
