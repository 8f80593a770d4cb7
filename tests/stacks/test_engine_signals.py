"""SIGTERM, and a SIGINT sent to llmcloud alone, during an engine operation.

A cancelled or timed-out CI job gets SIGTERM (GitLab's runner, docker stop, Kubernetes;
GitHub's runner after its SIGINT): Python died at once, the Automation API's pipes closed,
and the pulumi CLI died of SIGPIPE at its next line, the stack locked. A `kill -INT` of
llmcloud alone never reached the CLI at all. Now llmcloud tells the CLI itself: one SIGINT
for each SIGINT or SIGTERM it gets, and the CLI is out of reach of the signals sent to
llmcloud's process group, so that a terminal's Ctrl-C is still one signal, not two.

As in test_ctrl_c_engine: the real `PulumiStack` over the Automation API's real
`PulumiCommand.run`, with a fake `pulumi` that behaves as the Go CLI does (since
pulumi/pulumi#17467 it counts SIGTERM as it counts SIGINT: the first cancels, the second
stops it at once).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.stacks.fake_engine import engine_started, finish, signals_received, start

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

def test_sigterm_to_the_job_lets_the_engine_cancel_cleanly(tmp_path: Path) -> None:
    process = start(tmp_path)
    engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGTERM)  # GitLab's shell executor, docker stop
    stdout, stderr = finish(process)
    # llmcloud waited for the engine's cancellation, which told the CLI once
    assert (tmp_path / "cancelled-cleanly").exists(), (process.returncode, stderr)
    assert signals_received(tmp_path) == ["SIGINT"]
    assert stdout.strip() == ("143 up of stack 'dev' cancelled (SIGTERM) | run the command "
                              "again to continue")
    assert "(SIGTERM): the Pulumi engine is cancelling" in stderr
    assert "Traceback" not in stderr


def test_a_sigint_to_llmcloud_alone_reaches_the_engine(tmp_path: Path) -> None:
    process = start(tmp_path)
    engine_started(process, tmp_path)
    os.kill(process.pid, signal.SIGINT)  # kill -INT <pid>: not the process group
    stdout, stderr = finish(process)
    assert (tmp_path / "cancelled-cleanly").exists(), stderr
    assert signals_received(tmp_path) == ["SIGINT"]
    assert stdout.strip() == ("130 up of stack 'dev' cancelled | run the command again to "
                              "continue")


def test_ctrl_c_at_a_terminal_is_one_signal_to_the_engine_not_two(tmp_path: Path) -> None:
    process = start(tmp_path)
    engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
    stdout, stderr = finish(process)
    assert signals_received(tmp_path) == ["SIGINT"], (stdout, stderr)
    assert stdout.startswith("130 up of stack 'dev' cancelled |"), (stdout, stderr)


def test_a_cancellation_longer_than_sigterms_wait_is_stopped_at_once(tmp_path: Path) -> None:
    process = start(tmp_path, cancelling_lines=1000, cancel_seconds=1.0)
    engine_started(process, tmp_path)
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = finish(process)
    assert time.monotonic() - started < 15
    assert signals_received(tmp_path) == ["SIGINT", "SIGINT"]
    assert not (tmp_path / "cancelled-cleanly").exists()
    code, _, rest = stdout.strip().partition(" ")
    assert code == "143"
    assert rest.startswith("up of stack 'dev' stopped at once (SIGTERM")
    assert "--clear-pending-creates" in rest
    assert "the Pulumi engine is stopping at once" in stderr


def test_sigterm_outside_an_engine_operation_keeps_its_meaning() -> None:
    from llmcloud.stacks.automation import run_to_the_end

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert run_to_the_end(lambda: signal.getsignal(signal.SIGTERM), "up", "dev") \
        is not signal.SIG_DFL  # during the operation, llmcloud's own
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # after it, stop now
