"""`model list` and `model delete` against S3 (moto server), GCS (gcp-storage-emulator) and
Azure (Azurite): the versions `model upload` wrote, read back by the listing from the same
store URI; a delete takes every object of its version and no other (`v1` is not `v10`), the
manifest first; a cloud stack's needed versions refused through its outputs' store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.model_stores import open_writable_store
from llmcloud.providers.model_versions import delete_version, list_versions
from llmcloud.stacks.errors import DeploymentError
from tests.pipeline import test_model_upload as uploads

# the fixtures of test_model_upload: the emulators, a fresh bucket in each, a model folder
emulator, store_uri, model_dir = uploads.emulator, uploads.store_uri, uploads.model_dir


def _upload(cli, model_dir: Path, uri: str, version: str) -> None:
    result = cli("model", "upload", str(model_dir), "--name", "m", "--version", version,
                 "--to", uri, "--json")
    assert result.exit_code == 0, result.output


def _keys(uri: str) -> list[str]:
    store, prefix = open_writable_store(uri.rstrip("/") + "/models/m")
    return sorted(store.keys(prefix))


def test_list_reads_what_upload_wrote(cli, model_dir: Path, store_uri: str) -> None:
    for version in ("v1", "v10", "v2"):
        _upload(cli, model_dir, store_uri, version)
    result = cli("model", "list", "--from", store_uri, "--name", "m", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["uri"] == f"{store_uri}/models/m"
    versions = document["versions"]
    assert sorted(v["version"] for v in versions) == ["v1", "v10", "v2"]
    total = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert {(v["files"], v["size_bytes"], v["complete"]) for v in versions} == {(4, total, True)}
    # the stack's output form (`<bucket>/models`) names the same versions
    assert [v["version"] for v in list_versions(f"{store_uri}/models", "m")] == \
        [v["version"] for v in versions]


def test_delete_takes_its_version_only_manifest_first(cli, model_dir: Path, store_uri: str,
                                                      monkeypatch) -> None:
    for version in ("v1", "v10"):
        _upload(cli, model_dir, store_uri, version)
    v10 = [k for k in _keys(store_uri) if "/v10/" in k]
    store, _ = open_writable_store(f"{store_uri}/models/m/v1")
    deleted: list[str] = []
    real = type(store).delete
    monkeypatch.setattr(type(store), "delete",
                        lambda self, key: deleted.append(key) or real(self, key))
    result = delete_version(store_uri, "m", "v1")
    assert result["deleted_objects"] == 5 and deleted[0] == "models/m/v1/manifest.json"
    assert _keys(store_uri) == v10
    assert [v["version"] for v in list_versions(store_uri, "m")] == ["v10"]


def test_a_delete_cut_short_lists_as_incomplete(cli, model_dir: Path, store_uri: str,
                                                monkeypatch) -> None:
    _upload(cli, model_dir, store_uri, "v1")
    store, _ = open_writable_store(f"{store_uri}/models/m/v1")
    real, calls = type(store).delete, []

    def cut(self, key: str) -> None:
        calls.append(key)
        if len(calls) > 1:
            raise ConnectionError("the network went away")
        real(self, key)

    monkeypatch.setattr(type(store), "delete", cut)
    with pytest.raises(DeploymentError, match="could not be reached"):
        delete_version(store_uri, "m", "v1")
    (listed,) = list_versions(store_uri, "m")
    assert listed["version"] == "v1" and listed["complete"] is False


def test_a_cloud_stack_refuses_its_served_version_in_its_bucket(cli, model_dir: Path,
                                                                store_uri: str, project: Path,
                                                                monkeypatch) -> None:
    from llmcloud.providers.aws.provider import AwsProvider
    from tests.stacks.fakes import FakeStack

    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    (project / "Pulumi.prod.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:model:\n    name: m\n"
        "    version: v2\n    history: [v1]\n")
    # the store as the stack outputs it; the upload through the stack writes there
    outputs = {"model_store_uri": f"{store_uri}/models", "model_version": "v2",
               "model_history": ["v1"]}
    monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener(stack_outputs=outputs))
    for version in ("v1", "v2", "v3"):
        result = cli("model", "upload", str(model_dir), "--version", version, "--provider",
                     "aws", "--stack", "prod", "--json")
        assert result.exit_code == 0, result.output
    result = cli("model", "list", "--provider", "aws", "--stack", "prod", "--json")
    assert result.exit_code == 0, result.output
    uses = {v["version"]: v["use"] for v in json.loads(result.stdout)["versions"]}
    assert uses == {"v1": "rollback history", "v2": "in service", "v3": None}
    for version in ("v1", "v2"):
        result = cli("model", "delete", version, "--provider", "aws", "--stack", "prod",
                     "--yes", "--json")
        assert result.exit_code == 2, result.output
    result = cli("model", "delete", "v3", "--provider", "aws", "--stack", "prod", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted({k.split("/")[2] for k in _keys(store_uri)}) == ["v1", "v2"]
