"""Fixtures the CLI's tests share."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A model folder `model upload` takes (a config and 64 bytes of weights), not one a
    server could load."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


@pytest.fixture
def plan_document(monkeypatch: pytest.MonkeyPatch):
    """The Pulumi-mock part of the plan replaced (the providers' tests cover it); the model
    fit is the real `stacks.plan.model_fit`."""
    from llmcloud.stacks.plan import model_fit

    def run_plan(spec, stack):
        return {"provider": spec.provider, "stack": stack, "resources": [], "checks": [],
                "cost": {"currency": "USD", "hourly_min": 1.0, "hourly_max": 2.0,
                         "items": []},
                "budget": {"max_hourly_usd": None, "exceeded": False},
                **({"model_fit": model_fit(spec)} if model_fit(spec) else {})}

    module = types.ModuleType("llmcloud.stacks.plan")
    module.run_plan = run_plan
    monkeypatch.setitem(sys.modules, "llmcloud.stacks.plan", module)
    from llmcloud.providers.aws.provider import AwsProvider

    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)


@pytest.fixture
def logs(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The logs folder of a local stack `dev` (state in $LLMCLOUD_HOME)."""
    home = tmp_path / "llmcloud-home"
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    folder = home / "stacks" / "dev"
    (folder / "logs").mkdir(parents=True)
    (folder / "state.json").write_text("{}")
    return folder / "logs"
