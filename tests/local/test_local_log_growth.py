"""A workstation stack `up`/`promote`d hundreds of times: its logs and its gateway's
per-key buckets stay bounded."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from llmcloud.providers.local import procs
from llmcloud.providers.local.pool import Pool
from llmcloud.providers.local.ratelimit import PRUNE_AT, RateLimiter
from llmcloud.providers.local.supervisor import ReplicaSettings, StartFailed, Supervisor


def test_replica_logs_of_gone_replicas_are_pruned_to_the_newest(tmp_path):
    """Every replica (every promote's, every restart's) writes `replica-rN.log`; the
    supervisor's own starts keep the folder to the newest few."""

    async def main() -> None:
        supervisor = Supervisor(Pool(), ReplicaSettings(
            command=[str(tmp_path / "no-such-server")], log_dir=tmp_path),
            lambda version: [], lambda: None)
        for _ in range(procs.KEEP_LOGS + 30):
            with pytest.raises(StartFailed):
                await supervisor.start("v1", supervised=False)
            # distinct mtimes: the newest are the ones kept
            newest = max(tmp_path.glob("replica-*.log"), key=lambda p: p.stat().st_mtime)
            os.utime(newest, (newest.stat().st_mtime + supervisor.next_id,) * 2)
        await supervisor._client.aclose()

    asyncio.run(main())
    kept = sorted(tmp_path.glob("replica-*.log"), key=lambda p: int(p.stem[len("replica-r"):]))
    assert len(kept) <= procs.KEEP_LOGS + 1
    assert kept[-1].name == f"replica-r{procs.KEEP_LOGS + 30}.log"  # the newest stays


def test_pruning_spares_the_logs_of_running_replicas(tmp_path):
    logs = [tmp_path / f"replica-r{i}.log" for i in range(10)]
    for age, path in enumerate(logs):
        path.write_text("x")
        os.utime(path, (1000 - age, 1000 - age))  # r0 newest, r9 oldest
    deleted = procs.prune_logs(tmp_path, "replica-*.log", keep=2, in_use={logs[9]})
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "replica-r0.log", "replica-r1.log", "replica-r9.log"]
    assert len(deleted) == 7


def test_the_controller_log_is_rotated_past_its_limit(tmp_path):
    log = tmp_path / "controller.log"
    log.write_bytes(b"a" * 100)
    procs.rotate_log(log, max_bytes=200)
    assert log.exists()  # under the limit: appended to
    log.write_bytes(b"b" * 300)
    (tmp_path / "controller.log.1").write_bytes(b"older")
    procs.rotate_log(log, max_bytes=200)
    assert not log.exists()
    assert (tmp_path / "controller.log.1").read_bytes() == b"b" * 300
    procs.rotate_log(tmp_path / "missing.log")  # nothing to rotate: no error


def test_launch_rotates_the_controller_log_before_opening_it():
    """The hand-over: `launch` (the only writer of controller.log) calls the rotation."""
    import inspect

    from llmcloud.providers.local import launch

    source = inspect.getsource(launch)
    assert source.index("procs.rotate_log(state_file.logs / \"controller.log\")") < \
        source.index("open(state_file.logs / \"controller.log\", \"ab\")")


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("quota", [None, 1000])
def test_buckets_of_keys_no_longer_used_are_dropped(quota):
    """A year of keys created, used and revoked: the limiter kept a bucket for each."""
    clock = _Clock()
    limiter = RateLimiter(rate=1.0, burst=5, quota=quota, clock=clock,
                          wall=lambda: 86400 * 10 + clock.now)
    for i in range(PRUNE_AT * 5):
        assert limiter.take(f"key-{i}") is None
        # idle long enough to refill after its request; ~6 days in all, so the quota's
        # per-day counts (which must be kept for the day) end too
        clock.now += 100
    assert len(limiter) <= PRUNE_AT + 1


def test_dropping_idle_buckets_changes_no_answer():
    clock = _Clock()
    limiter = RateLimiter(rate=1.0, burst=2, quota=3, clock=clock, wall=lambda: clock.now)
    for _ in range(3):
        assert limiter.take("busy") is None
        clock.now += 1.5
    for i in range(PRUNE_AT + 5):  # forces a prune while "busy" has used its quota
        limiter.take(f"other-{i}")
    assert limiter.take("busy") is not None  # its quota is still spent today


def test_good_versions_kept_for_rollback_are_bounded(monkeypatch):
    """Hundreds of promotes: `history` (written to state.json on every save) keeps the
    newest good versions, and rollback still goes back one at a time."""
    from llmcloud.providers.local import controller as controller_module

    async def rolled(supervisor, version, ready_timeout, progress):
        return 1

    monkeypatch.setattr(controller_module, "roll", rolled)
    c = controller_module.Controller.__new__(controller_module.Controller)
    c.version, c.history, c.config = "v0", ["v0"], {"ready_timeout": 1}
    c.supervisor, c.save = None, lambda: None
    for i in range(1, 300):
        asyncio.run(c._roll_or_back(f"v{i}", lambda message: None))
    assert c.history[-1] == "v299" and c.history[-2] == "v298"
    assert len(c.history) <= controller_module.KEEP_HISTORY


def test_stopped_replicas_leave_nothing_behind_in_the_supervisor(tmp_path):
    """Replicas started and stopped again and again (promotes, scaling): the supervisor's
    bookkeeping of them ends with them."""
    script = tmp_path / "server.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
                      "time.sleep(60)\n")

    async def scenario() -> Supervisor:
        supervisor = Supervisor(
            Pool(), ReplicaSettings(command=[sys.executable, str(script)], log_dir=tmp_path,
                                    drain_timeout=5),
            source_for=lambda version: [], on_change=lambda: None)
        for _ in range(3):
            replica = await supervisor.start("v1")
            await supervisor.retire(replica)
        await asyncio.sleep(0.2)  # the watchers see the exits
        await supervisor._client.aclose()
        return supervisor

    supervisor = asyncio.run(scenario())
    assert not supervisor._processes and not list(supervisor.pool)
    assert not supervisor._stopping
