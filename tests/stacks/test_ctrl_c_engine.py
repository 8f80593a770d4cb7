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

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

FAKE_PULUMI = """\
#!{python}
import signal, sys, time
from pathlib import Path

if sys.argv[1:] == ["version"]:
    print("v3.200.0")
    sys.exit(0)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a Go program: a broken stdout kills it
marks = Path({marks!r})
presses = []


def cancel(signum, frame):
    presses.append(signum)
    if len(presses) > 1:
        sys.exit(255)  # a second SIGINT: stop at once


signal.signal(signal.SIGINT, cancel)
(marks / "started").write_text("")
while not presses:
    time.sleep(0.02)
for _ in range(20):  # the operations in flight finish, and say so
    print("^C received; cancelling. If you would like to terminate immediately, press ^C "
          "again.", flush=True)
    time.sleep(0.05)
(marks / "cancelled-cleanly").write_text("")
print("error: update canceled", file=sys.stderr, flush=True)
sys.exit(255)
"""

DRIVER = """\
import signal, sys
from pathlib import Path
from types import SimpleNamespace

from pulumi.automation._cmd import PulumiCommand

from llmcloud.cli.errors import on_interrupt
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.errors import LlmcloudError

command = PulumiCommand(root={root!r})


class Stack:
    name = "dev"

    def up(self, **kwargs):
        command.run(["up", "--yes"], {root!r}, {{}})


signal.signal(signal.SIGINT, on_interrupt)
stack = PulumiStack(Path({root!r}), "dev", {{}}, opener=lambda *args: Stack())
try:
    stack.up()
except LlmcloudError as exc:
    print(f"{{int(exc.exit_code)}} {{exc.message}} | {{exc.hint}}", flush=True)
"""


def _start(tmp_path: Path) -> subprocess.Popen:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(FAKE_PULUMI.format(python=sys.executable, marks=str(tmp_path)))
    pulumi.chmod(0o755)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(tmp_path)))
    # its own process group, as a terminal's foreground job is: Ctrl-C goes to the group
    return subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[2])


def _ctrl_c(process: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the fake pulumi never started"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)


def test_ctrl_c_during_up_lets_the_engine_cancel_cleanly(tmp_path: Path) -> None:
    process = _start(tmp_path)
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
    process = _start(tmp_path)
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

