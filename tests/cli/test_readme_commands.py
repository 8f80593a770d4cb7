"""Every `llmcloud` call in the README's shell blocks, not only the walkthroughs'
(`test_readme_first_deploy.py`), parses with the real CLI: commands, options, required
arguments. The README is the reference CI pipelines copy from."""

from __future__ import annotations

import re

from tests.cli.test_readme_first_deploy import FOLDERS, README, _calls, _parse


def _shell_blocks() -> list[tuple[int, str]]:
    """The README's ```bash blocks, with the line each starts on."""
    return [(README[:m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```bash\n(.*?)^```", README, re.M | re.S)]


def test_every_llmcloud_call_in_the_readme_parses(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in FOLDERS:  # `model upload` takes an existing folder
        (tmp_path / name).mkdir()
    calls = [(line, call) for line, block in _shell_blocks() for call in _calls(block)]
    assert len(calls) >= 30
    for line, call in calls:
        try:
            _parse(call)
        except Exception as error:  # the CLI's usage errors, an unknown command
            raise AssertionError(f"README block at line {line}: llmcloud {' '.join(call)}: "
                                 f"{error}") from None
