"""The metrics history's arithmetic: parsing both kinds of /metrics, rates across counter
resets (a replica replaced in a rollout), and histogram quantiles as Prometheus computes
them."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from llmcloud.console.charts import charts, format_value, line_chart
from llmcloud.console.metrics_history import (
    MetricsHistory,
    Scrape,
    Snapshot,
    parse,
    point,
    quantile,
)


def gateway_text(ok: int, failed: int) -> str:
    registry = CollectorRegistry()
    requests = Counter("llmcloud_gateway_requests", "", ["code"], registry=registry)
    requests.labels("200").inc(ok)
    requests.labels("503").inc(failed)
    return generate_latest(registry).decode()


def replica_text(ttfts: list[float], tokens: int) -> str:
    registry = CollectorRegistry()
    ttft = Histogram("llmcloud:time_to_first_token_seconds", "", ["model_name"],
                     buckets=(0.01, 0.1, 1.0), registry=registry).labels("m")
    for value in ttfts:
        ttft.observe(value)
    Counter("llmcloud:generation_tokens", "", ["model_name"],
            registry=registry).labels("m").inc(tokens)
    return generate_latest(registry).decode()


def test_parse_reads_the_gateways_codes_and_a_replicas_histogram_and_tokens():
    gateway = parse(gateway_text(7, 2))
    assert gateway.codes == {"200": 7.0, "503": 2.0}
    replica = parse(replica_text([0.005, 0.05, 0.05, 0.5], 40))
    assert replica.ttft == {0.01: 1.0, 0.1: 3.0, 1.0: 4.0, float("inf"): 4.0}
    assert replica.tokens == 40.0


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile():
    buckets = {0.1: 50.0, 0.2: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.75, buckets) == pytest.approx(0.15)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 0.0, float("inf"): 5.0}) == 0.1  # beyond the last bound


def test_rates_count_a_restarted_replica_from_zero():
    before = Snapshot(100.0, {"gateway": parse(gateway_text(10, 0)),
                              "replica-1": parse(replica_text([0.05] * 10, 500))})
    after = Snapshot(110.0, {"gateway": parse(gateway_text(30, 5)),
                             "replica-1": parse(replica_text([0.5] * 2, 20))})  # restarted
    rates = point(before, after)
    assert rates["requests_per_s"] == pytest.approx(2.5)
    assert rates["errors_per_s"] == pytest.approx(0.5)
    assert rates["tokens_per_s"] == pytest.approx(2.0)
    assert 0.1 < rates["ttft_p50_s"] <= 1.0  # only the two new observations count


def test_a_replica_that_appears_counts_in_full_and_one_that_left_not_at_all():
    before = Snapshot(0.0, {"replica-1": Scrape(tokens=100.0)})
    after = Snapshot(2.0, {"replica-2": Scrape(tokens=10.0)})
    assert point(before, after)["tokens_per_s"] == pytest.approx(5.0)


def test_history_keeps_the_window_and_reports_unreachable_sources():
    from llmcloud.console.backend import MetricsSource

    history = MetricsHistory(lambda: [MetricsSource("gateway", "gateway",
                                                    "http://127.0.0.1:9/metrics")],
                             interval=1.0, timeout=0.5)
    try:
        history.scrape_once()
        series = history.series()
    finally:
        history.stop()
    assert series["points"] == [] and "gateway" in series["errors"]


def test_charts_draw_gaps_for_missing_points_and_format_latest_values():
    svg = line_chart([1.0, None, 2.0, 3.0], label="x")
    assert svg.count("<circle") == 1 and svg.count("<polyline") == 1
    assert "style=" not in svg  # the Content-Security-Policy forbids inline styles
    assert format_value(0.0421, "s") == "42 ms" and format_value(None, "s") == "–"
    rendered = charts([{"requests_per_s": 3.0, "ttft_p50_s": None}])
    assert [c.latest for c in rendered][:3] == ["3.0 req/s", "–", "–"]


def test_narration_follows_a_rolling_updates_order_within_one_look():
    from llmcloud.console.rollouts import narrate

    before = [{"id": "r1", "version": "v1", "ready": True},
              {"id": "r3", "version": "v2", "ready": False}]
    after = [{"id": "r3", "version": "v2", "ready": True},
             {"id": "r4", "version": "v2", "ready": False}]
    assert narrate(before, after) == ["replica r3 ready on v2", "replica r1 stopped (v1)",
                                      "replica r4 starting on v2"]
    draining = [{"id": "r1", "version": "v1", "ready": False, "draining": True}]
    assert narrate(before[:1], draining) == ["replica r1 draining (v1)"]
    # a slow look (a loaded machine): one replica started and became ready, an old one
    # drained and stopped, the next one started, another old one began draining
    before = [{"id": "r1", "version": "v1", "ready": True},
              {"id": "r2", "version": "v1", "ready": True}]
    after = [{"id": "r1", "version": "v1", "ready": True, "draining": True},
             {"id": "r3", "version": "v2", "ready": True},
             {"id": "r4", "version": "v2", "ready": False}]
    assert narrate(before, after) == [
        "replica r3 starting on v2", "replica r3 ready on v2", "replica r1 draining (v1)",
        "replica r2 stopped (v1)", "replica r4 starting on v2"]
