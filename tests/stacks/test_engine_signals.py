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


def _start(tmp_path: Path, cancelling_lines: int = 20,
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


def _engine_started(process: subprocess.Popen, tmp_path: Path) -> None:
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the fake pulumi never started"
        time.sleep(0.02)


def _finish(process: subprocess.Popen, timeout: float = 20) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"llmcloud did not end within {timeout} s: {stdout} {stderr}")


def _signals(tmp_path: Path) -> list[str]:
    path = tmp_path / "signals"
    return path.read_text().split() if path.exists() else []


def test_sigterm_to_the_job_lets_the_engine_cancel_cleanly(tmp_path: Path) -> None:
    process = _start(tmp_path)
    _engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGTERM)  # GitLab's shell executor, docker stop
    stdout, stderr = _finish(process)
    # llmcloud waited for the engine's cancellation, which told the CLI once
    assert (tmp_path / "cancelled-cleanly").exists(), (process.returncode, stderr)
    assert _signals(tmp_path) == ["SIGINT"]
    assert stdout.strip() == ("143 up of stack 'dev' cancelled (SIGTERM) | run the command "
                              "again to continue")
    assert "(SIGTERM): the Pulumi engine is cancelling" in stderr
    assert "Traceback" not in stderr


def test_a_sigint_to_llmcloud_alone_reaches_the_engine(tmp_path: Path) -> None:
    process = _start(tmp_path)
    _engine_started(process, tmp_path)
    os.kill(process.pid, signal.SIGINT)  # kill -INT <pid>: not the process group
    stdout, stderr = _finish(process)
    assert (tmp_path / "cancelled-cleanly").exists(), stderr
    assert _signals(tmp_path) == ["SIGINT"]
    assert stdout.strip() == ("130 up of stack 'dev' cancelled | run the command again to "
                              "continue")


def test_ctrl_c_at_a_terminal_is_one_signal_to_the_engine_not_two(tmp_path: Path) -> None:
    process = _start(tmp_path)
    _engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole group
    stdout, stderr = _finish(process)
    assert _signals(tmp_path) == ["SIGINT"], (stdout, stderr)
    assert stdout.startswith("130 up of stack 'dev' cancelled |"), (stdout, stderr)


def test_a_cancellation_longer_than_sigterms_wait_is_stopped_at_once(tmp_path: Path) -> None:
    process = _start(tmp_path, cancelling_lines=1000, cancel_seconds=1.0)
    _engine_started(process, tmp_path)
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = _finish(process)
    assert time.monotonic() - started < 15
    assert _signals(tmp_path) == ["SIGINT", "SIGINT"]
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
