"""`llmcloud destroy` from another terminal while a promote is rolling."""

from __future__ import annotations

import threading
import time

import pytest

from llmcloud.stacks.errors import DeploymentError
from tests.local.conftest import fake_model, processes_mentioning


def test_destroy_during_a_promote_stops_everything_and_the_promote_says_so(fake_stack,
                                                                          tmp_path, home):
    stack = fake_stack(replicas=1)
    stack.up()
    stack.upload(fake_model(tmp_path / "slow", load_seconds=30), "v2")
    outcome: dict = {}

    def promote() -> None:
        try:
            outcome["result"] = stack.promote("v2")
        except Exception as exc:  # noqa: BLE001 (the test looks at it below)
            outcome["error"] = exc

    thread = threading.Thread(target=promote)
    thread.start()
    stack.wait(lambda s: any(r["version"] == "v2" for r in s["replicas"]), timeout=10,
               what="the promote's new replica")
    started = time.monotonic()
    assert stack.destroy()["destroyed"]
    thread.join(30)
    assert not thread.is_alive()
    assert time.monotonic() - started < 20
    assert processes_mentioning(str(home)) == []
    error = outcome.get("error")
    assert isinstance(error, DeploymentError), outcome
    # before: "lost the connection to the stack's controller", as if it had crashed
    assert "the stack was stopped" in error.message, error.message
    with pytest.raises(DeploymentError, match="not running"):
        stack.promote("v2")
