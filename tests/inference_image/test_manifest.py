"""The model-store manifest shared with `llmcloud model upload`."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from llmcloud.inference_image.manifest import (
    MANIFEST_NAME,
    ManifestMismatch,
    build_manifest,
    check_manifest,
    file_sha256,
    verify_folder,
)


@pytest.fixture()
def model_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "weights.safetensors").write_bytes(b"\x00\x01" * 5000)
    (tmp_path / MANIFEST_NAME).write_text("{}")  # an old manifest is not listed
    return tmp_path


def test_build_manifest_lists_files_with_hash_and_size(model_folder):
    manifest = build_manifest(model_folder, "llama", "v7")
    assert manifest["format"] == 1 and manifest["name"] == "llama"
    assert manifest["version"] == "v7"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", manifest["created"])
    assert [f["path"] for f in manifest["files"]] == ["config.json", "sub/weights.safetensors"]
    weights = manifest["files"][1]
    assert weights["size"] == 10000
    assert weights["sha256"] == hashlib.sha256(b"\x00\x01" * 5000).hexdigest()
    json.dumps(manifest)  # serializable as written to manifest.json


def test_linked_folders_are_followed_and_hidden_ones_left_out(tmp_path):
    """A linked adapter folder was left out (while a linked file was not): the server then
    took the adapter's path for a hub id. `.git` repeats every weight in its LFS objects."""
    outside = tmp_path / "outside" / "adapter"
    outside.mkdir(parents=True)
    (outside / "adapter_model.safetensors").write_bytes(b"A" * 10)
    model = tmp_path / "model"
    (model / "adapters").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "adapters" / "sql").symlink_to(outside, target_is_directory=True)
    (model / "adapters" / "loop").symlink_to(model, target_is_directory=True)  # a cycle
    (model / ".git" / "lfs" / "objects").mkdir(parents=True)
    (model / ".git" / "lfs" / "objects" / "abcd").write_bytes(b"a weight, again")
    (model / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    paths = [f["path"] for f in build_manifest(model, "m", "v1")["files"]]
    assert paths == ["adapters/sql/adapter_model.safetensors", "config.json"]


def test_file_sha256_streams_large_files(tmp_path):
    path = tmp_path / "big"
    data = bytes(range(256)) * 9000  # several read chunks
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_verify_accepts_an_untouched_folder(model_folder):
    verify_folder(model_folder, build_manifest(model_folder, "m", "1"))


def test_verify_names_the_file_and_both_hashes_when_tampered(model_folder):
    manifest = build_manifest(model_folder, "m", "1")
    target = model_folder / "sub" / "weights.safetensors"
    target.write_bytes(b"\x00\x02" * 5000)
    with pytest.raises(ManifestMismatch) as info:
        verify_folder(model_folder, manifest)
    message = str(info.value)
    assert "sub/weights.safetensors" in message
    assert manifest["files"][1]["sha256"] in message
    assert file_sha256(target) in message
    assert isinstance(info.value, ValueError)


def test_verify_reports_a_missing_file(model_folder):
    manifest = build_manifest(model_folder, "m", "1")
    (model_folder / "config.json").unlink()
    with pytest.raises(ManifestMismatch, match="config.json: missing"):
        verify_folder(model_folder, manifest)


@pytest.mark.parametrize("bad", [
    [], {"format": 2, "files": []}, {"format": 1}, {"format": 1, "files": [{"path": "a"}]},
    {"format": 1, "files": [{"path": "../etc/passwd", "sha256": "0", "size": 1}]},
    {"format": 1, "files": [{"path": "/abs", "sha256": "0", "size": 1}]},
])
def test_malformed_manifests_are_rejected(bad):
    with pytest.raises(ManifestMismatch):
        check_manifest(bad)
