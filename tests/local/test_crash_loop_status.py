"""A replica that keeps exiting after `up`: backed off, and `status` says why."""

from __future__ import annotations

import json
import os
import signal
import time

from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.supervisor import ReplicaSettings, Supervisor


def test_status_names_the_replica_that_keeps_exiting_and_its_last_log_lines(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    # the served copy of the model now fails every start (as a deleted weight file would)
    served = stack.state_file.models / "fake" / "v1" / "fake.json"
    served.write_text(json.dumps({"exit_on_start": "error: model.safetensors is missing"}))
    first = stack.status()["replicas"][0]
    os.kill(first["pid"], signal.SIGKILL)
    status = stack.wait(lambda s: (s.get("last_failure") or {}).get("exit_code") == 1,
                        timeout=20, what="a replacement's failure in status")
    failure = status["last_failure"]
    assert failure["replica"] != first["id"] and failure["version"] == "v1"
    assert failure["log"].endswith("error: model.safetensors is missing")
    assert status["restarts"] >= 1
    # backed off: 0.2 s, then 0.5, 1, 2 s between tries, not a start every few ms
    time.sleep(3)
    assert stack.status()["restarts"] <= 6
    log = (stack.state_file.logs / "controller.log").read_text()
    assert f"replica {failure['replica']} (pid" in log
    assert "exited with 1: error: model.safetensors is missing" in log


def _crash_soon_after_ready(stack) -> dict:
    """Make the served copy of the model die 0.3 s after it is ready, and kill the replica
    that runs it: its replacements load, go ready and die, again and again."""
    served = stack.state_file.models / "fake" / "v1" / "fake.json"
    served.write_text(json.dumps({"exit_after_ready": 0.3}))
    first = stack.status()["replicas"][0]
    os.kill(first["pid"], signal.SIGKILL)
    return first


def test_a_replica_that_dies_soon_after_ready_is_a_crash_loop_and_backed_off(fake_stack):
    # Before, a replica that had once been ready reset the backoff: restarted after 0.2 s,
    # forever, and status never said it was crash-looping.
    stack = fake_stack(replicas=1)
    stack.up()
    _crash_soon_after_ready(stack)
    status = stack.wait(lambda s: "crash_loop" in s, timeout=30, what="a crash loop in status")
    assert status["crash_loop"]["exits_in_a_row"] >= 3
    assert status["crash_loop"]["next_restart_after_seconds"] >= 2
    assert status["last_failure"]["log"].endswith("an illegal memory access was encountered")
    # backed off: 2 s, then 4 s between tries; before, a try every second or so
    restarts = status["restarts"]
    time.sleep(3)
    assert stack.status()["restarts"] - restarts <= 1


def test_a_replacement_that_runs_fine_ends_the_crash_loop(fake_stack):
    stack = fake_stack(replicas=1)
    stack.environ["LLMCLOUD_LOCAL_BACKOFF_RESET"] = "1.5"  # 600 s by default
    stack.up()
    _crash_soon_after_ready(stack)
    stack.wait(lambda s: "crash_loop" in s, timeout=30, what="a crash loop in status")
    served = stack.state_file.models / "fake" / "v1" / "fake.json"
    served.write_text(json.dumps({}))  # fixed: the next replacement keeps running
    status = stack.wait(lambda s: "crash_loop" not in s and s["ready_replicas"] == 1,
                        timeout=30, what="the crash loop to end")
    assert status["replicas"][0]["ready"] and status.get("last_failure")


def test_only_a_replica_started_since_the_failures_that_ran_fine_resets_the_backoff(tmp_path):
    pool = Pool()
    supervisor = Supervisor(pool, ReplicaSettings(command=["server"], log_dir=tmp_path),
                            lambda version: [], lambda: None, backoff_reset=10)
    healthy = Replica("r1", 1, "v1", ready=True, ready_at=time.monotonic() - 60)
    pool.add(healthy)
    for _ in range(3):  # another replica's replacements keep dying
        supervisor._count(ran_fine=False)
    assert supervisor.backoff == 2
    supervisor._recovered()
    assert supervisor.failures == 3  # r1 ran fine all along: it says nothing of the others
    replacement = Replica("r2", 2, "v1", ready=True, ready_at=time.monotonic() - 5)
    pool.add(replacement)
    supervisor._recovered()
    assert supervisor.failures == 3  # ready for 5 s of the 10 needed
    replacement.ready_at -= 10
    supervisor._recovered()
    assert supervisor.failures == 0 and supervisor.backoff == 0.2
