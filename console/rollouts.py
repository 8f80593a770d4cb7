"""Promote and roll back from the console: the provider's own `promote`/`rollback` run in a
thread while a watcher records the rollout replica by replica from the stack's status.

One rollout at a time per console. The provider call decides the outcome (the local
provider rolls back on its own when a new replica is not ready); the watcher only narrates
what the replicas did: which one started, became ready, drained and stopped. A rollout
asked to bake hears the provider's bake (`bake.bake_progress`) and shows its phase:
rolling, baking, restoring (a bake failed: the previous version goes back), done.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from llmcloud.providers.bake import bake_progress
from llmcloud.stacks.errors import LlmcloudError


class RolloutBusy(Exception):
    """A rollout is already running."""


@dataclass
class Rollout:
    """One promote or rollback, as the page and the API show it."""

    id: str
    action: str  # "promote" or "rollback"
    target: str | None
    from_version: str | None
    state: str = "running"  # running, succeeded, failed
    phase: str = "rolling"  # rolling, baking, restoring, done
    bake_seconds: int = 0  # 0: no bake
    min_requests: int = 0  # the requests the bake must count (0: none)
    bake_started: float | None = None
    #: the bake's start and end on `time.monotonic` (its progress: a wall clock may jump)
    bake_began: float | None = field(default=None, repr=False)
    bake_ended: float | None = field(default=None, repr=False)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    replicas: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    #: the replicas as the watcher last narrated them (None: not looked at yet)
    seen: list[dict[str, Any]] | None = field(default=None, repr=False)
    #: the ids of the replicas seen ready: their "ready" is said once
    been_ready: set[str] = field(default_factory=set, repr=False)

    def say(self, message: str) -> None:
        self.events.append({"at": time.time(), "message": message})

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "action": self.action, "target": self.target,
                "from_version": self.from_version, "state": self.state,
                "started": self.started, "finished": self.finished,
                "events": list(self.events), "replicas": list(self.replicas),
                "result": self.result, "error": self.error, "phase": self.phase,
                "bake": self._bake()}

    def _bake(self) -> dict[str, Any] | None:
        """The bake asked for: its length, when it began (None: not yet) and how far it is,
        so the page shows "baking, 3 of 10 min" from the rollout it polls."""
        if not self.bake_seconds:
            return None
        elapsed = None
        if self.bake_began is not None:
            # a bake that ended (passed, or failed while the previous version goes back)
            # stops where it ended
            end = self.bake_ended if self.bake_ended is not None else time.monotonic()
            elapsed = min(max(0.0, end - self.bake_began), float(self.bake_seconds))
        return {"seconds": self.bake_seconds, "started": self.bake_started,
                "elapsed_seconds": elapsed, "min_requests": self.min_requests}


def narrate(before: list[dict[str, Any]], after: list[dict[str, Any]], *,
            been_ready: Collection[str] = ()) -> list[str]:
    """What changed between two replica lists, in words, in the order a rolling update does
    things when several happen between two looks: a replica becomes ready, an old one drains,
    it stops, the next one starts. A replica in ``been_ready`` that is ready again is not
    said: the gateway takes one out until its next health check after each 503 it answers
    (a bad version's every request), and that is no step of the rollout."""
    old = {r["id"]: r for r in before}
    new = {r["id"]: r for r in after}
    ready, drained, gone, came = [], [], [], []
    for rid, replica in new.items():
        version = replica.get("version")
        if rid not in old:
            # One that is ready already started before the old ones drained in this
            # look; one still starting is the next, after them.
            (ready if replica.get("ready") else came).append(
                f"replica {rid} starting on {version}")
            if replica.get("ready"):
                ready.append(f"replica {rid} ready on {version}")
        elif replica.get("ready") and not old[rid].get("ready") and rid not in been_ready:
            ready.append(f"replica {rid} ready on {version}")
        if replica.get("draining") and not (old.get(rid) or {}).get("draining"):
            drained.append(f"replica {rid} draining ({version})")
    for rid, replica in old.items():
        if rid not in new:
            gone.append(f"replica {rid} stopped ({replica.get('version')})")
    return ready + drained + gone + came


class Rollouts:
    """Runs rollouts and keeps the latest ones."""

    def __init__(self, replicas: Callable[[], list[dict[str, Any]]], *,
                 poll_interval: float = 0.25, keep: int = 20):
        self._replicas = replicas
        self.poll_interval = poll_interval
        self._history: list[Rollout] = []
        self._keep = keep
        self._lock = threading.Lock()
        self._looking = threading.Lock()  # one look at the replicas at a time

    def current(self) -> Rollout | None:
        """The running rollout, else the latest finished one."""
        with self._lock:
            return self._history[-1] if self._history else None

    def get(self, rollout_id: str) -> Rollout | None:
        with self._lock:
            return next((r for r in self._history if r.id == rollout_id), None)

    def start(self, action: str, target: str | None, from_version: str | None,
              run: Callable[[], dict[str, Any]], *, bake_seconds: int = 0,
              min_requests: int = 0) -> Rollout:
        """Start `run` (the provider's promote or rollback, baking `bake_seconds`, counting
        at least `min_requests` requests) in a thread; raise `RolloutBusy` while another
        runs."""
        with self._lock:
            if self._history and self._history[-1].state == "running":
                raise RolloutBusy(self._history[-1].id)
            rollout = Rollout("rollout-" + secrets.token_hex(4), action, target, from_version,
                              bake_seconds=bake_seconds, min_requests=min_requests)
            self._history = [*self._history, rollout][-self._keep:]
        rollout.say(f"{action} to {target}" if target else f"{action} started")
        done = threading.Event()
        threading.Thread(target=self._run, args=(rollout, run, done), daemon=True,
                         name=f"console-{rollout.id}").start()
        threading.Thread(target=self._watch, args=(rollout, done), daemon=True,
                         name=f"console-{rollout.id}-watch").start()
        return rollout

    def _run(self, rollout: Rollout, run: Callable[[], dict[str, Any]],
             done: threading.Event) -> None:
        # (this thread's context only: the provider's bake runs in it)
        hearing = bake_progress.set(lambda event, message: self._hear_bake(
            rollout, event, message))
        try:
            result = run()
        except LlmcloudError as exc:
            rollout.error = {"message": exc.message, "context": exc.context, "hint": exc.hint}
        except Exception as exc:  # shown on the page rather than lost in a thread
            rollout.error = {"message": f"the rollout failed: {exc!r}", "context": None,
                             "hint": "see the console's terminal output"}
        else:
            rollout.result = result
        finally:
            bake_progress.reset(hearing)
        done.set()

    def _hear_bake(self, rollout: Rollout, event: str, message: str) -> None:
        """The provider's bake saying how it goes (`bake.bake`'s `on_progress`)."""
        if event == "started":
            # what the replicas did before the bake is said before it
            self._observe(rollout)
            rollout.bake_began = time.monotonic()
            rollout.bake_started, rollout.phase = time.time(), "baking"
        elif event == "counting":
            pass  # the bake's time is over, its count of requests awaited: still baking
        else:  # passed or failed: the bake is over
            rollout.bake_ended = time.monotonic()
            if event == "failed":
                rollout.phase = "restoring"
        rollout.say(message)

    def _watch(self, rollout: Rollout, done: threading.Event) -> None:
        self._observe(rollout)
        while not done.wait(self.poll_interval):
            self._observe(rollout)
        self._observe(rollout)
        if rollout.error is None:
            version = (rollout.result or {}).get("model_version")
            rollout.say(f"done: serving {version}")
        else:
            rollout.say(f"failed: {rollout.error['message']}")
        rollout.finished, rollout.phase = time.time(), "done"
        # last: a reader that sees the rollout ended sees all of it
        rollout.state = "succeeded" if rollout.error is None else "failed"

    def _snapshot(self, rollout: Rollout) -> list[dict[str, Any]]:
        try:
            replicas = self._replicas()
        except Exception:  # noqa: BLE001 - e.g. the controller gone mid-read (a destroy):
            # the watch must go on to the rollout's end, or it stays "running" for ever and
            # every later rollout is refused
            return rollout.replicas
        rollout.replicas = replicas
        return replicas

    def _observe(self, rollout: Rollout) -> None:
        with self._looking:
            current = self._snapshot(rollout)
            if rollout.seen is not None:
                for line in narrate(rollout.seen, current, been_ready=rollout.been_ready):
                    rollout.say(line)
            rollout.seen = current
            rollout.been_ready |= {r["id"] for r in current if r.get("ready")}
