"""`llmcloud status` on a local stack whose controller stops between status's two reads (it
answered `reachable`, then its owner went or a destroy in another terminal stopped it): a
stopped stack, never a traceback of httpx's ConnectError. Seen as a flaky CI failure of
test_env_between_ups.py."""

from __future__ import annotations

import httpx

from llmcloud.providers.base import StackContext
from llmcloud.providers.local.provider import LocalProvider
from llmcloud.stacks.spec import DeploymentSpec


class _Stopping:
    """A controller client whose controller has just closed its socket."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def get(self, path):
        raise httpx.ConnectError("[Errno 111] Connection refused")


def test_a_controller_stopping_meanwhile_reads_as_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "home"))
    answers = iter([_Stopping(), None])  # reachable at first, gone when asked again
    monkeypatch.setattr(LocalProvider, "_client",
                        staticmethod(lambda state_file, patience=10.0: next(answers)))
    ctx = StackContext(tmp_path, "dev", DeploymentSpec(provider="local"),
                       environ={"LLMCLOUD_HOME": str(tmp_path / "home")})
    status = LocalProvider().status(ctx)
    assert status["running"] is False
