"""The load balancer's view of the replicas: who is ready, who is ejected, who is busy."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llmcloud.providers.local.upstream import Upstream


@dataclass(eq=False)
class Replica:
    """One `llmcloud-server` process as the gateway routes to it."""

    id: str
    port: int
    version: str
    pid: int | None = None
    config_id: str = ""  # the server settings it was started with
    started: int | None = None  # the process's start time, to recognise its pid later
    ready: bool = False  # the last health check said ready
    ready_at: float | None = None  # when a health check first said ready (monotonic)
    ejected_at: float | None = None  # a connection failed; out until a health check passes
    draining: bool = False  # being retired: no new requests
    in_flight: int = 0
    passes: int = 0  # consecutive passing health checks
    served: int = 0
    created: float = field(default_factory=time.monotonic)
    #: one of a canary's replicas (`canary.py`): routed to, not counted in service
    canary: bool = False
    tally: Any = field(default=None, repr=False)  # the canary's `CanaryTally`
    upstream: Upstream = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.upstream = Upstream(self.port)

    @property
    def routable(self) -> bool:
        return self.ready and self.ejected_at is None and not self.draining

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> dict[str, Any]:
        """The replica as `status` shows it."""
        return {
            "id": self.id,
            "pid": self.pid,
            "port": self.port,
            "version": self.version,
            "ready": self.routable,
            "draining": self.draining,
            "ejected": self.ejected_at is not None,
            "in_flight": self.in_flight,
            "served": self.served,
            **({"canary": True} if self.canary else {}),
        }


class Pool:
    """Least-outstanding-requests balancing over the routable replicas."""

    def __init__(self) -> None:
        self.replicas: dict[str, Replica] = {}
        self.ejections = 0

    def add(self, replica: Replica) -> None:
        self.replicas[replica.id] = replica

    def remove(self, replica: Replica) -> None:
        self.replicas.pop(replica.id, None)
        replica.upstream.close()

    def __iter__(self):
        return iter(list(self.replicas.values()))

    def routable(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.routable]

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica | None:
        """The routable replica with the fewest requests in flight (ties: at random)."""
        skip = set(map(id, exclude))
        best: list[Replica] = []
        for replica in self.replicas.values():
            if not replica.routable or id(replica) in skip:
                continue
            if not best or replica.in_flight < best[0].in_flight:
                best = [replica]
            elif replica.in_flight == best[0].in_flight:
                best.append(replica)
        if not best:
            return None
        return best[0] if len(best) == 1 else random.choice(best)

    def eject(self, replica: Replica) -> None:
        """Take a replica out after a connection error; a passing health check readmits it."""
        replica.passes = 0
        if replica.ejected_at is None:
            replica.ejected_at = time.monotonic()
            self.ejections += 1
