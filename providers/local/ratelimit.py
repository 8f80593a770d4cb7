"""Per-key token buckets (rate and burst) and daily quotas for the gateway."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


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


def retry_after_header(seconds: float) -> str:
    """`Retry-After` is whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(seconds)))
