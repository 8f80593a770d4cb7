"""A local stack's canary (`promote --canary N`): N replicas on the new version beside the
replicas in service, which stay on theirs. The gateway routes to every ready replica, so the
canary answers about N/(D+N) of the requests; it counts what the canary replicas answered
(`CanaryTally`) and judges them as the stack's alerts judge the whole stack (`alerts.py`:
5xx share, time to headers, the same minimum of requests), but over the canary's whole life,
not a window: everything they answered is the new version's.

The controller holds at most one canary (`Controller.canary_start`/`canary_end`), records it
in `state.json`, and never resumes one: a controller that starts and finds one recorded
stopped its replicas, and a canary whose promote (its owner process) is gone is retired.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from llmcloud.providers.canary import MAX_CANARY_SERVERS
from llmcloud.providers.local.alerts import (
    FIVE_XX_PERCENT,
    MIN_REQUESTS,
    SLOW_PERCENT,
    latency_threshold_seconds,
)
from llmcloud.providers.local.pool import Replica

#: the most canary replicas a local promote starts (and never more than the replicas in
#: service: the canary takes at most half the requests)
MAX_CANARY_REPLICAS = MAX_CANARY_SERVERS
#: the canary's verdicts, as the bake names them beside the stack's alerts
CANARY_SERVER_ERRORS, CANARY_LATENCY, CANARY_GONE = (
    "canary-server-errors", "canary-latency", "canary-gone")
_CLIENT_GONE = 499


@dataclass
class CanaryTally:
    """What the canary's replicas answered since it started (the gateway counts each)."""

    timeout_seconds: Callable[[], float]
    answered: int = 0
    server_errors: int = 0
    timed: int = 0  # answers whose time to headers was measured (not streamed)
    slow: int = 0  # of those, the ones over the latency threshold

    def count(self, status: int, seconds: float | None) -> None:
        """One answer of a canary replica (``seconds``: its time to headers, None for a
        stream, whose headers come before its first token)."""
        if status == _CLIENT_GONE:
            return
        self.answered += 1
        self.server_errors += status >= 500
        if seconds is not None:
            self.timed += 1
            self.slow += seconds > latency_threshold_seconds(self.timeout_seconds())

    def refused(self) -> None:
        """An attempt a canary replica failed before answering (a connection it refused or
        reset, a 503) that the gateway then sent to another replica: the client never saw
        it, so the stack's alerts do not count it, but the canary failed it (a canary that
        503s every request would otherwise pass, judged on nothing)."""
        self.answered += 1
        self.server_errors += 1

    def cut_short(self, status: int) -> None:
        """An answer counted at its headers that then failed on the server's side: a 5xx."""
        if status < 500:
            self.server_errors += 1

    def verdict(self) -> dict[str, str]:
        """The canary's alerts that fire: name -> what it means (`{}`: none, or too few
        requests to judge)."""
        fired: dict[str, str] = {}
        if self.answered >= MIN_REQUESTS and \
                100 * self.server_errors > FIVE_XX_PERCENT * self.answered:
            fired[CANARY_SERVER_ERRORS] = (
                f"more than {FIVE_XX_PERCENT:g}% of the canary's requests failed with 5xx "
                f"({self.server_errors} of {self.answered})")
        if self.timed >= MIN_REQUESTS and 100 * self.slow > SLOW_PERCENT * self.timed:
            threshold = latency_threshold_seconds(self.timeout_seconds())
            fired[CANARY_LATENCY] = (
                f"the canary's p99 time to first byte is over {threshold:g} s "
                f"({self.slow} of {self.timed} requests)")
        return fired


@dataclass
class Canary:
    """The canary that runs: its version, its replicas, who asked for it, what it answered."""

    version: str
    replicas: list[Replica]
    tally: CanaryTally
    operation: str = "promote"  # or "rollback": how a passed canary records the history
    owner_pid: int | None = None
    owner_started: int | None = None
    started_at: float = field(default_factory=time.time)
    #: why it no longer counts (a replica exited): the verdict fires `CANARY_GONE`
    lost: str | None = None

    def mark(self) -> None:
        """Route the canary's answers to its tally, and keep its replicas out of the
        replicas in service (the supervisor neither counts nor replaces them)."""
        for replica in self.replicas:
            replica.canary, replica.tally = True, self.tally

    def adopt(self) -> None:
        """Make the canary's replicas replicas in service (a canary that passed)."""
        for replica in self.replicas:
            replica.canary, replica.tally = False, None

    def document(self, pool: Any) -> dict[str, Any]:
        """What `status` shows (`canary`), and the bake reads: the replicas, the counts and
        the verdict, judged now (no lag: the gateway counts as it answers)."""
        alive = {r.id for r in pool}
        gone = [r.id for r in self.replicas if r.id not in alive]
        fired = self.tally.verdict()
        if self.lost or gone:
            fired[CANARY_GONE] = self.lost or (
                f"canary replica {', '.join(gone)} on {self.version} exited: see its log")
        return {"version": self.version, "servers": len(self.replicas),
                "replicas": [r.id for r in self.replicas],
                "ready_replicas": sum(1 for r in self.replicas if r.routable),
                "requests": self.tally.answered, "server_errors": self.tally.server_errors,
                "slow": self.tally.slow, "firing": fired, "owner_pid": self.owner_pid,
                "operation": self.operation}

    def record(self) -> dict[str, Any]:
        """What `state.json` keeps of it: enough for a controller started later to stop
        its replicas and say so."""
        return {"version": self.version, "operation": self.operation,
                "replicas": [{"id": r.id, "pid": r.pid, "started": r.started}
                             for r in self.replicas]}


def left_over(recorded: dict[str, Any], why: str) -> str:
    """What the next promote says of a canary retired without its promote."""
    ids = ", ".join(str(r.get("id")) for r in recorded.get("replicas", [])) or "none"
    return (f"a canary of {recorded.get('version')} (replicas {ids}) was left running by a "
            f"promote that did not finish; {why}: the replicas in service never left the "
            "version they serve")
