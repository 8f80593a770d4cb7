"""SIGTERM (a CI job cancelled or timed out) is an interruption, as Ctrl-C is, exiting 143
with its error line and, under --json, its one JSON document; before, outside a cloud
engine operation, Python's default ended llmcloud at once: stdout empty, and what Ctrl-C
undoes (a promote's bake) left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcloud.cli import errors

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture
def clean_signals(monkeypatch: pytest.MonkeyPatch):
    """No interruption recorded before the test; the process's handlers as they were after."""
    import logging

    from llmcloud.cli.output import set_debug

    monkeypatch.setattr(errors, "_interrupted", False)
    monkeypatch.setattr(errors, "_terminated", False)
    set_debug(False)
    disabled = logging.getLogger("asyncio").disabled
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    logging.getLogger("asyncio").disabled = disabled
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _terminated_then(error: BaseException | None = None):
    """A step during which a SIGTERM comes (and that a provider turns into `error`)."""
    def step(*args, **kwargs):
        try:
            errors.on_terminate(signal.SIGTERM, None)
        except KeyboardInterrupt:
            if error is None:
                raise
        raise error
    return step


def test_sigterm_during_a_command_is_143_with_its_json_document(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch, clean_signals) -> None:
    monkeypatch.setattr("llmcloud.stacks.plan.run_plan", _terminated_then())
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 143, result.output
    assert json.loads(result.stdout) == {
        "error": "interrupted (SIGTERM)", "context": None,
        "hint": "run the command again to continue", "exit_code": 143}


def test_a_promote_that_put_the_previous_version_back_after_sigterm_exits_143(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch, clean_signals) -> None:
    from llmcloud.stacks.errors import DeploymentError

    restored = DeploymentError("promoting v2 failed; v1 is serving again",
                               context="interrupted", hint="llmcloud status --stack dev")
    monkeypatch.setattr("llmcloud.stacks.plan.run_plan", _terminated_then(restored))
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 143, result.output
    document = json.loads(result.stdout)
    assert (document["error"], document["exit_code"]) == (
        "promoting v2 failed; v1 is serving again", 143)


def test_the_command_line_handles_sigterm(monkeypatch: pytest.MonkeyPatch,
                                          clean_signals) -> None:
    from llmcloud.cli import main

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    monkeypatch.setattr(sys, "argv", ["llmcloud", "--version"])
    with pytest.raises(SystemExit):
        main.run()
    assert signal.getsignal(signal.SIGTERM) is errors.on_terminate


def test_sigterm_during_a_cloud_operation_still_lets_the_engine_cancel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's handler is in place before `run_to_the_end` looks: it must raise the class
    # that function knows a SIGTERM by, or the engine would get 130's short wait
    from tests.stacks import fake_engine

    monkeypatch.setattr(fake_engine, "DRIVER", fake_engine.DRIVER.replace(
        "signal.signal(signal.SIGINT, on_interrupt)",
        "signal.signal(signal.SIGINT, on_interrupt)\n"
        "from llmcloud.cli.errors import on_terminate\n"
        "signal.signal(signal.SIGTERM, on_terminate)"))
    process = fake_engine.start(tmp_path)
    fake_engine.engine_started(process, tmp_path)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = fake_engine.finish(process)
    assert (tmp_path / "cancelled-cleanly").exists(), (process.returncode, stderr)
    assert fake_engine.signals_received(tmp_path) == ["SIGINT"]
    assert stdout.startswith("143 up of stack 'dev' cancelled (SIGTERM)"), (stdout, stderr)


def test_the_real_command_exits_143_on_sigterm(tmp_path: Path) -> None:
    # `logs --follow` runs until it is stopped: the real binary, as a CI runner stops it
    home = tmp_path / "home"
    logs = home / "stacks" / "dev" / "logs"
    logs.mkdir(parents=True)
    (home / "stacks" / "dev" / "state.json").write_text("{}")
    # a line of a minute ago, in the machine's local time as the controller writes it: a
    # fixed date would fall out of --since's hour and nothing would ever be printed
    written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 60))
    (logs / "controller.log").write_text(f"{written},121 INFO llmcloud.controller: serving\n")
    env = {**os.environ, "LLMCLOUD_HOME": str(home), "NO_COLOR": "1", "CI": "true"}
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcloud.cli", "logs", "--follow", "--json"], cwd=tmp_path,
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        first = _first_line(process, timeout=60)  # it runs: the line there is printed
        assert json.loads(first)["server"] == "controller", process.stderr.read()
        time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        rest, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, (process.returncode, stderr)
    assert rest == "" and "Traceback" not in stderr


def _first_line(process: subprocess.Popen, timeout: float) -> str:
    """The process's first stdout line, or a failure after `timeout` seconds, never a hang."""
    import threading

    read: list[str] = []
    reader = threading.Thread(target=lambda: read.append(process.stdout.readline()),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not read:
        process.kill()
        pytest.fail(f"no line printed in {timeout} s: {process.communicate()[1]}")
    return read[0]
