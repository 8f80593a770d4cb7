"""`llmcloud model list` and `model delete` on the stack's store: what `model upload` wrote,
read back by the real listing; the versions a stack needs (in service, rollback history,
named by the stack file) refused for deletion; `v1` never deletes `v10`; a delete cut short
reads as incomplete. The local provider's store and state file, and a cloud stack's outputs
(through the fake Automation API stack) with a folder as its store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from tests.stacks.fakes import FakeStack


@pytest.fixture
def local(project: Path) -> Path:
    """A local stack `dev` serving m v2, after v1 (its state file as the controller writes it)."""
    folder = Path.home() / ".llmcloud" / "stacks" / "dev"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({
        "config": {"model": {"name": "m", "kind": "store"}, "version": "v2"},
        "version": "v2", "history": ["v1", "v2"]}))
    return folder / "models"


@pytest.fixture
def aws(monkeypatch, project: Path, tmp_path: Path) -> Path:
    """An AWS stack `prod` deployed with m v3 after v1, v2; its store a folder."""
    store = tmp_path / "bucket" / "models"
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    (project / "Pulumi.prod.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:model:\n    name: m\n"
        "    version: v4\n    history: [v1, v2]\n")
    outputs = {"model_store_uri": str(store), "model_version": "v3",
               "model_history": ["v1", "v2"]}
    monkeypatch.setattr(AwsProvider, "stack_opener", FakeStack.opener(stack_outputs=outputs))
    return store


def _upload(cli, model: Path, version: str, *where: str) -> None:
    result = cli("model", "upload", str(model), "--name", "m", "--version", version, *where)
    assert result.exit_code == 0, result.output


def _list(cli, *args: str) -> dict:
    result = cli("model", "list", *args, "--json")
    assert result.exit_code == 0, result.output
    return {v["version"]: v for v in json.loads(result.stdout)["versions"]}


def test_local_list_shows_what_upload_wrote_and_what_the_stack_needs(cli, model, local) -> None:
    for version in ("v1", "v2", "v10"):
        _upload(cli, model, version, "--stack", "dev")
    (local / "m" / "v7").mkdir()  # an upload cut short: no manifest
    (local / "m" / "v7" / "config.json").write_text("{}")
    versions = _list(cli, "--stack", "dev")
    assert list(versions) == ["v1", "v2", "v10", "v7"]  # upload order, incomplete last
    assert versions["v10"] == {"version": "v10", "complete": True, "files": 2,
                               "size_bytes": 64 + len('{"model_type": "llama"}'),
                               "uploaded": versions["v10"]["uploaded"], "use": None}
    assert versions["v10"]["uploaded"].endswith("Z")
    assert versions["v2"]["use"] == "in service" and versions["v1"]["use"] == "rollback history"
    assert versions["v7"]["complete"] is False and versions["v7"]["files"] is None
    human = cli("model", "list", "--stack", "dev")
    assert human.exit_code == 0, human.output
    assert "incomplete (no manifest)" in human.stdout and "in service" in human.stdout


def test_local_delete_refuses_what_the_stack_needs(cli, model, local) -> None:
    for version in ("v1", "v2"):
        _upload(cli, model, version, "--stack", "dev")
    for version, why in (("v2", "in service"), ("v1", "in the stack's rollback history")):
        result = cli("model", "delete", version, "--stack", "dev", "--yes", "--json")
        assert result.exit_code == 2, result.output
        assert json.loads(result.stdout)["error"] == (
            f"version {version} of m is {why}; it was not deleted")
        assert (local / "m" / version / "manifest.json").is_file()


def test_delete_v1_leaves_v10_and_removes_the_folder(cli, model, local) -> None:
    for version in ("v1", "v2", "v3", "v10"):
        _upload(cli, model, version, "--to", str(local))
    # the state names v2 and its history v1, v2: promote to v10 leaves v3 free
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deleted_objects"] == 3
    assert not (local / "m" / "v3").exists()
    assert (local / "m" / "v10" / "manifest.json").is_file()
    assert list(_list(cli, "--stack", "dev")) == ["v1", "v2", "v10"]


def test_delete_asks_on_a_terminal_and_needs_yes_otherwise(cli, model, local,
                                                          monkeypatch) -> None:
    from llmcloud.cli import stack_commands

    _upload(cli, model, "v3", "--stack", "dev")
    result = cli("model", "delete", "v3", "--stack", "dev", "--json")  # no terminal
    assert result.exit_code == 2, result.output
    assert "--yes" in json.loads(result.stdout)["hint"]
    monkeypatch.setattr(stack_commands, "interactive", lambda: True)
    result = cli("model", "delete", "v3", "--stack", "dev", input="n\n")
    assert result.exit_code == 1 and "cancelled" in result.stderr
    assert (local / "m" / "v3" / "manifest.json").is_file()
    result = cli("model", "delete", "v3", "--stack", "dev", input="y\n")
    assert result.exit_code == 0, result.output
    assert not (local / "m" / "v3").exists()


def test_a_version_not_in_the_store_is_exit_2_naming_those_there(cli, model, local) -> None:
    _upload(cli, model, "v3", "--stack", "dev")
    result = cli("model", "delete", "v30", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["error"] == "version v30 of m is not in the model store"
    assert "v3" in document["context"]


def test_a_stack_typo_is_exit_2_naming_the_stacks(cli, local) -> None:
    for args in (["list"], ["delete", "v1", "--yes"]):
        result = cli("model", *args, "--stack", "dve", "--json")
        assert result.exit_code == 2, result.output
        assert "dev" in json.dumps(json.loads(result.stdout))


def test_a_delete_cut_short_reads_as_incomplete(cli, model, local, monkeypatch) -> None:
    from llmcloud.providers.model_stores import FolderStore

    _upload(cli, model, "v3", "--stack", "dev")
    calls = []

    def fail_after_the_first(self, key: str) -> None:
        calls.append(key)
        if len(calls) > 1:
            raise OSError("the network went away")
        (self.root / key).unlink()

    monkeypatch.setattr(FolderStore, "delete", fail_after_the_first)
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert calls[0].endswith("manifest.json")
    assert _list(cli, "--stack", "dev")["v3"]["complete"] is False


def test_cloud_stack_needs_its_deployed_version_history_and_file_version(cli, model,
                                                                         aws) -> None:
    for version in ("v1", "v2", "v3", "v4", "v5"):
        _upload(cli, model, version, "--to", str(aws))
    versions = _list(cli, "--provider", "aws", "--stack", "prod")
    assert {v: versions[v]["use"] for v in versions} == {
        "v1": "rollback history", "v2": "rollback history", "v3": "in service",
        "v4": "named by the stack file", "v5": None}
    for version in ("v1", "v2", "v3", "v4"):
        result = cli("model", "delete", version, "--provider", "aws", "--stack", "prod",
                     "--yes", "--json")
        assert result.exit_code == 2, result.output
    result = cli("model", "delete", "v5", "--provider", "aws", "--stack", "prod", "--yes")
    assert result.exit_code == 0, result.output
    assert not (aws / "m" / "v5").exists() and (aws / "m" / "v4").is_dir()


def test_another_models_versions_are_not_the_stacks(cli, model, aws) -> None:
    cli("model", "upload", str(model), "--name", "other", "--version", "v3", "--to", str(aws))
    versions = _list(cli, "--provider", "aws", "--stack", "prod", "--name", "other")
    assert versions["v3"]["use"] is None
    result = cli("model", "delete", "v3", "--name", "other", "--provider", "aws", "--stack",
                 "prod", "--yes")
    assert result.exit_code == 0, result.output


def test_list_from_a_uri_needs_a_name(cli, model, tmp_path) -> None:
    _upload(cli, model, "v1", "--to", str(tmp_path / "store"))
    result = cli("model", "list", "--from", str(tmp_path / "store"), "--json")
    assert result.exit_code == 2, result.output
    versions = _list(cli, "--from", str(tmp_path / "store"), "--name", "m")
    assert versions["v1"]["complete"] and versions["v1"]["use"] is None


def test_a_cloud_stack_not_in_the_backend_is_exit_2_and_created_nowhere(cli, aws,
                                                                       monkeypatch) -> None:
    engine = FakeStack.opener(exists=False, stack_outputs={"model_store_uri": str(aws)})
    monkeypatch.setattr(AwsProvider, "stack_opener", engine)
    for args in (["list"], ["delete", "v5", "--yes"]):
        result = cli("model", *args, "--provider", "aws", "--stack", "prod", "--json")
        assert result.exit_code == 2, result.output
        assert json.loads(result.stdout)["error"] == (
            "stack 'prod' does not exist in this project's Pulumi backend")
    assert engine.created == [] and engine.opened == []


def test_a_manifest_not_written_by_upload_lists_as_incomplete(cli, tmp_path) -> None:
    # (a size that is no number was an "unexpected error ... a bug in llmcloud")
    store = tmp_path / "store"
    for version, manifest in (("v1", {"files": [{"path": "a", "size": "12x"}]}),
                              ("v2", {"files": [{"path": "a", "size": None}], "created": "t"}),
                              ("v3", [1])):
        (store / "m" / version).mkdir(parents=True)
        (store / "m" / version / "manifest.json").write_text(json.dumps(manifest))
    versions = _list(cli, "--from", str(store), "--name", "m")
    assert not versions["v1"]["complete"] and not versions["v3"]["complete"]
    assert versions["v2"]["complete"] and versions["v2"]["size_bytes"] == 0
    result = cli("model", "list", "--from", str(store), "--name", "m")
    assert result.exit_code == 0, result.output
    assert "v1" in result.stdout and "incomplete" in result.stdout
