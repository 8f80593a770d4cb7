"""A builder (buildah, docker) hears of an interruption from llmcloud and gets to stop by
itself: before, Python SIGKILLed it (a quarter of a second after Ctrl-C, at once after a
SIGTERM that reached llmcloud alone, as a CI runner's does), and what it ran (a RUN step)
went on, orphaned."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from llmcloud.cli import errors
from llmcloud.providers import image_builder as ib

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# the builder starts a step of its own, then llmcloud gets the signal, sent by the builder
# itself once its trap is set and llmcloud waits for it (it has read llmcloud's input): no
# race; on SIGTERM (SIGINT) it stops its step and exits 143 (130)
FAKE_BUILDER = """#!/bin/bash
trap 'echo TERM >> {log}; kill $STEP; wait $STEP; exit 143' TERM
trap 'echo INT >> {log}; kill $STEP; wait $STEP; exit 130' INT
sleep 300 & STEP=$!
echo $STEP > {step}
read _
kill -{signal} $PPID
wait $STEP
"""


@pytest.fixture
def clean_signals(monkeypatch: pytest.MonkeyPatch):
    import logging

    monkeypatch.setattr(errors, "_interrupted", False)
    monkeypatch.setattr(errors, "_terminated", False)
    disabled = logging.getLogger("asyncio").disabled
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, errors.on_interrupt)
    signal.signal(signal.SIGTERM, errors.on_terminate)
    yield
    logging.getLogger("asyncio").disabled = disabled
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _builder(tmp_path: Path, sent: str) -> Path:
    path = tmp_path / "buildah"
    path.write_text(FAKE_BUILDER.format(log=tmp_path / "heard", step=tmp_path / "step",
                                        signal=sent))
    path.chmod(0o755)
    return path


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.parametrize(("sent", "heard"), [("TERM", "TERM"), ("INT", "INT")])
def test_the_builder_hears_the_interruption_and_stops_its_steps(
        tmp_path: Path, clean_signals, sent: str, heard: str) -> None:
    builder = _builder(tmp_path, sent)
    with pytest.raises(KeyboardInterrupt):
        ib.run_builder([str(builder), "push", "x"], "pushing x", stdin="go\n")
    assert (tmp_path / "heard").read_text().split() == [heard]
    step = int((tmp_path / "step").read_text())
    if _running(step):
        os.kill(step, signal.SIGKILL)
        pytest.fail("the builder's step was left running")
