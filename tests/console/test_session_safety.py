"""Findings of a security review of the console, each reproduced against a console over a
running local stack (fake replicas): cookies shared by two consoles on one machine, a
logout any site could force, page shells still served to a revoked key's session, a
loopback address other than 127.0.0.1 refused by the console's own Host check, and session
cookies without `Secure` behind HTTPS."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from llmcloud.console.server import create_app, serve
from llmcloud.providers.local.procs import free_port
from tests.console.conftest import login


class Served:
    """The console app served by uvicorn on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, backend):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        app = create_app(backend, allowed_hosts={f"127.0.0.1:{self.port}"}, scrape=False)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _form_token(page: httpx.Response) -> str:
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def test_two_consoles_on_one_machine_keep_their_own_sessions(running):
    # Browsers keep cookies per host, not per port: with one cookie name, logging in to the
    # console of a second stack (another port) logged the browser out of the first, and
    # opening the second's login page broke the first's login form.
    first, second = Served(running.backend()), Served(running.backend())
    try:
        with httpx.Client(timeout=10) as browser:  # one cookie jar, as one browser has
            forms = [_form_token(browser.get(c.url + "/login")) for c in (first, second)]
            for console, token in zip((first, second), forms, strict=True):
                answer = browser.post(console.url + "/login", follow_redirects=False, data={
                    "csrf": token, "key": running.admin_key, "next": "/"})
                assert answer.status_code == 303, (console.url, answer.text)
            for console in (first, second):
                assert browser.get(console.url + "/api/keys").status_code == 200, console.url
    finally:
        first.stop()
        second.stop()


def test_a_form_on_another_site_cannot_log_the_operator_out(console, running):
    # A cross-site POST carries no session cookie (SameSite=Strict), so /logout answered it
    # with a Set-Cookie that deleted the browser's cookie: any page could log the operator
    # out (reproduced in Chromium with an auto-submitted form on http://localhost:PORT).
    login(console, running.admin_key)
    kept = dict(console.cookies)
    console.cookies.clear()
    forced = console.post("/logout", headers={"Origin": "http://evil.example"},
                          follow_redirects=False)
    assert forced.status_code == 403
    assert "set-cookie" not in forced.headers
    console.cookies.update(kept)
    assert console.get("/api/keys").status_code == 200


def test_pages_end_the_session_of_a_revoked_admin_key(console, running):
    # The API ended such a session, but the pages still served their shell (and the
    # session's CSRF token) to it.
    second = running.stack.provider.keys_create(running.stack.ctx(), "ops2", admin=True)
    login(console, second["key"])
    assert console.get("/", follow_redirects=False).status_code == 200
    running.stack.provider.keys_revoke(running.stack.ctx(), second["id"])
    for path in ("/", "/models", "/keys", "/metrics"):
        page = console.get(path, follow_redirects=False)
        assert page.status_code == 303, path
        assert page.headers["location"] == f"/login?next={path}"
        assert "X-CSRF-Token" not in page.text


@pytest.mark.parametrize("host, url", [("127.0.0.2", "http://127.0.0.2:8799/"),
                                       ("::1", "http://[::1]:8799/")])
def test_a_loopback_address_is_served_at_the_url_the_console_prints(
        running, monkeypatch, host, url):
    # `--host 127.0.0.2` printed a URL whose every request the Host check refused (421);
    # `--host ::1` printed `http://::1:8799/`, which is no URL.
    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.update(app=self.config.app))
    said: list[str] = []
    serve(running.backend(), port=8799, host=host, announce=said.append)
    assert f"{url}  (Ctrl+C stops it)" in said[0], said
    with TestClient(served["app"], base_url=url.rstrip("/")) as client:
        assert client.get("/login").status_code == 200
        assert client.get("/login", headers={"Host": "rebound.example:8799"}).status_code \
            == 421


def test_cookies_are_secure_when_the_console_is_reached_over_https(running):
    # Behind a TLS proxy (the README's advice off loopback) the session cookie lacked
    # `Secure`: one plain-HTTP request to the host would carry it in clear.
    app = create_app(running.backend(), scrape=False)
    with TestClient(app, base_url="https://console.example") as client:
        page = client.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        answer = client.post("/login", follow_redirects=False, data={
            "csrf": _form_token(page), "key": running.admin_key, "next": "/"})
        assert answer.status_code == 303
        session = next(c for c in answer.headers.get_list("set-cookie")
                       if "Max-Age=0" not in c)
        assert "secure" in session.lower() and "httponly" in session.lower()
