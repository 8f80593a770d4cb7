"""The gateway's pure parts: token buckets, keys, the balancer's choice, the model store."""

from __future__ import annotations

import json

import pytest

from llmcloud.inference_image.manifest import verify_folder
from llmcloud.providers.local.keys import KeyRing, new_key, public
from llmcloud.providers.local.pool import Pool, Replica
from llmcloud.providers.local.ratelimit import RateLimiter, retry_after_header
from llmcloud.providers.local.store import ModelStore
from llmcloud.stacks.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_burst_then_rate():
    clock = Clock()
    limiter = RateLimiter(rate=5, burst=10, clock=clock)
    assert [limiter.take("a") for _ in range(10)] == [None] * 10
    wait = limiter.take("a")
    assert wait == pytest.approx(0.2)
    assert retry_after_header(wait) == "1"
    assert limiter.take("b") is None  # per key
    clock.now += 1.0
    assert sum(limiter.take("a") is None for _ in range(10)) == 5


def test_daily_quota_refuses_until_midnight():
    clock, wall = Clock(), Clock()
    wall.now = 86400 * 3 + 3600
    limiter = RateLimiter(rate=100, burst=100, quota=3, clock=clock, wall=wall)
    assert [limiter.take("a") for _ in range(3)] == [None] * 3
    assert limiter.take("a") == pytest.approx(86400 - 3600)
    wall.now += 86400
    assert limiter.take("a") is None


def test_keys_are_stored_as_hashes_and_looked_up():
    key, record = new_key("ci", admin=True)
    assert key not in json.dumps(record)
    assert record["hash"].startswith("sha256:") and "hash" not in public(record)
    ring = KeyRing([new_key("other")[1], record])
    assert ring.lookup(key) is record
    assert ring.lookup(key + "x") is None and ring.lookup(None) is None


def test_least_outstanding_requests_and_ejection():
    pool = Pool()
    a, b, c = (Replica(id=n, port=1000 + i, version="v1", ready=True)
               for i, n in enumerate("abc"))
    for replica in (a, b, c):
        pool.add(replica)
    a.in_flight, b.in_flight, c.in_flight = 3, 1, 2
    assert pool.pick() is b
    assert pool.pick(exclude=[b]) is c
    pool.eject(c)
    assert pool.pick(exclude=[b]) is a and pool.ejections == 1
    b.draining = True
    a.ready = False
    assert pool.pick() is None


def test_store_imports_a_folder_once_and_refuses_changed_content(tmp_path):
    source = tmp_path / "src"
    source.mkdir(parents=True)
    (source / "config.json").write_text("{}")
    (source / "model.safetensors").write_bytes(b"\x00" * 10)
    store = ModelStore(tmp_path / "models")
    assert store.import_folder(source, name="m", version="v1")["uploaded"] == 2
    verify_folder(store.version_dir("m", "v1"), store.manifest("m", "v1"))
    assert store.import_folder(source, name="m", version="v1")["uploaded"] == 0
    (source / "config.json").write_text('{"changed": true}')
    with pytest.raises(ConfigError, match="differs") as info:
        store.import_folder(source, name="m", version="v1")
    assert "v2" in info.value.hint
    assert store.versions("m") == ["v1"] and store.has("m", "v1") and not store.has("m", "v2")


