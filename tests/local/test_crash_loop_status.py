"""A replica that keeps exiting after `up`: backed off, and `status` says why."""

from __future__ import annotations

import json
import os
import signal
import time


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
