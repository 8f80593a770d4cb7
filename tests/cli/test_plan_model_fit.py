"""`llmcloud plan` with `model.source` a local folder compares the model's size with the GPU
memory of the instance type, offline: exit 2 where it cannot fit, a warning where it is
close, a line in the rendered plan and `model_fit` in `plan --json`."""

from __future__ import annotations

import json
from pathlib import Path

GB = 10**9


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
