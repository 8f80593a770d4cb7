"""Promote and rollback on a cloud stack when things go wrong half way: a locked stack, a
restore that fails too, a watch that cannot run, Ctrl-C, a version recorded but never
deployed, a version the environment overrides, and engine errors outside an update."""

from __future__ import annotations

from pathlib import Path

import pytest
from pulumi import automation as auto

from llmcloud.providers import rollout
from llmcloud.providers.aws.provider import AwsProvider
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import (
    ConfigError,
    DeploymentError,
    ExitCode,
    InterruptedOperation,
    LlmcloudError,
)
from tests.pipeline.test_rollout import OUTPUTS, FakeProvider
from tests.stacks.fakes import FakeStack


@pytest.fixture(autouse=True)
def _in_store(monkeypatch):
    monkeypatch.setattr(rollout, "check_version_in_store", lambda store, name, version: None)


def _ctx(tmp_path: Path, version="v1", history=(), environ=None) -> StackContext:
    environ = dict(environ or {})
    spec = resolve_spec(file_values={"provider": "aws", "image": OUTPUTS["image"], "model": {
        "name": "m", "version": version, "history": list(history)}}, environ=environ)
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ=environ)


def _failure(stderr: str, cls=auto.CommandError) -> Exception:
    return cls(auto.CommandResult(stdout="", stderr=stderr, code=255))


def _stack_failing_up(error: Exception):
    class Failing(FakeStack):
        def up(self, **kwargs):
            self.calls.append(("up", kwargs))
            raise error

    return Failing


def test_a_promote_while_another_update_holds_the_stack_changes_nothing(tmp_path) -> None:
    # it tried a second update to "restore" what never changed, said "restoring v1 failed
    # too", and hinted `llmcloud rollback`, which goes to v0
    locked = _failure("error: [409] Conflict: Another update is currently in progress.",
                      auto.ConcurrentUpdateError)
    provider = FakeProvider(_stack_failing_up(locked))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "another update of stack 'prod' is in progress"
    assert caught.value.hint == "wait for it, or if it died: pulumi cancel --stack prod --yes"
    assert [name for name, _ in provider.stack.calls] == ["set_all_config", "up",
                                                          "set_all_config"]
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}


def test_a_failed_restore_does_not_send_the_user_to_the_wrong_version(tmp_path) -> None:
    # the config names v1 (history [v0]) again: `llmcloud rollback` would go to v0
    provider = FakeProvider(_stack_failing_up(_failure("error: instance refresh failed")))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed, and restoring v1 failed too"
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}
    assert "rollback" not in caught.value.hint
    assert caught.value.hint == ("llmcloud refresh --stack prod, then llmcloud up --stack prod "
                                 "(it puts v1 back)")


class _RestoreFails(FakeProvider):
    """The promotion's rollout fails, and so does the restore's, as the cloud tells it."""

    def __init__(self, restore_error: BaseException):
        super().__init__(rollout_error=DeploymentError(
            "the server group's instance refresh ended Failed"))
        self.restore_error = restore_error

    def wait_for_rollout(self, ctx, outputs, since, timeout):
        super().wait_for_rollout(ctx, outputs, since, timeout)
        raise self.restore_error


def test_a_restore_whose_rollout_fails_is_not_reported_as_serving(tmp_path) -> None:
    # the restore's `up` was trusted: "v1 is serving again" while its refresh failed too
    provider = _RestoreFails(DeploymentError("the server group's instance refresh ended "
                                             "Cancelled", context="group llm-prod"))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed, and restoring v1 failed too"
    assert caught.value.context == (
        "the server group's instance refresh ended Failed; then: the server group's "
        "instance refresh ended Cancelled: group llm-prod")
    assert caught.value.hint.endswith("(it puts v1 back)")
    assert len(provider.watched) == 2
    # the restore's watch starts after the promotion's, so it cannot take that one's end
    assert provider.watched[1] > provider.watched[0]


def test_a_restore_watched_to_its_end_reports_serving_again(tmp_path) -> None:
    provider = FakeProvider(rollout_error=DeploymentError("refresh ended Failed"))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed; v1 is serving again"
    assert len(provider.watched) == 2


@pytest.mark.parametrize(("second", "then", "code"), [
    (KeyboardInterrupt(), "interrupted", ExitCode.INTERRUPTED),
    (RuntimeError("AccessDenied"), "RuntimeError: AccessDenied", ExitCode.ERROR),
], ids=["ctrl-c", "sdk-error"])
def test_a_restore_watch_cut_short_says_so(tmp_path, second, then, code) -> None:
    provider = _RestoreFails(second)
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed, and restoring v1 failed too"
    assert caught.value.context.endswith("; then: " + then)
    assert caught.value.exit_code == code
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}


