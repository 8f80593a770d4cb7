"""`llmcloud console --stack typo` without --provider, where there is neither a stack file
nor a local stack of that name: refused as `status` refuses it (exit 2), where it served
an empty local console for a stack that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn


@pytest.fixture
def served(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("LLMCLOUD_HOME", str(tmp_path / "llmcloud-home"))
    served: dict = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.update(app=self.config.app))
    return served


def test_the_console_of_a_stack_that_is_nowhere_is_refused(served: dict, tmp_path: Path,
                                                           cli) -> None:
    result = cli("console", "--stack", "typo", "--port", "8799")
    assert result.exit_code == 2, result.output
    assert "stack 'typo' does not exist" in result.stderr and "--provider" in result.stderr
    assert not served and not (tmp_path / "llmcloud-home" / "stacks" / "typo").exists()
    assert "Traceback" not in result.output


def test_the_console_of_a_local_stack_without_a_stack_file_is_served(served: dict,
                                                                     tmp_path: Path,
                                                                     cli) -> None:
    state = tmp_path / "llmcloud-home" / "stacks" / "dev" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    result = cli("console", "--port", "8799")
    assert result.exit_code == 0, result.output
    assert served["app"] is not None
