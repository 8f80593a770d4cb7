"""A fake `pulumi` CLI and a driver running the real `PulumiStack` over the Automation API's
real `PulumiCommand.run`, for the tests of what signals do to an engine operation.

The fake behaves as the Go CLI does: a broken stdout kills it (SIGPIPE); its first SIGINT
or SIGTERM cancels (it finishes what is in flight, saying so, then exits), a second stops it
at once (since pulumi/pulumi#17467 it counts SIGTERM as it counts SIGINT). It records the
signals it got in `signals` and marks `started` and `cancelled-cleanly` in the test's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAKE_PULUMI = """\
#!{python}
import signal, sys, time
from pathlib import Path

if sys.argv[1:] == ["version"]:
    print("v3.200.0")
    sys.exit(0)
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as a Go program: a broken stdout kills it
marks = Path({marks!r})
signals = []


def cancel(signum, frame):
    signals.append(signal.Signals(signum).name)
    (marks / "signals").write_text(" ".join(signals))
    if len(signals) > 1:
        sys.exit(255)  # a second signal: stop at once


signal.signal(signal.SIGINT, cancel)
signal.signal(signal.SIGTERM, cancel)
(marks / "started").write_text("")
while not signals:
    time.sleep(0.02)
for _ in range({cancelling_lines}):  # the operations in flight finish, and say so
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

from pulumi.automation._cmd import PulumiCommand

from llmcloud.cli.errors import on_interrupt
from llmcloud.stacks import automation
from llmcloud.stacks.automation import PulumiStack
from llmcloud.stacks.errors import LlmcloudError

automation.CANCEL_AFTER_SIGTERM_SECONDS = {cancel_seconds}
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


def start(tmp_path: Path, cancelling_lines: int = 20,
           cancel_seconds: float = 60.0) -> subprocess.Popen:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(FAKE_PULUMI.format(python=sys.executable, marks=str(tmp_path),
                                         cancelling_lines=cancelling_lines))
    pulumi.chmod(0o755)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(tmp_path), cancel_seconds=cancel_seconds))
    # its own process group, as a CI job's shell is: a runner signals the group
    return subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd=Path(__file__).resolve().parents[2])


def engine_started(process: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the fake pulumi never started"
        time.sleep(0.02)


def finish(process: subprocess.Popen, timeout: float = 20) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"llmcloud did not end within {timeout} s: {stdout} {stderr}")


def signals_received(tmp_path: Path) -> list[str]:
    path = tmp_path / "signals"
    return path.read_text().split() if path.exists() else []
