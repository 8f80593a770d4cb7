"""Resolving --model: local folders and bucket folders verified against their manifest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from llmcloud.inference_image.manifest import MANIFEST_NAME, build_manifest
from llmcloud.inference_image.model_source import ModelSourceError, resolve


class FakeBucket:
    """A bucket held in memory; counts downloads."""

    def __init__(self, prefix: str, folder: Path):
        self.objects = {f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
                        for p in folder.rglob("*") if p.is_file()}
        self.downloads: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key]

    def download(self, key: str, dest: Path) -> None:
        self.downloads.append(key)
        dest.write_bytes(self.read_bytes(key))


@pytest.fixture()
def uploaded(tmp_path):
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"S" * 3000)
    (folder / "pytorch_model.bin").write_bytes(b"B" * 3000)
    manifest = build_manifest(folder, "llama", "v7")
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return folder


def test_bucket_model_is_downloaded_once_and_verified(tmp_path, uploaded):
    bucket = FakeBucket("models/llama/v7", uploaded)
    cache = tmp_path / "cache"
    url = "s3://bucket/models/llama/v7"
    first = resolve(url, version="v7", cache_dir=cache, store=bucket)
    assert (first.name, first.version) == ("llama", "v7")
    assert (first.folder / "model.safetensors").read_bytes() == b"S" * 3000
    assert sorted(bucket.downloads) == ["models/llama/v7/config.json",
                                        "models/llama/v7/model.safetensors"]  # no .bin
    again = resolve(url, cache_dir=cache, store=bucket)
    assert again.folder == first.folder and len(bucket.downloads) == 2


def test_tampered_bucket_file_refuses_with_both_hashes(tmp_path, uploaded):
    bucket = FakeBucket("m", uploaded)
    bucket.objects["m/model.safetensors"] = b"X" * 3000
    with pytest.raises(ModelSourceError) as info:
        resolve("gs://bucket/m", cache_dir=tmp_path / "cache", store=bucket)
    message = str(info.value)
    assert "model.safetensors" in message and "sha256 mismatch" in message


def test_corrupted_cache_is_repaired(tmp_path, uploaded):
    bucket = FakeBucket("m", uploaded)
    cache = tmp_path / "cache"
    resolved = resolve("az://acct/container/m", cache_dir=cache, store=bucket)
    (resolved.folder / "config.json").write_text("{}")
    resolve("az://acct/container/m", cache_dir=cache, store=bucket)
    assert bucket.downloads.count("m/config.json") == 2
    assert (resolved.folder / "config.json").read_text() == '{"model_type": "llama"}'


def test_bucket_without_manifest_is_refused(tmp_path, uploaded):
    (uploaded / MANIFEST_NAME).unlink()
    bucket = FakeBucket("m", uploaded)
    with pytest.raises(ModelSourceError, match="llmcloud model upload"):
        resolve("s3://bucket/m", cache_dir=tmp_path / "cache", store=bucket)


def test_version_must_match_the_manifest(tmp_path, uploaded):
    bucket = FakeBucket("m", uploaded)
    with pytest.raises(ModelSourceError, match="'v7'.*'v8'"):
        resolve("s3://bucket/m", version="v8", cache_dir=tmp_path / "cache", store=bucket)


def test_local_folder_with_manifest_is_verified(tmp_path, uploaded):
    assert resolve(str(uploaded)).version == "v7"
    copy = tmp_path / "copy"
    shutil.copytree(uploaded, copy)
    (copy / "pytorch_model.bin").write_bytes(b"evil")
    with pytest.raises(ModelSourceError, match="pytorch_model.bin"):
        resolve(str(copy))


def test_the_cache_keeps_only_what_the_manifest_lists(tmp_path, uploaded):
    """A version overwritten with other files (`--force`: the old ones stay in the bucket
    and in a cache kept across restarts) and partial downloads a killed start left: the
    cache keeps only the manifest's files, or transformers would load the old weights."""
    bucket = FakeBucket("m", uploaded)
    cache = tmp_path / "cache"
    folder = resolve("s3://bucket/m", cache_dir=cache, store=bucket).folder
    (folder / "tokenizer.json").write_text("{}")  # an earlier upload's, not listed now
    (folder / ".part-x1y2z3").write_bytes(b"half a weight file")
    (folder / "sub").mkdir()
    (folder / "sub" / "old.bin").write_bytes(b"old")
    resolve("s3://bucket/m", cache_dir=cache, store=bucket)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file()) == ["config.json", MANIFEST_NAME, "model.safetensors"]


def test_a_folder_holding_files_its_manifest_does_not_list_is_refused(tmp_path, uploaded):
    copy = tmp_path / "copy"
    shutil.copytree(uploaded, copy)
    (copy / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelSourceError, match="tokenizer.json: in .* but not in its manifest"):
        resolve(str(copy))


