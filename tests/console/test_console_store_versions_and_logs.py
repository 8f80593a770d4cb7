"""The console reads the model store and the servers' logs with the CLI's code: the Models
page lists the store's versions (`llmcloud model list`) and deletes those the stack does not
need (`llmcloud model delete`), the Logs page shows the newest server lines
(`llmcloud logs`), as text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmcloud.console.backend import StackBackend
from llmcloud.console.server import create_app
from llmcloud.providers.base import Provider, StackContext
from llmcloud.stacks.config import resolve_spec
from tests.console.conftest import csrf_of, login

ORIGIN = {"Origin": "http://127.0.0.1:8765"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def put_version(store: Path, version: str, size: int = 10, manifest: bool = True) -> None:
    """A version as `llmcloud model upload` leaves it in a folder store."""
    folder = store / "m" / version
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"x" * size)
    if manifest:
        (folder / "manifest.json").write_text(json.dumps({
            "created": f"2026-11-0{len(list(store.glob('m/*')))}T10:00:00Z",
            "files": [{"path": "weights.bin", "size": size}]}))


class Outputs:
    def __init__(self, outputs):
        self._outputs = outputs

    def outputs(self):
        return self._outputs

    def update_in_progress(self):
        return False

    def backend_url(self):
        return "https://api.pulumi.com"


class StoreCloud(Provider):
    """A cloud stack serving v3 (v1, v2 before it) whose model store is a folder."""

    name = "aws"

    def __init__(self, store: Path):
        self.store = store

    def _outputs(self):
        return {"model_store_uri": str(self.store), "model_version": "v3",
                "model_history": ["v1", "v2"]}

    def status(self, ctx):
        return {"model_version": "v3", "outputs": self._outputs()}

    def _engine(self, ctx, purpose):
        return Outputs(self._outputs())


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    import llmcloud.stacks.plan as plan

    monkeypatch.setattr(plan, "run_plan", lambda spec, stack: {
        "resources": [], "checks": [], "cost": None})
    store = tmp_path / "store"
    for version in ("v1", "v2", "v3", "v4"):
        put_version(store, version, size=100)
    put_version(store, "v5", manifest=False)  # an upload cut short
    spec = resolve_spec(file_values={}, environ={}, flags={
        "provider": "aws", "model.name": "m", "model.version": "v3",
        "model.history": ["v1", "v2"]}, defaults_for=lambda _: {})
    backend = StackBackend(StoreCloud(store), StackContext(Path("."), "prod", spec, environ={}))
    with TestClient(create_app(backend, scrape=False), base_url="http://127.0.0.1:8765") as client:
        client.headers.update(bearer(backend.access_token))
        yield client, store


def test_a_cloud_models_page_lists_every_version_the_store_holds(cloud):
    client, _ = cloud
    document = client.get("/api/models").json()
    versions = {v["version"]: v for v in document["versions"]}
    # v4 was uploaded but never served: the stack's outputs do not name it, the store does
    assert set(versions) == {"v1", "v2", "v3", "v4", "v5"}
    assert versions["v4"]["size_bytes"] == 100 and versions["v4"]["complete"]
    assert versions["v4"]["use"] is None and versions["v4"]["deletable"]
    assert versions["v3"]["use"] == "in service" and not versions["v3"]["deletable"]
    assert versions["v1"]["use"] == "rollback history" and not versions["v1"]["deletable"]
    assert not versions["v5"]["complete"] and versions["v5"]["deletable"]
    assert document["store"].endswith("store/m") and document["store_error"] is None

    page = client.get("/api/models", headers={"HX-Request": "true"}).text
    rows = {row.split('"', 1)[0]: row for row in page.split('<tr data-version="')[1:]}
    assert "Promote…" in rows["v4"] and "Promote…" in rows["v1"]
    assert "Promote…" not in rows["v5"] and "Promote…" not in rows["v3"]  # incomplete, serving
    assert 'hx-delete="/api/models/v4"' in rows["v4"] and "hx-confirm=" in rows["v4"]
    assert 'hx-delete="/api/models/v5"' in rows["v5"]
    assert "hx-delete" not in rows["v3"] and "kept: in service" in rows["v3"]
    assert "hx-delete" not in rows["v2"] and "kept: rollback history" in rows["v2"]


def test_deleting_refuses_what_the_stack_needs_and_deletes_the_rest(cloud):
    client, store = cloud
    for needed, why in (("v3", "in service"), ("v2", "rollback history")):
        refused = client.delete(f"/api/models/{needed}")
        assert refused.status_code == 400 and why in refused.json()["error"]["message"]
        assert (store / "m" / needed / "manifest.json").is_file()
    for bad in ("..", ".hidden", "v1%2F..", "-x"):
        assert client.delete(f"/api/models/{bad}").status_code in (400, 404, 422)
    assert sorted(p.name for p in (store / "m").iterdir()) == ["v1", "v2", "v3", "v4", "v5"]
    assert client.delete("/api/models/v9").status_code == 400  # not in the store

    deleted = client.delete("/api/models/v4")
    assert deleted.status_code == 200 and deleted.json()["deleted_objects"] == 2
    assert not (store / "m" / "v4").exists()
    fragment = client.delete("/api/models/v5", headers={"HX-Request": "true",
                                                        "HX-Target": "models"})
    assert fragment.status_code == 200 and 'data-version="v5"' not in fragment.text
    assert 'data-version="v3"' in fragment.text
    assert [v["version"] for v in client.get("/api/models").json()["versions"]] == \
        ["v1", "v2", "v3"]


def test_a_store_that_cannot_be_listed_is_said_and_nothing_is_deletable(cloud, monkeypatch):
    client, _ = cloud
    monkeypatch.setattr(StoreCloud, "_engine", lambda self, ctx, purpose: 1 / 0)
    document = client.get("/api/models").json()
    assert "ZeroDivisionError" in document["store_error"]
    assert [(v["version"], v["deletable"]) for v in document["versions"]] == [
        ("v1", False), ("v2", False), ("v3", False)]


def test_a_delete_from_a_browser_session_needs_the_csrf_token(console, running, tmp_path):
    from tests.console.conftest import fake_model

    running.stack.upload(fake_model(tmp_path / "v2"), "v2")
    login(console, running.admin_key)
    token = csrf_of(console)
    assert console.delete("/api/models/v2", headers=ORIGIN).status_code == 403
    assert console.delete("/api/models/v2", headers={
        "X-CSRF-Token": token, "Origin": "http://evil.example"}).status_code == 403
    assert console.delete("/api/models/v1", headers={"X-CSRF-Token": token, **ORIGIN}
                          ).status_code == 400  # in service
    assert console.delete("/api/models/v2", headers={"X-CSRF-Token": token, **ORIGIN}
                          ).status_code == 200
    listed = {v["version"] for v in console.get("/api/models").json()["versions"]}
    assert listed == {"v1"}


def test_the_logs_show_the_servers_newest_lines_as_text(console, running):
    logs = running.stack.state_file.logs
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "replica-9.log").write_text(
        "first line\n<script>alert('owned')</script> <img src=x onerror=alert(1)>\nlast one\n")
    headers = bearer(running.admin_key)
    document = console.get("/api/logs?grep=alert", headers=headers).json()
    assert [(line["server"], line["message"]) for line in document["lines"]] == [
        ("replica-9", "<script>alert('owned')</script> <img src=x onerror=alert(1)>")]
    assert document["where"] == str(logs) and document["limit"] == 200
    page = console.get("/api/logs?grep=alert",
                       headers={**headers, "HX-Request": "true", "HX-Target": "logs"}).text
    assert "&lt;script&gt;alert(" in page and "&lt;img src=x" in page
    assert "<script" not in page and "<img" not in page
    newest = console.get("/api/logs?limit=1&grep=replica-9", headers=headers).json()
    assert [line["message"] for line in newest["lines"]] == ["last one"]


def test_the_logs_are_bounded_and_bad_filters_say_what_to_do(console, running):
    headers = bearer(running.admin_key)
    assert console.get("/api/logs?limit=100000", headers=headers).status_code == 422
    assert console.get("/api/logs?limit=0", headers=headers).status_code == 422
    assert console.get("/api/logs?grep=" + "x" * 201, headers=headers).status_code == 422
    since = console.get("/api/logs?since=forever", headers=headers)
    assert since.status_code == 400 and "not a duration" in since.json()["error"]["message"]
    assert console.get("/api/logs").status_code == 401
    assert console.get("/api/logs", headers=bearer(running.key)).status_code == 403
    assert console.get("/logs", follow_redirects=False).headers["location"] == "/login?next=/logs"
    login(console, running.admin_key)
    page = console.get("/logs").text
    assert 'hx-get="/api/logs"' in page and 'href="/logs" aria-current="page"' in page
