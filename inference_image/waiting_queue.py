"""The order requests wait in for a batch slot, and which running ones give way first.

First come, first served by default, round by round: the requests that came while the
engine ran one step (a round) are served before those that came during the next, and
among themselves the shortest prompt first. The engine could not have started any of them
sooner, so that order costs none of them its turn; it gives the earliest first tokens on
average (shortest job first), and prompts of like lengths share a prefill group instead of
the short ones being padded to a long one's length. With priority scheduling (vLLM's
``--scheduling-policy priority``), a request's ``priority`` comes first, lower values
sooner: a request waits behind every one of a lower value, and ahead of all of a higher
value, whenever they came. A preempted request keeps its round and arrival, so it goes
back ahead of every later one of its own priority.
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Protocol


class Waiter(Protocol):
    """What the queue needs of a request: its priority, its prompt's length, and a place
    for its round and arrival."""

    arrival: int
    round: int

    @property
    def priority(self) -> int: ...

    @property
    def context(self) -> int: ...


class WaitingQueue:
    """Requests waiting for a batch slot, the next one first."""

    def __init__(self, by_priority: bool = False):
        self.by_priority = by_priority
        self._rows: deque[Waiter] = deque()
        self._arrivals = itertools.count()
        self._round = 0

    def precedence(self, row: Waiter) -> tuple[int, int, int, int]:
        """The key rows are served by: the smaller, the sooner."""
        return (row.priority if self.by_priority else 0, row.round, row.context, row.arrival)

    def add(self, rows: list[Waiter]) -> None:
        """Queue new requests, or put preempted ones back (they keep their round and
        arrival)."""
        for row in rows:
            if row.arrival < 0:
                row.arrival, row.round = next(self._arrivals), self._round
            bisect.insort_right(self._rows, row, key=self.precedence)

    def next_round(self) -> None:
        """Requests that come from now on are served after those waiting now."""
        self._round += 1

    def least_urgent_last(self, rows: list[Waiter]) -> list[Waiter]:
        """``rows`` ordered as the queue would serve them."""
        return sorted(rows, key=self.precedence)

    def outranks(self, row: Waiter, other: Waiter) -> bool:
        """Whether ``row`` may take ``other``'s place in the batch: only under priority
        scheduling, for a strictly lower priority value (equals never displace each other,
        so nothing is preempted back and forth)."""
        return self.by_priority and row.priority < other.priority

    def displaceable(self, row: Waiter, started=lambda waiting: False) -> list[Waiter]:
        """The waiting requests ``row`` (or requests as urgent) may push out of a full
        queue, the least urgent first: those it outranks, leaving out the ones for which
        ``started`` is true (a preempted request, say, whose client has its first
        tokens)."""
        out = []
        for waiting in reversed(self._rows):
            if not self.outranks(row, waiting):
                break  # the rest are more urgent still
            if not started(waiting):
                out.append(waiting)
        return out

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Waiter]:
        return iter(list(self._rows))

    def __getitem__(self, index: int) -> Waiter:
        return self._rows[index]

    def popleft(self) -> Waiter:
        return self._rows.popleft()

    def remove(self, row: Waiter) -> None:
        for index, waiting in enumerate(self._rows):
            if waiting is row:
                del self._rows[index]
                return
        raise ValueError("not waiting")

    def clear(self) -> None:
        self._rows.clear()
