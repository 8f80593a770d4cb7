"""The local stack through the real `llmcloud` command (issue test 10 and the key and model
commands): `up` twice changes nothing, `destroy` twice succeeds and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmcloud.providers.local.procs import free_port, port_in_use
from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.local.conftest import auth, fake_model, processes_mentioning


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmcloud.cli", *args], env=env,
                          capture_output=True, text=True, timeout=90)


def _json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_up_twice_changes_nothing_and_destroy_twice_leaves_nothing(fake_env, home, tmp_path):
    model = fake_model(tmp_path / "model")
    port = free_port()
    env = {**fake_env, "LLMCLOUD_PROJECT_DIR": str(tmp_path),
           "LLMCLOUD_SERVER__PORT": str(port), "LLMCLOUD_MODEL__NAME": "fake"}
    first = _json(_cli(env, "up", "--model", str(model), "--replicas", "2", "--json"))
    assert first["endpoint"] == f"http://127.0.0.1:{port}/v1"
    assert first["api_key"] and first["model_version"] == "v1"
    response = httpx.post(first["endpoint"] + "/completions", json={"max_tokens": 1},
                          headers=auth(first["api_key"]))
    assert response.status_code == 200
    second = _json(_cli(env, "up", "--model", str(model), "--replicas", "2", "--json"))
    assert second["api_key"] is None and second["changed"] == []
    pids = sorted(r["pid"] for r in first["replicas"])
    assert sorted(r["pid"] for r in second["replicas"]) == pids
    status = _json(_cli(env, "status", "--json"))
    assert status["endpoint"] == first["endpoint"]
    assert {"pid", "port", "version", "ready", "in_flight"} <= set(status["replicas"][0])
    assert sorted(r["pid"] for r in status["replicas"]) == pids

    created = _json(_cli(env, "keys", "create", "--name", "ci", "--json"))
    listed = _json(_cli(env, "keys", "list", "--json"))["keys"]
    assert {k["name"] for k in listed} == {"default", "ci"}
    assert httpx.post(first["endpoint"] + "/completions", json={"max_tokens": 1},
                      headers=auth(created["key"])).status_code == 200
    _json(_cli(env, "keys", "revoke", created["id"], "--json"))
    assert httpx.post(first["endpoint"] + "/completions", json={"max_tokens": 1},
                      headers=auth(created["key"])).status_code == 401

    uploaded = _json(_cli(env, "model", "upload", str(model), "--version", "v2", "--json"))
    assert Path(uploaded["uri"], "manifest.json").is_file()
    (model / "config.json").write_text('{"changed": 1}')
    refused = _cli(env, "model", "upload", str(model), "--model-version", "v2")
    assert refused.returncode == 1 and "--force" in refused.stderr

    for _ in range(2):
        result = _cli(env, "destroy", "--yes", "--json")
        assert result.returncode == 0, result.stderr
    assert processes_mentioning(str(home)) == []
    assert not port_in_use(port)
    assert not any(port_in_use(r["port"]) for r in first["replicas"])
    gone = _cli(env, "status", "--json")  # nothing left: the stack is nowhere now
    assert gone.returncode == 2 and "does not exist" in json.loads(gone.stdout)["error"]


def test_up_converges_replica_count_and_limits_without_restarts(fake_stack):
    stack = fake_stack(replicas=1)
    stack.up()
    first = stack.status()["replicas"][0]
    result = stack.up(compute__min_replicas=2, gateway__rate_limit=50)
    assert sorted(result["changed"]) == ["gateway", "replicas"]
    replicas = stack.status()["replicas"]
    assert len(replicas) == 2 and first["pid"] in [r["pid"] for r in replicas]
    assert stack.up()["changed"] == []
    rolled = stack.up(server__drain_timeout_seconds=2)
    assert rolled["changed"] == ["server"]
    assert not {r["pid"] for r in rolled["replicas"]} & {r["pid"] for r in replicas}
    assert rolled["ready_replicas"] == 2
    shrunk = stack.provider.update(stack.ctx(compute__min_replicas=1))
    assert shrunk["changed"] == ["replicas"] and len(shrunk["replicas"]) == 1
    stack.destroy()
    assert not os.path.exists(stack.state_file.folder)


def test_up_fails_fast_when_replicas_crash_and_leaves_nothing(fake_stack, tmp_path, home):
    stack = fake_stack(replicas=1, model=fake_model(tmp_path / "broken", exit_on_start=True))
    with pytest.raises(DeploymentError, match="exited 3 times"):
        stack.up()
    assert processes_mentioning(str(home)) == []
    assert not port_in_use(stack.port)
    assert stack.state_file.read().get("keys") == []  # the key was never shown


def test_stack_stops_when_its_owner_process_ends(fake_stack, home):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stack = fake_stack(replicas=1)
        stack.environ["LLMCLOUD_LOCAL_OWNER_PID"] = str(owner.pid)
        stack.up()
        assert stack.status()["running"]
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 10
    while processes_mentioning(str(home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_mentioning(str(home)) == []
    assert not port_in_use(stack.port)


@pytest.mark.parametrize("offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "ON"},
                                     {"TRANSFORMERS_OFFLINE": "1"}])
def test_offline_hub_model_not_in_cache_fails_before_starting_anything(fake_stack, tmp_path,
                                                                       offline):
    # every setting the hub itself reads as offline (ON and TRANSFORMERS_OFFLINE were not)
    stack = fake_stack(model__source="nobody/not-a-cached-model")
    stack.environ.update(offline, LLMCLOUD_MODEL_CACHE=str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        stack.up()
    assert not port_in_use(stack.port)
