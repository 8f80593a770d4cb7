"""`llmcloud console --public-url URL --trusted-proxies ADDRS`: the TLS proxy in front of the
console, passed on to the console the provider serves; bad values are config errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn

from llmcloud.console.proxy import ProxySettings
from llmcloud.console.server import serve_stack
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from tests.console.test_cloud_backend import FakeCloud


def _served(monkeypatch) -> dict:
    served: dict = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.update(app=self.config.app))
    return served


@pytest.fixture
def project(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project, with a local stack `dev` (its state, no stack file): the console
    refuses a stack that is nowhere."""
    home = tmp_path / "llmcloud-home"
    monkeypatch.setenv("LLMCLOUD_HOME", str(home))
    (home / "stacks" / "dev").mkdir(parents=True)
    (home / "stacks" / "dev" / "state.json").write_text("{}")
    return project


def test_the_proxy_options_reach_the_console_the_provider_serves(project, cli, monkeypatch):
    served = _served(monkeypatch)
    result = cli("console", "--port", "8799", "--public-url", "https://Console.Example.com/",
                 "--trusted-proxies", "10.0.0.5, 192.168.1.0/24")
    assert result.exit_code == 0, result.output
    proxy = served["app"].state.console.guard.proxy
    assert proxy == ProxySettings.parse("https://console.example.com",
                                        "10.0.0.5,192.168.1.0/24")
    assert "https://console.example.com/  (Ctrl+C stops it)" in result.stderr


def test_the_proxy_options_can_come_from_the_environment(project, cli, monkeypatch):
    served = _served(monkeypatch)
    monkeypatch.setenv("LLMCLOUD_CONSOLE_PUBLIC_URL", "https://console.example.com")
    monkeypatch.setenv("LLMCLOUD_CONSOLE_TRUSTED_PROXIES", "10.0.0.5")
    result = cli("console", "--port", "8799")
    assert result.exit_code == 0, result.output
    proxy = served["app"].state.console.guard.proxy
    assert proxy.public_origin == "https://console.example.com"
    assert [str(n) for n in proxy.trusted_proxies] == ["10.0.0.5/32"]


def test_without_the_options_no_proxy_is_trusted(project, cli, monkeypatch):
    served = _served(monkeypatch)
    result = cli("console", "--port", "8799")
    assert result.exit_code == 0, result.output
    assert served["app"].state.console.guard.proxy == ProxySettings()


def test_a_bad_public_url_is_a_config_error_before_anything_is_served(project, cli,
                                                                        monkeypatch):
    served = _served(monkeypatch)
    result = cli("console", "--public-url", "console.example.com/ops")
    assert result.exit_code == 2, result.output
    assert "--public-url 'console.example.com/ops' is not the URL of the console" \
        in result.stderr
    assert "Traceback" not in result.output and not served


def test_trusting_every_address_is_refused(project, cli, monkeypatch):
    served = _served(monkeypatch)
    result = cli("console", "--trusted-proxies", "*")
    assert result.exit_code == 2, result.output
    assert "anybody's X-Forwarded-For" in result.stderr and not served


def test_a_cloud_stacks_console_reads_the_proxy_from_its_context(monkeypatch):
    # clouds serve through `console.server.serve_stack`, the local provider through its own
    # entry: both must pass the proxy on
    served = _served(monkeypatch)
    spec = resolve_spec(file_values={}, environ={}, flags={"provider": "aws", "model.name": "m"},
                        defaults_for=lambda _: {})
    environ = ProxySettings.parse("https://console.example.com", "10.0.0.5").environ()
    serve_stack(FakeCloud(), StackContext(Path("."), "prod", spec, environ=environ), port=8799)
    proxy = served["app"].state.console.guard.proxy
    assert proxy.public_origin == "https://console.example.com" and proxy.trusted_proxies
