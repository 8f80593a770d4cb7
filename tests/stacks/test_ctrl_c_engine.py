"""Ctrl-C during an engine operation: the pulumi CLI gets to cancel cleanly.

A terminal's Ctrl-C reaches the whole process group: llmcloud and the pulumi CLI the
Automation API runs. The CLI cancels at its first SIGINT, writing as it goes; were its
pipes closed under it (the Automation API's `Popen` unwinding a KeyboardInterrupt), it would
die of SIGPIPE, as a Go program does on a broken stdout, leaving the stack locked.

The driver runs the real `PulumiStack` over the Automation API's real `PulumiCommand.run`
(its `Popen` and pipe readers) with a fake `pulumi` that behaves as the CLI does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.stacks.fake_engine import engine_started, start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _ctrl_c(process: subprocess.Popen, tmp_path: Path) -> None:
    engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGINT)


def test_ctrl_c_during_up_lets_the_engine_cancel_cleanly(tmp_path: Path) -> None:
    process = start(tmp_path)
    _ctrl_c(process, tmp_path)
    stdout, stderr = process.communicate(timeout=60)
    # the engine finished its cancellation: the stack is recorded and unlocked
    assert (tmp_path / "cancelled-cleanly").exists(), stderr
    assert stdout.strip() == ("130 up of stack 'dev' cancelled | run the command again to "
                              "continue")
    assert "the Pulumi engine is cancelling" in stderr
    assert "Traceback" not in stderr


def test_a_second_ctrl_c_stops_the_engine_at_once_and_says_what_to_repair(
        tmp_path: Path) -> None:
    process = start(tmp_path)
    _ctrl_c(process, tmp_path)
    time.sleep(0.3)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert not (tmp_path / "cancelled-cleanly").exists()
    code, _, rest = stdout.strip().partition(" ")
    assert code == "130"
    assert rest.startswith("up of stack 'dev' stopped at once (Ctrl-C twice)")
    assert "--clear-pending-creates" in rest
    assert "Traceback" not in stderr


def test_an_operation_not_interrupted_returns_or_fails_as_before() -> None:
    from pulumi import automation as auto

    from llmcloud.stacks.automation import run_to_the_end

    assert run_to_the_end(lambda: 42, "up", "dev") == 42
    error = auto.errors.CommandError(auto.CommandResult(stdout="", stderr="boom", code=1))

    def fail() -> None:
        raise error

    with pytest.raises(auto.errors.CommandError) as caught:
        run_to_the_end(fail, "up", "dev")
    assert caught.value is error

