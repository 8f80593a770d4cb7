"""Fixtures for the console: a running local stack (the local provider's fixtures, fake or
real replicas), an admin key for it, and the console app over that stack."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from llmcloud.providers.local.console_entry import LocalConsoleBackend
from tests.local.conftest import Stack, auth, fake_env, fake_model, fake_stack, home  # noqa: F401


class Running:
    """A started stack with its client key and an admin key."""

    def __init__(self, stack: Stack, key: str, admin_key: str):
        self.stack, self.key, self.admin_key = stack, key, admin_key

    def backend(self) -> LocalConsoleBackend:
        return LocalConsoleBackend(self.stack.provider, self.stack.ctx())


@pytest.fixture
def running(fake_stack) -> Running:  # noqa: F811 - the fixture imported above
    """Two fake replicas serving v1; the `default` key and an admin key `ops`."""
    stack = fake_stack(replicas=2)
    key = stack.up()["api_key"]
    admin = stack.provider.keys_create(stack.ctx(), "ops", admin=True)["key"]
    return Running(stack, key, admin)


@pytest.fixture
def console(running):
    """The console app over `running`, metrics scraped only when a test asks."""
    from llmcloud.console.server import create_app

    app = create_app(running.backend(), scrape=False)
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        yield client


def wait_rollout(console: TestClient, headers: dict[str, str],
                 timeout: float = 30.0) -> dict:
    """The console's current rollout once it is no longer running (its JSON document)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = console.get("/api/rollouts/current", headers=headers).json()
        if current["state"] != "running":
            return current
        time.sleep(0.1)
    raise AssertionError(f"rollout still running: {current}")


def login(client: TestClient, key: str):
    """Log in through the form as a browser does; returns the POST's response."""
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return client.post("/login", data={"csrf": csrf, "key": key, "next": "/"},
                       follow_redirects=False)


def csrf_of(client: TestClient) -> str:
    """The session's CSRF token, from a page's hx-headers."""
    page = client.get("/keys")
    return page.text.split('"X-CSRF-Token": "', 1)[1].split('"', 1)[0]


__all__ = ["auth", "fake_model", "login", "csrf_of", "wait_rollout"]
