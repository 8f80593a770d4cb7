"""Retiring a replica: the supervisor stops routing to it and signals it at once, then gives
the server's own drain (and the clean end of the streams it cuts) the time it takes."""

from __future__ import annotations

import asyncio
import sys
import time

from llmcloud.providers.local.pool import Pool
from llmcloud.providers.local.supervisor import ReplicaSettings, Supervisor

#: a server that holds one stream: on SIGTERM it waits out its drain, ends the stream (says so
#: in its log) and exits 0, as `llmcloud-server` does
HOLDS_A_STREAM = """
import argparse, signal, sys, threading, time
p = argparse.ArgumentParser(); p.add_argument("--drain-timeout", type=float)
args, _ = p.parse_known_args()
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
print("serving", flush=True)
stop.wait()
print("sigterm at", time.time(), flush=True)
time.sleep(args.drain_timeout)
print("stream ended with an error event", flush=True)
sys.exit(0)
"""


def test_a_retired_replica_is_signalled_at_once_and_its_drain_is_not_cut(tmp_path):
    drain = 6.0  # longer than the 5 s that a stopping replica used to get after its signal
    script = tmp_path / "server.py"
    script.write_text(HOLDS_A_STREAM)

    async def scenario() -> tuple[float, float, int | None]:
        pool = Pool()
        supervisor = Supervisor(
            pool, ReplicaSettings(command=[sys.executable, str(script)], log_dir=tmp_path,
                                  drain_timeout=drain),
            source_for=lambda version: [], on_change=lambda: None)
        replica = await supervisor.start("v1")
        process = supervisor._processes[replica.id]
        while "serving" not in supervisor.log_path(replica.id).read_text():
            await asyncio.sleep(0.05)
        replica.in_flight = 1  # the gateway still has the stream open
        began = time.time()
        await supervisor.retire(replica)
        await supervisor._client.aclose()
        return began, time.time(), process.returncode

    began, ended, code = asyncio.run(scenario())
    log = (tmp_path / "replica-r1.log").read_text()
    signalled = float(log.split("sigterm at ", 1)[1].split()[0])
    assert signalled - began < 1.0, "the replica was told to stop only after a wait"
    assert "stream ended with an error event" in log, "the replica was killed mid-drain"
    assert code == 0
    assert ended - began < drain + 3
