"""Per-key token buckets (rate and burst) and daily quotas for the gateway."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

#: buckets kept before idle ones are dropped; doubles while the kept ones are all busy
PRUNE_AT = 1024


@dataclass
class _Bucket:
    tokens: float
    updated: float
    day: int = 0
    used_today: int = 0


class RateLimiter:
    """`rate` requests per second per key with `burst` of headroom; `quota` per UTC day."""

    def __init__(
        self,
        rate: float,
        burst: int,
        quota: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        self.rate, self.burst, self.quota = rate, burst, quota
        self.clock, self.wall = clock, wall
        self._buckets: dict[str, _Bucket] = {}
        #: how many buckets make `take` drop the idle ones (see `_prune`)
        self._prune_at = PRUNE_AT

    def __len__(self) -> int:
        """How many keys' buckets are kept."""
        return len(self._buckets)

    def configure(self, rate: float, burst: int, quota: int | None) -> None:
        """Change the limits; buckets keep their tokens, capped at the new burst."""
        self.rate, self.burst, self.quota = rate, burst, quota
        for bucket in self._buckets.values():
            bucket.tokens = min(bucket.tokens, burst)

    def take(self, key_id: str) -> float | None:
        """Spend one request of `key_id`; None if allowed, else seconds until it would be."""
        now = self.clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            if len(self._buckets) >= self._prune_at:
                self._prune(now)
            bucket = self._buckets[key_id] = _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if self.quota is not None:
            wall = self.wall()
            day = int(wall // 86400)
            if bucket.day != day:
                bucket.day, bucket.used_today = day, 0
            if bucket.used_today >= self.quota:
                return (day + 1) * 86400 - wall
        if bucket.tokens < 1:
            return (1 - bucket.tokens) / self.rate
        bucket.tokens -= 1
        if self.quota is not None:
            bucket.used_today += 1
        return None

    def _prune(self, now: float) -> None:
        """Drop the buckets a new one would equal: refilled to the burst, nothing of today's
        quota used. Every key ever used (revoked ones too) kept one for the gateway's life;
        dropping these changes no answer."""
        today = int(self.wall() // 86400)
        for key_id in [k for k, b in self._buckets.items()
                       if b.tokens + (now - b.updated) * self.rate >= self.burst
                       and (self.quota is None or b.day != today or not b.used_today)]:
            del self._buckets[key_id]
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))


def retry_after_header(seconds: float) -> str:
    """`Retry-After` is whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(seconds)))
