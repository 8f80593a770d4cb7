"""The controller's canary operations (`POST /canary`, `POST /canary/end`; see `canary.py`):
start N replicas on a version beside the replicas in service, and end them, retired (the
canary failed) or adopted into the replicas in service, which then roll to the canary's
version (it passed). A canary whose owner (the promote that asked for it) is gone is
retired: a canary never outlives its promote."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from llmcloud.providers.local import procs
from llmcloud.providers.local.canary import MAX_CANARY_REPLICAS, Canary, CanaryTally, left_over
from llmcloud.providers.local.control import OperationError
from llmcloud.providers.local.procs import start_time
from llmcloud.providers.local.rollout import scale
from llmcloud.providers.local.supervisor import StartFailed

if TYPE_CHECKING:
    from llmcloud.providers.local.controller import Controller

log = logging.getLogger("llmcloud.canary")


def refuse_while_canary(controller: Controller, what: str) -> None:
    """Busy (exit 75) while a canary runs: another promote's, which rolls the replicas in
    service itself once its canary passed. Otherwise the operation goes on, and a canary
    retired without its promote was said (its promote read `canary_left` before)."""
    canary = controller.canary
    if canary is not None:
        raise OperationError(
            f"a canary of {canary.version} runs on the stack: {what} refused",
            context=f"the {canary.operation} that started it (pid {canary.owner_pid}) bakes "
                    "it now, and rolls the replicas itself if it passes",
            hint=f"wait for that {canary.operation} to end, then run this again",
            kind="busy")
    controller.canary_left = None


def refuse_replica_changes_while_canary(controller: Controller,
                                        desired: dict[str, Any]) -> None:
    """Busy (exit 75) for an `up` or `update` that would start, stop or roll replicas while
    a canary runs: the fleet the canary is judged beside must stay as it was, and the
    canary's promote rolls it to its own version once it passed (an `up` of another version
    meanwhile was rolled over by it, a smaller count left the canary more than half the
    requests). Changes that start no replica (the gateway's limits) go on."""
    canary = controller.canary
    if canary is None:
        return
    from llmcloud.providers.local.controller import replica_settings

    config = controller.config
    changes = [what for what, differs in (
        ("the model version", desired["version"] != config["version"]
         or desired["model"] != config["model"]),
        ("the replica count", desired["replicas"] != controller.supervisor.desired),
        ("the server settings", replica_settings(desired, controller.state_file.logs)
         .fingerprint() != controller.supervisor.config_id)) if differs]
    if changes:
        raise OperationError(
            f"a canary of {canary.version} runs on the stack: changing "
            f"{' and '.join(changes)} is refused",
            context=f"the {canary.operation} that started it (pid {canary.owner_pid}) bakes "
                    "it beside the replicas in service, and rolls them itself if it passes",
            hint=f"wait for that {canary.operation} to end, then run this again",
            kind="busy")


async def start(controller: Controller, version: str, count: int, owner_pid: int | None,
                operation: str, progress) -> dict[str, Any]:
    """Start ``count`` replicas on ``version`` beside the replicas in service and wait until
    each is ready; on any failure none is left."""
    from llmcloud.providers.local.controller import _check_version

    refuse_while_canary(controller, "a second canary")
    _check_version(version)
    controller.source_for(version)  # a version with nothing to load fails here
    serving = controller.supervisor.desired
    if version == controller.version:
        raise OperationError(f"the stack serves {version} already: no canary to run",
                             kind="config")
    if not 1 <= count <= min(MAX_CANARY_REPLICAS, max(serving, 1)):
        raise OperationError(
            f"a canary of {count} replicas is refused",
            context=f"a local canary runs 1 to {MAX_CANARY_REPLICAS} replicas, and no more "
                    f"than the {serving} in service (it takes at most half the requests)",
            hint="--canary 1", kind="config")
    supervisor = controller.supervisor
    ready = sum(1 for r in supervisor.serving() if r.routable)
    if count > ready:
        # the canary would take more than half the requests, or all of them
        raise OperationError(
            f"a canary of {count} replica{'s' if count != 1 else ''} is refused: only "
            f"{ready} of the {serving} replicas in service are ready",
            context="a canary takes at most half the requests, beside replicas in service "
                    "that serve the version in service",
            hint="llmcloud status (see the replicas' last_failure); promote once they are "
                 "ready")
    canary = Canary(version, [], CanaryTally(lambda: controller.gateway.settings.timeout_seconds),
                    operation=operation, owner_pid=owner_pid,
                    owner_started=start_time(owner_pid) if owner_pid else None)
    controller.canary = canary
    try:
        for _ in range(count):
            try:
                replica = await supervisor.start(version, supervised=False)
            except StartFailed as exc:
                raise OperationError(f"the canary could not start: {exc}") from None
            canary.replicas.append(replica)
            canary.mark()
            progress(f"canary replica {replica.id} starting on {version} (port {replica.port})")
        timeout = float(controller.config["ready_timeout"])
        for replica in canary.replicas:
            if not await supervisor.wait_ready(replica, timeout):
                why = "exited while starting" if not supervisor.running(replica) else (
                    f"was not ready within {timeout:g}s")
                raise OperationError(
                    f"canary replica {replica.id} on {version} {why}",
                    context=f"its log: {supervisor.log_path(replica.id)}")
            progress(f"canary replica {replica.id} ready on {version}")
    except BaseException:
        await _retire(controller, progress, drain=False)
        raise
    controller.save()
    if owner_pid:
        controller.spawn(_retire_without_owner(controller, canary))
    share = f"{count} of {len(supervisor.serving()) + count}"
    progress(f"canary on {version}: {share} replicas take requests")
    return controller.status()


async def end(controller: Controller, keep: bool, progress) -> dict[str, Any]:
    """End the canary: retire its replicas (drained), or, with ``keep``, adopt them and
    roll the replicas in service to its version (the version goes into the history as a
    promote's or a rollback's does). No canary: nothing to do."""
    canary = controller.canary
    if canary is None:
        return controller.status()
    if not keep:
        await _retire(controller, progress)
        return controller.status()
    supervisor = controller.supervisor
    canary.adopt()
    for replica in canary.replicas:
        supervisor.supervise(replica)
    controller.canary = None
    previous, history = controller.version, list(controller.history)
    progress(f"the canary passed: rolling the replicas in service to {canary.version}")
    replaced = await controller._roll_or_back(canary.version, progress,
                                              what=canary.operation)
    # the canary's replicas may outnumber those a rollout starts: back to the desired count
    await scale(supervisor, supervisor.desired, canary.version,
                float(controller.config["ready_timeout"]), progress)
    if canary.operation == "rollback":
        while history and history[-1] == previous:
            history.pop()
        controller.history = history
    controller.save()
    return {"previous_version": previous, "replaced": replaced, **controller.status()}


async def _retire(controller: Controller, progress, drain: bool = True) -> None:
    canary, controller.canary = controller.canary, None
    if canary is None:
        return
    for replica in canary.replicas:
        progress(f"retiring canary replica {replica.id} ({replica.in_flight} in flight)")
    await asyncio.gather(*(controller.supervisor.retire(r, drain=drain)
                           for r in canary.replicas))
    controller.save()


async def _retire_without_owner(controller: Controller, canary: Canary) -> None:
    # The promote that baked the canary is the only one that ends it: killed outright
    # (SIGKILL, a CI job's timeout), it never will, and the canary would serve on.
    while controller.canary is canary and procs.alive(canary.owner_pid, canary.owner_started):
        await asyncio.sleep(0.5)
    if controller.canary is not canary:
        return
    async with controller._lock:
        if controller.canary is not canary:
            return
        log.warning("the promote of pid %s that ran the canary of %s is gone: retiring it",
                    canary.owner_pid, canary.version)
        controller.canary_left = left_over(
            canary.record(), f"its promote (pid {canary.owner_pid}) ended without ending "
                             "it, so the stack's controller retired it")
        await _retire(controller, lambda message: log.info("%s", message))


def retire_recorded(state: dict[str, Any]) -> str | None:
    """At a controller's start: stop the replicas of a canary recorded by the controller
    before (they die with it, but one that lingers must not serve), and say so."""
    recorded = state.get("canary")
    if not isinstance(recorded, dict):
        return None
    for replica in recorded.get("replicas", []):
        with contextlib.suppress(Exception):
            procs.stop(replica.get("pid"), replica.get("started"), grace=5)
    return left_over(recorded, "the stack's controller stopped meanwhile, and its replicas "
                               "were stopped")
