"""A second `up`, `update`, `destroy` or `refresh` of a local stack is refused (exit 75) naming
the command that holds it, its pid and since when: a hung `up` is found and stopped by its
pid (it said only "another llmcloud command", with no way to tell which)."""

from __future__ import annotations

import os
import sys

import pytest

from llmcloud.providers.local.state import StateFile
from llmcloud.stacks.errors import BusyError


def test_the_refusal_names_the_holder(home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["/usr/bin/llmcloud", "up", "--stack", "dev"])
    state = StateFile(home / "stacks" / "dev")
    with state.operation("dev"), pytest.raises(BusyError) as info, state.operation("dev"):
        pass
    assert info.value.message == "another llmcloud command is changing stack 'dev' right now"
    assert info.value.context.startswith(f"held by llmcloud up --stack dev (pid {os.getpid()}, "
                                         "started 20")
    # released, it names nobody, and the stack is free again
    assert (state.folder / "operation.lock").read_text() == ""
    with state.operation("dev"):
        pass
