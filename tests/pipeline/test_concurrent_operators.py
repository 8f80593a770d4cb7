"""Two operators on one cloud stack at once: a promote while another promote, or an update,
runs. One backend (its lock, its outputs) is shared; each machine has its own stack file,
and two commands on one machine share theirs."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from pulumi import automation as auto

from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import PulumiStack, translate_command_error
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import DeploymentError
from tests.stacks.fakes import FakeStack

IMAGE = "r/llm@sha256:" + "a" * 64
#: the bucket backend's refusal, as the pulumi CLI prints it (DefangLabs/defang#385)
DIY_LOCKED = (
    "error: the stack is currently locked by 1 lock(s). Either wait for the other "
    "process(es) to end or delete the lock file with `pulumi cancel`.\n"
    "  s3://state/.pulumi/locks/organization/llmcloud/prod/ec3a6b52.json: created by "
    "ci@runner-7 (pid 478) at 2026-05-16T20:31:35Z")


@pytest.fixture(autouse=True)
def _in_store(monkeypatch):
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)


class Backend:
    """The Pulumi backend both operators reach: one lock per update, the stack's outputs
    (an update exports the model version and history its stack file named)."""

    def __init__(self, version: str, history: list[str]):
        self.lock = threading.Lock()
        self.outputs = {"endpoint_url": "https://api.example", "image": IMAGE,
                        "model_store_uri": "s3://store/models", "model_version": version,
                        "model_history": history}
        self.files: dict[Path, dict] = {}  # each folder's stack file (its config)

    def stack_class(self, before_up=None):
        backend = self

        class Shared(FakeStack):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.config = backend.files.setdefault(self.project_dir, {})

            def up(self, **kwargs):
                self.calls.append(("up", kwargs))
                if not backend.lock.acquire(blocking=False):
                    raise auto.ConcurrentUpdateError(auto.CommandResult(
                        stdout="", stderr=DIY_LOCKED, code=255))
                try:
                    # the CLI reads the stack file as the update starts
                    version = self.config["llmcloud:model.version"]
                    history = json.loads(self.config["llmcloud:model.history"])
                    if before_up is not None:
                        before_up()
                    backend.outputs.update(model_version=version, model_history=history)
                finally:
                    backend.lock.release()
                return SimpleNamespace(outputs={
                    k: SimpleNamespace(value=v, secret=False)
                    for k, v in backend.outputs.items()})

            def outputs(self):
                return {k: SimpleNamespace(value=v, secret=False)
                        for k, v in backend.outputs.items()}

        return Shared


class Operator:
    """A provider as promote sees it, whose rollout watch runs `during_watch` first."""

    name = "aws"

    def __init__(self, stack_cls, during_watch=None, rollout_error=None):
        self.opener = stack_cls.opener()
        self.during_watch, self.rollout_error = during_watch, rollout_error
        self.watches = 0

    def supports(self, operation):
        pass

    def wait_for_rollout(self, ctx, outputs, since, timeout):
        self.watches += 1
        if self.watches == 1 and self.during_watch is not None:
            self.during_watch()
        if self.watches == 1 and self.rollout_error is not None:
            raise self.rollout_error
        return True

    def endpoint_reports_version(self, ctx):
        return False

    def _engine(self, ctx, operation):
        return PulumiStack(ctx.project_dir, ctx.stack, ctx.environ, opener=self.opener)


def _ctx(folder: Path, home: Path, version: str, history: list[str]) -> StackContext:
    spec = resolve_spec(file_values={"provider": "aws", "image": IMAGE, "model": {
        "name": "m", "version": version, "history": history}}, environ={})
    folder.mkdir(exist_ok=True)
    return StackContext(project_dir=folder, stack="prod", spec=spec,
                        environ={"LLMCLOUD_HOME": str(home)})


def test_the_lock_refusal_names_who_holds_the_stack_and_since_when() -> None:
    error = auto.ConcurrentUpdateError(auto.CommandResult(stdout="", stderr=DIY_LOCKED,
                                                          code=255))
    translated = translate_command_error(error, "prod")
    assert translated.message == "another update of stack 'prod' is in progress"
    assert translated.context == ("Pulumi holds a lock on the stack while an update runs; "
                                  "taken by ci@runner-7 (pid 478) at 2026-05-16T20:31:35Z")
    assert translated.hint == "wait for it, or if it died: pulumi cancel --stack prod --yes"


def test_a_failed_promote_does_not_undo_a_promote_made_meanwhile(tmp_path) -> None:
    # Alice promotes v2; while her rollout is watched (outside Pulumi's lock), Bob, on his
    # machine, promotes v3. Alice's rollout then fails: her restore deployed v1 over v3
    backend = Backend("v1", ["v0"])
    shared = backend.stack_class()
    bob = Operator(shared)

    def bob_promotes():
        result = rollout.promote(bob, _ctx(tmp_path / "bob", tmp_path / "bob-home", "v1",
                                           ["v0"]), "v3")
        assert result["outcome"] == "promoted"

    alice = Operator(shared, during_watch=bob_promotes,
                     rollout_error=DeploymentError("the instance refresh ended Failed"))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(alice, _ctx(tmp_path / "alice", tmp_path / "alice-home", "v1",
                                    ["v0"]), "v2")
    assert backend.outputs["model_version"] == "v3"
    assert backend.outputs["model_history"] == ["v0", "v1", "v2"]
    assert caught.value.message == ("promoting v2 failed, and stack 'prod' serves v3 now, "
                                    "deployed by another operation meanwhile: not rolled back")
    assert caught.value.context == "the instance refresh ended Failed"
    # Alice's stack file names what the stack serves, not her v1
    assert backend.files[tmp_path / "alice"]["llmcloud:model.version"] == "v3"
    assert alice.watches == 1  # no restore was rolled out


def test_two_promotes_from_one_stack_file_do_not_mix_their_versions(tmp_path) -> None:
    # Alice's promote of v2 runs its update; Bob's promote of v3 from the same folder (a
    # second terminal, the console) wrote v3, met Pulumi's lock and wrote v1 back: Alice's
    # stack file named v1 while the stack served v2, and its next `up` rolled back
    started, release = threading.Event(), threading.Event()

    def hold_the_update():
        started.set()
        assert release.wait(5)

    backend = Backend("v1", ["v0"])
    folder, home = tmp_path / "project", tmp_path / "home"
    alice = Operator(backend.stack_class(before_up=hold_the_update))
    outcome: dict = {}

    def alice_promotes():
        outcome["alice"] = rollout.promote(alice, _ctx(folder, home, "v1", ["v0"]), "v2")

    thread = threading.Thread(target=alice_promotes)
    thread.start()
    try:
        assert started.wait(5)
        bob = Operator(backend.stack_class())
        with pytest.raises(DeploymentError) as caught:
            rollout.promote(bob, _ctx(folder, home, "v1", ["v0"]), "v3")
    finally:
        release.set()
        thread.join(5)
    assert outcome["alice"]["outcome"] == "promoted"
    assert backend.outputs["model_version"] == "v2"
    assert backend.files[folder] == {"llmcloud:model.version": "v2",
                                     "llmcloud:model.history": '["v0", "v1"]'}
    assert caught.value.message.startswith(
        "another llmcloud operation is running on stack 'prod' from this folder: promote "
        "(pid ")


def test_the_lock_is_free_again_after_a_promote(tmp_path) -> None:
    backend = Backend("v1", ["v0"])
    folder, home = tmp_path / "project", tmp_path / "home"
    for version in ("v2", "v3"):
        result = rollout.promote(Operator(backend.stack_class()),
                                 _ctx(folder, home, "v1", ["v0"]), version)
        assert result["outcome"] == "promoted"
    assert backend.outputs["model_history"] == ["v0", "v1", "v2"]


def test_an_up_from_the_folder_of_a_running_promote_waits_its_turn(monkeypatch, tmp_path,
                                                                   cli) -> None:
    # a CI job's (or a second terminal's) `up` from the folder where a promote runs: it
    # caught the stack file up and ran its update between the promote's writes
    from llmcloud.providers.aws.provider import AwsProvider
    from llmcloud.stacks import stack_file_lock
    from tests.stacks.fakes import fake_aws_project

    project = fake_aws_project(monkeypatch, tmp_path)
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "home"))
    opener = FakeStack.opener(stack_outputs={"endpoint_url": "https://api.example"})
    monkeypatch.setattr(AwsProvider, "stack_opener", opener)
    with stack_file_lock.hold(project, "prod", "promote",
                              {"LLMCLOUD_HOME": str(tmp_path / "home")}):
        result = cli("up", "--provider", "aws", "--stack", "prod")
    assert result.exit_code == 75, result.output  # busy: run it again later
    assert all(name != "up" for stack in opener.opened for name, _ in stack.calls)
    assert "another llmcloud operation is running on stack 'prod' from this folder: " \
           "promote (pid " in result.stderr
    assert "hint: wait for it to end, then run the command again" in result.stderr
    # and once it has ended, the up runs
    assert cli("up", "--provider", "aws", "--stack", "prod").exit_code == 0


def test_without_a_writable_home_the_operation_runs_without_the_lock(tmp_path, capsys):
    from llmcloud.stacks import stack_file_lock

    home = tmp_path / "home"
    home.write_text("a file where the folder should be")  # nothing can be made under it
    ran = []
    with stack_file_lock.hold(tmp_path, "prod", "promote", {"LLMCLOUD_HOME": str(home)}):
        ran.append(True)
    assert ran == [True]
    assert "running without llmcloud's lock on stack 'prod'" in capsys.readouterr().err
