"""`LLMCLOUD_LOCAL_*` settings changed between two `up`s of a running stack are applied,
and `up` names them among what changed (before, the controller kept the first `up`'s
health interval and owner process, and said nothing)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from llmcloud.stacks.errors import ConfigError


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_new_owner_process_replaces_the_first_one(fake_stack):
    first, second = _sleeper(), _sleeper()
    try:
        stack = fake_stack(replicas=1)
        stack.environ["LLMCLOUD_LOCAL_OWNER_PID"] = str(first.pid)
        stack.up()
        stack.environ["LLMCLOUD_LOCAL_OWNER_PID"] = str(second.pid)  # a second CI job, say
        assert stack.up()["changed"] == ["owner_pid"]
        first.kill()
        first.wait()
        time.sleep(2)  # the owner is looked for every 0.5 s
        assert stack.status()["running"], "stopped with the owner it no longer has"
        second.kill()
        second.wait()
        stack.wait(lambda s: not s["running"], timeout=20, what="the stack to stop")
    finally:
        for owner in (first, second):
            owner.kill()
            owner.wait()


def test_a_changed_health_interval_applies_without_new_replicas(fake_stack):
    stack = fake_stack(replicas=2)
    stack.up()
    replicas = {r["pid"] for r in stack.status()["replicas"]}
    stack.environ["LLMCLOUD_LOCAL_HEALTH_INTERVAL"] = "30"
    result = stack.up()
    assert result["changed"] == ["health_interval"]
    assert {r["pid"] for r in result["replicas"]} == replicas
    killed = stack.status()["replicas"][0]
    os.kill(killed["pid"], signal.SIGKILL)
    status = stack.wait(lambda s: killed["id"] not in {r["id"] for r in s["replicas"]}
                        and len(s["replicas"]) == 2, what="a replacement")
    time.sleep(2)  # checked every 0.1 s, the fake replica is ready at once
    status = stack.status()
    assert status["ready_replicas"] == 1, "health checks still run every 0.1 s"


def test_backoff_reset_and_ready_timeout_changes_are_named_and_bad_values_refused(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    stack.environ.update(LLMCLOUD_LOCAL_BACKOFF_RESET="60", LLMCLOUD_LOCAL_READY_TIMEOUT="20")
    assert sorted(stack.up()["changed"]) == ["backoff_reset", "ready_timeout"]
    assert stack.up()["changed"] == []
    stack.environ["LLMCLOUD_LOCAL_BACKOFF_RESET"] = "soon"
    with pytest.raises(ConfigError, match="LLMCLOUD_LOCAL_BACKOFF_RESET='soon'"):
        stack.up()