def test_key_use_is_recorded_and_written_down_in_batches(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from llmcloud.providers.local import keys as keys_module
    from llmcloud.providers.local.controller import Controller
    from llmcloud.providers.local.state import StateFile

    now = [1_000_000]
    monkeypatch.setattr(keys_module.time, "time", lambda: now[0])
    key, record = new_key("ci")
    ring = KeyRing([dict(record)])
    assert "last_used" not in public(ring.records[0])
    assert ring.lookup(key)["last_used"] == 1_000_000
    now[0] += 30  # within the resolution: not a new write
    ring.lookup(key)
    assert ring.take_unsaved_use() == {record["id"]: 1_000_000}
    now[0] += 60
    ring.lookup(key)
    state = StateFile(tmp_path / "stack")
    state.update(lambda s: s.update(keys=[record]))
    Controller.flush_key_use(SimpleNamespace(keys=ring, state_file=state))
    assert state.read()["keys"][0]["last_used"] == 1_000_090
    assert ring.take_unsaved_use() == {}


def test_replica_environment_keeps_openmp_settings_the_user_made():
    from llmcloud.providers.local.supervisor import replica_environment

    assert replica_environment({"PATH": "/bin"}) == {"PATH": "/bin",
                                                     "OMP_WAIT_POLICY": "PASSIVE"}
    assert replica_environment({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}
    assert replica_environment({"GOMP_SPINCOUNT": "0"}) == {"GOMP_SPINCOUNT": "0"}


@pytest.mark.parametrize(("server", "flag"), [
    ({"pack_weights": True}, False),
    ({"pack_weights": False}, True),
    ({}, False),  # a state file written before the setting existed
])
def test_replicas_pack_weights_unless_the_spec_says_not_to(tmp_path, server, flag):
    from llmcloud.providers.local.controller import replica_settings

    config = {"command": ["llmcloud-server"], "gateway": {"max_body_kb": 64},
              "server": {"drain_timeout_seconds": 30, "max_batch_size": 8, "dtype": "auto",
                         **server}}
    settings = replica_settings(config, tmp_path)
    assert ("--no-pack-weights" in settings.extra_args) is flag
    assert settings.extra_args[:4] == ["--max-body-bytes", str(64 * 1024),
                                       "--log-level", "warning"]


def test_replicas_get_the_specs_engine_settings(tmp_path):
    from llmcloud.providers.local.controller import replica_settings

    config = {"command": ["llmcloud-server"], "gateway": {"max_body_kb": 64},
              "server": {"drain_timeout_seconds": 30, "max_batch_size": 8, "dtype": "auto",
                         "engine_flags": ["--reserve-new-tokens", "all"]}}
    assert replica_settings(config, tmp_path).extra_args[-2:] == ["--reserve-new-tokens",
                                                                  "all"]


def test_a_model_folder_flag_is_remembered_as_its_absolute_path(tmp_path, monkeypatch):
    # `up --model ./qwen` then a plain `up` from another folder: the same model, not
    # whatever `./qwen` means there
    from llmcloud.providers.local.provider import _remembered

    (tmp_path / "qwen").mkdir()
    monkeypatch.chdir(tmp_path)
    assert _remembered("model.source", "./qwen") == str(tmp_path / "qwen")
    assert _remembered("model.source", "Qwen/Qwen2.5-0.5B-Instruct") == (
        "Qwen/Qwen2.5-0.5B-Instruct")  # a hub id
    assert _remembered("model.source", "s3://b/m") == "s3://b/m"
    assert _remembered("compute.min_replicas", 2) == 2


def test_a_controller_that_runs_but_does_not_answer_is_an_error_not_a_dead_one(tmp_path):
    """Taken for "not running", a busy or starting controller had its replicas stopped by
    the next `up` (as leftovers), and keys changed in the file only."""
    import os

    from llmcloud.providers.local import procs
    from llmcloud.providers.local.provider import LocalProvider
    from llmcloud.providers.local.state import StateFile
    from llmcloud.stacks.errors import DeploymentError

    state_file = StateFile(tmp_path / "stack")
    state_file.ensure()
    assert LocalProvider._client(state_file) is None  # none recorded: not running
    me = {"pid": os.getpid(), "started": procs.start_time(os.getpid())}
    state_file.update(lambda s: s.update(controller=me))  # alive, and no socket answers
    with pytest.raises(DeploymentError, match="runs .* but does not answer"):
        LocalProvider._client(state_file, patience=0.5)


def test_a_second_command_changing_a_stack_meanwhile_is_refused(tmp_path):
    """Two `up`s at once started two controllers, or one stopped the other's: a command
    that changes a stack holds it, and another one says so at once."""
    import fcntl

    from llmcloud.providers.local.state import StateFile
    from llmcloud.stacks.errors import DeploymentError

    state_file = StateFile(tmp_path / "stack")
    refused = pytest.raises(DeploymentError, match="another llmcloud command is changing "
                                                   "stack 'dev'")
    with state_file.operation("dev"), refused, StateFile(tmp_path / "stack").operation("dev"):
        pass
    # free again once the first one ended; held while one runs
    with (state_file.operation("dev"), open(state_file.folder / "operation.lock", "a") as lock,
          pytest.raises(BlockingIOError)):
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
