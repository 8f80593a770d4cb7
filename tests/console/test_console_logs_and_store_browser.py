"""The Logs page and a version's Delete in a real browser (headless Chromium, the vendored
htmx), over fake replicas: a log line holding HTML shows as text and runs nothing; the
filter asks again; Delete asks first, then the version leaves the store and the table."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from llmcloud.console.server import create_app
from llmcloud.providers.local.procs import free_port
from tests.console.conftest import fake_model

CHROMIUM = os.environ.get("LLMCLOUD_TEST_CHROMIUM", "/usr/bin/chromium")
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
            page.problems, page.dialogs = [], []
            page.on("console", lambda m: page.problems.append(m.text)
                    if m.type == "error" else None)
            page.goto(served + "/login")
            page.fill("#key", running.admin_key)
            page.click("button[type=submit]")
            page.wait_for_url(served + "/")
            page.base = served
            yield page
        finally:
            browser.close()


def test_a_log_line_holding_html_is_shown_as_text_and_the_filter_asks_again(tab, running):
    logs = running.stack.state_file.logs
    logs.mkdir(parents=True, exist_ok=True)
    hostile = "<script>window.owned = 1</script><img src=x onerror=\"window.owned = 2\">"
    (logs / "replica-9.log").write_text(f"warming up\n{hostile}\nready on v1\n")
    tab.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    tab.click("nav a[href='/logs']")
    lines = tab.locator("#log-lines tbody tr")
    expect(tab.locator("#log-lines")).to_contain_text(hostile)
    expect(tab.locator("#log-lines")).to_contain_text("ready on v1")
    assert tab.locator("#log-lines script, #log-lines img").count() == 0
    assert tab.evaluate("window.owned") is None and not tab.dialogs

    tab.fill("#logs-grep", "ready on")
    tab.click("#logs-refresh")
    expect(lines).to_have_count(1)
    expect(lines.first).to_contain_text("replica-9")
    expect(tab.locator("#logs-summary")).to_contain_text("holding ready on")
    assert tab.url.endswith("/logs") and not tab.problems, tab.problems


def test_delete_asks_first_then_the_version_leaves_the_store(tab, running, tmp_path):
    running.stack.upload(fake_model(tmp_path / "v2"), "v2")
    asked: list[str] = []
    tab.on("dialog", lambda d: (asked.append(d.message), d.accept()))
    tab.click("nav a[href='/models']")
    row = tab.locator('#versions tr[data-version="v2"]')
    expect(row).to_contain_text("complete")
    assert tab.locator('#versions tr[data-version="v1"] .delete-version').count() == 0
    expect(tab.locator('#versions tr[data-version="v1"]')).to_contain_text("kept: in service")
    row.locator(".delete-version").click()
    expect(row).to_have_count(0)
    assert asked and "Delete version v2" in asked[0]
    assert not (running.stack.state_file.models / "fake" / "v2").exists()
    assert not tab.problems, tab.problems
