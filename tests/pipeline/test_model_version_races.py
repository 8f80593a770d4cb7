"""Two `model upload`s of one version at once, with other content: the store ends with one
upload's manifest over that upload's files, and the other is refused (before, the last
manifest won, over whichever files were written last). Against the emulators of
test_model_upload and a folder store."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from llmcloud.inference_image import manifest as manifest_module
from llmcloud.inference_image.manifest import build_manifest
from llmcloud.inference_image.model_source import resolve
from llmcloud.providers import model_stores
from llmcloud.providers.model_upload import upload_model, version_uri
from llmcloud.stacks.errors import DeploymentError
from tests.pipeline import test_model_upload as uploads

# the fixtures of test_model_upload: the emulators, a fresh bucket in each, a model folder
emulator, store_uri, model_dir = uploads.emulator, uploads.store_uri, uploads.model_dir

WRITERS = {"s3": model_stores.S3Writer, "gs": model_stores.GcsWriter,
           "az": model_stores.AzureWriter}


def _other(model_dir: Path) -> Path:
    """A copy of the model with other weights (same sizes: only the hashes differ)."""
    other = model_dir.parent / "other"
    shutil.copytree(model_dir, other)
    weights = other / "model.safetensors"
    weights.write_bytes(os.urandom(weights.stat().st_size))
    return other


def _check_holds(uri: str, folder: Path, cache: Path) -> None:
    """The version at ``uri`` is ``folder``'s: its manifest's files, every one verified."""
    resolved = resolve(version_uri(uri, "m", "v1"), version="v1", cache_dir=cache)
    served = json.loads((Path(resolved.folder) / "manifest.json").read_text())
    assert served["files"] == build_manifest(folder, "m", "v1")["files"]


def _writer_of(uri: str) -> type:
    return WRITERS.get(uri.split(":")[0], model_stores.FolderStore)


def _other_upload_during_the_first_file(uri: str, model_dir: Path, monkeypatch) -> None:
    writer = _writer_of(uri)
    real_upload, other = writer.upload, _other(model_dir)
    state: dict = {"outcome": None, "sent_by_other": []}

    def upload(self, path, key, sha256, progress):
        if Path(path).is_relative_to(other):
            state["sent_by_other"].append(key)
        elif state["outcome"] is None:  # the first upload has started writing files
            state["outcome"] = "running"
            try:
                upload_model(other, uri, name="m", version="v1")
                state["outcome"] = "succeeded"
            except DeploymentError as exc:
                state["outcome"] = exc
        return real_upload(self, path, key, sha256, progress)

    monkeypatch.setattr(writer, "upload", upload)
    first = upload_model(model_dir, uri, name="m", version="v1")
    assert first["uploaded"] == 4
    refused = state["outcome"]
    assert isinstance(refused, DeploymentError), refused
    assert refused.message == ("another upload of version v1 of m with other content is "
                               f"unfinished at {version_uri(uri, 'm', 'v1')}")
    assert "--force" in refused.hint
    assert state["sent_by_other"] == []  # stopped before it wrote a file
    _check_holds(uri, model_dir, model_dir.parent / "cache")


def test_an_upload_of_other_content_meanwhile_is_refused_before_it_writes(
        model_dir: Path, store_uri: str, monkeypatch) -> None:
    _other_upload_during_the_first_file(store_uri, model_dir, monkeypatch)


def test_an_upload_of_other_content_meanwhile_to_a_folder_store_is_refused(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    _other_upload_during_the_first_file(str(tmp_path / "store"), model_dir, monkeypatch)


def _version_finished_after_the_first_look(uri: str, model_dir: Path, monkeypatch) -> None:
    """The second upload found no manifest, then the first finished: the second must not
    write its files under the first's manifest, nor its manifest over the first's files."""
    real_build, other = manifest_module.build_manifest, _other(model_dir)

    def build(folder, name, version):
        if Path(folder) == other:  # the second upload, past its first look at the version
            upload_model(model_dir, uri, name="m", version="v1")
        return real_build(folder, name, version)

    monkeypatch.setattr(manifest_module, "build_manifest", build)
    with pytest.raises(DeploymentError) as refused:
        upload_model(other, uri, name="m", version="v1")
    assert refused.value.message == (
        f"version v1 of m exists already at {version_uri(uri, 'm', 'v1')}")
    monkeypatch.setattr(manifest_module, "build_manifest", real_build)
    _check_holds(uri, model_dir, model_dir.parent / "cache")
    # the same content again is a success that changes nothing
    again = upload_model(model_dir, uri, name="m", version="v1")
    assert (again["uploaded"], again["unchanged"]) == (0, True)


def test_a_version_finished_meanwhile_is_not_overwritten(
        model_dir: Path, store_uri: str, monkeypatch) -> None:
    _version_finished_after_the_first_look(store_uri, model_dir, monkeypatch)


def test_a_version_finished_meanwhile_in_a_folder_store_is_not_overwritten(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    _version_finished_after_the_first_look(str(tmp_path / "store"), model_dir, monkeypatch)


def test_an_interrupted_upload_of_other_content_is_replaced_with_force_only(
        cli, model_dir: Path, store_uri: str, monkeypatch) -> None:
    writer = _writer_of(store_uri)
    real_upload = writer.upload

    def interrupted(self, path, key, sha256, progress):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "upload", interrupted)
    with pytest.raises(KeyboardInterrupt):
        upload_model(_other(model_dir), store_uri, name="m", version="v1")
    monkeypatch.setattr(writer, "upload", real_upload)
    refused = uploads._upload(cli, model_dir, store_uri)
    assert refused.exit_code == 1
    assert "other content is unfinished" in refused.stderr.splitlines()[0]
    forced = uploads._upload(cli, model_dir, store_uri, "--force")
    assert forced.exit_code == 0, forced.output
    _check_holds(store_uri, model_dir, model_dir.parent / "cache")


def _created_once(store, key: str) -> None:
    assert store.create(key, b'{"first": true}') is True
    assert store.create(key, b'{"second": true}') is False
    assert json.loads(store.read_bytes(key)) == {"first": True}


def test_create_writes_only_where_there_is_nothing(store_uri: str, monkeypatch) -> None:
    """The store's own condition (S3 If-None-Match: *, Azure If-None-Match: *): one
    request that cannot overwrite, not a look then a write."""
    store, prefix = model_stores.open_writable_store(version_uri(store_uri, "m", "v1"))
    if store_uri.startswith("gs://"):
        # gcp-storage-emulator ignores ifGenerationMatch: what is sent, and what a 412 of
        # the real service means, instead
        from google.api_core.exceptions import PreconditionFailed
        from google.cloud.storage import Blob

        sent: list[dict] = []

        def upload_from_string(self, data, **options):
            sent.append(options)
            if len(sent) > 1:
                raise PreconditionFailed("At least one of the pre-conditions you specified "
                                         "did not hold.")

        monkeypatch.setattr(Blob, "upload_from_string", upload_from_string)
        assert store.create(prefix + "claim", b"{}") is True
        assert store.create(prefix + "claim", b"{}") is False
        assert [options.get("if_generation_match") for options in sent] == [0, 0]
        return
    _created_once(store, prefix + "claim")


def test_a_folder_store_creates_only_where_there_is_nothing(tmp_path: Path,
                                                            monkeypatch) -> None:
    store = model_stores.FolderStore(tmp_path / "store")
    _created_once(store, "m/v1/claim")
    # a file system without hard links: an exclusive create instead
    monkeypatch.setattr(model_stores.os, "link", _no_links)
    _created_once(store, "m/v1/other")
    assert sorted(p.name for p in (tmp_path / "store" / "m" / "v1").iterdir()) == [
        "claim", "other"]  # no temp file left


def _no_links(source, target):
    raise PermissionError(1, "Operation not permitted")
