"""A model folder checked out without Git LFS holds pointer files where the weights should
be: `model upload` sent them, and every server failed to load the version. The rule the
loader and upload share (`model_files.unloadable_reason`) now names them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.inference_image.model_files import unloadable_reason

POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
           b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
           b"size 988097824\n")


def _folder(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("files", [
    {"model.safetensors": POINTER},
    {"model.safetensors.index.json": json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}
    }).encode(), "model-00001-of-00002.safetensors": b"\0" * 64,
        "model-00002-of-00002.safetensors": POINTER},
], ids=["single", "a-shard"])
def test_lfs_pointers_in_place_of_the_weights_are_refused(cli, tmp_path, files) -> None:
    model = _folder(tmp_path / "model", files)
    store = tmp_path / "store"
    result = cli("model", "upload", str(model), "--name", "m", "--version", "v1",
                 "--to", str(store), "--json")
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)["error"]
    assert "Git LFS pointer files, not the files themselves" in error and "git lfs pull" in error
    assert not store.exists()


def test_real_weights_pass(tmp_path) -> None:
    assert unloadable_reason(_folder(tmp_path / "m", {"model.safetensors": b"\0" * 64})) is None


def test_a_tokenizer_left_as_a_pointer_is_refused(tmp_path) -> None:
    # (HF's .gitattributes puts `*.model` in LFS: the weights fetched, the sentencepiece
    # tokenizer left as a pointer, every server failed to load its tokenizer)
    model = _folder(tmp_path / "m", {"model.safetensors": b"\0" * 64,
                                     "tokenizer.model": POINTER})
    reason = unloadable_reason(model)
    assert reason is not None and "tokenizer.model" in reason and "git lfs pull" in reason


def test_a_large_file_that_begins_like_a_pointer_is_not_one(tmp_path) -> None:
    # (a pointer is under 1024 bytes, by Git LFS's spec: a real file is never taken for one)
    model = _folder(tmp_path / "m", {"model.safetensors": POINTER + b"\0" * 2048})
    assert unloadable_reason(model) is None
