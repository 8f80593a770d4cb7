"""The Logs page and a version's Delete in a real browser (headless Chromium, the vendored
htmx), over fake replicas: a log line holding HTML shows as text and runs nothing; the
filter asks again; Delete asks first, then the version leaves the store and the table."""

from __future__ import annotations

import pytest

from tests.console.browser_support import browser_api, logged_in_tab, serving_console
from tests.console.conftest import fake_model

playwright_api = browser_api()
expect = playwright_api.expect


@pytest.fixture
def served(running):
    with serving_console(running.backend()) as url:
        yield url


@pytest.fixture
def tab(served, running):
    with logged_in_tab(playwright_api, served, running.admin_key) as page:
        yield page


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
