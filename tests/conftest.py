"""Shared fixtures: every test runs with a clean llmcloud environment."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_llmcloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLMCLOUD_* variable of the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("LLMCLOUD_"):
            monkeypatch.delenv(name)
