"""The error banner in a real browser (headless Chromium, the vendored htmx): a failed
refresh shows its error next to the part that failed, the part's next success clears it,
and another part refreshing meanwhile leaves it alone. Over fake replicas, no model."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from llmcloud.console.server import create_app
from llmcloud.providers.local.console_entry import LocalConsoleBackend
from llmcloud.providers.local.procs import free_port
from llmcloud.stacks.errors import LlmcloudError

CHROMIUM = os.environ.get("LLMCLOUD_TEST_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[1] / "screenshots"
playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need the playwright package "
                                  "(pip install playwright; no `playwright install`)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)
expect = playwright_api.expect


@pytest.fixture
def served(running):
    port = free_port()
    app = create_app(running.backend(), allowed_hosts={f"127.0.0.1:{port}"}, scrape=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def tab(served, running):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update"])
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.problems = []
            page.on("console", lambda m: page.problems.append(m.text)
                    if m.type == "error" and "Failed to load resource" not in m.text else None)
            page.goto(served + "/login")
            page.fill("#key", running.admin_key)
            page.click("button[type=submit]")
            page.wait_for_url(served + "/")
            page.base = served
            yield page
        finally:
            browser.close()


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
