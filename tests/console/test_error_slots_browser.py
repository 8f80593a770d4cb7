"""The error banner in a real browser (headless Chromium, the vendored htmx): a failed
refresh shows its error next to the part that failed, the part's next success clears it,
and another part refreshing meanwhile leaves it alone. Over fake replicas, no model."""

from __future__ import annotations

import pytest

from llmcloud.providers.local.console_entry import LocalConsoleBackend
from llmcloud.stacks.errors import LlmcloudError
from tests.console.browser_support import SCREENSHOTS, admin_tab, browser_api

playwright_api = browser_api()
expect = playwright_api.expect


@pytest.fixture
def tab(running):
    with admin_tab(playwright_api, running,
                   ignored_errors=("Failed to load resource",)) as page:
        yield page


def _failing(monkeypatch, method: str, message: str) -> list[bool]:
    real, failing = getattr(LocalConsoleBackend, method), [True]

    def call(self):
        if failing[0]:
            raise LlmcloudError(message)
        return real(self)

    monkeypatch.setattr(LocalConsoleBackend, method, call)
    return failing


def test_the_banner_of_a_failed_refresh_clears_on_the_next_success(tab, monkeypatch):
    failing = _failing(monkeypatch, "deployment", "the state file could not be read")
    banner = tab.locator(".api-error", has_text="the state file could not be read")
    expect(banner).to_be_visible()
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / "error-banner.png"))
    failing[0] = False
    expect(tab.locator("#deployment #replicas")).to_be_visible()
    expect(banner).to_have_count(0)
    assert tab.locator("[role=alert]:visible").count() == 0
    assert tab.problems == []


def test_another_parts_refresh_leaves_a_failing_parts_banner(tab, monkeypatch):
    failing = _failing(monkeypatch, "models", "the model store is unreadable")
    tab.goto(tab.base + "/models")
    banner = tab.locator(".api-error", has_text="the model store is unreadable")
    expect(banner).to_be_visible()
    tab.wait_for_timeout(2500)  # the rollout part refreshed twice meanwhile, successfully
    expect(banner).to_be_visible()
    failing[0] = False
    expect(tab.locator("#models table")).to_be_visible()
    expect(banner).to_have_count(0)
    assert tab.problems == []
