"""The console for a cloud stack: the generic backend shows the stack's outputs and its
offline plan (resources by layer, security checks, hourly cost at min and max), opens with
the console access token of the run, and promotes through the provider."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmcloud.console.backend import Login, StackBackend
from llmcloud.console.server import create_app
from llmcloud.providers.base import Provider, StackContext
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import DeploymentError

PLAN = {
    "resources": [
        {"type": "aws:apigateway/restApi:RestApi", "name": "api", "layer": "gateway"},
        {"type": "aws:autoscaling/group:Group", "name": "pool", "layer": "gpu_pool"},
        {"type": "aws:s3/bucket:Bucket", "name": "models", "layer": "model_store"},
        {"type": "aws:s3/bucketVersioning:BucketVersioning", "name": "v",
         "layer": "model_store"},
    ],
    "checks": [{"id": "CKV_AWS_21", "resource": "models", "passed": True,
                "message": "versioning is on"},
               {"id": "CKV_AWS_8", "resource": "pool", "passed": False,
                "message": "root volume is not encrypted"}],
    "cost": {"currency": "USD", "hourly_min": 1.25, "hourly_max": 7.5, "items": []},
}


class FakeCloud(Provider):
    name = "aws"

    def __init__(self):
        self.promoted: list[str] = []

    def status(self, ctx):
        return {"endpoint": "https://api.example/v1", "model_version": "v3",
                "outputs": {"endpoint_url": "https://api.example/v1", "bucket": "models-1"}}

    def promote(self, ctx, version):
        self.promoted.append(version)
        return {"model_version": version, "previous_version": "v3"}


@pytest.fixture
def cloud(monkeypatch):
    import llmcloud.stacks.plan as plan

    monkeypatch.setattr(plan, "run_plan", lambda spec, stack: {**PLAN, "stack": stack})
    spec = resolve_spec(file_values={}, environ={}, flags={
        "provider": "aws", "model.name": "m", "model.history": ["v1", "v2"],
        "compute.min_replicas": 1, "compute.max_replicas": 6}, defaults_for=lambda _: {})
    provider = FakeCloud()
    backend = StackBackend(provider, StackContext(Path("."), "prod", spec, environ={}))
    return provider, backend


def test_only_the_runs_access_token_opens_a_cloud_console(cloud):
    _, backend = cloud
    assert backend.check_login(backend.access_token) is Login.admin
    assert backend.check_login("llmc-anything") is Login.invalid
    assert backend.check_login("") is Login.invalid
    assert StackBackend(*_same(backend)).access_token != backend.access_token


def _same(backend):
    return backend.provider, backend.ctx


def test_a_cloud_deployment_shows_outputs_layers_checks_and_cost(cloud):
    _, backend = cloud
    app = create_app(backend, scrape=False)
    headers = {"Authorization": f"Bearer {backend.access_token}"}
    with TestClient(app) as client:
        document = client.get("/api/deployment", headers=headers).json()
        assert document["endpoint"] == "https://api.example/v1"
        assert document["model_version"] == "v3" and document["stack"] == "prod"
        layers = {layer["layer"]: len(layer["resources"]) for layer in document["layers"]}
        assert layers == {"gateway": 1, "gpu_pool": 1, "model_store": 2}
        assert [c["passed"] for c in document["checks"]] == [True, False]
        assert (document["cost"]["hourly_min"], document["cost"]["hourly_max"]) == (1.25, 7.5)
        page = client.get("/api/deployment", headers={**headers, "HX-Request": "true"}).text
        assert "$1.25/h" in page and "$7.50/h" in page and "1 of 2 passed" in page
        assert "root volume is not encrypted" in page and "bucket" in page

        models = client.get("/api/models", headers=headers).json()
        assert [(v["version"], v["serving"], v["good"]) for v in models["versions"]] == [
            ("v1", False, True), ("v2", False, True), ("v3", True, False)]
        charts = client.get("/api/metrics", headers={**headers, "HX-Request": "true"}).text
        assert "cloud's monitoring dashboard" in charts


def test_a_cloud_promote_goes_through_the_provider(cloud):
    import time

    provider, backend = cloud
    app = create_app(backend, scrape=False)
    headers = {"Authorization": f"Bearer {backend.access_token}"}
    with TestClient(app) as client:
        assert client.post("/api/rollouts", json={"action": "promote", "version": "v4"},
                           headers=headers).status_code == 202
        deadline = time.monotonic() + 10
        while client.get("/api/rollouts/current", headers=headers).json()["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rollout = client.get("/api/rollouts/current", headers=headers).json()
    assert provider.promoted == ["v4"] and rollout["state"] == "succeeded"
    assert rollout["events"][-1]["message"] == "done: serving v4"


def test_a_failing_status_is_shown_not_raised(cloud):
    provider, backend = cloud

    def broken(ctx):
        raise DeploymentError("the stack has no outputs yet", hint="llmcloud up")

    provider.status = broken
    document = backend.deployment()
    assert document["error"] == "the stack has no outputs yet" and document["endpoint"] is None
    assert document["cost"]["hourly_max"] == 7.5


def test_serving_beyond_loopback_warns_and_loopback_pins_the_host_header(cloud, monkeypatch):
    import uvicorn

    from llmcloud.console import server

    _, backend = cloud
    served: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: served.append(self.config))
    lines: list[str] = []
    server.serve(backend, port=9999, host="0.0.0.0", announce=lines.append)
    assert lines[0].startswith("warning: the console listens on 0.0.0.0")
    assert served[-1].host == "0.0.0.0"
    lines.clear()
    server.serve(backend, port=9999, announce=lines.append)
    assert not any("warning" in line for line in lines)
    assert served[-1].host == "127.0.0.1" and served[-1].access_log is False
    assert backend.access_token not in " ".join(lines)
    assert server.is_loopback("::1") and server.is_loopback("localhost")
    assert not server.is_loopback("192.168.1.4")


def test_a_missing_web_module_names_the_install_command(monkeypatch):
    import importlib.util

    import llmcloud.console as console
    from llmcloud.stacks.errors import MissingToolError, install_hint

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jinja2" else real(name, *a))
    with pytest.raises(MissingToolError) as caught:
        console.serve_stack(FakeCloud(), None, 8765)
    assert "jinja2" in caught.value.message and caught.value.hint == install_hint("runtime")
