"""`model upload` refuses a folder the servers could not load, by the loader's own rule
(`inference_image/model_files.py`): a `.gguf`- or `.pt`-only folder, or weights only in a
subfolder, were uploaded and then failed at every server's start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("files, found", [
    ({"model.gguf": b"GGUF"}, "model.gguf"),
    ({"weights.pt": b"\0" * 64}, "weights.pt"),
    ({"weights.bin": b"\0" * 64}, "weights.bin"),
    ({"checkpoint/model.safetensors": b"\0" * 64}, "checkpoint/model.safetensors"),
], ids=["gguf", "pt", "other-bin", "subfolder"])
def test_a_folder_the_loader_cannot_load_is_refused(cli, tmp_path, files, found) -> None:
    model = _folder(tmp_path / "model", files)
    store = tmp_path / "store"
    result = cli("model", "upload", str(model), "--name", "m", "--version", "v1",
                 "--to", str(store), "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"].startswith(f"{model} holds no weights the server can load")
    assert "model.safetensors" in document["error"] and found in document["error"]
    assert "save_pretrained" in document["hint"]
    assert "Traceback" not in result.output
    assert not store.exists()  # refused before anything was written


def test_a_sharded_index_naming_a_missing_shard_is_refused(cli, tmp_path) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors",
                            "b": "model-00002-of-00002.safetensors"}}
    model = _folder(tmp_path / "model", {
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"\0" * 64})
    result = cli("model", "upload", str(model), "--name", "m", "--version", "v1",
                 "--to", str(tmp_path / "store"))
    assert result.exit_code == 2, result.output
    assert "model-00002-of-00002.safetensors" in result.stderr.splitlines()[0]


@pytest.mark.parametrize("files", [
    {"model.safetensors": b"\0" * 64},
    {"pytorch_model.bin": b"\0" * 64},
    {"pytorch_model.bin.index.json": json.dumps(
        {"weight_map": {"a": "pytorch_model-00001-of-00001.bin"}}).encode(),
     "pytorch_model-00001-of-00001.bin": b"\0" * 64},
], ids=["safetensors", "bin", "sharded-bin"])
def test_the_folders_transformers_loads_upload(cli, tmp_path, files) -> None:
    model = _folder(tmp_path / "model", files)
    result = cli("model", "upload", str(model), "--name", "m", "--version", "v1",
                 "--to", str(tmp_path / "store"), "--json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "store" / "m" / "v1" / "manifest.json").is_file()
