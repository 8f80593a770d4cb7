"""The console reads the stack file again when it changed while the console runs (an edit,
`llmcloud promote` or `init --force` in a terminal): the version it names is protected from
delete, the plan and replicas follow it. A file that became invalid, a cloud stack's file
that is gone, one naming another provider: a 409 naming the file, never a 500; fixed, the
console answers again."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmcloud.console.backend import StackBackend
from llmcloud.console.server import create_app
from llmcloud.providers.base import StackContext
from llmcloud.providers.local.console_entry import LocalConsoleBackend
from llmcloud.providers.model_versions import STACK_FILE
from llmcloud.providers.registry import provider_defaults
from llmcloud.stacks.config import read_stack_config, resolve_spec
from tests.console.test_console_store_versions_and_logs import StoreCloud, bearer, put_version

STEP = 10**9  # each rewrite moves the file's time on by a second: no two writes look alike


def write(path: Path, text: str) -> None:
    """Write the stack file as an editor does, its modification time clearly moved on."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    later = max(before + STEP, path.stat().st_mtime_ns)
    os.utime(path, ns=(later, later))


def cloud_file(version: str, min_replicas: int = 1, provider: str = "aws") -> str:
    return (f"config:\n  llmcloud:provider: {provider}\n"
            f"  llmcloud:model:\n    name: m\n    version: {version}\n"
            "    history: [v1, v2]\n"
            f"  llmcloud:compute:\n    min_replicas: {min_replicas}\n"
            "    max_replicas: 4\n")


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    """A console over an aws stack serving v3 (v1, v2 before it) whose stack file, in
    tmp_path, names v4; the plans it computed, by min_replicas."""
    import llmcloud.stacks.plan as plan

    plans: list[int] = []

    def run_plan(spec, stack):
        plans.append(spec.compute.min_replicas)
        return {"resources": [], "checks": [], "cost": None}

    monkeypatch.setattr(plan, "run_plan", run_plan)
    store = tmp_path / "store"
    for version in ("v1", "v2", "v3", "v4"):
        put_version(store, version, size=100)
    path = tmp_path / "Pulumi.prod.yaml"
    write(path, cloud_file("v4"))
    spec = resolve_spec(file_values=read_stack_config(path), environ={},
                        defaults_for=provider_defaults, source_name=path.name)
    backend = StackBackend(StoreCloud(store), StackContext(tmp_path, "prod", spec, environ={}))
    with TestClient(create_app(backend, scrape=False), base_url="http://127.0.0.1:8765") as client:
        client.headers.update(bearer(backend.access_token))
        yield client, path, plans


def uses(client: TestClient) -> dict[str, tuple[str | None, bool]]:
    answer = client.get("/api/models")
    assert answer.status_code == 200, answer.text
    return {v["version"]: (v["use"], v["deletable"]) for v in answer.json()["versions"]}


def test_a_version_the_stack_file_names_now_is_protected_and_one_it_no_longer_names_is_not(
        cloud):
    client, path, _ = cloud
    assert uses(client)["v4"] == (STACK_FILE, False)
    assert client.delete("/api/models/v4").status_code == 400

    write(path, cloud_file("v3"))  # the operator points the file back at the served one
    assert uses(client)["v4"] == (None, True)
    write(path, cloud_file("v1"))  # ... or `llmcloud promote` in a terminal wrote it
    assert uses(client)["v4"] == (None, True)
    write(path, cloud_file("v4"))
    refused = client.delete("/api/models/v4")
    assert refused.status_code == 400
    assert "the stack file names" in refused.json()["error"]["message"]
    write(path, cloud_file("v3"))
    assert client.delete("/api/models/v4").json()["deleted"] is True


def test_the_deployment_and_its_plan_follow_the_stack_file(cloud):
    client, path, plans = cloud
    assert client.get("/api/deployment").json()["desired_replicas"] == 1
    client.get("/api/deployment")
    assert plans == [1]  # an unchanged file is not read again, nor planned again
    write(path, cloud_file("v3", min_replicas=3))
    assert client.get("/api/deployment").json()["desired_replicas"] == 3
    assert plans == [1, 3]


@pytest.mark.parametrize("broken, says", [
    ("config: [v4\n", "Pulumi.prod.yaml changed and is no longer valid: Pulumi.prod.yaml "
                      "is not valid YAML"),
    (cloud_file("v4", min_replicas=-2), "Pulumi.prod.yaml changed and is no longer valid"),
    (cloud_file("v4", provider="gcp"), "Pulumi.prod.yaml now names provider 'gcp'"),
    (None, "Pulumi.prod.yaml is gone from"),
])
def test_a_stack_file_that_cannot_be_served_is_a_409_until_fixed(cloud, broken, says):
    client, path, _ = cloud
    if broken is None:
        path.unlink()
    else:
        write(path, broken)
    for answer in (client.get("/api/models"), client.get("/api/deployment"),
                   client.get("/api/keys"), client.delete("/api/models/v1"),
                   client.post("/api/rollouts", json={"action": "rollback"})):
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert error["message"].startswith(says), error
        assert "the console reads it again" in error["hint"]
    fragment = client.get("/api/models", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "HX-Retarget" in fragment.headers
    assert "Pulumi.prod.yaml" in fragment.text
    assert client.get("/api/rollouts/current").status_code == 404  # no rollout started

    write(path, cloud_file("v2"))
    assert uses(client)["v4"] == (None, True)


def local_file(rate_limit: float) -> str:
    return ("config:\n  llmcloud:provider: local\n"
            f"  llmcloud:gateway:\n    rate_limit: {rate_limit}\n    burst: 5\n")


def test_a_local_console_answers_409_while_its_stack_file_is_invalid(running, tmp_path):
    path = tmp_path / "project" / "Pulumi.dev.yaml"
    path.parent.mkdir()
    write(path, local_file(10000))
    ctx = dataclasses.replace(running.stack.ctx(), project_dir=path.parent)
    backend = LocalConsoleBackend(running.stack.provider, ctx)
    with TestClient(create_app(backend, scrape=False),
                    base_url="http://127.0.0.1:8765") as client:
        client.headers.update(bearer(running.admin_key))
        assert client.get("/api/keys").status_code == 200

        write(path, "config:\n  llmcloud:gateway:\n    rate_limit: fast\n")
        for route in ("/api/keys", "/api/models", "/api/deployment"):
            answer = client.get(route)
            assert answer.status_code == 409, answer.text
            assert "rate_limit" in str(answer.json()["error"]), answer.text

        write(path, local_file(10000))
        assert client.get("/api/deployment").json()["model_version"] == "v1"
        path.unlink()  # a local stack needs no stack file
        assert client.get("/api/models").status_code == 200
        assert client.get("/api/keys").status_code == 200
