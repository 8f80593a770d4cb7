"""The Models page offers "Roll back…" only when the stack records a good version to go back
to: with an empty history (a cloud's `model_history` output, the local controller's) the
button is disabled with the reason, where it was offered and the rollback failed at once.
The API's document and the rollback itself are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmcloud.console.backend import StackBackend
from llmcloud.console.server import create_app
from llmcloud.console.versions import no_rollback
from llmcloud.providers.base import StackContext
from llmcloud.stacks.config import resolve_spec
from tests.console.test_console_store_versions_and_logs import StoreCloud, bearer, put_version


class FirstVersionCloud(StoreCloud):
    """A cloud stack serving v1, its first version: its history is empty."""

    def _outputs(self):
        return {"model_store_uri": str(self.store), "model_version": "v1",
                "model_history": []}

    def status(self, ctx):
        return {"model_version": "v1", "outputs": self._outputs()}


def _client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider_type, serving: str,
            history: list[str]) -> TestClient:
    import llmcloud.stacks.plan as plan

    monkeypatch.setattr(plan, "run_plan", lambda spec, stack: {
        "resources": [], "checks": [], "cost": None})
    store = tmp_path / "store"
    for version in ("v1", "v2", "v3"):
        put_version(store, version, size=100)
    spec = resolve_spec(file_values={}, environ={}, flags={
        "provider": "aws", "model.name": "m", "model.version": serving,
        "model.history": history}, defaults_for=lambda _: {})
    backend = StackBackend(provider_type(store), StackContext(Path("."), "prod", spec,
                                                              environ={}))
    client = TestClient(create_app(backend, scrape=False), base_url="http://127.0.0.1:8765")
    client.headers.update(bearer(backend.access_token))
    return client


def _rollback_button(page: str) -> str:
    return page[page.index('<button type="button" id="rollback"'):].split(">", 1)[0]


def test_a_stack_with_no_history_offers_no_rollback(tmp_path, monkeypatch) -> None:
    with _client(tmp_path, monkeypatch, FirstVersionCloud, "v1", []) as client:
        page = client.get("/api/models", headers={"HX-Request": "true"}).text
        assert "disabled" in _rollback_button(page)
        assert "Nothing to roll back to: the stack records no good version before v1" in page
        assert "no_rollback" not in client.get("/api/models").json()  # the API as it was


def test_a_stack_with_a_good_version_before_offers_rollback(tmp_path, monkeypatch) -> None:
    with _client(tmp_path, monkeypatch, StoreCloud, "v3", ["v1", "v2"]) as client:
        page = client.get("/api/models", headers={"HX-Request": "true"}).text
        assert "disabled" not in _rollback_button(page)
        assert "Nothing to roll back to" not in page


def test_the_local_controllers_history_holds_the_serving_version_too() -> None:
    # the local backend marks good every version of the controller's history, the one in
    # service among them: only another one is something to go back to
    alone = {"serving": "v1", "versions": [{"version": "v1", "serving": True, "good": True}]}
    assert no_rollback(alone) == ("Nothing to roll back to: the stack records no good "
                                  "version before v1")
    two = {"serving": "v2", "versions": [{"version": "v1", "serving": False, "good": True},
                                         {"version": "v2", "serving": True, "good": True}]}
    assert no_rollback(two) is None
