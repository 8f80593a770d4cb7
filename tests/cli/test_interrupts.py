"""Ctrl-C is exit 130, with one JSON document under --json, whenever it comes and whatever
error a library made of it."""

from __future__ import annotations

import json
import logging
import signal
import sys
import types
from pathlib import Path

import pytest

from llmcloud.cli import errors


@pytest.fixture
def clean_interrupt(monkeypatch: pytest.MonkeyPatch):
    """No interruption recorded before the test, none left behind after it."""
    from llmcloud.cli.output import set_debug

    monkeypatch.setattr(errors, "_interrupted", False, raising=False)
    set_debug(False)  # a fresh output mode, as a new process has: no document printed yet
    asyncio_logger = logging.getLogger("asyncio")
    disabled = asyncio_logger.disabled
    handler = signal.getsignal(signal.SIGINT)
    on_sigterm = signal.getsignal(signal.SIGTERM)  # (`main.run` handles SIGTERM too)
    yield
    asyncio_logger.disabled = disabled
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, on_sigterm)


def _interrupt_then(error: BaseException):
    """A step that the user interrupts, and that a library turns into `error` on the way out
    (pulumi-azure-native's lazy import: an AttributeError of a half-made module)."""
    def step(*args, **kwargs):
        try:
            errors.on_interrupt(signal.SIGINT, None)
        except KeyboardInterrupt:
            pass
        raise error
    return step


def test_an_interruption_that_surfaces_as_another_error_is_still_130(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch, clean_interrupt) -> None:
    monkeypatch.setattr("llmcloud.stacks.plan.run_plan", _interrupt_then(AttributeError(
        "module 'pulumi_azure_native.network' has no attribute 'VirtualNetwork'")))
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 130, result.output
    assert json.loads(result.stdout)["error"] == "interrupted"
    assert "bug" not in result.stderr
    assert logging.getLogger("asyncio").disabled  # its tracebacks follow from Ctrl-C


def test_llmclouds_own_error_after_ctrl_c_keeps_its_words(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch, clean_interrupt) -> None:
    # an interrupted promote restores the version before and says which one serves: that
    # was replaced by a bare "interrupted"
    from llmcloud.stacks.errors import DeploymentError

    monkeypatch.setattr("llmcloud.stacks.plan.run_plan", _interrupt_then(DeploymentError(
        "promoting v2 failed; v1 is serving again", context="interrupted",
        hint="llmcloud status --stack dev")))
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 130, result.output
    document = json.loads(result.stdout)
    assert document["error"] == "promoting v2 failed; v1 is serving again"
    assert (document["hint"], document["exit_code"]) == ("llmcloud status --stack dev", 130)


class _LoadsUntilInterrupted(types.ModuleType):
    """A module the user interrupts while it loads: taking a name from it is Ctrl-C."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)  # (what tools look up in every loaded module)
        raise KeyboardInterrupt


def test_ctrl_c_before_the_command_starts_its_output_still_prints_json(
        project: Path, cli, monkeypatch: pytest.MonkeyPatch, clean_interrupt) -> None:
    # plan imports what it needs before it sets its output mode: Ctrl-C then left stdout empty
    monkeypatch.setitem(sys.modules, "llmcloud.cli.context",
                        _LoadsUntilInterrupted("llmcloud.cli.context"))
    result = cli("plan", "--provider", "aws", "--json")
    assert result.exit_code == 130, result.output
    assert json.loads(result.stdout) == {
        "error": "interrupted", "context": None,
        "hint": "run the command again to continue", "exit_code": 130}


def test_ctrl_c_while_the_cli_loads_is_130_not_a_traceback(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, clean_interrupt) -> None:
    from llmcloud.cli import main

    monkeypatch.setitem(sys.modules, "llmcloud.cli.app", _LoadsUntilInterrupted("app"))
    monkeypatch.setattr(sys, "argv", ["llmcloud", "plan", "--json"])
    try:
        main.run()
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of the command as a traceback")
    except SystemExit as exc:
        assert exc.code == 130
    else:
        pytest.fail("the command did not exit")
    out, err = capsys.readouterr()
    assert json.loads(out)["exit_code"] == 130
    assert err == "error: interrupted\nhint: run the command again to continue\n"
    assert signal.getsignal(signal.SIGINT) is errors.on_interrupt
