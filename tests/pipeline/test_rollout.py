"""Promote and roll back on a cloud stack through the Automation API seam, with a fake stack:
the config history, the success path, and the failure path that restores the previous
version."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from pulumi import automation as auto

from llmcloud.providers import rollout
from llmcloud.providers.base import StackContext
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.stacks.fakes import FakeStack

OUTPUTS = {"endpoint_url": "https://api.example/v1", "model_store_uri": "s3://store/models",
           "image": "r/llm@sha256:" + "a" * 64}


class FlakyStack(FakeStack):
    """A fake stack whose first `up` fails (a rollout that breaks its health checks)."""

    def up(self, **kwargs):
        if not any(name == "up" for name, _ in self.calls):
            self.calls.append(("up", kwargs))
            raise auto.CommandError(auto.CommandResult(
                stdout="", stderr="error: instance refresh failed: health checks", code=1))
        return super().up(**kwargs)


class FakeProvider:
    name = "aws"

    def __init__(self, stack_cls=FakeStack, rolled=False, rollout_error=None):
        self.opener = stack_cls.opener(stack_outputs=OUTPUTS)
        self.rolled, self.rollout_error = rolled, rollout_error
        self.watched: list = []  # the times each update's rollout was watched from

    def supports(self, operation):
        pass

    def wait_for_rollout(self, ctx, outputs, since, timeout):
        self.watched.append(since)
        if self.rollout_error is not None and len(self.watched) == 1:
            raise self.rollout_error
        return self.rolled

    def endpoint_reports_version(self, ctx):
        return True

    def api_key_headers(self, key):
        return {"Authorization": f"Bearer {key}"}

    def _engine(self, ctx, operation):
        return PulumiStack(ctx.project_dir, ctx.stack, ctx.environ, opener=self.opener)

    @property
    def stack(self) -> FakeStack:
        return self.opener.opened[0]


@pytest.fixture
def checked(monkeypatch):
    seen = []
    monkeypatch.setattr(rollout, "check_version_in_store",
                        lambda store, name, version: seen.append((store, name, version)))
    return seen


def _ctx(tmp_path: Path, version="v1", history=(), environ=None) -> StackContext:
    # the stack file names the image the stack runs (one that names none is caught up)
    spec = resolve_spec(file_values={"provider": "aws", "image": OUTPUTS["image"], "model": {
        "name": "m", "version": version, "history": list(history)}}, environ={})
    return StackContext(project_dir=tmp_path, stack="prod", spec=spec, environ=environ or {})


def test_promote_records_version_and_history(tmp_path: Path, checked) -> None:
    provider = FakeProvider()
    result = rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert result == {"previous_version": "v1", "model_version": "v2", "outcome": "promoted",
                      "verified": False, "image": OUTPUTS["image"],
                      "endpoint": OUTPUTS["endpoint_url"]}
    assert checked == [("s3://store/models", "m", "v2")]
    assert [name for name, _ in provider.stack.calls] == ["set_all_config", "up"]
    assert provider.stack.config == {"llmcloud:model.version": "v2",
                                     "llmcloud:model.history": '["v0", "v1"]'}


def test_promote_to_the_serving_version_changes_nothing(tmp_path: Path, checked) -> None:
    provider = FakeProvider()
    result = rollout.promote(provider, _ctx(tmp_path, "v3"), "v3")
    assert result["outcome"] == "unchanged"
    assert provider.stack.calls == []


@pytest.mark.parametrize(("provider", "said"), [
    (lambda: FakeProvider(FlakyStack), "instance refresh failed"),  # `up` itself failed
    # the rollout the cloud reports failed after `up` returned (AWS's instance refresh:
    # `up` does not wait for it)
    (lambda: FakeProvider(rollout_error=DeploymentError(
        "the server group's instance refresh ended Failed")), "instance refresh ended Failed"),
], ids=["update", "rollout"])
def test_failed_rollout_restores_the_previous_version(tmp_path: Path, checked, provider,
                                                      said) -> None:
    provider = provider()
    with pytest.raises(DeploymentError) as caught:
        rollout.promote(provider, _ctx(tmp_path, "v1", ["v0"]), "v2")
    assert caught.value.message == "promoting v2 failed; v1 is serving again"
    assert said in caught.value.context
    assert [name for name, _ in provider.stack.calls] == [
        "set_all_config", "up", "set_all_config", "up"]
    assert provider.stack.config == {"llmcloud:model.version": "v1",
                                     "llmcloud:model.history": '["v0"]'}
    assert all(since.tzinfo is not None for since in provider.watched)


def test_a_rollout_the_cloud_confirms_is_verified_without_a_key(tmp_path: Path,
                                                                 checked) -> None:
    provider = FakeProvider(rolled=True)
    assert rollout.promote(provider, _ctx(tmp_path, "v1"), "v2")["verified"] is True


def test_rollback_goes_to_the_last_version_and_pops_it(tmp_path: Path, checked) -> None:
    provider = FakeProvider()
    result = rollout.rollback(provider, _ctx(tmp_path, "v3", ["v1", "v2"]))
    assert (result["previous_version"], result["model_version"], result["outcome"]) == (
        "v3", "v2", "rolled back")
    assert provider.stack.config == {"llmcloud:model.version": "v2",
                                     "llmcloud:model.history": '["v1"]'}


def test_rollback_without_history_says_what_to_do(tmp_path: Path, checked) -> None:
    with pytest.raises(ConfigError) as caught:
        rollout.rollback(FakeProvider(), _ctx(tmp_path, "v1"))
    assert caught.value.hint == "llmcloud promote --model-version VERSION"


def test_verification_through_the_endpoint_with_a_key(tmp_path: Path, checked,
                                                      monkeypatch) -> None:
    answers = iter([["v1"], ["v1", "v2"]] + [["v2"]] * 5)
    calls = []

    class Response:
        status_code = 200

        def __init__(self, versions):
            self.versions = versions

        def json(self):
            return {"data": [{"id": "m", "version": v} for v in self.versions]}

    def get(url, timeout, headers):
        calls.append((url, headers["Authorization"]))
        return Response(next(answers))

    monkeypatch.setattr(rollout, "wait_for_version",
                        functools.partial(_REAL_WAIT, get=get, sleep=lambda s: None))
    provider = FakeProvider()
    ctx = _ctx(tmp_path, "v1", environ={"LLMCLOUD_API_KEY": "sk-test"})
    assert rollout.promote(provider, ctx, "v2")["verified"] is True
    assert calls[0] == ("https://api.example/v1/models", "Bearer sk-test")
    assert len(calls) == 7


def test_wait_gives_up_with_the_last_answer() -> None:
    ticks = iter(range(0, 1000, 10))

    class Response:
        status_code = 503

        def json(self):
            return {}

    with pytest.raises(DeploymentError) as caught:
        _REAL_WAIT("https://e/v1", "v2", headers={"api-key": "k"}, timeout=60,
                   get=lambda *a, **k: Response(), clock=lambda: float(next(ticks)),
                   sleep=lambda s: None)
    assert caught.value.message == "the endpoint did not report version v2 within 60 s"
    assert caught.value.context == "last answer: HTTP 503, versions []"


_REAL_WAIT = rollout.wait_for_version


def test_history_in_the_stack_file_is_json_text() -> None:
    spec = resolve_spec(file_values={"model": {"history": json.dumps(["v1", "v2"])}},
                        environ={})
    assert spec.model.history == ["v1", "v2"]
