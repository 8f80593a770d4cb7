"""The bake field of the Models page's confirmation in a real browser (headless Chromium,
the vendored htmx): a bake too short is refused on the form; one the stack's alert fires
in ends with the previous version serving, said on the page. Over fake replicas, no model;
the alerts' reads and the bake's clock are the test's."""

from __future__ import annotations

import pytest

from tests.console.browser_support import SCREENSHOTS, admin_tab, browser_api
from tests.console.test_console_bake import FIRING, baking  # noqa: F401 - a fixture

playwright_api = browser_api()
expect = playwright_api.expect


@pytest.fixture
def models_tab(running, baking):  # noqa: F811 - the fixture imported above
    with admin_tab(playwright_api, running,
                   ignored_errors=("Failed to load resource",)) as page:
        page.goto(page.base + "/models")
        yield page


def _confirm_promote(tab, bake: str) -> None:
    tab.click("#versions tr[data-version=v2] button.promote")
    expect(tab.locator("#confirm-panel")).to_contain_text("At least 70 s")
    tab.fill("#bake-seconds", bake)
    tab.click("#confirm-rollout")


def test_a_bake_too_short_is_refused_on_the_form_and_one_that_fires_puts_v1_back(
        models_tab, baking):  # noqa: F811 - the fixture imported above
    baking({}, {}, FIRING)
    _confirm_promote(models_tab, "30")
    expect(models_tab.locator("#confirm-error")).to_contain_text("70 or more")
    expect(models_tab.locator("#confirm-panel")).to_be_visible()  # nothing started

    _confirm_promote(models_tab, "70")
    rollout = models_tab.locator("#rollout [data-state=failed]")
    expect(rollout).to_be_visible(timeout=30_000)
    expect(rollout).to_contain_text("promoting v2 failed; v1 is serving again")
    expect(rollout).to_contain_text("baking: watching the stack's alerts for 70 s")
    expect(rollout).to_contain_text("server-errors")
    expect(models_tab.locator("#models-serving")).to_have_text("v1")
    SCREENSHOTS.mkdir(exist_ok=True)
    models_tab.screenshot(path=str(SCREENSHOTS / "bake-failed.png"), full_page=True)
    assert models_tab.problems == []
