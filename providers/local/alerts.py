"""The local stack's alerts that mean a bad version, as the clouds' (`status` shows them,
`promote --bake` watches them), judged by the controller from what its gateway answers.

- `server-errors`: more than 5% of the requests answered in the last 60 s were 5xx (the
  replicas' own and the gateway's 502/503/504, and a response that failed after its
  headers: the replica broke it, or ended its stream with a server-error event, or the
  timeout struck), once at least `MIN_REQUESTS` were answered:
  AWS's 5xx-rate threshold, over one window; a stack with a request now and then does not
  fire on one error.
- `latency`: the p99 time to the response's headers over the last 60 s is above AWS's
  threshold (a quarter of `gateway.timeout_seconds`, 2 to 30 s), with the same minimum.
  Streamed answers are not timed: the server sends their headers and a first event before
  any token, so their time to headers says nothing, and hundreds of them near 0 s would
  hide the slow answers under the p99.
- `no-server-serving`: no replica was routable at two evaluations in a row (10 s): an outage.

Why 60 s evaluated every 10 s: the gateway counts every request itself, with none of the
clouds' minutes of metric lag, and a local stack is where a rollout is tried quickly; one
minute of traffic still holds enough requests to judge a ratio. The requests are counted
in 10 s slots (a count each, not a list of requests): memory stays flat however busy the
stack is; the window is the slot in progress and the 5 before it (50 to 60 s). A bake
reads the last evaluation, up to 10 s old (`bake.BAKE_MINIMUM_SECONDS`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmcloud.providers.local.pool import Pool

WINDOW_SECONDS = 60
EVALUATE_EVERY_SECONDS = 10
#: fewer requests than this in the window judge nothing (an idle stack must not flap)
MIN_REQUESTS = 10
FIVE_XX_PERCENT = 5.0
#: the share of requests slower than the threshold that puts the p99 above it
SLOW_PERCENT = 1.0
SERVER_ERRORS, LATENCY, NO_SERVER_SERVING = "server-errors", "latency", "no-server-serving"
#: a client that went away before its headers got no answer: no request of the window (one
#: that leaves mid-stream was counted at its headers, as the 200 it was sent)
_CLIENT_GONE = 499


def latency_threshold_seconds(timeout_seconds: float) -> float:
    """p99 time to the response's headers worth an alert: a quarter of the gateway's
    timeout, 2 to 30 s (AWS's p99-latency alarm's, `aws/monitoring.py`; a stream's first
    token should come long before its last)."""
    return float(min(30, max(2, int(timeout_seconds) // 4)))


@dataclass
class _Slot:
    """The requests answered in one `EVALUATE_EVERY_SECONDS` of the window."""

    answered: int = 0
    server_errors: int = 0
    timed: int = 0  # those a replica answered, whose time to headers was measured
    slow: int = 0  # of those, the ones over the latency threshold


class LocalAlerts:
    """Counts the gateway's answers (`answered`) and judges the alerts (`evaluate`, which
    the controller runs every `EVALUATE_EVERY_SECONDS`); `firing` is the last judgement."""

    def __init__(self, pool: Pool, timeout_seconds: Callable[[], float],
                 clock: Callable[[], float] = time.monotonic):
        self.pool, self.timeout_seconds, self.clock = pool, timeout_seconds, clock
        self.firing: dict[str, str] = {}
        #: every request answered since the controller started, which only grows: a bake
        #: reads it at its start and end (`LocalProvider.requests_served`)
        self.requests_answered = 0
        self._slots: deque[tuple[int, _Slot]] = deque()
        self._none_serving_since: float | None = None
        self._judged_at: float | None = None

    def answered(self, status: int, seconds: float | None = None) -> None:
        """Count one answered request (``seconds``: its time to headers, when a replica
        answered it)."""
        if status == _CLIENT_GONE:
            return
        self.requests_answered += 1
        slot = self._slot(int(self.clock() // EVALUATE_EVERY_SECONDS))
        slot.answered += 1
        slot.server_errors += status >= 500
        if seconds is not None:
            slot.timed += 1
            slot.slow += seconds > latency_threshold_seconds(self.timeout_seconds())

    def cut_short(self, status: int) -> None:
        """Count a response counted at its headers (``status``), then failed on the
        server's side (the replica broke it or sent a server-error event, the timeout
        struck), as a 5xx. Called once per request (the gateway sees to it)."""
        if status < 500:
            self._slot(int(self.clock() // EVALUATE_EVERY_SECONDS)).server_errors += 1

    def evaluate(self) -> dict[str, str]:
        """Judge the alerts over the last `WINDOW_SECONDS`: name -> what it means, for
        those that fire."""
        now = self.clock()
        window = self._window(int(now // EVALUATE_EVERY_SECONDS))
        firing: dict[str, str] = {}
        if window.answered >= MIN_REQUESTS and \
                100 * window.server_errors > FIVE_XX_PERCENT * window.answered:
            firing[SERVER_ERRORS] = (
                f"more than {FIVE_XX_PERCENT:g}% of requests fail with 5xx "
                f"({window.server_errors} of {window.answered} in the last {WINDOW_SECONDS} s)")
        if window.timed >= MIN_REQUESTS and 100 * window.slow > SLOW_PERCENT * window.timed:
            threshold = latency_threshold_seconds(self.timeout_seconds())
            firing[LATENCY] = (
                f"p99 time to first byte is too high: over {threshold:g} s "
                f"({window.slow} of {window.timed} requests in the last {WINDOW_SECONDS} s)")
        if self.pool.routable():
            self._none_serving_since = None
        elif self._none_serving_since is None:
            self._none_serving_since = now
        if self._none_serving_since is not None and \
                now - self._none_serving_since >= EVALUATE_EVERY_SECONDS:
            firing[NO_SERVER_SERVING] = (
                f"no server is serving: outage (no replica ready for "
                f"{now - self._none_serving_since:.0f} s)")
        self.firing, self._judged_at = firing, now
        return firing

    def document(self) -> dict[str, Any]:
        """What `status` shows: ``{"firing": {name: what it means}}`` (`{}`: none fires),
        and ``judged_seconds_ago`` (None before the first evaluation), by which a reader
        tells a judgement that stopped from one that holds."""
        ago = None if self._judged_at is None else round(self.clock() - self._judged_at, 1)
        return {"firing": dict(self.firing), "judged_seconds_ago": ago}

    def _slot(self, index: int) -> _Slot:
        if not self._slots or self._slots[-1][0] != index:
            self._slots.append((index, _Slot()))
            self._forget_before(index)
        return self._slots[-1][1]

    def _window(self, index: int) -> _Slot:
        self._forget_before(index)
        total = _Slot()
        for _, slot in self._slots:
            total.answered += slot.answered
            total.server_errors += slot.server_errors
            total.timed += slot.timed
            total.slow += slot.slow
        return total

    def _forget_before(self, index: int) -> None:
        oldest = index - WINDOW_SECONDS // EVALUATE_EVERY_SECONDS + 1
        while self._slots and self._slots[0][0] < oldest:
            self._slots.popleft()
