"""Findings of a review of the artifact pipeline (`model upload`, the server's manifest
checks), each reproduced against a folder store or the emulators of test_model_upload."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from llmcloud.inference_image.model_source import ModelSourceError, resolve
from llmcloud.providers import model_stores
from llmcloud.providers.model_upload import upload_model
from llmcloud.providers.upload_claim import CLAIM
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.pipeline import test_model_upload as uploads

# the fixtures of test_model_upload: the emulators, a fresh bucket in each, a model folder
emulator, store_uri, model_dir, _upload = (uploads.emulator, uploads.store_uri,
                                           uploads.model_dir, uploads._upload)


def test_a_broken_link_in_the_model_folder_refuses_the_upload(cli, model_dir: Path,
                                                              tmp_path: Path) -> None:
    """A shard that is a link to nothing was left out of the manifest without a word: the
    upload said it succeeded, and the version was missing a weight file."""
    (model_dir / "model-00002-of-00002.safetensors").symlink_to(tmp_path / "gone")
    result = _upload(cli, model_dir, str(tmp_path / "store"))
    assert result.exit_code == 2, result.output
    assert "model-00002-of-00002.safetensors" in result.stderr.splitlines()[0]
    assert not (tmp_path / "store" / "m" / "v1" / "manifest.json").exists()


def test_two_uploads_of_a_version_to_a_folder_store_do_not_collide(model_dir: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch) -> None:
    """Both wrote the same `<file>.partial`: the first renamed the other's half-written copy
    into place, and the second then failed with "the model store ... does not exist"."""
    store = tmp_path / "store"
    both_copying = threading.Barrier(2, timeout=10)
    real_copy = model_stores.shutil.copyfile

    def copy(source, target):
        if str(source).endswith("model.safetensors"):
            both_copying.wait()  # the two uploads write the file at the same time
        return real_copy(source, target)

    monkeypatch.setattr(model_stores.shutil, "copyfile", copy)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upload_model(model_dir, str(store), name="m", version="v1")
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    version = store / "m" / "v1"
    assert sorted(p.relative_to(version).as_posix() for p in version.rglob("*")) == [
        "config.json", "manifest.json", "model.safetensors", "sub", "sub/extra.txt",
        "tokenizer.json"]
    resolve(str(version), version="v1")


def test_an_interrupted_copy_to_a_folder_store_leaves_no_partial_file(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "store"

    def broken(source, target):
        Path(target).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_stores.shutil, "copyfile", broken)
    with pytest.raises(KeyboardInterrupt):
        upload_model(model_dir, str(store), name="m", version="v1", workers=1)
    # (the claim stays: the upload run again resumes)
    assert [p for p in store.rglob("*") if p.is_file() and p.name != CLAIM] == []


@pytest.mark.parametrize("uri", ["ftp://host/models", "https://example.com/models", "s3://",
                                 "gs:///models", "az://"])
def test_a_store_uri_that_is_not_a_store_is_a_usage_error(cli, model_dir: Path,
                                                          uri: str) -> None:
    """`--to ftp://...` was "unexpected error: ValueError ... this is a bug in llmcloud",
    and `--to s3://` "the model store could not be reached" (a ParamValidationError)."""
    result = _upload(cli, model_dir, uri)
    assert result.exit_code == 2, result.output
    assert "bug in llmcloud" not in result.output
    assert "could not be reached" not in result.output


def test_a_windows_folder_is_a_folder_store_not_a_url_scheme(tmp_path: Path,
                                                             monkeypatch) -> None:
    """`--to C:\\models` on Windows: urlparse takes `C` for a URL scheme, and the upload
    was "not a bucket URL ... this is a bug in llmcloud"."""
    monkeypatch.chdir(tmp_path)
    store, prefix = model_stores.open_writable_store(r"C:\models\m\v1")
    assert isinstance(store, model_stores.FolderStore)
    assert str(store.root) == r"C:\models\m\v1" and prefix == ""


def test_a_file_that_vanishes_during_the_upload_is_not_called_a_missing_store(
        model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """A model file deleted (or unreadable) after the manifest was made was reported as
    "the model store ... does not exist" (or "refused access"), about the store."""
    from llmcloud.inference_image import manifest as manifest_module

    real_build = manifest_module.build_manifest

    def build_then_delete(folder, name, version):
        built = real_build(folder, name, version)
        (Path(folder) / "tokenizer.json").unlink()
        return built

    monkeypatch.setattr(manifest_module, "build_manifest", build_then_delete)
    with pytest.raises(DeploymentError) as info:
        upload_model(model_dir, str(tmp_path / "store"), name="m", version="v1")
    assert "tokenizer.json" in info.value.message
    assert "model store" not in info.value.message
    assert not (tmp_path / "store" / "m" / "v1" / "manifest.json").exists()


def test_an_unreadable_model_file_is_an_error_not_a_bug(model_dir: Path, tmp_path: Path,
                                                        monkeypatch) -> None:
    """A file the user cannot read (saved by a container as root, mode 600) was
    "unexpected error: PermissionError ... this is a bug in llmcloud". Root reads any
    file, so the refusal is simulated where the manifest reads the file."""
    from llmcloud.inference_image import manifest as manifest_module

    real_hash = manifest_module.file_sha256

    def refuse(path):
        if Path(path).name == "tokenizer.json":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    monkeypatch.setattr(manifest_module, "file_sha256", refuse)
    with pytest.raises(ConfigError) as info:
        upload_model(model_dir, str(tmp_path / "store"), name="m", version="v1")
    assert "tokenizer.json" in info.value.message


def test_a_file_changed_during_the_upload_writes_no_manifest(
        cli, model_dir: Path, store_uri: str, monkeypatch) -> None:
    """A file rewritten (same size) after its hash went into the manifest was sent as it
    was then, under the old hash: the upload ended with a manifest, looked complete, and
    every server refused the version (sha256 mismatch)."""
    from llmcloud.inference_image import manifest as manifest_module

    real_build = manifest_module.build_manifest

    def build_then_rewrite(folder, name, version):
        built = real_build(folder, name, version)
        target = Path(folder) / "model.safetensors"
        target.write_bytes(os.urandom(target.stat().st_size))  # same size, new content
        return built

    monkeypatch.setattr(manifest_module, "build_manifest", build_then_rewrite)
    result = _upload(cli, model_dir, store_uri)
    assert result.exit_code == 1, result.output
    assert "model.safetensors" in result.stderr.splitlines()[0]
    monkeypatch.setattr(manifest_module, "build_manifest", real_build)
    from llmcloud.providers.model_upload import version_uri

    with pytest.raises(ModelSourceError, match="manifest.json not found"):
        resolve(version_uri(store_uri, "m", "v1"), cache_dir=model_dir.parent / "cache")
    again = _upload(cli, model_dir, store_uri)  # run again: the file is sent as it is now
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["uploaded"] >= 1
    resolve(version_uri(store_uri, "m", "v1"), version="v1",
            cache_dir=model_dir.parent / "cache")


def test_a_version_folder_uploaded_onto_itself_keeps_its_files(model_dir: Path,
                                                                 tmp_path: Path) -> None:
    """Not a bug of the code reviewed: a guard for the check above, which must not take
    the copy of a file onto itself for a change and delete it."""
    store = tmp_path / "store"
    upload_model(model_dir, str(store), name="m", version="v1")
    version = store / "m" / "v1"
    upload_model(version, str(store), name="m", version="v1", force=True)
    resolve(str(version), version="v1")


def test_a_folder_store_keeps_the_usual_file_mode(model_dir: Path, tmp_path: Path) -> None:
    """Guard for the temp files above: a server run as another user reads the store."""
    store = tmp_path / "store"
    upload_model(model_dir, str(store), name="m", version="v1")
    plain = tmp_path / "plain"
    plain.write_text("x")
    for path in (store / "m" / "v1").rglob("*"):
        if path.is_file():
            assert path.stat().st_mode == plain.stat().st_mode, path