def test_safetensors_are_preferred_folder_by_folder(tmp_path):
    """An adapter saved as safetensors (PEFT's default) beside a model whose weights are a
    .bin: the model's weights were left out, the load failed later on no weights."""
    folder = tmp_path / "upload"
    (folder / "adapters" / "sql").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "pytorch_model.bin").write_bytes(b"B" * 100)
    (folder / "adapters" / "sql" / "adapter_model.safetensors").write_bytes(b"A" * 10)
    (folder / "adapters" / "sql" / "adapter_model.bin").write_bytes(b"a" * 10)
    (folder / MANIFEST_NAME).write_text(json.dumps(build_manifest(folder, "m", "v1")))
    bucket = FakeBucket("m", folder)
    resolve("s3://bucket/m", cache_dir=tmp_path / "cache", store=bucket)
    assert sorted(bucket.downloads) == ["m/adapters/sql/adapter_model.safetensors",
                                        "m/config.json", "m/pytorch_model.bin"]


def test_missing_local_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSourceError, match="not found"):
        resolve(str(tmp_path / "nope"))


def test_offline_hub_miss_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSourceError, match="HF_HUB_OFFLINE"):
        resolve("some-org/some-model-that-is-not-cached", cache_dir=tmp_path)


def test_missing_cloud_sdk_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gcs(name, *args, **kwargs):
        if name.startswith("google.cloud"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gcs)
    with pytest.raises(ModelSourceError, match=r"install it with pip install .*\[runtime\]"):
        resolve("gs://bucket/m", cache_dir=tmp_path)


# --- a read-only cache (a baked image, a read-only volume) ----------------------------------

@pytest.fixture()
def read_only(monkeypatch):
    """``read_only(folder)`` makes a folder and all it holds read-only, until the test ends.
    Root writes through any mode bits, so for root the folder is read-only as a read-only
    mount is to the server: refused by ``os.access`` and by every attempt to create in it."""
    import llmcloud.inference_image.model_source as model_source

    made: list[Path] = []

    def inside(path) -> bool:
        return any(Path(path).resolve().is_relative_to(f.resolve()) for f in made)

    if os.geteuid() == 0:
        access, mkdir, open_ = os.access, Path.mkdir, os.open

        def no_write_access(path, mode, *args, **kwargs):
            return not (mode & os.W_OK and inside(path)) and access(path, mode, *args, **kwargs)

        def no_mkdir(self, *args, **kwargs):
            if inside(self.parent) and not self.is_dir():
                raise PermissionError(13, "Permission denied", str(self))
            return mkdir(self, *args, **kwargs)

        def no_create(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(Path(path).parent):
                raise PermissionError(13, "Permission denied", str(path))
            return open_(path, flags, *args, **kwargs)

        def no_open_for_writing(path, mode="r", *args, **kwargs):
            if set(mode) & set("wax+") and inside(Path(path).parent):
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, mode, *args, **kwargs)

        monkeypatch.setattr(model_source, "open", no_open_for_writing, raising=False)
        monkeypatch.setattr(model_source.os, "access", no_write_access)
        monkeypatch.setattr(Path, "mkdir", no_mkdir)
        monkeypatch.setattr(model_source.os, "open", no_create)

    def make(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        made.append(folder)

    yield make
    made_now = list(made)
    made.clear()
    for folder in made_now:
        for path in [folder, *folder.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


@pytest.mark.parametrize("locks", ["kept", "never made"])
def test_a_complete_model_in_a_read_only_cache_starts(tmp_path, uploaded, read_only, locks):
    bucket = FakeBucket("m", uploaded)
    cache = tmp_path / "cache"
    filled = resolve("s3://bucket/m", version="v7", cache_dir=cache, store=bucket)
    if locks == "never made":  # a cache baked into an image by copying the model in
        shutil.rmtree(cache / ".locks")
    read_only(cache)
    again = resolve("s3://bucket/m", version="v7", cache_dir=cache, store=bucket)
    assert (again.folder, again.name, again.version) == (filled.folder, "llama", "v7")
    assert len(bucket.downloads) == 2  # the first start's only


@pytest.mark.parametrize("fault", ["missing", "changed", "extra"])
def test_an_incomplete_model_in_a_read_only_cache_names_the_folder(tmp_path, uploaded,
                                                                    read_only, fault):
    bucket = FakeBucket("m", uploaded)
    cache = tmp_path / "cache"
    folder = resolve("s3://bucket/m", cache_dir=cache, store=bucket).folder
    if fault == "missing":
        (folder / "config.json").unlink()
    elif fault == "changed":
        (folder / "config.json").write_text("{}")
    else:  # transformers would load it unchecked
        (folder / "pytorch_model.bin").write_bytes(b"old")
    read_only(cache)
    with pytest.raises(ModelSourceError) as info:
        resolve("s3://bucket/m", cache_dir=cache, store=bucket)
    message = str(info.value)
    assert f"{folder} is read-only" in message and "s3://bucket/m" in message
    assert ("pytorch_model.bin" if fault == "extra" else "config.json") in message


def test_a_model_not_in_a_read_only_cache_names_the_folder(tmp_path, uploaded, read_only):
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(cache)
    with pytest.raises(ModelSourceError, match=f"cannot create the model's cache folder "
                       f"{cache / 's3' / 'bucket' / 'm'}.*Permission denied"):
        resolve("s3://bucket/m", cache_dir=cache, store=FakeBucket("m", uploaded))
