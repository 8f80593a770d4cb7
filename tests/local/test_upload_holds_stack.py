"""`model upload` to a local stack holds the stack as `up` and `destroy` do: a first `up` that
failed, or a `destroy`, deleted the stack's folder under an upload running meanwhile, which
went on to write a manifest over a version missing the files already deleted. And what an
interrupted upload leaves never reads as a version."""

from __future__ import annotations

import json
import os
import threading

import pytest

from llmcloud.providers.local.store import ModelStore
from llmcloud.stacks.errors import BusyError
from tests.local.conftest import fake_model


def test_an_upload_is_refused_while_another_command_holds_the_stack(fake_stack, tmp_path,
                                                                    cli, monkeypatch):
    stack = fake_stack()
    stack.state_file.ensure()
    stack.state_file.update(lambda state: None)  # a stack `up` made: state.json
    folder = fake_model(tmp_path / "m2", n=2)
    monkeypatch.chdir(tmp_path)
    with stack.state_file.operation("dev"):
        with pytest.raises(BusyError):
            stack.upload(folder, "v2")
        result = cli("model", "upload", str(folder), "--version", "v2", "--provider",
                     "local", "--stack", "dev", "--json")
    assert result.exit_code == 75
    error = json.loads(result.stdout)
    assert error["error"] == "another llmcloud command is changing stack 'dev' right now"
    assert error["context"].startswith("held by ")
    assert not (stack.state_file.models / "fake" / "v2").exists()  # nothing written
    stack.upload(folder, "v2")  # free again
    assert ModelStore(stack.state_file.models).has("fake", "v2")


def test_destroy_and_up_are_refused_while_an_upload_runs(fake_stack, tmp_path):
    stack = fake_stack()
    folder = fake_model(tmp_path / "m2", n=2)
    refused: list[BaseException] = []
    once = threading.Lock()  # the copies run in parallel: each reports from its own thread

    def meanwhile(file: str, done: int, total: int) -> None:
        with once:
            if refused:
                return
            for command in (stack.destroy, stack.up):
                try:
                    command()
                except BusyError as exc:
                    refused.append(exc)

    ctx = stack.ctx()
    stack.provider.model_upload(ctx, folder, name="fake", version="v2", on_progress=meanwhile)
    assert len(refused) == 2
    assert all(exc.context.startswith("held by ") for exc in refused)
    assert ModelStore(stack.state_file.models).has("fake", "v2")
    assert not stack.state_file.exists()  # the `up` never ran


def test_an_interrupted_uploads_partial_files_go_with_the_next_upload(fake_stack, tmp_path):
    stack = fake_stack()
    folder = fake_model(tmp_path / "m2", n=2)
    version = stack.state_file.models / "fake" / "v2"
    version.mkdir(parents=True)
    partial = version / f".model.safetensors.{'0' * 32}.partial"
    partial.write_bytes(b"half a copy")  # the process was killed mid-copy
    stack.upload(folder, "v2")
    assert not partial.exists()
    assert sorted(p.name for p in version.iterdir()) == sorted(
        ["config.json", "fake.json", "model.safetensors", "manifest.json"])


def test_a_manifest_that_is_not_one_is_no_version(tmp_path):
    store = ModelStore(tmp_path / "models")
    whole = store.version_dir("m", "v1")
    whole.mkdir(parents=True)
    (whole / "manifest.json").write_text(json.dumps({"format": 1, "files": []}))
    cut = store.version_dir("m", "v2")
    cut.mkdir(parents=True)
    # a file system without hard links: the writer died between the name and the bytes
    (cut / "manifest.json").write_bytes(b"")
    os.utime(cut / "manifest.json", (0, 0))
    assert store.has("m", "v1") and not store.has("m", "v2")
    assert store.versions("m") == ["v1"]
    empty = ModelStore(tmp_path / "other")
    (empty.version_dir("m", "v2")).mkdir(parents=True)
    (empty.version_dir("m", "v2") / "manifest.json").write_bytes(b"{")
    assert not empty.holds_any()


def test_uploading_again_finishes_a_version_whose_manifest_is_not_one(fake_stack, tmp_path):
    """A manifest the writer died in (no hard links: named, never filled) is no version,
    yet the upload took it for another upload's version: the same folder was refused
    ("exists already with other content"), through `model upload` and `up --model`."""
    stack = fake_stack()
    folder = fake_model(tmp_path / "m2", n=2)
    store = ModelStore(stack.state_file.models)
    for version, finish in (("v2", lambda: stack.upload(folder, "v2")),
                            ("v3", lambda: store.import_folder(folder, name="fake",
                                                               version="v3"))):
        cut = store.version_dir("fake", version)
        cut.mkdir(parents=True)
        (cut / "config.json").write_bytes((folder / "config.json").read_bytes())
        (cut / "manifest.json").write_bytes(b"")
        assert not store.has("fake", version)
        assert finish()["uploaded"] == 2  # the two files that were not there yet
        assert store.has("fake", version)
    assert store.versions("fake") == ["v2", "v3"]


def test_a_lock_taken_as_destroy_deletes_the_folder_holds_the_new_one(home, monkeypatch):
    """An upload that opened `operation.lock` just before a `destroy` deleted the folder,
    and locked it just after: it held a file no one else could open, and an `up` ran
    beside it."""
    import fcntl
    import shutil

    from llmcloud.providers.local import state as state_module
    from llmcloud.providers.local.state import StateFile

    state = StateFile(home / "stacks" / "dev")
    real_flock = fcntl.flock
    destroyed = []

    def flock(handle, flags):
        if flags & fcntl.LOCK_EX and not destroyed:
            destroyed.append(True)
            shutil.rmtree(state.folder)  # the destroy ends between the open and the lock
        return real_flock(handle, flags)

    monkeypatch.setattr(state_module.fcntl, "flock", flock)
    with state.operation("dev"), pytest.raises(BusyError), state.operation("dev"):
        pass
    assert destroyed
