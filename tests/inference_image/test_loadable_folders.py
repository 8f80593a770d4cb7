"""The loader refuses, by the rule `model upload` checks too (`model_files.py`), a folder
transformers cannot load, saying what it needs; and it reads what transformers reads: a
`pytorch_model.bin` beside some other `*.safetensors` file was refused."""

from __future__ import annotations

import json
import shutil

import pytest

from llmcloud.inference_image.loader import ModelLoadError, load_model
from llmcloud.inference_image.model_files import unloadable_reason

_KEPT = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "chat_template.jinja")


def _without_weights(causal_dir, folder):
    folder.mkdir()
    for name in _KEPT:
        if (causal_dir / name).is_file():
            shutil.copy(causal_dir / name, folder / name)
    return folder


def test_a_gguf_only_folder_is_refused_with_what_it_needs(causal_dir, tmp_path) -> None:
    model = _without_weights(causal_dir, tmp_path / "gguf")
    (model / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError) as refused:
        load_model(model, task=None, device="cpu", dtype="auto")
    assert str(refused.value) == unloadable_reason(model)
    assert "holds no weights the server can load" in str(refused.value)
    assert "model.gguf" in str(refused.value) and "pytorch_model.bin" in str(refused.value)


def test_a_pytorch_bin_beside_another_safetensors_file_loads(causal_dir, tmp_path) -> None:
    import torch
    from safetensors.torch import load_file

    model = _without_weights(causal_dir, tmp_path / "bin")
    torch.save(load_file(causal_dir / "model.safetensors"), model / "pytorch_model.bin")
    shutil.copy(causal_dir / "model.safetensors", model / "notes.safetensors")  # not read
    assert unloadable_reason(model) is None
    loaded = load_model(model, task=None, device="cpu", dtype="float32")
    assert type(loaded.model).__name__ == "LlamaForCausalLM"


def test_the_rule_reads_a_sharded_index(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-1.safetensors", "b": "model-2.safetensors"}}))
    (tmp_path / "model-1.safetensors").write_bytes(b"\0")
    assert "model-2.safetensors" in unloadable_reason(tmp_path)
    (tmp_path / "model-2.safetensors").write_bytes(b"\0")
    assert unloadable_reason(tmp_path) is None
