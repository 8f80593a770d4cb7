"""The spec's `server.lora_modules` against the model version the replicas load: a folder
the version lacks (or one that is no PEFT adapter, or an adapter named as the model) is
refused by `up` before anything is imported or started, instead of every replica failing
at its start, or finding a folder of that path in the working directory and serving it
unverified. What passes the check is what the server finds (spec -> flags -> server
options -> the adapter's folder inside the uploaded version)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.inference_image.model_files import adapter_problems, version_files
from llmcloud.inference_image.model_source import resolve_adapter
from llmcloud.inference_image.server_options import build_parser, parse_lora_modules
from llmcloud.providers.base import StackContext
from llmcloud.providers.local.launch import model_config
from llmcloud.providers.local.provider import LocalProvider
from llmcloud.providers.local.store import ModelStore
from llmcloud.providers.model_upload import upload_model
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError


def _model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    return folder


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (folder / "adapter_model.safetensors").write_bytes(b"lora weights")
    return folder


def _ctx(tmp_path: Path, source: str, **server) -> StackContext:
    spec = resolve_spec(file_values={"provider": "local", "model": {
        "source": source, "name": "base", "version": "v1"}, "server": server},
        environ={}, defaults_for=lambda _: LocalProvider().defaults())
    return StackContext(project_dir=tmp_path, stack="dev", spec=spec, environ={}, yes=True)


def test_an_adapter_the_model_folder_lacks_is_refused_before_the_import(tmp_path,
                                                                        monkeypatch):
    model = _model(tmp_path / "base")
    # beside the model, not in it: a replica started here found it as ./adapters/sql
    _adapter(tmp_path / "adapters" / "sql")
    monkeypatch.chdir(tmp_path)
    store = ModelStore(tmp_path / "store")
    ctx = _ctx(tmp_path, str(model), lora_modules={"sql": "adapters/sql"})
    with pytest.raises(ConfigError) as refused:
        model_config(ctx, store)
    assert "server.lora_modules cannot be served from version v1 of base" in \
        refused.value.message
    assert "adapters/sql (sql) is not in the model version" in refused.value.context
    assert "MODEL_FOLDER/adapters/sql/adapter_config.json" in refused.value.hint
    assert not store.has("base", "v1")  # nothing was imported


@pytest.mark.parametrize(("files", "says"), [
    ({"adapters/sql/adapter_model.safetensors"}, "has no adapter_config.json"),
    ({"adapters/sql/adapter_config.json"}, "has no adapter_model.safetensors (or "
                                           "adapter_model.bin)"),
])
def test_a_folder_that_is_no_peft_adapter_is_refused(tmp_path, files, says):
    model = _model(tmp_path / "base")
    for path in files:
        (model / path).parent.mkdir(parents=True, exist_ok=True)
        (model / path).write_text("{}")
    ctx = _ctx(tmp_path, str(model), lora_modules={"sql": "adapters/sql"})
    with pytest.raises(ConfigError) as refused:
        model_config(ctx, ModelStore(tmp_path / "store"))
    assert says in refused.value.context


def test_an_adapter_named_as_the_model_is_refused(tmp_path):
    model = _model(tmp_path / "base")
    _adapter(model / "adapters" / "base")
    ctx = _ctx(tmp_path, str(model), lora_modules={"base": "adapters/base"})
    with pytest.raises(ConfigError) as refused:
        model_config(ctx, ModelStore(tmp_path / "store"))
    assert "adapter 'base' is named as the model itself" in refused.value.context


def test_a_version_already_in_the_store_is_checked_through_its_manifest(tmp_path):
    """`model upload` made the version (without the adapter); `up` names a hub id, and the
    replicas load the store's version: its manifest says what it holds."""
    upload_model(_model(tmp_path / "base"), str(tmp_path / "store"), name="base",
                 version="v1")
    ctx = _ctx(tmp_path, "org/base", lora_modules={"sql": "adapters/sql"})
    with pytest.raises(ConfigError) as refused:
        model_config(ctx, ModelStore(tmp_path / "store"))
    assert "adapters/sql (sql) is not in the model version" in refused.value.context


def test_what_passes_the_check_is_what_the_server_finds_in_the_version(tmp_path,
                                                                       monkeypatch):
    model = _model(tmp_path / "base")
    sql = _adapter(model / "adapters" / "sql")
    _adapter(model / "adapters" / "chat")
    store = ModelStore(tmp_path / "store")
    ctx = _ctx(tmp_path, str(model), lora_modules={"sql": "adapters/sql/",
                                                   "chat": "./adapters/chat"})
    assert model_config(ctx, store)["kind"] == "store"
    version = store.version_dir("base", "v1")
    listed = [entry["path"] for entry in store.manifest("base", "v1")["files"]]
    assert {"adapters/sql/adapter_config.json", "adapters/sql/adapter_model.safetensors"} \
        <= set(listed)
    assert adapter_problems(listed, ctx.spec.server.lora_modules, "base") == []
    # the spec's setting as the servers read it (SageMaker's variable; the flag alike)
    monkeypatch.setenv("LLMCLOUD_LORA_MODULES",
                       ctx.spec.server.engine_settings()["lora_modules"])
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["--model", str(version)])
    sources = parse_lora_modules(args.lora_modules)
    assert {name: resolve_adapter(version, source, tmp_path / "cache")
            for name, source in sources.items()} == {
        "sql": version / "adapters" / "sql", "chat": version / "adapters" / "chat"}
    assert (version / "adapters" / "sql" / "adapter_model.safetensors").read_bytes() == \
        (sql / "adapter_model.safetensors").read_bytes()


def test_a_hidden_adapter_folder_is_never_part_of_a_version(tmp_path):
    model = _model(tmp_path / "base")
    _adapter(model / ".adapters" / "sql")
    assert not any(path.startswith(".adapters/") for path in version_files(model))
    assert adapter_problems(version_files(model), {"sql": ".adapters/sql"}) == [
        ".adapters/sql (sql): a folder whose name begins with '.' is never part of a model "
        "version (hidden files are not uploaded)"]
    # the version's own root is a folder too: an adapter uploaded as the whole version
    assert adapter_problems(["adapter_config.json", "adapter_model.bin"], {"a": "."}) == []


def test_promote_to_a_version_without_the_adapters_is_refused(fake_stack, tmp_path):
    # the local rollout would have rolled a replica onto it, failed and rolled back: the
    # clouds' promote refuses such a version before anything changes, and so does this one
    from tests.local.conftest import fake_model

    model = fake_model(tmp_path / "with-adapter")
    (model / "adapters" / "sql").mkdir(parents=True)
    (model / "adapters" / "sql" / "adapter_config.json").write_text("{}")
    (model / "adapters" / "sql" / "adapter_model.safetensors").write_bytes(b"lora")
    stack = fake_stack(replicas=1, model=model,
                       server__lora_modules={"sql": "adapters/sql"})
    stack.up()
    stack.upload(fake_model(tmp_path / "without"), "v2")
    with pytest.raises(ConfigError, match="cannot be served from version v2") as caught:
        stack.promote("v2")
    assert "adapters/sql (sql) is not in the model version" in caught.value.context
    assert stack.status()["model_version"] == "v1"
