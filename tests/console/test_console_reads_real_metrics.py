"""The Metrics page reads the names the real producers write: the local gateway's
`GatewayMetrics` and the model server's `ServerMetrics` (the other tests build look-alike
registries, which cannot see a renamed metric)."""

from __future__ import annotations

from llmcloud.console.metrics_history import Snapshot, parse, point
from llmcloud.inference_image.metrics import ServerMetrics
from llmcloud.providers.local.metrics import GatewayMetrics


def test_the_charts_series_come_from_the_real_gateway_and_server_pages():
    gateway, server = GatewayMetrics([]), ServerMetrics("m", "1", "generate", lambda: 0,
                                                        lambda: 0)
    before = Snapshot(0.0, {"gateway": parse(gateway.render().decode()),
                            "replica": parse(server.render().decode())})
    for _ in range(3):
        gateway.requests.labels("200").inc()
    gateway.requests.labels("503").inc()
    for seconds in (0.03, 0.03, 0.03, 3.0):
        server.ttft.observe(seconds)
    server.generation_tokens.inc(40)
    after = Snapshot(2.0, {"gateway": parse(gateway.render().decode()),
                           "replica": parse(server.render().decode())})
    rates = point(before, after)
    assert (rates["requests_per_s"], rates["errors_per_s"], rates["tokens_per_s"]) == (
        2.0, 0.5, 20.0)
    assert 0.02 < rates["ttft_p50_s"] <= 0.04 and 2.5 < rates["ttft_p95_s"] <= 5.0
