"""Every `llmcloud` call in the shell blocks of the README and of the reference pages in
docs/, not only the walkthroughs' (`test_readme_first_deploy.py`), parses with the real CLI:
commands, options, required arguments. They are the reference CI pipelines copy from."""

from __future__ import annotations

import re

from tests.cli.test_readme_first_deploy import FOLDERS, PAGES, _calls, _parse


def _shell_blocks() -> list[tuple[str, int, str]]:
    """Each page's ```bash blocks, with the page and the line each starts on."""
    return [(path, text[:m.start()].count("\n") + 1, m.group(1))
            for path, text in PAGES.items()
            for m in re.finditer(r"^```bash\n(.*?)^```", text, re.M | re.S)]


def test_the_reference_pages_are_read() -> None:
    assert {"README.md", "docs/aws.md", "docs/gcp.md", "docs/azure.md"} <= set(PAGES)


def test_every_llmcloud_call_in_the_readme_and_docs_parses(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in FOLDERS:  # `model upload` takes an existing folder
        (tmp_path / name).mkdir()
    calls = [(path, line, call) for path, line, block in _shell_blocks()
             for call in _calls(block)]
    assert len(calls) >= 30
    for path, line, call in calls:
        try:
            _parse(call)
        except Exception as error:  # the CLI's usage errors, an unknown command
            raise AssertionError(f"{path}: block at line {line}: llmcloud {' '.join(call)}: "
                                 f"{error}") from None
