"""Rolling promote (issue test 1), automatic rollback of a failed rollout, and rollback."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from llmcloud.stacks.errors import ConfigError, DeploymentError
from tests.local.conftest import auth, fake_model


def test_promote_under_32_streams_drops_nothing_and_keeps_n_ready(fake_stack, tmp_path):
    stack = fake_stack(replicas=2)
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    samples: list[int] = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(stack.status()["ready_replicas"])
            time.sleep(0.1)

    async def streams(done: asyncio.Event) -> list[dict]:
        results: list[dict] = []
        body = {"prompt": "hi", "stream": True, "max_tokens": 20, "fake_interval": 0.02}

        async def worker(client: httpx.AsyncClient) -> None:
            while not done.is_set():
                async with client.stream("POST", stack.url + "/v1/completions",
                                         json=body) as response:
                    events = [line[6:] async for line in response.aiter_lines()
                              if line.startswith("data: ")]
                results.append({"status": response.status_code, "events": events})

        async with httpx.AsyncClient(headers=auth(key), timeout=30,
                                     limits=httpx.Limits(max_connections=64)) as client:
            await asyncio.gather(*(worker(client) for _ in range(32)))
        return results

    async def scenario() -> tuple[list[dict], dict]:
        done = asyncio.Event()
        running = asyncio.create_task(streams(done))
        await asyncio.sleep(0.5)
        result = await asyncio.to_thread(stack.promote, "v2")
        await asyncio.sleep(0.3)
        done.set()
        return await running, result

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        results, result = asyncio.run(scenario())
    finally:
        stop.set()
        sampler.join()
    assert result["model_version"] == "v2" and result["previous_version"] == "v1"
    assert result["outcome"] == "promoted"  # (as a cloud's promote --json says it)
    assert len(results) > 64
    failed = [r for r in results if r["status"] != 200 or len(r["events"]) != 21
              or r["events"][-1] != "[DONE]"]
    assert failed == []
    versions = {json.loads(r["events"][0])["model"] for r in results}
    assert versions == {"v1", "v2"}
    assert min(samples) >= 2, samples
    status = stack.status()
    assert [r["version"] for r in status["replicas"]] == ["v2", "v2"]
    assert status["ready_replicas"] == 2


def test_failed_promote_rolls_back_on_its_own(fake_stack, tmp_path):
    stack = fake_stack(replicas=2)
    stack.environ["LLMCLOUD_LOCAL_READY_TIMEOUT"] = "2"
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "bad", never_ready=True), "v2")
    with pytest.raises(DeploymentError, match="v2") as info:
        stack.promote("v2")
    assert "rolled back to v1" in info.value.context
    status = stack.status()
    assert status["model_version"] == "v1"
    assert [r["version"] for r in status["replicas"]] == ["v1", "v1"]
    assert status["ready_replicas"] == 2
    response = httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                          headers=auth(key))
    assert response.json()["model"] == "v1"
    with pytest.raises(ConfigError, match="no version v9"):
        stack.promote("v9")


def test_server_settings_the_replicas_cannot_start_with_are_undone_whole(fake_stack):
    """A setting no replica starts with: the roll fails, the rollback runs with the old
    settings (it used the new ones, and failed too), and the same `up` again tries again
    (it said nothing had changed, while self-healing restarted replicas with the bad
    settings)."""
    stack = fake_stack(replicas=2)
    stack.environ["LLMCLOUD_LOCAL_READY_TIMEOUT"] = "2"
    key = stack.up()["api_key"]
    for _ in range(2):
        with pytest.raises(DeploymentError) as info:
            stack.up(server__max_model_len=8)
        assert "rolled back to v1" in info.value.context
        status = stack.status()
        assert status["ready_replicas"] == 2 and status["model_version"] == "v1"
    response = httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                          headers=auth(key))
    assert response.status_code == 200
    assert stack.up(server__max_model_len=64)["changed"] == ["server"]


def test_rollback_returns_to_the_last_good_version(fake_stack, tmp_path):
    stack = fake_stack(replicas=1)
    stack.up()
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    stack.promote("v2")
    result = stack.provider.rollback(stack.ctx())
    assert result["model_version"] == "v1" and result["previous_version"] == "v2"
    assert result["outcome"] == "rolled back"
    assert stack.provider.promote(stack.ctx(), "v1")["outcome"] == "unchanged"
    assert [r["version"] for r in stack.status()["replicas"]] == ["v1"]
    with pytest.raises(ConfigError, match="no good version before v1"):
        stack.provider.rollback(stack.ctx())
    admin = stack.provider.keys_create(stack.ctx(), "ops", admin=True)["key"]
    answer = httpx.post(stack.url + "/admin/promote", json={"version": "v9"},
                        headers=auth(admin), timeout=30)
    last = json.loads(answer.text.strip().splitlines()[-1])
    assert last["event"] == "error" and last["error"]["kind"] == "config"
    assert "no version v9" in last["error"]["message"]
    assert [r["version"] for r in stack.status()["replicas"]] == ["v1"]


def test_a_failed_rollback_returns_to_the_version_in_service(fake_stack, tmp_path):
    """A rollback whose replicas do not come up goes back to the version in service, as a
    failed promote does (it left the replicas it had replaced on the old version, while
    status named the new one)."""
    import json as _json

    from llmcloud.providers.local.store import ModelStore

    stack = fake_stack(replicas=2)
    stack.environ["LLMCLOUD_LOCAL_READY_TIMEOUT"] = "2"
    key = stack.up()["api_key"]
    stack.upload(fake_model(tmp_path / "v2"), "v2")
    stack.promote("v2")
    v1 = ModelStore(stack.state_file.models).version_dir("fake", "v1")
    (v1 / "fake.json").write_text(_json.dumps({"never_ready": True}))  # v1 no longer starts
    with pytest.raises(DeploymentError) as info:
        stack.provider.rollback(stack.ctx())
    assert "rollback to v1 failed" in info.value.message
    assert "rolled back to v2" in info.value.context
    status = stack.status()
    assert status["model_version"] == "v2"
    assert [r["version"] for r in status["replicas"]] == ["v2", "v2"]
    assert httpx.post(stack.url + "/v1/completions", json={"max_tokens": 1},
                      headers=auth(key)).json()["model"] == "v2"


def test_up_with_a_new_model_version_rolls_the_replicas(fake_stack):
    stack = fake_stack(replicas=2)
    stack.up()
    result = stack.up(model__version="v2")
    assert result["changed"] == ["model"] and result["model_version"] == "v2"
    assert [r["version"] for r in result["replicas"]] == ["v2", "v2"]
    assert stack.up()["changed"] == []
