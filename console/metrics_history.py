"""The last minutes of the service's metrics: scraped from the gateway's and replicas'
Prometheus `/metrics` every few seconds, turned into the series the Metrics page charts.

Series (one point per scrape): requests/s and errors/s (5xx) from the gateway's
`llmcloud_gateway_requests_total`, time to first token p50/p95 from the replicas'
`llmcloud:time_to_first_token_seconds` histogram over a sliding window (as Prometheus's
`histogram_quantile` over `rate(...[window])`), and generated tokens/s from
`llmcloud:generation_tokens_total`. Counters are per process: a replica that restarts or
is replaced during a rollout starts from zero, which the deltas take into account.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmcloud.console.backend import MetricsSource

log = logging.getLogger("llmcloud.console")

GATEWAY_REQUESTS = "llmcloud_gateway_requests_total"
TTFT = "llmcloud:time_to_first_token_seconds"
TOKENS = "llmcloud:generation_tokens_total"
SERIES = ("requests_per_s", "errors_per_s", "ttft_p50_s", "ttft_p95_s", "tokens_per_s")


@dataclass
class Scrape:
    """What one source said at one time."""

    codes: dict[str, float] = field(default_factory=dict)  # gateway: status code -> count
    ttft: dict[float, float] = field(default_factory=dict)  # replica: le -> cumulative count
    tokens: float = 0.0


@dataclass
class Snapshot:
    at: float  # wall-clock seconds
    sources: dict[str, Scrape]


def parse(text: str) -> Scrape:
    """The numbers the console charts, from one `/metrics` page."""
    scrape = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GATEWAY_REQUESTS:
                code = sample.labels.get("code", "")
                scrape.codes[code] = scrape.codes.get(code, 0.0) + sample.value
            elif sample.name == TTFT + "_bucket":
                le = float(sample.labels["le"])
                scrape.ttft[le] = scrape.ttft.get(le, 0.0) + sample.value
            elif sample.name == TOKENS:
                scrape.tokens += sample.value
    return scrape


def _delta(now: float, before: float | None) -> float:
    # A counter that went down belongs to a new process: all of it is new.
    if before is None or now < before:
        return now
    return now - before


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """`q` of a cumulative histogram (`le` -> count), interpolated inside the bucket as
    Prometheus does; None when it holds no observation."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # above the last finite bucket: its bound is all we know
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def point(older: Snapshot, newer: Snapshot) -> dict[str, float | None]:
    """Rates and latency quantiles between two snapshots."""
    seconds = max(newer.at - older.at, 1e-6)
    requests = errors = tokens = 0.0
    ttft: dict[float, float] = {}
    for source, scrape in newer.sources.items():
        before = older.sources.get(source)
        for code, count in scrape.codes.items():
            delta = _delta(count, before.codes.get(code) if before else None)
            requests += delta
            if code.startswith("5"):
                errors += delta
        tokens += _delta(scrape.tokens, before.tokens if before else None)
        restarted = before is not None and any(
            count < before.ttft.get(le, 0.0) for le, count in scrape.ttft.items())
        for le, count in scrape.ttft.items():
            previous = None if (before is None or restarted) else before.ttft.get(le)
            ttft[le] = ttft.get(le, 0.0) + _delta(count, previous)
    return {
        "requests_per_s": requests / seconds,
        "errors_per_s": errors / seconds,
        "ttft_p50_s": quantile(0.5, ttft),
        "ttft_p95_s": quantile(0.95, ttft),
        "tokens_per_s": tokens / seconds,
    }


class MetricsHistory:
    """Scrapes `sources()` every `interval` seconds in a thread; keeps `keep_seconds`."""

    def __init__(self, sources: Callable[[], list[MetricsSource]], *, interval: float = 2.0,
                 keep_seconds: float = 600.0, window_seconds: float = 30.0,
                 timeout: float = 2.0):
        self.sources, self.interval, self.window = sources, interval, window_seconds
        self._snapshots: deque[Snapshot] = deque(maxlen=max(2, int(keep_seconds / interval)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=timeout, trust_env=False)
        self.errors: dict[str, str] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="console-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scrape_once()
            except Exception:  # the loop outlives any one bad scrape
                log.exception("metrics scrape failed")
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def scrape_once(self) -> Snapshot:
        """Scrape every source now and keep the result."""
        scrapes: dict[str, Scrape] = {}
        errors: dict[str, str] = {}
        for source in self.sources():
            try:
                response = self._client.get(source.url)
                response.raise_for_status()
                scrapes[source.id] = parse(response.text)
            except (httpx.HTTPError, ValueError) as exc:
                errors[source.id] = f"{type(exc).__name__}: {exc}"
        snapshot = Snapshot(time.time(), scrapes)
        with self._lock:
            self._snapshots.append(snapshot)
            self.errors = errors
        return snapshot

    def series(self, minutes: float = 10.0) -> dict[str, Any]:
        """`{"points": [{"at", <SERIES>...}], "sources": n, "errors": {...}}` over the last
        `minutes`: rates between consecutive scrapes, quantiles over the sliding window."""
        with self._lock:
            snapshots = list(self._snapshots)
            errors = dict(self.errors)
        if snapshots:
            since = snapshots[-1].at - minutes * 60
            snapshots = [s for s in snapshots if s.at >= since]
        points = []
        start = 0
        for i in range(1, len(snapshots)):
            while snapshots[i].at - snapshots[start].at > self.window and start < i - 1:
                start += 1
            rates = point(snapshots[i - 1], snapshots[i])
            window = point(snapshots[start], snapshots[i])
            points.append({"at": snapshots[i].at,
                           "requests_per_s": rates["requests_per_s"],
                           "errors_per_s": rates["errors_per_s"],
                           "tokens_per_s": rates["tokens_per_s"],
                           "ttft_p50_s": window["ttft_p50_s"],
                           "ttft_p95_s": window["ttft_p95_s"]})
        return {"points": points, "interval_s": self.interval, "window_s": self.window,
                "sources": len(snapshots[-1].sources) if snapshots else 0, "errors": errors}
