"""`plan` with `model.source` a local path it cannot measure says why, instead of leaving out
the model's fit without a word: a folder without weights (which `model upload` refuses),
or a path that is not a folder here (read as a hub id before)."""

from __future__ import annotations

import json
from pathlib import Path


def test_a_folder_with_a_config_but_no_weights_is_warned(project, cli, plan_document,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "llama-70b-config"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama",
                                                    "torch_dtype": "bfloat16"}))
    result = cli("plan", "--provider", "aws", "--model", str(folder))
    assert result.exit_code == 0, result.output
    assert f"warning: {folder} holds no weights the server can load" in result.stderr
    assert "the model's fit on the GPUs is not known" in result.stderr
    # with its weights beside it, or as a hub id, the source is no matter for a warning
    with open(folder / "model.safetensors", "wb") as handle:
        handle.truncate(10**9)  # sparse: the size is all the rule reads
    for source in (str(folder), "Qwen/Qwen2.5-0.5B-Instruct"):
        result = cli("plan", "--provider", "aws", "--model", source)
        assert result.exit_code == 0 and "warning" not in result.stderr, result.output


def test_a_path_that_is_not_a_folder_is_warned(project, cli, plan_document,
                                               tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    result = cli("plan", "--provider", "aws", "--model", str(missing))
    assert result.exit_code == 0, result.output
    assert f"warning: model.source {missing} is not a folder on this machine" in result.stderr

