"""`llmcloud plan` with `model.source` a local folder compares the model's size with the GPU
memory of the instance type, offline: exit 2 where it cannot fit, a warning where it is
close, a line in the rendered plan and `model_fit` in `plan --json`."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

GB = 10**9


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


def _model(tmp_path: Path, weights: int, dtype: str = "bfloat16") -> str:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"torch_dtype": dtype}))
    with open(folder / "model.safetensors", "wb") as handle:
        handle.truncate(weights)  # sparse: the size is all the rule reads
    return str(folder)


def test_plan_refuses_a_model_too_large_for_the_gpus(project, cli, plan_document, tmp_path):
    model = _model(tmp_path, 30 * GB)
    result = cli("plan", "--provider", "aws", "--model", model, "--instance-type", "g6.xlarge")
    assert result.exit_code == 2, result.output
    assert ("error: the model does not fit the GPUs of g6.xlarge: it needs at least 30.5 GB "
            "on a GPU, which has 24 GB") in result.stderr
    assert "hint: set compute.instance_type to one whose GPUs hold it (cheapest first): " \
           "g6e.xlarge" in result.stderr
    assert "too_big" in result.stdout  # the rendered plan's line


def test_plan_json_says_so_too(project, cli, plan_document, tmp_path):
    model = _model(tmp_path, 30 * GB)
    result = cli("plan", "--provider", "aws", "--model", model, "--instance-type",
                 "g6.xlarge", "--json")
    assert result.exit_code == 2
    fit = json.loads(result.stdout)["model_fit"]
    assert (fit["verdict"], fit["gpu_memory_gb"], fit["needed_gb"]) == ("too_big", 24, 30.5)
    assert fit["fitting"][0] == "g6e.xlarge"


def test_plan_warns_where_it_is_close_and_passes(project, cli, plan_document, tmp_path):
    model = _model(tmp_path, 21 * GB)
    result = cli("plan", "--provider", "aws", "--model", model, "--instance-type", "g6.xlarge")
    assert result.exit_code == 0, result.output
    assert "warning: the model is close to the GPU memory of g6.xlarge" in result.stderr


def test_plan_of_a_model_that_fits_or_a_hub_id_says_nothing(project, cli, plan_document,
                                                            tmp_path):
    model = _model(tmp_path, 2 * GB)
    result = cli("plan", "--provider", "aws", "--model", model, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model_fit"]["verdict"] == "fits"
    assert "warning" not in result.stderr
    result = cli("plan", "--provider", "aws", "--model", "org/some-model", "--json")
    assert result.exit_code == 0 and "model_fit" not in json.loads(result.stdout)