def test_a_watch_that_cannot_run_puts_the_previous_version_back(tmp_path) -> None:
    # a cloud SDK error (AccessDenied on DescribeInstanceRefreshes, a dropped connection)
    # left the config on v2 unwatched, and was reported as "a bug in llmcloud"
    provider = FakeProvider(rollout_error=RuntimeError("AccessDenied: autoscaling:Describe"))
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed; v1 is serving again"
    assert "AccessDenied" in caught.value.context
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}


def _terminated() -> InterruptedOperation:
    error = InterruptedOperation("up of stack 'dev' cancelled (SIGTERM)")
    error.exit_code = ExitCode.TERMINATED
    return error


@pytest.mark.parametrize("interruption,code", [
    (KeyboardInterrupt(), 130),
    # the engine's own: Ctrl-C during `pulumi up` lets the engine cancel, then says so
    (InterruptedOperation("up of stack 'dev' cancelled"), 130),
    (_terminated(), 143),  # a cancelled CI job's SIGTERM
], ids=["watch", "engine", "sigterm"])
def test_an_interrupted_promote_exits_130(tmp_path, interruption, code) -> None:
    provider = FakeProvider(rollout_error=interruption)
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.to_dict()["exit_code"] == code
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}


def test_a_version_recorded_but_never_deployed_is_deployed_when_promoted_again(
        tmp_path) -> None:
    # a promote killed after recording v2 (a CI job cancelled, SIGTERM): the config names
    # v2, the stack still serves v1; "run the command again" answered "unchanged"
    class Stale(FakeStack):
        def outputs(self):
            return {**super().outputs(),
                    "model_version": auto.OutputValue(value="v1", secret=False)}

    provider = FakeProvider(Stale)
    result = rollout.promote(provider, _ctx(tmp_path, "v2", ["v0", "v1"]), "v2")
    assert result["outcome"] == "promoted"
    assert [name for name, _ in provider.stack.calls] == ["set_all_config", "up"]
    assert provider.stack.config == {"llmcloud:model.version": "v2",
                                     "llmcloud:model.history": '["v0", "v1"]'}


def test_promote_to_the_serving_version_prints_every_documented_key(tmp_path) -> None:
    result = rollout.promote(FakeProvider(), _ctx(tmp_path, "v3"), "v3")
    assert result["outcome"] == "unchanged"
    assert set(result) == {"previous_version", "model_version", "outcome", "verified",
                           "image", "endpoint"}
    assert result["endpoint"] == OUTPUTS["endpoint_url"]


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_a_model_version_set_in_the_environment_is_refused(tmp_path, action) -> None:
    # the program reads LLMCLOUD_* over the stack's config: it deployed the variable's
    # version while promote recorded and reported another
    provider = FakeProvider()
    ctx = _ctx(tmp_path, "v2", ["v1"], environ={"LLMCLOUD_MODEL__VERSION": "v2"})
    with pytest.raises(ConfigError) as caught:
        if action == "promote":
            rollout.promote(provider, ctx, "v3")
        else:
            rollout.rollback(provider, ctx)
    assert "LLMCLOUD_MODEL__VERSION" in caught.value.message
    assert caught.value.hint == "unset LLMCLOUD_MODEL__VERSION"
    assert provider.opener.opened == [] or provider.stack.calls == []


@pytest.fixture
def aws(tmp_path, monkeypatch):
    monkeypatch.setattr(AwsProvider, "unsupported", {})
    monkeypatch.setattr(AwsProvider, "require_sdk", lambda self: None)
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n")
    return AwsProvider()


@pytest.mark.parametrize("operation", ["promote", "status"])
def test_an_engine_error_reading_outputs_is_reported_not_a_bug(tmp_path, monkeypatch, aws,
                                                               operation) -> None:
    # `pulumi stack output --show-secrets` decrypts: a wrong passphrase failed there with a
    # raw CommandError ("unexpected error ... a bug in llmcloud")
    class Locked(FakeStack):
        def outputs(self):
            raise _failure("error: getting stack outputs: failed to decrypt: incorrect "
                           "passphrase, please set PULUMI_CONFIG_PASSPHRASE")

    monkeypatch.setattr(AwsProvider, "stack_opener", Locked.opener())
    ctx = _ctx(tmp_path, "v1", environ={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"})
    with pytest.raises(LlmcloudError) as caught:
        aws.promote(ctx, "v2") if operation == "promote" else aws.status(ctx)
    assert "incorrect passphrase" in caught.value.context
