"""The gateway's own Prometheus metrics (its `/metrics`), in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from llmcloud.providers.local.alerts import LocalAlerts
from llmcloud.providers.local.pool import Pool


class GatewayMetrics:
    """Requests, latency, retries, ejections, rate limiting and replica states."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, pool: Pool, alerts: LocalAlerts | None = None):
        self.alerts = alerts
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "llmcloud_gateway_requests", "Requests answered, by status code",
            ["code"], registry=self.registry,
        )
        self.latency = Histogram(
            "llmcloud_gateway_request_seconds", "Time to the response's headers",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.retries = Counter(
            "llmcloud_gateway_retries", "Requests sent again to another replica",
            registry=self.registry,
        )
        self.upstream_errors = Counter(
            "llmcloud_gateway_upstream_errors", "Failed exchanges with replicas, by kind",
            ["kind"], registry=self.registry,
        )
        self.rate_limited = Counter(
            "llmcloud_gateway_rate_limited", "Requests refused by a key's rate or quota",
            registry=self.registry,
        )
        self.ejections = Counter(
            "llmcloud_gateway_ejections", "Replicas taken out after connection errors",
            registry=self.registry,
        )
        replicas = Gauge(
            "llmcloud_gateway_replicas", "Replicas by state", ["state"], registry=self.registry
        )
        in_flight = Gauge(
            "llmcloud_gateway_in_flight", "Requests in flight to replicas", registry=self.registry
        )
        for state, test in (
            ("ready", lambda r: r.routable),
            ("starting", lambda r: not r.ready and r.ejected_at is None and not r.draining),
            ("ejected", lambda r: r.ejected_at is not None),
            ("draining", lambda r: r.draining),
        ):
            replicas.labels(state).set_function(
                lambda test=test: sum(1 for r in pool if test(r))
            )
        in_flight.set_function(lambda: sum(r.in_flight for r in pool))

    def answered(self, status: int, seconds: float | None = None, *,
                 streamed: bool = False) -> None:
        """Count a response by its status code (and its time to headers, ``seconds``, when
        a replica answered it), here and in the window the stack's alerts judge (which
        times no ``streamed`` answer: its headers come before its first token)."""
        if seconds is not None:
            self.latency.observe(seconds)
        self.requests.labels(str(status)).inc()
        if self.alerts is not None:
            self.alerts.answered(status, None if streamed else seconds)

    def cut_short(self, status: int) -> None:
        """A response counted at its headers (``status``) that then failed: the replica
        broke it or ended it with a server-error event, or the timeout struck. A 5xx for
        the stack's alerts; ``requests`` keeps the code the client was sent (the kind of
        failure is in ``upstream_errors``)."""
        if self.alerts is not None:
            self.alerts.cut_short(status)

    def render(self) -> bytes:
        return generate_latest(self.registry)
