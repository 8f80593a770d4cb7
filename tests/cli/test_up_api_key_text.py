"""`llmcloud up` on a running local stack makes no API key (the stack has keys already):
the terminal says so in words ("api_key: (none made: ...)"), where it printed `api_key: -`;
`--json` keeps the null, and a key this `up` made is shown as it is."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmcloud.cli.up_text import NO_NEW_KEY


class Local:
    """A local provider whose `up` returns `api_key`."""

    name = "local"

    def __init__(self, api_key: str | None) -> None:
        self.api_key = api_key

    def up(self, ctx):
        return {"endpoint": "http://127.0.0.1:8080/v1", "model_version": "v1",
                "api_key": self.api_key, "changed": []}


@pytest.fixture
def up_returning(monkeypatch, project):
    """``up_returning(api_key)``: the provider `llmcloud up --provider local` runs."""
    import llmcloud.cli.context as context

    def serving(api_key: str | None) -> None:
        ctx = SimpleNamespace(project_dir=project, stack="dev", environ={})
        monkeypatch.setattr(context, "load_stack", lambda **kwargs: (Local(api_key), ctx))

    return serving


def test_an_up_that_made_no_key_says_so_in_words(up_returning, cli) -> None:
    up_returning(None)
    result = cli("up", "--provider", "local")
    assert result.exit_code == 0, result.output
    assert f"\napi_key: {NO_NEW_KEY}\n" in result.stdout
    assert "api_key: -" not in result.stdout
    assert "llmcloud keys create" in NO_NEW_KEY
    # --json keeps the null; a key this `up` made is shown as it is
    assert json.loads(cli("up", "--provider", "local", "--json").stdout)["api_key"] is None
    up_returning("llmc_abc")
    assert "\napi_key: llmc_abc\n" in cli("up", "--provider", "local").stdout
