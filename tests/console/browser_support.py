"""What the console's browser tests share: Debian's Chromium driven by Playwright (no
`playwright install`), the console served on loopback, and a tab logged in with the admin
key."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("LLMCLOUD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).parents[1] / "screenshots"


def browser_api() -> Any:
    """Playwright's sync API; skips the calling test module (at its import) when the
    package or Chromium is missing."""
    api = pytest.importorskip(
        "playwright.sync_api", reason="the browser tests need the playwright package "
                                      "(pip install playwright; no `playwright install`)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (apt-get install "
                    "chromium)", allow_module_level=True)
    return api


@contextlib.contextmanager
def serving_console(backend: Any) -> Iterator[str]:
    """The console over `backend` on a free loopback port, for the block; its address."""
    import uvicorn

    from llmcloud.console.server import create_app
    from llmcloud.providers.local.procs import free_port

    port = free_port()
    app = create_app(backend, allowed_hosts={f"127.0.0.1:{port}"}, scrape=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "the console did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def logged_in_tab(api: Any, console: str, admin_key: str,
                  ignored_errors: tuple[str, ...] = ()) -> Iterator[Any]:
    """A Chromium tab logged in to the console at `console`; `page.problems` collects the
    browser console's errors (but those holding one of `ignored_errors`), `page.dialogs`
    is for the test's dialogs, `page.base` is the console's address."""
    with api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.problems, page.dialogs = [], []
            page.on("console", lambda m: page.problems.append(m.text)
                    if m.type == "error" and not any(s in m.text for s in ignored_errors)
                    else None)
            page.goto(console + "/login")
            page.fill("#key", admin_key)
            page.click("button[type=submit]")
            page.wait_for_url(console + "/")
            page.base = console
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def admin_tab(api: Any, running: Any, ignored_errors: tuple[str, ...] = ()) -> Iterator[Any]:
    """The console over the `running` stack's backend, served on loopback, and a tab logged
    in to it with the stack's admin key (`logged_in_tab`), for the block."""
    with serving_console(running.backend()) as url, logged_in_tab(
            api, url, running.admin_key, ignored_errors=ignored_errors) as page:
        yield page
