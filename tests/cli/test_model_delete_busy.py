"""`llmcloud model delete` refuses, exit 75 with nothing deleted, while an update of the stack
is in progress: a promote or rollback to the version may be rolling the servers to it while
the stack's outputs still name the version before. The Pulumi Cloud lists the running update
in the stack's history ("in-progress"); a bucket or file backend only holds its lock file
(its history is written when the update ends). The check is made again after the question,
which may wait minutes. A local stack's controller says which version it is rolling to."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.local.provider import LocalProvider
from tests.cli.controller_fake import RollingController
from tests.stacks.fakes import FakeStack

LOCK = {"pid": 478, "username": "ops", "hostname": "ci-7",
        "timestamp": "2026-11-30T20:31:35Z"}


@pytest.fixture
def aws(monkeypatch, project: Path, tmp_path: Path):
    """An AWS stack `prod` (project `test`) serving m v3 after v1, v2, its store a folder
    holding v5 too; returns (store, the last update's info, the engine's opener kwargs)."""
    store = tmp_path / "bucket" / "models"
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example")
    (project / "Pulumi.prod.yaml").write_text(
        "config:\n  llmcloud:provider: aws\n  llmcloud:model:\n    name: m\n"
        "    version: v3\n    history: [v1, v2]\n")
    outputs = {"model_store_uri": str(store), "model_version": "v3",
               "model_history": ["v1", "v2"]}
    last = SimpleNamespace(kind="update", result="succeeded", end_time=None,
                           resource_changes={})
    engine = {"stack_outputs": outputs, "last": last}
    monkeypatch.setattr(AwsProvider, "stack_opener",
                        staticmethod(lambda *a, **k: FakeStack.opener(**engine)(*a, **k)))
    version = store / "m" / "v5"
    version.mkdir(parents=True)
    (version / "weights.bin").write_bytes(b"x" * 10)
    (version / "manifest.json").write_text(json.dumps(
        {"created": "2026-11-01T10:00:00Z", "files": [{"path": "weights.bin", "size": 10}]}))
    return store, last, engine


def _delete(cli, *extra: str, input: str | None = None):
    return cli("model", "delete", "v5", "--provider", "aws", "--stack", "prod", *extra,
               input=input)


def test_an_update_the_pulumi_cloud_lists_in_progress_is_exit_75_and_deletes_nothing(
        cli, aws) -> None:
    store, last, _ = aws
    last.result = "in-progress"
    result = _delete(cli, "--yes", "--json")
    assert result.exit_code == 75, result.output
    document = json.loads(result.stdout)
    assert document["error"] == "an update of stack 'prod' is in progress; v5 was not deleted"
    assert "pulumi cancel --stack prod" in document["hint"]
    assert (store / "m" / "v5" / "manifest.json").is_file()


def test_after_an_update_that_ended_the_version_is_deleted_as_before(cli, aws) -> None:
    store, last, _ = aws
    for ended in ("succeeded", "failed"):
        last.result = ended
        assert (store / "m" / "v5").is_dir()
        result = _delete(cli, "--yes", "--json")
        assert result.exit_code == 0, result.output
        assert not (store / "m" / "v5").exists()
        (store / "m" / "v5").mkdir()
        (store / "m" / "v5" / "manifest.json").write_text('{"files": []}')


def test_a_bucket_or_file_backends_lock_is_exit_75_naming_who_holds_it(cli, aws,
                                                                      tmp_path) -> None:
    store, _, engine = aws
    backend = tmp_path / "state"
    engine["backend_url"] = f"file://{backend}"
    locks = backend / ".pulumi" / "locks"
    # another project's stack of the same name, and another stack of this project
    for folder in ("organization/other/prod", "organization/test/dev"):
        (locks / folder).mkdir(parents=True)
        (locks / folder / "a1.json").write_text(json.dumps(LOCK))
    result = _delete(cli, "--yes", "--json")
    assert result.exit_code == 0, result.output
    (store / "m" / "v5").mkdir()
    (store / "m" / "v5" / "manifest.json").write_text('{"files": []}')
    (locks / "organization/test/prod").mkdir(parents=True)
    (locks / "organization/test/prod" / "ec3a6b52.json").write_text(json.dumps(LOCK))
    result = _delete(cli, "--yes", "--json")
    assert result.exit_code == 75, result.output
    assert "taken by ops@ci-7 (pid 478) at 2026-11-30T20:31:35Z" in (
        json.loads(result.stdout)["context"])
    assert (store / "m" / "v5" / "manifest.json").is_file()


def test_an_update_that_begins_while_the_question_waits_is_refused(cli, aws,
                                                                   monkeypatch) -> None:
    from llmcloud.cli import stack_commands

    store, last, _ = aws
    asked = []

    def answer_yes_as_a_promote_begins(*args, **kwargs) -> None:
        asked.append(args)
        last.result = "in-progress"  # (another machine's `llmcloud promote --model-version v5`)

    monkeypatch.setattr(stack_commands, "_confirm", answer_yes_as_a_promote_begins)
    result = _delete(cli, "--json")
    assert asked and result.exit_code == 75, result.output
    assert (store / "m" / "v5" / "manifest.json").is_file()


def test_a_promote_that_ended_while_the_question_waited_protects_its_version(
        cli, aws, monkeypatch) -> None:
    from llmcloud.cli import stack_commands

    store, _, engine = aws

    def answer_yes_as_v5_goes_into_service(*args, **kwargs) -> None:
        engine["stack_outputs"] = {**engine["stack_outputs"], "model_version": "v5",
                                   "model_history": ["v1", "v2", "v3"]}

    monkeypatch.setattr(stack_commands, "_confirm", answer_yes_as_v5_goes_into_service)
    result = _delete(cli, "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == "version v5 of m is in service; it was not deleted"
    assert (store / "m" / "v5" / "manifest.json").is_file()


def _local_stack_serving_v2_holding_v3() -> Path:
    """A local stack `dev` serving m v2 after v1, its store holding v3 too; its folder."""
    folder = Path.home() / ".llmcloud" / "stacks" / "dev"
    (folder / "models" / "m" / "v3").mkdir(parents=True)
    (folder / "models" / "m" / "v3" / "manifest.json").write_text('{"files": []}')
    (folder / "state.json").write_text(json.dumps({
        "config": {"model": {"name": "m", "kind": "store"}, "version": "v2"},
        "version": "v2", "history": ["v1", "v2"]}))
    return folder


def test_local_a_promote_rolling_to_the_version_is_exit_75(cli, project, monkeypatch) -> None:
    folder = _local_stack_serving_v2_holding_v3()
    controller = RollingController("v3", model_version="v2")
    monkeypatch.setattr(LocalProvider, "_client", lambda self, state_file: controller)
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 75, result.output
    assert json.loads(result.stdout)["error"] == (
        "a rollout of stack 'dev' to v3 is in progress; v3 was not deleted")
    assert (folder / "models" / "m" / "v3" / "manifest.json").is_file()
    controller.rolling_to = "v4"  # another version's rollout leaves v3 free
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert not (folder / "models" / "m" / "v3").exists()


def test_local_a_canary_of_the_version_is_exit_75(cli, project, monkeypatch) -> None:
    # the canary's replicas serve v3, and its promote rolls the others to v3 if it passes
    folder = _local_stack_serving_v2_holding_v3()
    controller = RollingController(None, model_version="v2",
                                   canary={"version": "v3", "servers": 1})
    monkeypatch.setattr(LocalProvider, "_client", lambda self, state_file: controller)
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 75, result.output
    assert "canary serves it" in json.loads(result.stdout)["context"]
    assert (folder / "models" / "m" / "v3" / "manifest.json").is_file()


def test_a_cloud_stacks_canary_version_is_needed(cli, aws) -> None:
    # between a canary's updates no update runs: its version is needed all the same
    store, _, engine = aws
    engine["stack_outputs"] = {**engine["stack_outputs"],
                               "model_canary": {"version": "v5", "servers": 1}}
    result = _delete(cli, "--yes", "--json")
    assert result.exit_code == 2, result.output
    assert json.loads(result.stdout)["error"] == (
        "version v5 of m is the version a promote's canary serves; it was not deleted")
    assert (store / "m" / "v5" / "manifest.json").is_file()


def test_local_a_controller_that_does_not_answer_deletes_nothing(cli, project,
                                                               monkeypatch) -> None:
    import httpx

    folder = _local_stack_serving_v2_holding_v3()
    controller = RollingController(None, model_version="v2")

    def timed_out(path: str) -> dict:
        raise httpx.ReadTimeout("timed out")

    controller.get = timed_out
    monkeypatch.setattr(LocalProvider, "_client", lambda self, state_file: controller)
    result = cli("model", "delete", "v3", "--stack", "dev", "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert "whether a rollout runs" in json.loads(result.stdout)["error"]
    assert (folder / "models" / "m" / "v3" / "manifest.json").is_file()


def test_local_the_controller_says_which_version_it_rolls_to(monkeypatch) -> None:
    import asyncio

    from llmcloud.providers.local import controller as controller_module

    seen = []

    async def rolled(supervisor, version, ready_timeout, progress):
        seen.append(c.rolling_to)
        return 1

    monkeypatch.setattr(controller_module, "roll", rolled)
    c = controller_module.Controller.__new__(controller_module.Controller)
    c.version, c.history, c.config = "v1", ["v1"], {"ready_timeout": 1}
    c.supervisor, c.save, c.rolling_to = None, lambda: None, None
    asyncio.run(c._roll_or_back("v2", lambda message: None))
    assert seen == ["v2"] and c.rolling_to is None


def test_the_backends_url_as_the_store_clients_name_the_place(monkeypatch) -> None:
    from llmcloud.providers.update_in_progress import _store_address

    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT", "acct")
    assert _store_address("s3://state/pulumi?region=eu-west-1&profile=ops") == \
        "s3://state/pulumi"
    assert _store_address("gs://state") == "gs://state"
    assert _store_address("azblob://state") == "az://acct/state"
    assert _store_address("azblob://state?storage_account=other") == "az://other/state"
    assert _store_address("file:///srv/pulumi") == "/srv/pulumi"
    for not_a_bucket in ("https://api.pulumi.com", "postgres://db/pulumi", ""):
        assert _store_address(not_a_bucket) is None
