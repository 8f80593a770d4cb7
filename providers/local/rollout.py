"""Rolling replacement with surge 1 and none unavailable: start one replica on the target
version, wait until it is ready (it then takes traffic), drain and stop one old replica;
repeat. A new replica that is not ready in time fails the rollout."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from llmcloud.providers.local.pool import Replica
from llmcloud.providers.local.supervisor import StartFailed, Supervisor

Progress = Callable[[str], None]


class RolloutFailed(Exception):
    """A new replica did not become ready within the timeout (or exited while starting)."""


async def roll(
    supervisor: Supervisor, target: str, ready_timeout: float, progress: Progress
) -> int:
    """Replace every replica not on `target`, one at a time; return how many were replaced.

    Also brings the replica count up to `supervisor.desired` on `target`.
    """
    replaced = 0
    while True:
        serving = supervisor.serving()
        old = [r for r in serving if r.version != target or r.config_id != supervisor.config_id]
        if not old and len(serving) >= supervisor.desired:
            return replaced
        if old and sum(1 for r in serving if r.routable) > supervisor.desired:
            # more ready in service than desired (a canary's replicas, already on the
            # target, just joined): an old one goes without a new one to replace it. Ready
            # ones only: a joined replica that is not ready (ejected, failing its health
            # checks) must not count as capacity while an old one that serves goes
            await _drain_one(supervisor, old, progress)
            replaced += 1
            continue
        try:
            new = await supervisor.start(target, supervised=False)
        except StartFailed as exc:
            raise RolloutFailed(str(exc)) from None
        progress(f"replica {new.id} starting on {target} (port {new.port})")
        if not await supervisor.wait_ready(new, ready_timeout):
            why = "exited while starting" if not supervisor.running(new) else (
                f"was not ready within {ready_timeout:g}s")
            await supervisor.retire(new, drain=False)
            raise RolloutFailed(f"replica {new.id} on {target} {why}")
        supervisor.supervise(new)
        progress(f"replica {new.id} ready on {target}")
        if old:
            await _drain_one(supervisor, old, progress)
            replaced += 1


async def _drain_one(supervisor: Supervisor, old: list[Replica], progress: Progress) -> None:
    """Drain and stop the old replica that goes first (`_victim`)."""
    victim = _victim(old)
    progress(f"draining replica {victim.id} ({victim.version}, {victim.in_flight} in flight)")
    await supervisor.retire(victim)
    progress(f"stopped replica {victim.id}")


async def scale(supervisor: Supervisor, count: int, version: str, ready_timeout: float,
                progress: Progress) -> None:
    """Bring the number of serving replicas to `count` (new ones on `version`) and wait until
    that many are ready; replicas that die while starting are replaced by the supervisor."""
    supervisor.desired = count
    serving = supervisor.serving()
    if len(serving) < count:
        progress(f"starting {count - len(serving)} replica(s) on {version}")
        for _ in range(count - len(serving)):
            with contextlib.suppress(StartFailed):  # the supervisor tries it again
                await supervisor.start(version)
    for victim in sorted(serving, key=_retire_order)[: max(0, len(serving) - count)]:
        progress(f"draining replica {victim.id}")
        await supervisor.retire(victim)
    deadline = asyncio.get_running_loop().time() + ready_timeout
    while sum(1 for r in supervisor.serving() if r.routable) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise RolloutFailed(f"fewer than {count} replicas were ready after {ready_timeout:g}s")
        await asyncio.sleep(0.05)
    progress(f"{count} replica(s) ready")


def _retire_order(replica: Replica) -> tuple:
    return (replica.routable, replica.in_flight, -replica.created)


def _victim(old: list[Replica]) -> Replica:
    # An old replica that is not serving costs nothing to stop; otherwise the least busy.
    return min(old, key=_retire_order)
