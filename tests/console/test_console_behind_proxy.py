"""The console behind a TLS-terminating reverse proxy, and its login throttle per client.

Behind a proxy, uvicorn saw plain HTTP: the browser's `Origin: https://console.example.com`
was refused as "another site" and cookies were not `Secure`. `--public-url` names the
console's own origin, `--trusted-proxies` the addresses whose X-Forwarded-For/-Proto are
believed (nobody else's). The login throttle was one for the whole console: anybody sending
wrong keys locked the operator out; it is per client now, with bounded memory.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from llmcloud.console.auth import LoginThrottle
from llmcloud.console.proxy import ProxySettings
from llmcloud.console.server import create_app, serve
from llmcloud.providers.local.procs import free_port
from llmcloud.stacks.errors import ConfigError
from tests.console.conftest import login

PUBLIC = "https://console.example.com"


def _form_token(page: httpx.Response) -> str:
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _cookie(response: httpx.Response, prefix: str) -> str:
    return next(c for c in response.headers.get_list("set-cookie")
                if c.startswith(prefix) and "Max-Age=0" not in c)


class Served:
    """`serve()` itself (the options `llmcloud console` passes), on 127.0.0.1 in a thread."""

    def __init__(self, backend, monkeypatch, proxy: ProxySettings | None):
        self.port = free_port()
        self.said: list[str] = []
        servers = []
        run = uvicorn.Server.run
        monkeypatch.setattr(uvicorn.Server, "run", lambda self: servers.append(self))
        options = {"proxy": proxy} if proxy is not None else {}
        serve(backend, port=self.port, host="127.0.0.1", announce=self.said.append, **options)
        self.server = servers[0]
        self.thread = threading.Thread(target=run, args=(self.server,), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _log_in_through_proxy(url: str, key: str, headers: dict[str, str]) -> httpx.Response:
    """A browser's login as the proxy forwards it (the cookies by hand: they are `Secure`,
    and this leg is plain HTTP)."""
    with httpx.Client(timeout=10, headers=headers) as proxy:
        page = proxy.get(url + "/login")
        assert page.status_code == 200, page.text
        login_cookie = _cookie(page, "llmcloud_console_login_").split(";", 1)[0]
        return proxy.post(url + "/login", follow_redirects=False,
                          headers={"Origin": PUBLIC, "Cookie": login_cookie},
                          data={"csrf": _form_token(page), "key": key, "next": "/"})


def test_login_through_a_trusted_tls_proxy_works_with_secure_cookies(running, monkeypatch):
    served = Served(running.backend(), monkeypatch,
                    ProxySettings.parse(PUBLIC, "127.0.0.1"))
    try:
        # what nginx sends with `proxy_set_header Host $host` and the X-Forwarded-* headers
        forwarded = {"Host": "console.example.com", "X-Forwarded-Proto": "https",
                     "X-Forwarded-For": "203.0.113.7"}
        answer = _log_in_through_proxy(served.url, running.admin_key, forwarded)
        assert answer.status_code == 303, answer.text
        session = _cookie(answer, "llmcloud_console_")
        assert "secure" in session.lower() and "httponly" in session.lower()
        # and a proxy that passes its upstream's address as Host (nginx's default)
        answer = _log_in_through_proxy(served.url, running.admin_key, {
            "X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"})
        assert answer.status_code == 303, answer.text
        assert "secure" in _cookie(answer, "llmcloud_console_").lower()
        assert any(f"{PUBLIC}/  (Ctrl+C stops it)" in line for line in served.said)
    finally:
        served.stop()


def test_forwarding_headers_from_an_untrusted_client_are_not_believed(running, monkeypatch):
    # The console trusts 10.9.9.9 only; this client is 127.0.0.1. uvicorn's own default
    # believed 127.0.0.1's X-Forwarded-Proto: any local process could pose as the proxy.
    served = Served(running.backend(), monkeypatch, ProxySettings.parse(None, "10.9.9.9"))
    try:
        forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        with httpx.Client(timeout=10, headers=forged) as client:
            page = client.get(served.url + "/login")
            assert "secure" not in _cookie(page, "llmcloud_console_login_").lower()
            refused = client.post(served.url + "/login", follow_redirects=False,
                                  headers={"Origin": f"https://127.0.0.1:{served.port}"},
                                  data={"csrf": _form_token(page), "key": running.admin_key})
            assert refused.status_code == 403
            assert "another site" in refused.text
    finally:
        served.stop()


def test_without_trusted_proxies_nobodys_forwarding_headers_are_believed(running, monkeypatch):
    # uvicorn's default believed 127.0.0.1's (or $FORWARDED_ALLOW_IPS's) forwarding headers
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "*")
    served = Served(running.backend(), monkeypatch, None)
    try:
        forged = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}
        with httpx.Client(timeout=10, headers=forged) as client:
            page = client.get(served.url + "/login")
            assert "secure" not in _cookie(page, "llmcloud_console_login_").lower()
    finally:
        served.stop()


def test_the_public_url_does_not_open_the_console_to_other_sites(running):
    app = create_app(running.backend(), scrape=False,
                     proxy=ProxySettings.parse(PUBLIC, "127.0.0.1"))
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        page = client.get("/login")
        refused = client.post("/login", follow_redirects=False,
                              headers={"Origin": "https://evil.example"},
                              data={"csrf": _form_token(page), "key": running.admin_key})
        assert refused.status_code == 403


def test_a_loopback_console_behind_a_proxy_accepts_the_public_host_only(running, monkeypatch):
    served = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.update(app=self.config.app))
    serve(running.backend(), port=8799, announce=lambda line: None,
          proxy=ProxySettings.parse(PUBLIC + ":443/", "127.0.0.1"))
    with TestClient(served["app"], base_url="http://127.0.0.1:8799") as client:
        for host in ("console.example.com", "console.example.com:443", "127.0.0.1:8799"):
            assert client.get("/login", headers={"Host": host}).status_code == 200, host
        assert client.get("/login", headers={"Host": "rebound.example"}).status_code == 421


@pytest.mark.parametrize("public_url, proxies, wrong", [
    ("console.example.com", None, "--public-url"),
    ("https://console.example.com/console", None, "--public-url"),
    ("ftp://console.example.com", None, "--public-url"),
    ("https://console.example.com:http", None, "--public-url"),
    (None, "*", "anybody"),
    (None, "10.0.0.5,proxy.internal", "not an IP address"),
])
def test_bad_proxy_settings_say_what_is_wrong(public_url, proxies, wrong):
    with pytest.raises(ConfigError) as error:
        ProxySettings.parse(public_url, proxies)
    assert wrong in error.value.message and error.value.hint


def test_a_proxy_without_trusted_addresses_is_warned_about(running, monkeypatch):
    said: list[str] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    serve(running.backend(), port=8799, announce=said.append,
          proxy=ProxySettings.parse(PUBLIC, None))
    assert any("--trusted-proxies" in line for line in said), said


# -- the login throttle, per client --------------------------------------------------------

def _client(app, address: str) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1:8765", client=(address, 40000))


def test_wrong_keys_from_one_client_do_not_lock_out_another(running):
    app = create_app(running.backend(), scrape=False)
    with _client(app, "198.51.100.66") as attacker, _client(app, "198.51.100.9") as operator:
        for _ in range(10):
            assert login(attacker, "llmc-guess").status_code == 401
        assert login(attacker, running.admin_key).status_code == 429
        assert login(operator, running.admin_key).status_code == 303


def test_behind_a_trusted_proxy_the_throttle_counts_each_browser(running):
    app = create_app(running.backend(), scrape=False,
                     proxy=ProxySettings.parse(PUBLIC, "10.0.0.5"))
    with _client(app, "10.0.0.5") as proxy:
        for n in range(12):
            # the proxy appends the address it saw; what the client wrote before is forged
            proxy.headers["X-Forwarded-For"] = f"192.0.2.{n}, 203.0.113.66"
            answer = login(proxy, "llmc-guess")
        assert answer.status_code == 429
        proxy.headers["X-Forwarded-For"] = "198.51.100.9"
        assert login(proxy, running.admin_key).status_code == 303


def test_an_untrusted_client_cannot_dodge_the_throttle_with_forwarding_headers(running):
    app = create_app(running.backend(), scrape=False)
    with _client(app, "198.51.100.66") as attacker:
        for n in range(12):
            attacker.headers["X-Forwarded-For"] = f"192.0.2.{n}"
            answer = login(attacker, "llmc-guess")
        assert answer.status_code == 429


def test_one_ipv6_machine_is_one_client(running):
    app = create_app(running.backend(), scrape=False)
    for n in range(10):
        with _client(app, f"2001:db8:1:2::{n + 1:x}") as attacker:
            assert login(attacker, "llmc-guess").status_code == 401
    with _client(app, "2001:db8:1:2::ffff") as same_machine:
        assert login(same_machine, running.admin_key).status_code == 429
    with _client(app, "2001:db8:1:3::1") as another:
        assert login(another, running.admin_key).status_code == 303


def test_bearer_guesses_are_throttled_per_client_too(running):
    app = create_app(running.backend(), scrape=False)
    with _client(app, "198.51.100.66") as attacker, _client(app, "198.51.100.9") as script:
        for _ in range(10):
            attacker.get("/api/keys", headers={"Authorization": "Bearer llmc-guess"})
        assert attacker.get("/api/keys", headers={
            "Authorization": f"Bearer {running.admin_key}"}).status_code == 429
        assert script.get("/api/keys", headers={
            "Authorization": f"Bearer {running.admin_key}"}).status_code == 200


def test_the_throttle_remembers_a_bounded_number_of_clients(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    throttle = LoginThrottle(attempts=3, window=60.0, max_clients=100)
    for n in range(100_000):
        throttle.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert throttle.clients() <= 100
    for _ in range(3):
        throttle.failed("198.51.100.66")
    assert throttle.retry_after("198.51.100.66") == pytest.approx(60.0)
    assert throttle.retry_after("198.51.100.9") is None
    now[0] += 61  # a window later, everybody may try again, and the old ones are forgotten
    assert throttle.retry_after("198.51.100.66") is None
    throttle.failed("198.51.100.67")
    throttle.failed("198.51.100.68")
    assert throttle.clients() <= 100


def test_a_right_key_forgets_the_clients_typos(running):
    app = create_app(running.backend(), scrape=False)
    with _client(app, "198.51.100.9") as operator:
        for _ in range(9):
            assert login(operator, "llmc-typo").status_code == 401
        assert login(operator, running.admin_key).status_code == 303
        for _ in range(9):
            assert login(operator, "llmc-typo").status_code == 401
        assert login(operator, running.admin_key).status_code == 303


# -- sessions ------------------------------------------------------------------------------

def test_sessions_nobody_uses_again_are_not_kept_for_ever(monkeypatch):
    # Only a session's own next request dropped it when expired: the sessions of closed
    # browsers (or of a script logging in by form every few minutes) piled up.
    from llmcloud.console.auth import SessionStore

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    store = SessionStore(idle_seconds=3600)
    for _ in range(500):
        store.open("hash")
    kept = store.open("hash")
    now[0] += 3601
    fresh = store.open("hash")
    assert len(store) == 1
    assert store.get(kept.id) is None and store.get(fresh.id) is fresh
