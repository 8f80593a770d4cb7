"""Promote and rollback to a version that cannot serve the spec's `server.lora_modules`
(the adapter's folder missing from the version, or no PEFT folder): every server would fail
at its start, and the rollout said so only after the cloud's boot allowance. Refused (2)
before anything changes, from the version's manifest in the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError
from tests.pipeline.test_rollout import OUTPUTS, FakeProvider

WEIGHTS = ["config.json", "model.safetensors", "tokenizer.json"]
SQL = ["adapters/sql/adapter_config.json", "adapters/sql/adapter_model.safetensors"]


def _ctx(tmp_path: Path, version: str, history: list[str]) -> StackContext:
    spec = resolve_spec(file_values={
        "provider": "aws", "image": OUTPUTS["image"],
        "model": {"name": "m", "version": version, "history": history},
        "server": {"lora_modules": {"sql": "adapters/sql"}}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ={})


def _store(monkeypatch, files: dict[str, list[str]]) -> None:
    def manifest(store, name, version):
        return {"name": name, "version": version,
                "files": [{"path": path, "sha256": "0" * 64, "size": 1}
                          for path in files[version]]}

    monkeypatch.setattr(rollout, "check_version_in_store", manifest)


@pytest.mark.parametrize("files,problem", [
    (WEIGHTS, "adapters/sql (sql) is not in the model version"),
    (WEIGHTS + [SQL[1]], "has no adapter_config.json"),
], ids=["missing", "not-peft"])
def test_promote_to_a_version_without_the_adapters_is_refused(tmp_path, monkeypatch, files,
                                                              problem):
    _store(monkeypatch, {"v2": files})
    provider = FakeProvider()
    with pytest.raises(ConfigError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "version v2 of m cannot serve server.lora_modules"
    assert problem in caught.value.context
    assert provider.opener.opened == [] or provider.stack.calls == []  # nothing changed


def test_rollback_to_a_version_from_before_the_adapters_is_refused(tmp_path, monkeypatch):
    # lora_modules belongs to the stack, not the version: v1 came before the adapter
    _store(monkeypatch, {"v1": WEIGHTS, "v2": WEIGHTS + SQL})
    provider = FakeProvider()
    with pytest.raises(ConfigError, match="version v1 of m cannot serve"):
        rollout.rollback(provider, _ctx(tmp_path, "v2", ["v0", "v1"]))


def test_a_version_holding_the_adapters_is_promoted(tmp_path, monkeypatch):
    _store(monkeypatch, {"v2": WEIGHTS + SQL})
    result = rollout.promote(FakeProvider(), _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert result["outcome"] == "promoted"
